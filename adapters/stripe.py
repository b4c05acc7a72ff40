"""Stripe card payments through PaymentIntents, over Stripe's REST API with httpx (no SDK).

Flow: ``start_payment`` creates a PaymentIntent and sends the payer to Lephi's card page (``/pay/card/{pi_id}``,
served by the service with what ``card_page`` returns); Stripe.js confirms the card there, 3-D Secure included. The
outcome reaches Lephi as a signed webhook (``parse_callback``) and can always be asked for (``query_status``).

Settings (``GatewayContext.settings``):

- ``secret_key`` (required): ``sk_...`` (or a restricted ``rk_...``) key, sent as a Bearer token.
- ``publishable_key`` (required): ``pk_...``, given to the card page for Stripe.js.
- ``webhook_secrets`` (required): list of endpoint secrets (``whsec_...``); the first is current, every one is
  accepted so that a secret can be rolled without losing events. A single string is taken as a list of one.
- ``api_base``: default ``https://api.stripe.com`` (a localstripe or stripe-mock URL in tests).
- ``js_url``: default ``https://js.stripe.com/v3/`` (localstripe serves a stand-in at ``{base}/js.stripe.com/v3/``).
- ``timeout_seconds``: default 15, for the HTTP client built when the service does not provide one.
- ``send_description``: default true. Set it false only against localstripe, which rejects ``description`` on
  PaymentIntents (real Stripe shows it in the Dashboard and on receipts).

Webhooks: subscribe the endpoint to ``payment_intent.succeeded``, ``payment_intent.payment_failed``,
``payment_intent.canceled``, ``payment_intent.processing`` and ``payment_intent.requires_action``. Any other verified
event raises ``IgnoredEvent`` (a subclass of ``InvalidCallback``): the service must answer it with
``callback_reply(CallbackOutcome.accepted)`` (200), or Stripe redelivers it for days and may disable the endpoint.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import replace
from typing import Any, NoReturn
from urllib.parse import quote, urlencode

import httpx

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
)
from adapters.http import client_for, request_with_retries
from adapters.money import amount_from_json

DEFAULT_API_BASE = "https://api.stripe.com"
DEFAULT_JS_URL = "https://js.stripe.com/v3/"
SIGNATURE_HEADER = "stripe-signature"
TOLERANCE_SECONDS = 300
_TIMESTAMP = re.compile(r"[0-9]{1,12}")
PAGE_SIZE = 100  # Stripe's maximum for list endpoints
METADATA_VALUE_MAX = 500  # Stripe rejects longer metadata values

# VND is zero-decimal at Stripe (150.000 VND is amount=150000); other currencies would need a minor-unit factor.
SUPPORTED_CURRENCIES = frozenset({"VND"})

EVENT_STATUS = {
    "payment_intent.succeeded": GatewayStatus.succeeded,
    "payment_intent.payment_failed": GatewayStatus.failed,
    "payment_intent.canceled": GatewayStatus.cancelled,
    "payment_intent.processing": GatewayStatus.pending,
    "payment_intent.requires_action": GatewayStatus.pending,
}
# requires_capture cannot happen (capture is automatic) but is money held, not lost: pending, never failed.
PENDING_INTENT_STATUSES = frozenset({"processing", "requires_action", "requires_confirmation", "requires_capture"})
REFUND_OUTCOMES = {
    "succeeded": RefundOutcome.succeeded,
    "pending": RefundOutcome.pending,
    "requires_action": RefundOutcome.pending,
    "failed": RefundOutcome.failed,
    "canceled": RefundOutcome.failed,
}
# 4xx answers that do not mean "Stripe refused this request": a wrong key, or the same Idempotency-Key still
# running. Retrying later (with the same key) may succeed, so they are technical, never a final decline.
TECHNICAL_CLIENT_STATUSES = frozenset({401, 403, 409})


# --- form encoding -------------------------------------------------------------------------------------------------
def encode_form(params: Mapping[str, Any]) -> str:
    """Stripe's form encoding: ``metadata[k]=v`` for mappings, ``k[]=v`` for lists of scalars, ``k[0][x]=v`` for
    lists of mappings, ``true``/``false`` for booleans; None values are left out."""
    pairs: list[tuple[str, str]] = []
    for key, value in params.items():
        pairs.extend(_flatten(key, value))
    return urlencode(pairs)


def _flatten(key: str, value: Any) -> Iterator[tuple[str, str]]:
    if value is None:
        return
    if isinstance(value, Mapping):
        for sub, item in value.items():
            yield from _flatten(f"{key}[{sub}]", item)
    elif isinstance(value, list | tuple):
        for index, item in enumerate(value):
            nested = isinstance(item, Mapping | list | tuple)
            yield from _flatten(f"{key}[{index}]" if nested else f"{key}[]", item)
    elif isinstance(value, bool):  # before str(): True must be "true", as Stripe expects
        yield key, "true" if value else "false"
    else:
        yield key, str(value)


# --- webhook signatures --------------------------------------------------------------------------------------------
def _parse_signature_header(header: str) -> tuple[int, list[str]]:
    """``t=<unix>,v1=<hex>[,v1=<hex>...]`` (other schemes such as v0 are ignored, as Stripe advises)."""
    timestamp: int | None = None
    signatures: list[str] = []
    for item in header.split(","):
        key, _, value = item.strip().partition("=")
        if key == "t" and timestamp is None:
            # ASCII digits only: int() would also take signs, spaces, underscores and other scripts' digits.
            if not _TIMESTAMP.fullmatch(value):
                raise InvalidCallback("Stripe-Signature has no valid timestamp")
            timestamp = int(value)
        elif key == "v1" and value:
            signatures.append(value)
    if timestamp is None:
        raise InvalidCallback("Stripe-Signature has no timestamp")
    if not signatures:
        raise InvalidCallback("Stripe-Signature has no v1 signature")
    return timestamp, signatures


def verify_signature(header: str, body: bytes, secrets: list[str], now: float) -> None:
    """Raise InvalidCallback unless one of ``secrets`` signed ``body`` within TOLERANCE_SECONDS of ``now``."""
    timestamp, given = _parse_signature_header(header)
    # Both directions: a far-future timestamp would otherwise make a captured request replayable for longer.
    if abs(now - timestamp) > TOLERANCE_SECONDS:
        raise InvalidCallback("Stripe-Signature timestamp is outside the tolerance window")
    signed = str(timestamp).encode() + b"." + body
    # Compare bytes: compare_digest raises TypeError on non-ASCII str, which a forged header could contain.
    candidates = [g.encode() for g in given]
    for secret in secrets:
        expected = hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest().encode()
        if any(hmac.compare_digest(expected, candidate) for candidate in candidates):
            return
    raise InvalidCallback("Stripe-Signature does not match any webhook secret")


# --- settings ------------------------------------------------------------------------------------------------------
def _required(settings: Mapping[str, Any], key: str, prefixes: tuple[str, ...]) -> str:
    value = settings.get(key)
    if not value or not isinstance(value, str):
        raise ValueError(f"the stripe gateway needs the setting {key!r}")
    if not value.startswith(prefixes):
        # Catches a swapped publishable and secret key before the first payment does.
        raise ValueError(f"the stripe setting {key!r} must start with {' or '.join(prefixes)}")
    return value


def _webhook_secrets(settings: Mapping[str, Any]) -> list[str]:
    raw = settings.get("webhook_secrets")
    # A bare string would otherwise be iterated character by character.
    secrets = [raw] if isinstance(raw, str) else list(raw or [])
    if not secrets or not all(isinstance(s, str) and s for s in secrets):
        raise ValueError("the stripe gateway needs the setting 'webhook_secrets' (a non-empty list of secrets)")
    return secrets


def _flag(settings: Mapping[str, Any], key: str, *, default: bool) -> bool:
    value = settings.get(key, default)
    if isinstance(value, str):  # from an environment variable or a form: bool("false") would be True
        return value.strip().lower() not in {"false", "0", "no", "off", ""}
    return bool(value)


# --- errors --------------------------------------------------------------------------------------------------------
def _error_detail(response: httpx.Response) -> str:
    try:
        error = response.json().get("error") or {}
    except (ValueError, AttributeError):
        return response.text[:200]
    parts = [error.get("type"), error.get("code"), error.get("decline_code"), error.get("message")]
    return " ".join(str(p) for p in parts if p)


def _raise_for(response: httpx.Response, action: str) -> NoReturn:
    message = f"Stripe {action}: HTTP {response.status_code} {_error_detail(response)}".rstrip()
    if response.status_code >= 500 or response.status_code in TECHNICAL_CLIENT_STATUSES:
        raise GatewayTechnicalError(message)
    raise GatewayDeclinedError(message)


def _json_object(response: httpx.Response, action: str) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError as exc:
        raise GatewayTechnicalError(f"Stripe {action}: the answer is not JSON") from exc
    if not isinstance(body, dict):
        raise GatewayTechnicalError(f"Stripe {action}: the answer is not a JSON object")
    return body


# --- status mapping ------------------------------------------------------------------------------------------------
def intent_status(intent: Mapping[str, Any]) -> GatewayStatus:
    """What a PaymentIntent's status means for Lephi; an unexpected status is ``unknown`` (ask again later)."""
    status = intent.get("status")
    if status == "succeeded":
        return GatewayStatus.succeeded
    if status == "canceled":
        return GatewayStatus.cancelled
    if status == "requires_payment_method":
        # Back to requires_payment_method after a decline (with the error); without one, nobody has paid yet.
        return GatewayStatus.failed if intent.get("last_payment_error") else GatewayStatus.pending
    if status in PENDING_INTENT_STATUSES:
        return GatewayStatus.pending
    return GatewayStatus.unknown


