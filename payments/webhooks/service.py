"""Signed notifications to client systems, following the Standard Webhooks specification.

Each message carries ``webhook-id`` (the message id, the same on every retry: receivers drop duplicates by it),
``webhook-timestamp`` (seconds, the time of the attempt) and ``webhook-signature``: ``v1,`` + base64 of
HMAC-SHA256 over ``"{id}.{timestamp}.{body}"`` with the endpoint's secret (``whsec_`` + base64 of 24 random bytes).

Events are written in the transaction of the change they report (``emit``); the outbox then fans a message out to
the agency's endpoints and delivers each, retrying on the schedule in settings until the endpoint answers 2xx.
A delivery that exhausts the schedule is marked failed and stays listed; nothing is ever dropped silently.
Where a message may go (no address of the service's own network) is decided in ``targets``, at registration and
again at every delivery.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
import secrets
import ssl
from collections.abc import Sequence
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

import httpx
from sqlalchemy import and_, bindparam, insert, update
from sqlmodel import Session, col, select

from payments.core.config import Environment, PaymentSettings
from payments.core.context import AppContext
from payments.core.db import affected, table_of
from payments.core.errors import ValidationFailed
from payments.core.logging import get_logger
from payments.core.observe import observer
from payments.core.sql import Prepared, insert_or_nothing
from payments.core.types import new_id, utcnow
from payments.outbox.service import enqueue, enqueue_many
from payments.outbox.worker import RetryLater
from payments.webhooks import targets
from payments.webhooks.models import DeliveryStatus, WebhookDelivery, WebhookEndpoint, WebhookMessage, event_body

# Outbox job kinds this package runs (payments.webhooks.jobs).
FANOUT = "webhook.fanout"
DELIVER = "webhook.deliver"
log = get_logger(__name__)

EVENT_TYPES = (
    "payment.succeeded",
    "payment.failed",
    "payment.cancelled",
    "payment.expired",
    "payment.refunded",
    "payment.partially_refunded",
    "receipt.issued",
)
SECRET_PREFIX = "whsec_"  # noqa: S105 - the format marker, not a secret
USER_AGENT = "Lephi-Webhooks/1"
# What a failed attempt is recorded as (besides ``http_<status>``): docs/api.md#webhooks.
ERROR_CATEGORIES = frozenset({"timeout", "refused", "tls", "dns", "blocked", "protocol", "network", "disabled"})
_MESSAGE = table_of(WebhookMessage)
_ENDPOINT = table_of(WebhookEndpoint)
_DELIVERY = table_of(WebhookDelivery)
_INSERT_MESSAGE = Prepared(insert(_MESSAGE))
# The message and its agency's enabled endpoints in one read (one row with no endpoint when there are none).
_MESSAGE_AND_ENDPOINTS = Prepared(
    select(
        _MESSAGE.c.agency_id,
        _MESSAGE.c.event_type,
        _ENDPOINT.c.id.label("endpoint_id"),
        _ENDPOINT.c.event_types,
    )
    .select_from(
        _MESSAGE.outerjoin(
            _ENDPOINT, and_(_ENDPOINT.c.agency_id == _MESSAGE.c.agency_id, _ENDPOINT.c.enabled.is_(True))
        )
    )
    .where(_MESSAGE.c.id == bindparam("message_id"))
)
_NEW_DELIVERY: dict[str, Any] = {
    "status": DeliveryStatus.pending,
    "attempts": 0,
    "last_status_code": None,
    "last_error": None,
    "last_attempt_at": None,
    "delivered_at": None,
}


def new_secret() -> str:
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(24)).decode()


def sign(secret: str, message_id: str, timestamp: int, body: str) -> str:
    key = base64.b64decode(secret.removeprefix(SECRET_PREFIX))
    mac = hmac.new(key, f"{message_id}.{timestamp}.{body}".encode(), hashlib.sha256).digest()
    return "v1," + base64.b64encode(mac).decode()


def check_url(url: str, settings: PaymentSettings) -> str:
    """HTTPS only in production; no credentials in the URL (they would sit in logs and listings); a host, address
    and port that the target policy allows (payments/webhooks/targets.py)."""
    try:
        parts = urlsplit(url)
    except ValueError:
        raise ValidationFailed("the endpoint URL cannot be read") from None
    allowed = {"https"} if settings.env is Environment.production else {"https", "http"}
    if parts.scheme not in allowed or not parts.hostname:
        raise ValidationFailed(f"the endpoint URL must be an absolute {' or '.join(sorted(allowed))} URL")
    if parts.username or parts.password:
        raise ValidationFailed("the endpoint URL must not carry credentials")
    if parts.fragment:
        raise ValidationFailed("the endpoint URL must not carry a fragment")
    try:
        httpx.URL(url)
        targets.check_registration(url, settings)
    except httpx.InvalidURL:
        raise ValidationFailed("the endpoint URL cannot be read") from None
    except targets.TargetRefused as exc:
        raise ValidationFailed(f"the endpoint URL is refused: {exc.reason}") from None
    return url


def check_event_types(types: list[str]) -> list[str]:
    unknown = sorted(set(types) - set(EVENT_TYPES))
    if unknown:
        raise ValidationFailed(f"unknown event types {unknown}; known: {list(EVENT_TYPES)}")
    return sorted(set(types))


def emit(
    s: Session, agency_id: str, event_type: str, data: dict[str, Any], also: Sequence[tuple[str, dict[str, Any]]] = ()
) -> None:
    """Record an event in the caller's transaction; it is delivered only if that transaction commits. ``also``: the
    caller's own outbox jobs, written in the same statement as the event's."""
    assert event_type in EVENT_TYPES, event_type
    now, message_id = utcnow(), new_id("msg")
    body = json.dumps(
        event_body(message_id, event_type, now, data), ensure_ascii=False, separators=(",", ":"), sort_keys=True
    )
    # Core, not an ORM object: this runs in every payment's final transition, where a flush costs more than the rest.
    row = {"id": message_id, "agency_id": agency_id, "event_type": event_type, "body": body, "created_at": now}
    _INSERT_MESSAGE.write(s, row)
    enqueue_many(s, [(FANOUT, {"message_id": message_id}), *also])


def fan_out(ctx: AppContext, payload: dict[str, Any]) -> None:
    """One delivery per subscribed endpoint; running twice adds nothing (one row per message and endpoint).

    Every event of every payment passes here, most of them for agencies with one endpoint or none: one read decides,
    and a write transaction is opened only when there is something to deliver."""
    with ctx.db.read() as s:
        rows = _MESSAGE_AND_ENDPOINTS(s, {"message_id": str(payload["message_id"])}).all()
    if not rows:
        return  # the message is gone (its agency's data was removed)
    agency_id, event_type = rows[0].agency_id, rows[0].event_type
    targets_ = [r.endpoint_id for r in rows if r.endpoint_id and (not r.event_types or event_type in r.event_types)]
    if not targets_:
        return
    now = utcnow()
    with ctx.db.write() as s:
        insert_delivery = insert_or_nothing(s, _DELIVERY, ("message_id", "endpoint_id"), ("id",))
        conn = s.connection()
        for endpoint_id in targets_:
            row = {**_NEW_DELIVERY, "id": new_id("whd"), "agency_id": agency_id, "message_id": payload["message_id"]}
            row.update(endpoint_id=endpoint_id, event_type=event_type, created_at=now)
            if insert_delivery(conn, row).first() is not None:  # None: delivered by an earlier run
                enqueue(s, DELIVER, {"delivery_id": row["id"]})


def deliver(ctx: AppContext, payload: dict[str, Any]) -> None:
    """One attempt. The HTTP call happens outside any transaction; its outcome is recorded after."""
    delivery_id = str(payload["delivery_id"])
    with ctx.db.read() as s:
        delivery = s.get(WebhookDelivery, delivery_id)
        if delivery is None or delivery.status is not DeliveryStatus.pending:
            return
        endpoint = s.get(WebhookEndpoint, delivery.endpoint_id)
        message = s.get(WebhookMessage, delivery.message_id)
        assert endpoint is not None and message is not None
    if not endpoint.enabled:
        _record(ctx, delivery, DeliveryStatus.failed, None, "disabled")
        return
    code, error = _attempt(ctx, endpoint, message)
    if error is None:
        _record(ctx, delivery, DeliveryStatus.delivered, code, None)
        return
    schedule = ctx.settings.webhook_retry_schedule_seconds
    attempt = delivery.attempts + 1
    # A refused target fails at once: retrying cannot help until the client's DNS or the operator's settings change
    # (staff may then send it again).
    final = attempt > len(schedule) or error == "blocked"
    observer().webhook_failed(_reason(error), final)
    if final:
        _record(ctx, delivery, DeliveryStatus.failed, code, error)
        log.warning("webhook.failed", delivery_id=delivery.id, endpoint_id=endpoint.id, error=error)
        return
    _record(ctx, delivery, DeliveryStatus.pending, code, error)
    raise RetryLater(schedule[attempt - 1])


def _reason(error: str) -> str:
    """The failure's category with an HTTP status folded into its class (http_4xx), for a bounded metric label."""
    return f"http_{error[5]}xx" if error.startswith("http_") and len(error) == 8 else error


