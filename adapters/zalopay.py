"""ZaloPay e-wallet, API v2: create an order, verify the callback, query, "cancel", refund and refund status.

ZaloPay's servers are not reachable from this machine: everything here was written against ZaloPay's public
developer documentation (docs.zalopay.vn, "specs": order-create, callback, order-query, order-refund,
order-query-refund) and the facts in the project's domain reference (section 4.4), and is tested against a
stand-in of ZaloPay's HTTP API (tests/contract/drivers.py). Run it once against ZaloPay's sandbox before going live
(see the doubts at the end).

Settings (``context.settings``):

- ``app_id`` (required): the merchant application's id at ZaloPay (an integer).
- ``key1`` (required): HMAC-SHA256 key that signs our requests (create, query, refund, refund status).
- ``key2`` (required): HMAC-SHA256 key that verifies ZaloPay's callbacks; never used to sign.
- ``previous_key2``: a list (or comma-separated string) of retired ``key2`` values still accepted when verifying
  callbacks during a key rotation.
- ``endpoint``: base URL, default ``https://sb-openapi.zalopay.vn`` (ZaloPay's sandbox); production is
  ``https://openapi.zalopay.vn``.
- ``app_user``: who the order is for, as ZaloPay sees it; default ``lephi``. It is a fixed merchant label on
  purpose: the payer's name, phone or citizen ID never goes to the gateway.
- ``timeout_seconds``: per-call timeout, default 15; only when the service does not hand the adapter its client.

Signed strings (hex HMAC-SHA256, values joined by ``|`` as sent, not encoded), each from ZaloPay's page named:

- create (domain.md 4.4 and "order-create"), key1:
  ``app_id|app_trans_id|app_user|amount|app_time|embed_data|item``
- callback (domain.md 4.4 and "callback"), key2: the ``data`` string exactly as received
- query ("order-query"), key1: ``app_id|app_trans_id|key1`` (the key is part of the signed string, as published)
- refund ("order-refund"), key1: ``app_id|zp_trans_id|amount|description|timestamp`` (no refund fee is sent)
- refund status ("order-query-refund"), key1: ``app_id|m_refund_id|timestamp``

Identifiers. ZaloPay wants ``app_trans_id`` (at most 40 characters) and ``m_refund_id`` to start with the day
``yymmdd`` in GMT+7. An attempt's ``app_trans_id`` is that day of the attempt's creation and a hash of its
idempotency key, so a retried create or a later query names the same order. A refund's ``m_refund_id`` is
``yymmdd_appid_`` and a hash of the refund's idempotency key, where the day is the day it is first sent: a retry
looks the refund up under the ids of the last few days before sending anything (``REFUND_LOOKBACK_DAYS``).

Decisions (each lives in one table or function below, so it is easy to change):

- ZaloPay calls back only for a successful payment; a declined, cancelled or expired order is learnt by a status
  query. ``CallbackEvent.merchant_reference`` is empty (ZaloPay does not echo our payment id) and
  ``gateway_reference`` is the ``app_trans_id``; the event id is ``app_trans_id:zp_trans_id``.
- Callback ``type`` 2 (agreement, i.e. tokenised payments) is verified and acknowledged but not tracked.
- The callback carries ``server_time`` but no freshness window is enforced: ZaloPay redelivers a callback it thinks
  was lost, a replay only repeats a signed fact, and the service deduplicates by ``event_id``.
- A status answer about the query itself (bad signature, bad parameters, system error) raises
  ``GatewayTechnicalError``: it says nothing about the payment and must not fail it.
- ``cancel``: ZaloPay has no cancel for an unpaid order; it expires on its own (``expire_duration_seconds``, sent
  from the attempt's expiry). We query, return a final answer as is, and otherwise report ``cancelled`` with
  ``raw_code="expired-at-lephi"``. A late payment still produces a signed callback, a late success.
- ``refund``: ZaloPay refunds by ``zp_trans_id``, which ``RefundRequest`` does not carry; the adapter queries the
  order for it. The refund API is asynchronous: ``return_code`` 3 is a pending refund, settled when the service
  retries (the same idempotency key), which asks the refund status first and never sends the refund twice.

Doubts not settled without ZaloPay's servers, marked [S] (secondary: community integrations) or [I] (inferred):
the ``sub_return_code`` sets (``ORDER_NOT_FOUND``, ``EXPIRED``, ``REFUSED``, ``RETRY_LATER``,
``DUPLICATE``), ``CALLBACK_REPLIES`` and the notes next to them; ``embed_data.redirecturl`` as the payer's way
back [S]; whether a create repeated with the same ``app_trans_id`` is answered with the same ``order_url`` or
refused as a duplicate [I] (we treat a refusal as "unknown, query later"); the ``m_refund_id`` day rule across
midnight [I].
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

from adapters.base import (
    CallbackEvent,
    CallbackOutcome,
    CallbackReply,
    CallbackRequest,
    GatewayContext,
    GatewayDeclinedError,
    GatewayStatus,
    GatewayTechnicalError,
    IgnoredEvent,
    InvalidCallback,
    PaymentGateway,
    RefundOutcome,
    RefundRequest,
    RefundResult,
    StartPayment,
    StartResult,
    StatusQuery,
    StatusResult,
    retired_secrets,
)
from adapters.http import client_for, request_with_retries
from adapters.money import amount_from_json, amount_from_json_or_text

DEFAULT_ENDPOINT = "https://sb-openapi.zalopay.vn"
CREATE_PATH = "/v2/create"
QUERY_PATH = "/v2/query"
REFUND_PATH = "/v2/refund"
REFUND_QUERY_PATH = "/v2/query_refund"

CREATE_FIELDS = ("app_id", "app_trans_id", "app_user", "amount", "app_time", "embed_data", "item")
REFUND_FIELDS = ("app_id", "zp_trans_id", "amount", "description", "timestamp")
REFUND_QUERY_FIELDS = ("app_id", "m_refund_id", "timestamp")

GMT7 = timezone(timedelta(hours=7), "GMT+7")
MAX_TRANS_ID_LENGTH = 40
MAX_DESCRIPTION_LENGTH = 256  # ZaloPay's limit on ``description``
# ZaloPay accepts 300 s to 30 days for an order's life ("order-create", expire_duration_seconds).
MIN_EXPIRY_SECONDS, MAX_EXPIRY_SECONDS = 300, 2_592_000
REFUND_LOOKBACK_DAYS = 2  # [I] a refund retried after midnight is found under the ids of the days before
EXPIRED_AT_LEPHI = "expired-at-lephi"

# return_code, the same in every answer: 1 success, 2 fail, 3 processing (unpaid order / refund in progress).
SUCCESS, FAIL, PROCESSING = 1, 2, 3

# sub_return_code values that change how a return_code 2 is read; the only place a sub code gets a meaning.
# [S] ZaloPay's status-code page lists them; these few were confirmed only through community integrations.
ORDER_NOT_FOUND = frozenset({-101, -49})  # the order or refund id is unknown at ZaloPay (nothing happened)
EXPIRED = frozenset({-54})  # the order's payment period is over: the payer did not pay
REFUSED = frozenset({-401, -402})  # our request's parameters or mac were refused: fix the settings
RETRY_LATER = frozenset({-500, -503})  # system error, maintenance: ZaloPay did not decide now
ABOUT_THE_REQUEST = REFUSED | RETRY_LATER
DUPLICATE = frozenset({-68})  # [I] app_trans_id already used: the order exists, its page cannot be read again

# The reply ZaloPay expects to a callback: HTTP 200 and this JSON for every outcome (domain.md 4.4 for success).
# [S] 2 = "already handled" and -1 = "refused, do not resend", 0 = "failed here, resend" (up to 3 times) come from
# ZaloPay's sample merchant servers, not from the spec page.
CALLBACK_REPLIES: dict[CallbackOutcome, tuple[int, str]] = {
    CallbackOutcome.accepted: (1, "success"),
    CallbackOutcome.duplicate: (2, "already handled"),
    CallbackOutcome.already_final: (2, "already handled"),
    CallbackOutcome.unknown_order: (-1, "order not found"),
    CallbackOutcome.amount_mismatch: (-1, "amount mismatch"),
    CallbackOutcome.invalid_signature: (-1, "mac not equal"),
    CallbackOutcome.error: (0, "temporary error, please resend"),
}


def sign(key: str, values: Mapping[str, object], fields: tuple[str, ...]) -> str:
    """Hex HMAC-SHA256 of the named values joined by ``|``."""
    return mac(key, "|".join(str(values[name]) for name in fields))


def mac(key: str, data: str) -> str:
    return hmac.new(key.encode(), data.encode(), hashlib.sha256).hexdigest()


def query_mac(key1: str, app_id: object, app_trans_id: str) -> str:
    # The published query string ends with the key itself.
    return mac(key1, f"{app_id}|{app_trans_id}|{key1}")


def vn_day(moment: datetime) -> str:
    """``yymmdd`` in GMT+7; a naive datetime is taken as UTC, as the service stores times."""
    aware = moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)
    return aware.astimezone(GMT7).strftime("%y%m%d")


def app_trans_id(idempotency_key: str, created_at: datetime) -> str:
    """The attempt's order id at ZaloPay: stable across retries, unique, and starting with its day."""
    return f"{vn_day(created_at)}_{hashlib.sha256(idempotency_key.encode()).hexdigest()[:24]}"