def _intent_result(intent: Mapping[str, Any]) -> StatusResult:
    raw_code = str(intent.get("status", ""))
    error = intent.get("last_payment_error") or {}
    if error.get("code"):
        raw_code = f"{raw_code}:{error['code']}"
    try:
        amount = amount_from_json(intent["amount"])
    except (KeyError, ValueError) as exc:
        raise GatewayTechnicalError(f"Stripe answered a PaymentIntent without a valid amount: {exc}") from exc
    return StatusResult(intent_status(intent), str(intent["id"]), amount, raw_code)


def _callback_event(event: Mapping[str, Any]) -> CallbackEvent:
    event_type, event_id = str(event["type"]), str(event["id"])
    status = EVENT_STATUS.get(event_type)
    if status is None:
        raise IgnoredEvent(f"Stripe event {event_type!r} ({event_id}) is not one this adapter acts on")
    intent = event["data"]["object"]
    if intent.get("object") != "payment_intent":
        raise InvalidCallback(f"Stripe event {event_type} does not carry a PaymentIntent")
    amount = intent["amount"]
    if status is GatewayStatus.succeeded and intent.get("amount_received") is not None:
        # What was taken, not what was asked; localstripe has no amount_received, hence the fallback.
        amount = intent["amount_received"]
    metadata = intent.get("metadata") or {}
    return CallbackEvent(
        event_id=event_id,
        merchant_reference=str(metadata.get("merchant_reference", "")),
        gateway_reference=str(intent["id"]),
        status=status,
        amount=amount_from_json(amount),
        currency=str(intent["currency"]).upper(),
        raw_code=event_type,
    )