def _attempt(ctx: AppContext, endpoint: WebhookEndpoint, message: WebhookMessage) -> tuple[int | None, str | None]:
    """The HTTP status (if any) and the failure category (None when delivered) of one signed POST."""
    try:
        httpx.URL(endpoint.url)
        where = targets.route(endpoint.url, ctx.settings)
    except (targets.TargetRefused, httpx.InvalidURL) as exc:
        # Also endpoints registered before these rules, whose URLs were never checked this way.
        reason = exc.reason if isinstance(exc, targets.TargetRefused) else "the URL cannot be read"
        log.warning("webhook.blocked", endpoint_id=endpoint.id, reason=reason)
        return None, "blocked"
    except targets.Unresolvable:
        return None, "dns"
    timestamp = int(utcnow().timestamp())
    headers = {
        "content-type": "application/json",
        "user-agent": USER_AGENT,
        "webhook-id": message.id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": sign(endpoint.secret, message.id, timestamp, message.body),
    }
    return _send(ctx, where, endpoint.url, headers, message.body.encode())


def _record(
    ctx: AppContext, delivery: WebhookDelivery, status: DeliveryStatus, code: int | None, error: str | None
) -> None:
    now = utcnow()
    with ctx.db.write() as s:
        result = s.execute(
            update(WebhookDelivery)
            .where(col(WebhookDelivery.id) == delivery.id, col(WebhookDelivery.status) == DeliveryStatus.pending)
            .values(
                status=status,
                attempts=col(WebhookDelivery.attempts) + 1,
                last_status_code=code,
                last_error=error,
                last_attempt_at=now,
                delivered_at=now if status is DeliveryStatus.delivered else None,
            )
        )
    if affected(result) == 1:
        log.info("webhook.attempt", delivery_id=delivery.id, status=status.value, http_status=code)


