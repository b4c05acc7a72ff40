"""ACME Pay, a made-up redirect gateway: the payer pays on ACME's page, ACME posts a signed JSON notification.

Signature: header ``X-Acme-Signature`` = hex HMAC-SHA256 of the raw body with the merchant's ``secret``."""

from __future__ import annotations

import hashlib
import hmac
import json
from urllib.parse import quote

from adapters.base import (
    CallbackEvent,
    CallbackOutcome,
    CallbackReply,
    CallbackRequest,
    GatewayContext,
    GatewayDeclinedError,
    GatewayStatus,
    InvalidCallback,
    PaymentGateway,
    RefundRequest,
    RefundResult,
    StartPayment,
    StartResult,
    StatusQuery,
    StatusResult,
)

PAY_PAGE = "https://pay.acme.example/checkout"
STATUSES = {"paid": GatewayStatus.succeeded, "declined": GatewayStatus.failed, "cancelled": GatewayStatus.cancelled}


class AcmeGateway(PaymentGateway):
    name = "acme"

    def __init__(self, context: GatewayContext) -> None:
        secret = context.settings.get("secret")
        if not secret:
            raise ValueError("acme needs a 'secret'")
        self._secret = str(secret).encode()
        self._callback_url = context.callback_url

    def start_payment(self, request: StartPayment) -> StartResult:
        order = "acme-" + hashlib.sha256(request.idempotency_key.encode()).hexdigest()[:16]
        url = f"{PAY_PAGE}?order={order}&amount={request.amount}&notify={quote(self._callback_url, safe='')}"
        return StartResult(order, url)

    def parse_callback(self, request: CallbackRequest) -> CallbackEvent:
        given = {k.lower(): v for k, v in request.headers.items()}.get("x-acme-signature", "")
        expected = hmac.new(self._secret, request.body, hashlib.sha256).hexdigest()
        if not hmac.compare_digest(given, expected):
            raise InvalidCallback("bad ACME signature")
        try:
            data = json.loads(request.body)
            return CallbackEvent(
                str(data["id"]),
                "",
                str(data["order"]),
                STATUSES[data["status"]],
                int(data["amount"]),
                "VND",
                str(data["status"]),
            )
        except (ValueError, KeyError, TypeError) as exc:
            raise InvalidCallback("not an ACME notification") from exc

    def callback_reply(self, outcome: CallbackOutcome) -> CallbackReply:
        return CallbackReply(401 if outcome is CallbackOutcome.invalid_signature else 200, b"OK", "text/plain")

    def query_status(self, query: StatusQuery) -> StatusResult:
        return StatusResult(GatewayStatus.unknown)  # ACME offers no query API

    def cancel(self, query: StatusQuery) -> StatusResult:
        return StatusResult(GatewayStatus.cancelled)

    def refund(self, request: RefundRequest) -> RefundResult:
        raise GatewayDeclinedError("ACME refunds are made in ACME's merchant portal")