class StripeGateway(PaymentGateway):
    name = "stripe"
    starts_offline = False

    def __init__(
        self,
        context: GatewayContext,
        *,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        settings = context.settings
        self._ctx = context
        self._secret_key = _required(settings, "secret_key", ("sk_", "rk_"))
        self._publishable_key = _required(settings, "publishable_key", ("pk_",))
        self._webhook_secrets = _webhook_secrets(settings)
        self._api_base = str(settings.get("api_base") or DEFAULT_API_BASE).rstrip("/")
        self._js_url = str(settings.get("js_url") or DEFAULT_JS_URL)
        self._send_description = _flag(settings, "send_description", default=True)
        self._http = client_for(settings, context.http)
        self._clock = clock
        self._sleep = sleep

    # --- the PaymentGateway protocol ---------------------------------------------------------------------------
    def start_payment(self, request: StartPayment) -> StartResult:
        if request.currency.upper() not in SUPPORTED_CURRENCIES:
            raise GatewayDeclinedError(f"the stripe adapter handles {sorted(SUPPORTED_CURRENCIES)} only")
        form: dict[str, Any] = {
            "amount": request.amount,
            "currency": request.currency.lower(),
            "payment_method_types": ["card"],
            "description": request.description if self._send_description else None,
            "metadata": {"merchant_reference": request.merchant_reference},
        }
        # The key makes a retry (ours, or the service's after a crash) return the same PaymentIntent for 24 h.
        response = self._request("POST", "/v1/payment_intents", form=form, idempotency_key=request.idempotency_key)
        intent = self._ok(response, "create PaymentIntent")
        pi_id = str(intent["id"])
        return StartResult(gateway_reference=pi_id, next_url=f"{self._ctx.public_url.rstrip('/')}/pay/card/{pi_id}")

    def parse_callback(self, request: CallbackRequest) -> CallbackEvent:
        header = {k.lower(): v for k, v in request.headers.items()}.get(SIGNATURE_HEADER)
        if not header:
            raise InvalidCallback("missing Stripe-Signature header")
        verify_signature(header, request.body, self._webhook_secrets, self._clock())
        try:  # parsed only now: nothing unverified is ever interpreted
            return _callback_event(json.loads(request.body))
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise InvalidCallback("the body is not a Stripe PaymentIntent event") from exc

    @staticmethod
    def callback_reply(outcome: CallbackOutcome) -> CallbackReply:
        if outcome is CallbackOutcome.invalid_signature:
            return CallbackReply(400, json.dumps({"error": "invalid signature"}).encode())
        if outcome is CallbackOutcome.error:
            # Lephi failed to process a verified event: a non-2xx makes Stripe deliver it again later.
            return CallbackReply(500, json.dumps({"received": False}).encode())
        # duplicate, unknown_order, amount_mismatch...: retrying cannot change our answer, so stop Stripe retrying.
        return CallbackReply(200, json.dumps({"received": True}).encode())

    def query_status(self, query: StatusQuery) -> StatusResult:
        pi_id = query.gateway_reference or self._find_intent_id(query)
        if not pi_id:
            return StatusResult(GatewayStatus.unknown, raw_code="no_gateway_reference")
        intent = self._fetch_intent(pi_id)
        if intent is None:
            return StatusResult(GatewayStatus.unknown, pi_id, raw_code="resource_missing")
        return _intent_result(intent)

    def cancel(self, query: StatusQuery) -> StatusResult:
        pi_id = query.gateway_reference or self._find_intent_id(query)
        if not pi_id:
            return StatusResult(GatewayStatus.unknown, raw_code="no_gateway_reference")
        query = replace(query, gateway_reference=pi_id)
        # No Idempotency-Key: cancelling twice is harmless, and a replayed error would block the cancel for 24 h.
        response = self._request("POST", f"{self._intent_path(pi_id)}/cancel", form={})
        if response.is_success:
            return _intent_result(_json_object(response, "cancel PaymentIntent"))
        if response.status_code in TECHNICAL_CLIENT_STATUSES or response.status_code >= 500:
            _raise_for(response, "cancel PaymentIntent")
        # Refused (already succeeded, processing, already canceled): what the payment became is the answer.
        return self.query_status(query)

    def refund(self, request: RefundRequest) -> RefundResult:
        form = {
            "payment_intent": request.gateway_reference,
            "amount": request.amount,
            "metadata": {
                "reason": request.reason[:METADATA_VALUE_MAX],
                "merchant_reference": request.merchant_reference,
            },
        }
        response = self._request("POST", "/v1/refunds", form=form, idempotency_key=request.idempotency_key)
        refund = self._ok(response, "refund")
        status = str(refund.get("status", ""))
        detail = " ".join(p for p in (status, str(refund.get("failure_reason") or "")) if p)
        return RefundResult(REFUND_OUTCOMES.get(status, RefundOutcome.pending), str(refund["id"]), detail)

    # --- for the card page -------------------------------------------------------------------------------------
    def card_page(self, gateway_reference: str) -> dict[str, Any]:
        """What the card page needs for Stripe.js; ``status`` lets it show "already paid" instead of a form."""
        intent = self._fetch_intent(gateway_reference)
        if intent is None:
            raise GatewayDeclinedError(f"no Stripe PaymentIntent {gateway_reference}")
        try:
            amount = amount_from_json(intent.get("amount"), minimum=0)
        except ValueError as exc:
            raise GatewayTechnicalError(f"Stripe answered a PaymentIntent without a valid amount: {exc}") from exc
        return {
            "publishable_key": self._publishable_key,
            "client_secret": intent["client_secret"],
            "js_url": self._js_url,
            "amount": amount,
            "currency": str(intent["currency"]).upper(),
            "status": intent_status(intent).value,
        }

    def confirm_card(self, gateway_reference: str, payment_method: str) -> dict[str, Any]:
        """Server-side confirmation with the PaymentMethod Stripe.js created in the payer's browser (card details
        never reach this service). Attaching first, then confirming, works with Stripe and with localstripe, which
        does not implement ``confirm(payment_method=...)``. Answers the status and, for 3-D Secure, the client secret
        the page hands back to Stripe.js."""
        if not payment_method.startswith("pm_"):
            raise GatewayDeclinedError("not a Stripe PaymentMethod id")
        path = self._intent_path(gateway_reference)
        self._ok(self._request("POST", path, form={"payment_method": payment_method}), "attach PaymentMethod")
        response = self._request("POST", path + "/confirm", form={})
        if response.status_code == 402 or (400 <= response.status_code < 500 and response.status_code != 404):
            intent = self._fetch_intent(gateway_reference) or {}
            return {
                "status": intent_status(intent).value if intent else "failed",
                "requires_action": False,
                "client_secret": None,
                "error": _error_detail(response),
            }
        intent = self._ok(response, "confirm PaymentIntent")
        requires_action = intent.get("status") == "requires_action"
        return {
            "status": intent_status(intent).value,
            "requires_action": requires_action,
            "client_secret": intent.get("client_secret") if requires_action else None,
            "error": None,
        }

    # --- reconciliation ----------------------------------------------------------------------------------------
    def list_charges(
        self, created_gte: int, created_lt: int, *, page_size: int = PAGE_SIZE
    ) -> Iterator[dict[str, Any]]:
        """Charges created in [created_gte, created_lt) (unix seconds), newest first, fetched page by page."""
        return self.iter_list("/v1/charges", {"created": {"gte": created_gte, "lt": created_lt}}, page_size)

    def list_balance_transactions(
        self, created_gte: int, created_lt: int, *, payout: str | None = None, page_size: int = PAGE_SIZE
    ) -> Iterator[dict[str, Any]]:
        """Balance transactions (charges, refunds, fees, payouts) created in [created_gte, created_lt); ``payout``
        narrows them to the ones settled by one automatic payout."""
        params = {"created": {"gte": created_gte, "lt": created_lt}, "payout": payout}
        return self.iter_list("/v1/balance_transactions", params, page_size)

    def iter_list(self, path: str, params: Mapping[str, Any], page_size: int = PAGE_SIZE) -> Iterator[dict[str, Any]]:
        """Every object of a Stripe list endpoint, one page in memory at a time (``starting_after`` cursor)."""
        cursor: str | None = None
        while True:
            query = encode_form({**params, "limit": page_size, "starting_after": cursor})
            page = self._ok(self._request("GET", f"{path}?{query}"), f"list {path}")
            data = page.get("data")
            if not isinstance(data, list):
                raise GatewayTechnicalError(f"Stripe list {path}: the answer has no data list")
            yield from data
            if not page.get("has_more"):
                return
            if not data:  # a cursor that cannot advance would loop for ever
                raise GatewayTechnicalError(f"Stripe list {path}: has_more with an empty page")
            cursor = str(data[-1]["id"])

    def _find_intent_id(self, query: StatusQuery) -> str | None:
        """The PaymentIntent of an attempt whose create answer was lost: Stripe cannot look up by Idempotency-Key,
        but every intent carries metadata.merchant_reference, which Search finds (eventually consistent, about a
        minute, which the first re-query outlasts). None if not found or Search is not offered (localstripe)."""
        ref = query.merchant_reference.replace("\\", "\\\\").replace("'", "\\'")
        params = encode_form({"query": f"metadata['merchant_reference']:'{ref}'", "limit": 2})
        response = self._request("GET", f"/v1/payment_intents/search?{params}")
        if response.status_code in (400, 404):
            return None
        page = self._ok(response, "search PaymentIntents")
        mine = query.merchant_reference
        found = [i for i in page.get("data") or [] if (i.get("metadata") or {}).get("merchant_reference") == mine]
        if len(found) > 1:
            raise GatewayTechnicalError(f"Stripe has {len(found)} PaymentIntents for {query.merchant_reference}")
        return str(found[0]["id"]) if found else None

    # --- HTTP --------------------------------------------------------------------------------------------------
    def _intent_path(self, pi_id: str) -> str:
        return f"/v1/payment_intents/{quote(pi_id, safe='')}"  # an id is never allowed to change the path

    def _fetch_intent(self, pi_id: str) -> dict[str, Any] | None:
        response = self._request("GET", self._intent_path(pi_id))
        if response.status_code == 404:
            return None
        return self._ok(response, "retrieve PaymentIntent")

    def _ok(self, response: httpx.Response, action: str) -> dict[str, Any]:
        if not response.is_success:
            _raise_for(response, action)
        return _json_object(response, action)

    def _request(
        self,
        method: str,
        path: str,
        *,
        form: Mapping[str, Any] | None = None,
        idempotency_key: str | None = None,
    ) -> httpx.Response:
        """Send with retries on network errors, timeouts, 429 and 5xx: safe for GETs, for POSTs carrying an
        Idempotency-Key, and for cancel, which cannot do anything twice."""
        headers = {"Authorization": f"Bearer {self._secret_key}"}
        content: str | None = None
        if form is not None:
            headers["Content-Type"] = "application/x-www-form-urlencoded"
            content = encode_form(form)
        if idempotency_key:
            headers["Idempotency-Key"] = idempotency_key
        url = self._api_base + path
        return request_with_retries(self._http, method, url, headers=headers, content=content, sleep=self._sleep)