def retry_now(s: Session, delivery: WebhookDelivery) -> None:
    """Staff asked to send a failed delivery again (e.g. after fixing their endpoint): a fresh schedule."""
    s.execute(
        update(WebhookDelivery)
        .where(col(WebhookDelivery.id) == delivery.id)
        .values(status=DeliveryStatus.pending, attempts=0, last_error=None)
    )
    enqueue(s, DELIVER, {"delivery_id": delivery.id})


def _send(
    ctx: AppContext, where: targets.Route, url: str, headers: dict[str, str], body: bytes
) -> tuple[int | None, str | None]:
    """POST to the checked addresses in turn until one takes the connection. The name is sent only as Host and as
    the TLS server name (SNI and certificate check), so the resolver is not asked again between check and connect."""
    extensions = {"sni_hostname": where.server_name} if where.server_name else {}
    error = "refused"
    for ip in where.addresses:
        to_ip = httpx.URL(url).copy_with(host=str(ip), port=where.target.port)
        try:
            response = ctx.webhook_http.post(
                to_ip, content=body, headers={**headers, "host": where.target.host_header}, extensions=extensions
            )
        except httpx.HTTPError as exc:
            error = failure_category(exc)
            if error == "refused":
                continue
            return None, error
        code = response.status_code
        return code, None if 200 <= code < 300 else f"http_{code}"
    return None, error


def failure_category(exc: httpx.HTTPError) -> str:
    """What a delivery failure is recorded and shown as: a category, never the socket's own words, which would tell a
    client what listens where."""
    if isinstance(exc, httpx.TimeoutException):
        return "timeout"
    cause: BaseException | None = exc
    while cause is not None:
        if isinstance(cause, ssl.SSLError | ssl.CertificateError):
            return "tls"
        cause = cause.__cause__ or cause.__context__
    if isinstance(exc, httpx.ConnectError):
        return "refused"
    return "protocol" if isinstance(exc, httpx.ProtocolError) else "network"


def shown_error(stored: str | None) -> str | None:
    """The category of a stored error; rows written before errors were categories held free text."""
    if stored is None or stored in ERROR_CATEGORIES or re.fullmatch(r"http_\d{3}", stored):
        return stored
    legacy = re.fullmatch(r"HTTP (\d{3})", stored)
    return f"http_{legacy[1]}" if legacy else "network"


def verify(
    secret: str, headers: dict[str, str], body: str, *, now: datetime | None = None, tolerance: int = 300
) -> bool:
    """What a receiver does; used by the tests and documented for client systems."""
    stamp, message_id = headers.get("webhook-timestamp", ""), headers.get("webhook-id", "")
    if not message_id or not (
        stamp.isascii() and stamp.isdigit() and len(stamp) <= 12
    ):  # int() also takes signs, spaces, other digits
        return False
    timestamp = int(stamp)
    current = int((now or utcnow()).timestamp())
    if abs(current - timestamp) > tolerance:
        return False
    expected = sign(secret, message_id, timestamp, body).encode()
    # Bytes: compare_digest raises TypeError on a str with non-ASCII characters, which anyone can send.
    return any(hmac.compare_digest(expected, c.encode()) for c in headers["webhook-signature"].split())
