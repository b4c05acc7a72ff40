"""The sandbox gateway: a payment provider that takes no money, for development, demos and tests.

It behaves like a real redirect gateway. ``next_url`` opens a page (served by Lephi) where the tester picks an
outcome; the outcome reaches Lephi only as an HMAC-signed server-to-server callback, and the status can be queried,
so every path a real gateway exercises (callback, duplicate, lost callback settled by a status query) runs here.
The pages are plain HTML forms; this module holds the gateway's side of the protocol and its state store contract.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import secrets
import time
from dataclasses import dataclass
from typing import Protocol

import httpx

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
    RefundOutcome,
    RefundRequest,
    RefundResult,
    StartPayment,
    StartResult,
    StatusQuery,
    StatusResult,
)
from adapters.money import amount_from_json

SIGNATURE_HEADER = "lephi-sandbox-signature"
TOLERANCE_SECONDS = 300
_TIMESTAMP = re.compile(r"[0-9]{1,12}")
OUTCOMES = {
    "success": GatewayStatus.succeeded,
    "decline": GatewayStatus.failed,
    "cancel": GatewayStatus.cancelled,
}


@dataclass(frozen=True)
class SandboxRecord:
    id: str
    idempotency_key: str
    merchant_reference: str
    amount: int
    currency: str
    description: str
    status: str
    callback_url: str
    return_url: str
    refunded_amount: int = 0


class SandboxStore(Protocol):
    """Where the sandbox keeps its transactions (the service provides a database-backed one)."""

    def create(self, record: SandboxRecord) -> SandboxRecord:
        """Insert, or return the record already stored under the same idempotency key."""
        ...

    def get(self, txn_id: str) -> SandboxRecord | None: ...

    def get_by_key(self, idempotency_key: str) -> SandboxRecord | None: ...

    def set_status(self, txn_id: str, expected: str, new: str) -> SandboxRecord | None:
        """Compare-and-set; None if the record was not in ``expected``."""
        ...

    def add_refund(self, txn_id: str, key: str, amount: int) -> SandboxRecord | None:
        """Record a refund once per key; None if it would exceed the amount paid."""
        ...


def sign(secret: str, body: bytes, timestamp: int) -> str:
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={mac}"


def verify(secrets_: list[str], body: bytes, header: str, now: float | None = None) -> None:
    """Raise InvalidCallback unless one of the secrets signed ``body`` within the tolerance window."""
    parts: dict[str, list[str]] = {}
    for item in header.split(","):
        k, _, v = item.strip().partition("=")
        parts.setdefault(k, []).append(v)
    stamp = parts.get("t", [""])[0]
    # ASCII digits only: int() would also take signs, spaces, underscores and other scripts' digits.
    if not _TIMESTAMP.fullmatch(stamp):
        raise InvalidCallback("signature header has no valid timestamp")
    timestamp = int(stamp)
    if abs((now if now is not None else time.time()) - timestamp) > TOLERANCE_SECONDS:
        raise InvalidCallback("signature timestamp outside the tolerance window")
    # Compared as bytes: compare_digest raises TypeError on a str with non-ASCII characters, which anyone can send.
    given = [g.encode() for g in parts.get("v1", [])]
    for secret in secrets_:
        expected = sign(secret, body, timestamp).split("v1=", 1)[1].encode()
        if any(hmac.compare_digest(expected, g) for g in given):
            return
    raise InvalidCallback("signature does not match")


class SandboxGateway(PaymentGateway):
    name = "sandbox"
    starts_offline = True

    def __init__(self, context: GatewayContext) -> None:
        self._ctx = context
        secret = context.settings.get("secret")
        if not secret:
            raise ValueError("the sandbox gateway needs a signing secret")
        self._secrets: list[str] = [str(secret), *context.settings.get("previous_secrets", [])]
        self._store: SandboxStore = context.store
        self._http = context.http

    # --- the merchant's side: the PaymentGateway protocol -------------------------------------------------
    def start_payment(self, request: StartPayment) -> StartResult:
        record = self._store.create(
            SandboxRecord(
                id="sbx_" + secrets.token_hex(12),
                idempotency_key=request.idempotency_key,
                merchant_reference=request.merchant_reference,
                amount=request.amount,
                currency=request.currency,
                description=request.description,
                status=GatewayStatus.pending.value,
                callback_url=request.callback_url,
                return_url=request.return_url,
            )
        )
        return StartResult(gateway_reference=record.id, next_url=self.page_url(record.id))

    def parse_callback(self, request: CallbackRequest) -> CallbackEvent:
        header = {k.lower(): v for k, v in request.headers.items()}.get(SIGNATURE_HEADER)
        if not header:
            raise InvalidCallback("missing signature header")
        verify(self._secrets, request.body, header)
        try:
            data = json.loads(request.body)
            return CallbackEvent(
                event_id=str(data["event_id"]),
                merchant_reference=str(data["merchant_reference"]),
                gateway_reference=str(data["transaction_id"]),
                status=GatewayStatus(data["status"]),
                amount=amount_from_json(data["amount"]),
                currency=str(data["currency"]),
                raw_code=str(data["status"]),
            )
        except (ValueError, KeyError, TypeError) as exc:
            raise InvalidCallback("callback body is not a sandbox event") from exc

    @staticmethod
    def callback_reply(outcome: CallbackOutcome) -> CallbackReply:
        code = 401 if outcome is CallbackOutcome.invalid_signature else 200
        if outcome in (CallbackOutcome.unknown_order, CallbackOutcome.amount_mismatch):
            code = 422
        if outcome is CallbackOutcome.error:
            code = 500  # not recorded: the gateway must send it again
        return CallbackReply(code, json.dumps({"result": outcome.value}).encode())

    def query_status(self, query: StatusQuery) -> StatusResult:
        record = self._find(query)
        if record is None:
            return StatusResult(GatewayStatus.unknown)
        return StatusResult(GatewayStatus(record.status), record.id, record.amount, record.status)

    def cancel(self, query: StatusQuery) -> StatusResult:
        record = self._find(query)
        if record is None:
            return StatusResult(GatewayStatus.cancelled)
        self._store.set_status(record.id, GatewayStatus.pending.value, GatewayStatus.cancelled.value)
        return self.query_status(query)

    def refund(self, request: RefundRequest) -> RefundResult:
        record = self._store.get(request.gateway_reference)
        if record is None or record.status != GatewayStatus.succeeded.value:
            raise GatewayDeclinedError("the sandbox transaction is not refundable")
        if self._store.add_refund(record.id, request.idempotency_key, request.amount) is None:
            raise GatewayDeclinedError("refund exceeds the amount paid")
        return RefundResult(RefundOutcome.succeeded, gateway_reference=f"{record.id}:{request.idempotency_key}")

    # --- the gateway's side: what the payer's choice on the sandbox page does -----------------------------
    def page_url(self, txn_id: str) -> str:
        return f"{self._ctx.public_url.rstrip('/')}/sandbox/pay/{txn_id}"

    def get(self, txn_id: str) -> SandboxRecord | None:
        return self._store.get(txn_id)

    def complete(self, txn_id: str, outcome: str) -> SandboxRecord | None:
        """Settle the transaction as the payer chose and notify the merchant, like a real gateway would."""
        status = OUTCOMES[outcome]
        record = self._store.set_status(txn_id, GatewayStatus.pending.value, status.value)
        if record is not None:
            self.deliver(record)
        return record

    def deliver(self, record: SandboxRecord, event_id: str | None = None) -> bool:
        """POST the signed callback; a lost callback is not retried here: the merchant's status query settles it."""
        body = json.dumps(
            {
                "event_id": event_id or "evt_" + secrets.token_hex(12),
                "transaction_id": record.id,
                "merchant_reference": record.merchant_reference,
                "status": record.status,
                "amount": record.amount,
                "currency": record.currency,
            },
            separators=(",", ":"),
        ).encode()
        headers = {
            SIGNATURE_HEADER: sign(self._secrets[0], body, int(time.time())),
            "content-type": "application/json",
        }
        client = self._http or httpx.Client(timeout=10)
        try:
            response = client.post(record.callback_url, content=body, headers=headers)
            return response.status_code < 300
        except httpx.HTTPError:
            return False
        finally:
            if self._http is None:
                client.close()

    def _find(self, query: StatusQuery) -> SandboxRecord | None:
        # Without a reference (the process died before storing it) the idempotency key still finds it.
        if query.gateway_reference:
            return self._store.get(query.gateway_reference)
        return self._store.get_by_key(query.idempotency_key)
