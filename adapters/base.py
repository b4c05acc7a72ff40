"""The one contract every payment gateway adapter implements, in gateway-neutral terms.

Adapters import nothing from ``payments`` or ``invoices``: they take and return the small dataclasses below, so
a gateway can be added, replaced or tested on its own.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any, Protocol, runtime_checkable

import httpx


class GatewayStatus(StrEnum):
    """What the gateway says happened. ``unknown`` means it may or may not have happened: ask again later."""

    pending = "pending"
    succeeded = "succeeded"
    failed = "failed"
    cancelled = "cancelled"
    unknown = "unknown"


class RefundOutcome(StrEnum):
    pending = "pending"
    succeeded = "succeeded"
    failed = "failed"


class CallbackOutcome(StrEnum):
    """How the service handled a verified callback; each gateway turns it into the reply it expects."""

    accepted = "accepted"
    duplicate = "duplicate"
    already_final = "already_final"
    unknown_order = "unknown_order"
    amount_mismatch = "amount_mismatch"
    invalid_signature = "invalid_signature"
    error = "error"


class GatewayError(Exception):
    """Base of adapter errors."""


class GatewayTechnicalError(GatewayError):
    """Timeouts, 5xx, network errors: the outcome is unknown and the call may be retried with the same token."""


class GatewayDeclinedError(GatewayError):
    """A final refusal (declined, invalid merchant, refund not allowed): retrying will not help."""


class InvalidCallback(GatewayError):
    """The callback's signature, timestamp or format is not acceptable; nothing in it may be trusted."""


class IgnoredEvent(InvalidCallback):
    """A verified message about something the service does not track; it is acknowledged so it is not resent."""


@dataclass(frozen=True)
class StartPayment:
    merchant_reference: str
    idempotency_key: str
    amount: int
    currency: str
    description: str
    return_url: str
    callback_url: str
    created_at: datetime
    expires_at: datetime
    locale: str = "vi"
    client_ip: str = "127.0.0.1"


@dataclass(frozen=True)
class StartResult:
    gateway_reference: str
    next_url: str
    status: GatewayStatus = GatewayStatus.pending


@dataclass(frozen=True)
class CallbackRequest:
    """The raw request exactly as received: signatures are checked over these bytes, never a re-serialisation."""

    method: str
    headers: Mapping[str, str]
    query: Mapping[str, str]
    body: bytes


@dataclass(frozen=True)
class CallbackEvent:
    """``merchant_reference`` is the payment id the service gave at start, or empty when the gateway does not
    echo it (a bank credit names only the payment reference, in ``gateway_reference``)."""

    event_id: str
    merchant_reference: str
    gateway_reference: str
    status: GatewayStatus
    amount: int
    currency: str
    raw_code: str = ""
    # Free text the payer or bank wrote (a transfer memo), kept for finance staff when it cannot be matched.
    description: str = ""


@dataclass(frozen=True)
class CallbackReply:
    status_code: int
    body: bytes = b""
    media_type: str = "application/json"


@dataclass(frozen=True)
class StatusQuery:
    merchant_reference: str
    gateway_reference: str | None
    idempotency_key: str
    amount: int
    created_at: datetime


@dataclass(frozen=True)
class StatusResult:
    status: GatewayStatus
    gateway_reference: str | None = None
    amount: int | None = None
    raw_code: str = ""


@dataclass(frozen=True)
class RefundRequest:
    merchant_reference: str
    gateway_reference: str
    idempotency_key: str
    amount: int
    payment_amount: int
    reason: str


@dataclass(frozen=True)
class RefundResult:
    outcome: RefundOutcome
    gateway_reference: str | None = None
    detail: str = ""


@dataclass(frozen=True)
class GatewayContext:
    """What the service gives an adapter when it builds one."""

    name: str
    public_url: str
    callback_url: str
    settings: Mapping[str, Any] = field(default_factory=dict)
    http: httpx.Client | None = None
    store: Any = None


@runtime_checkable
class PaymentGateway(Protocol):
    """Adapters subclass it (``class MyGateway(PaymentGateway)``) to inherit the defaults of its attributes."""

    name: str
    # True for a gateway whose callbacks report money already in the agency's account (a bank transfer): such a
    # credit is recorded and matched, never rejected, and its event id is the bank's transaction id.
    pushes_funds: bool = False
    # True when ``start_payment`` makes no network call (it computes its answer, or writes only to the service's own
    # database): the service then creates and starts the payment in one transaction. Adapters that leave it out
    # are treated as calling the network, so no transaction is held open across their start.
    starts_offline: bool = False
    # False when ``query_status`` cannot learn anything the callbacks have not said (a bank transfer has nothing to
    # look up): the service then skips the early status query it makes for a payment whose callback may be lost.
    queries_status: bool = True

    def start_payment(self, request: StartPayment) -> StartResult:
        """Create the payment at the gateway; the same idempotency key must give the same payment."""
        ...

    def parse_callback(self, request: CallbackRequest) -> CallbackEvent:
        """Verify the callback over its raw bytes and parse it; raise InvalidCallback if it cannot be trusted."""
        ...

    def callback_reply(self, outcome: CallbackOutcome) -> CallbackReply:
        """The exact reply the gateway expects for this outcome."""
        ...

    def query_status(self, query: StatusQuery) -> StatusResult:
        """Ask the gateway what became of a payment."""
        ...

    def cancel(self, query: StatusQuery) -> StatusResult:
        """Cancel a payment not yet completed; the result says the status the gateway now reports."""
        ...

    def refund(self, request: RefundRequest) -> RefundResult:
        """Refund part or all of a succeeded payment; the same idempotency key must give the same refund."""
        ...


class GatewayFactory(Protocol):
    def __call__(self, context: GatewayContext) -> PaymentGateway: ...


def retired_secrets(value: object, setting: str) -> list[str]:
    """Retired signing secrets still accepted during a rotation, from an adapter's settings: a list, or a
    comma-separated string (iterating a plain string would give one "secret" per character). ``setting`` names the
    setting in the error, e.g. "the MoMo setting 'previous_secret_keys'"."""
    if value is None:
        return []
    if isinstance(value, str):
        value = value.split(",")
    if not isinstance(value, list | tuple):
        raise ValueError(f"{setting} must be a list or a comma-separated string")
    return [str(item).strip() for item in value if str(item).strip()]