def m_refund_id(app_id: object, idempotency_key: str, day: datetime) -> str:
    """A refund's id at ZaloPay for the day it is sent: ``yymmdd_appid_`` and 15 digits from the key."""
    digits = int(hashlib.sha256(idempotency_key.encode()).hexdigest(), 16) % 10**15
    return f"{vn_day(day)}_{app_id}_{digits:015d}"


def epoch_ms(moment: datetime) -> int:
    aware = moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)
    return int(aware.timestamp() * 1000)


def _required(settings: Mapping[str, Any], key: str) -> str:
    value = settings.get(key)
    if value is None or value == "":
        raise ValueError(f"the ZaloPay gateway needs the setting {key!r}")
    return str(value)


def _int_or_none(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


class ZaloPayGateway(PaymentGateway):
    name = "zalopay"
    starts_offline = False

    def __init__(
        self,
        context: GatewayContext,
        *,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        settings = context.settings
        app_id = _required(settings, "app_id")
        if not (app_id.isascii() and app_id.isdigit()):
            raise ValueError("the ZaloPay setting 'app_id' must be a whole number")
        self._app_id = int(app_id)
        self._key1 = _required(settings, "key1")
        self._key2s = [
            _required(settings, "key2"),
            *retired_secrets(settings.get("previous_key2"), "the ZaloPay setting 'previous_key2'"),
        ]
        self._endpoint = str(settings.get("endpoint") or DEFAULT_ENDPOINT).rstrip("/")
        self._app_user = str(settings.get("app_user") or "lephi")
        self._http = client_for({"timeout_seconds": settings.get("timeout_seconds", 15)}, context.http)
        self.sleep = sleep
        self._clock = clock

    # --- payments ---------------------------------------------------------------------------------------------
    def start_payment(self, request: StartPayment) -> StartResult:
        if request.currency != "VND":
            raise GatewayDeclinedError(f"ZaloPay takes only VND, not {request.currency}")
        trans_id = app_trans_id(request.idempotency_key, request.created_at)
        answer = self._post(CREATE_PATH, self._create_body(request, trans_id))
        code, sub = answer["return_code"], _int_or_none(answer.get("sub_return_code"))
        if code == SUCCESS:
            order_url = answer.get("order_url")
            if not isinstance(order_url, str) or not order_url.startswith(("https://", "http://")):
                raise GatewayTechnicalError("ZaloPay's create answer has no order_url")
            return StartResult(gateway_reference=trans_id, next_url=order_url)
        detail = f"ZaloPay create: return_code {code}, sub_return_code {sub}: {answer.get('return_message', '')}"
        if code == FAIL and sub not in RETRY_LATER and sub not in DUPLICATE:
            raise GatewayDeclinedError(detail)
        # Maintenance, system error, a duplicate or an unknown code: the order may exist; a status query settles it.
        raise GatewayTechnicalError(detail)

    def _create_body(self, request: StartPayment, trans_id: str) -> dict[str, Any]:
        lifetime = int((request.expires_at - request.created_at).total_seconds())
        body: dict[str, Any] = {
            "app_id": self._app_id,
            "app_user": self._app_user,
            "app_trans_id": trans_id,
            # The attempt's creation time, not now: a retried create is then byte for byte the same order.
            "app_time": epoch_ms(request.created_at),
            "amount": request.amount,
            "item": "[]",
            "embed_data": json.dumps({"redirecturl": request.return_url}, separators=(",", ":")),
            "description": request.description[:MAX_DESCRIPTION_LENGTH],
            "bank_code": "",
            "callback_url": request.callback_url,
            "expire_duration_seconds": min(max(lifetime, MIN_EXPIRY_SECONDS), MAX_EXPIRY_SECONDS),
        }
        body["mac"] = sign(self._key1, body, CREATE_FIELDS)
        return body

    # --- callbacks --------------------------------------------------------------------------------------------
    def parse_callback(self, request: CallbackRequest) -> CallbackEvent:
        data, given, kind = _callback_parts(request.body)
        if not any(hmac.compare_digest(mac(key, data).encode(), given.encode()) for key in self._key2s):
            raise InvalidCallback("callback mac does not match")
        values = _callback_data(data)
        if str(values.get("app_id")) != str(self._app_id):
            raise InvalidCallback("callback is for another ZaloPay app")
        if kind == 2:
            raise IgnoredEvent("ZaloPay agreement callback: not a payment Lephi tracks")
        if kind != 1:
            raise InvalidCallback(f"unknown ZaloPay callback type {kind}")
        return _callback_event(values)

    @staticmethod
    def callback_reply(outcome: CallbackOutcome) -> CallbackReply:
        code, message = CALLBACK_REPLIES[outcome]
        body = json.dumps({"return_code": code, "return_message": message}, separators=(",", ":")).encode()
        return CallbackReply(200, body)

    # --- status, cancel ---------------------------------------------------------------------------------------
    def query_status(self, query: StatusQuery) -> StatusResult:
        trans_id = query.gateway_reference or app_trans_id(query.idempotency_key, query.created_at)
        return _status_result(self._query(trans_id), trans_id)

    def cancel(self, query: StatusQuery) -> StatusResult:
        result = self.query_status(query)
        if result.status in (GatewayStatus.succeeded, GatewayStatus.failed, GatewayStatus.cancelled):
            return result
        # Nothing to call at ZaloPay: an unpaid order expires on its own.
        return StatusResult(GatewayStatus.cancelled, result.gateway_reference, result.amount, EXPIRED_AT_LEPHI)

    def _query(self, trans_id: str) -> dict[str, Any]:
        body = {
            "app_id": self._app_id,
            "app_trans_id": trans_id,
            "mac": query_mac(self._key1, self._app_id, trans_id),
        }
        return self._post(QUERY_PATH, body)

    # --- refunds ----------------------------------------------------------------------------------------------
    def refund(self, request: RefundRequest) -> RefundResult:
        now = self._clock()
        # Asked before anything is sent: a retry of a refund already at ZaloPay gets its status, never a second one.
        for days in range(REFUND_LOOKBACK_DAYS + 1):
            refund_id = m_refund_id(self._app_id, request.idempotency_key, now - timedelta(days=days))
            known = self.refund_status(refund_id)
            if known is not None:
                return known
        payment = self._query(request.gateway_reference)
        zp_trans_id = _paid_trans_id(payment, request.gateway_reference)
        refund_id = m_refund_id(self._app_id, request.idempotency_key, now)
        body: dict[str, Any] = {
            "app_id": self._app_id,
            "m_refund_id": refund_id,
            "zp_trans_id": zp_trans_id,
            "amount": request.amount,
            "timestamp": epoch_ms(now),
            "description": (request.reason or "Hoan tien le phi")[:MAX_DESCRIPTION_LENGTH],
        }
        body["mac"] = sign(self._key1, body, REFUND_FIELDS)
        return _refund_result(self._post(REFUND_PATH, body), refund_id)

    def refund_status(self, refund_id: str) -> RefundResult | None:
        """What ZaloPay says of a refund id, or None when it does not know it (the refund was never received)."""
        body: dict[str, Any] = {"app_id": self._app_id, "m_refund_id": refund_id, "timestamp": epoch_ms(self._clock())}
        body["mac"] = sign(self._key1, body, REFUND_QUERY_FIELDS)
        answer = self._post(REFUND_QUERY_PATH, body)
        sub = _int_or_none(answer.get("sub_return_code"))
        if answer["return_code"] == FAIL and sub in ORDER_NOT_FOUND:
            return None
        return _refund_result(answer, refund_id)

    # --- plumbing ---------------------------------------------------------------------------------------------
    def _post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        """POST (form-encoded, as ZaloPay's samples send) and return the JSON answer; anything without a
        return_code is a technical failure."""
        form = {key: str(value) for key, value in body.items()}
        response = request_with_retries(self._http, "POST", self._endpoint + path, data=form, sleep=self.sleep)
        try:
            answer = response.json()
        except ValueError as exc:
            raise GatewayTechnicalError(f"ZaloPay answered HTTP {response.status_code} without JSON") from exc
        if not isinstance(answer, dict) or _int_or_none(answer.get("return_code")) is None:
            raise GatewayTechnicalError(f"ZaloPay answered HTTP {response.status_code} without a return_code")
        return answer


def _callback_parts(body: bytes) -> tuple[str, str, int]:
    """The callback's ``data`` string exactly as received, its ``mac`` and ``type``; InvalidCallback otherwise."""
    try:
        outer = json.loads(body)
    except (ValueError, RecursionError) as exc:
        raise InvalidCallback("callback body is not JSON") from exc
    if not isinstance(outer, dict):
        raise InvalidCallback("callback body is not a JSON object")
    data, given, kind = outer.get("data"), outer.get("mac"), outer.get("type", 1)
    if not isinstance(data, str) or not data:
        raise InvalidCallback("callback has no data string")
    if not isinstance(given, str) or not given:
        raise InvalidCallback("callback has no mac")
    if _int_or_none(kind) is None:
        raise InvalidCallback("callback type is not an integer")
    return data, given, kind


def _callback_data(data: str) -> dict[str, Any]:
    try:
        values = json.loads(data)
    except (ValueError, RecursionError) as exc:
        raise InvalidCallback("callback data is not JSON") from exc
    if not isinstance(values, dict):
        raise InvalidCallback("callback data is not a JSON object")
    return values


def _callback_event(values: dict[str, Any]) -> CallbackEvent:
    trans_id, zp_trans_id = values.get("app_trans_id"), _int_or_none(values.get("zp_trans_id"))
    if not isinstance(trans_id, str) or not trans_id or len(trans_id) > MAX_TRANS_ID_LENGTH:
        raise InvalidCallback("callback data has no valid app_trans_id")
    if zp_trans_id is None or zp_trans_id <= 0:
        raise InvalidCallback("callback data has no valid zp_trans_id")
    try:
        amount = amount_from_json(values.get("amount"), minimum=0)
    except ValueError as exc:
        raise InvalidCallback(f"callback amount is malformed: {exc}") from exc
    return CallbackEvent(
        event_id=f"{trans_id}:{zp_trans_id}",
        merchant_reference="",
        gateway_reference=trans_id,
        status=GatewayStatus.succeeded,  # ZaloPay calls back only when it has taken the payer's money
        amount=amount,
        currency="VND",
        raw_code=str(SUCCESS),
    )


def _status_result(answer: dict[str, Any], trans_id: str) -> StatusResult:
    code: int = answer["return_code"]
    sub = _int_or_none(answer.get("sub_return_code"))
    raw = f"{code}/{sub}" if sub is not None else str(code)
    if code == SUCCESS:
        return StatusResult(GatewayStatus.succeeded, trans_id, _answer_amount(answer), raw)
    if code == PROCESSING:
        return StatusResult(GatewayStatus.pending, trans_id, None, raw)
    if code == FAIL and sub in ORDER_NOT_FOUND:
        return StatusResult(GatewayStatus.unknown, trans_id, None, raw)
    if code == FAIL and sub in EXPIRED:
        return StatusResult(GatewayStatus.cancelled, trans_id, None, raw)
    if code == FAIL and sub not in ABOUT_THE_REQUEST:
        return StatusResult(GatewayStatus.failed, trans_id, None, raw)
    # About our query, not the payment (e.g. -402: our mac was refused): it must not fail the payment.
    raise GatewayTechnicalError(f"ZaloPay refused the status query: return_code {code}, sub_return_code {sub}")


def _answer_amount(answer: dict[str, Any]) -> int | None:
    if answer.get("amount") is None:
        return None
    try:
        return amount_from_json_or_text(answer["amount"])
    except ValueError as exc:
        raise GatewayTechnicalError(f"ZaloPay answered a bad amount: {exc}") from exc


def _paid_trans_id(payment: dict[str, Any], trans_id: str) -> int:
    code: int = payment["return_code"]
    sub = _int_or_none(payment.get("sub_return_code"))
    if code == FAIL and sub in ABOUT_THE_REQUEST:
        raise GatewayTechnicalError(f"ZaloPay refused the status query before the refund: sub_return_code {sub}")
    given = payment.get("zp_trans_id")
    # Printed as a number or as text, depending on the page; either way a positive whole number.
    zp_trans_id = int(given) if isinstance(given, str) and given.isascii() and given.isdigit() else _int_or_none(given)
    if code != SUCCESS or zp_trans_id is None or zp_trans_id <= 0:
        raise GatewayDeclinedError(f"ZaloPay order {trans_id} is not a paid payment (return_code {code})")
    return zp_trans_id


def _refund_result(answer: dict[str, Any], refund_id: str) -> RefundResult:
    code: int = answer["return_code"]
    sub = _int_or_none(answer.get("sub_return_code"))
    if code == SUCCESS:
        return RefundResult(RefundOutcome.succeeded, refund_id, f"ZaloPay refund_id {answer.get('refund_id', '')}")
    if code == PROCESSING:
        return RefundResult(RefundOutcome.pending, refund_id, "refund in progress at ZaloPay")
    if sub in ABOUT_THE_REQUEST or code != FAIL:
        # Our request was not understood, or ZaloPay could not decide now: the next try asks the status again.
        raise GatewayTechnicalError(f"ZaloPay refund {refund_id} in doubt: return_code {code}, sub_return_code {sub}")
    raise GatewayDeclinedError(
        f"ZaloPay refused refund {refund_id}: sub_return_code {sub} {answer.get('return_message', '')}"
    )
