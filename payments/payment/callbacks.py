"""Verified gateway callbacks: each event applied once, in the order known order, amount, state.

The gateway inbox row is written first: its unique (gateway, event_id) index is what makes a repeated or concurrent
delivery of the same event a duplicate, whichever process receives it."""

from __future__ import annotations

import re
from typing import Any

from sqlalchemy import bindparam, delete, insert, update
from sqlalchemy import select as sa_select
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session

from adapters.base import CallbackEvent, CallbackOutcome, PaymentGateway
from adapters.money import MAX_AMOUNT
from payments.agency.models import Agency
from payments.core.context import AppContext
from payments.core.db import table_of
from payments.core.logging import get_logger
from payments.core.sql import Prepared, defer_writes, loaded
from payments.core.types import utcnow
from payments.payment.lifecycle import apply_gateway_status, flag_for_review, note
from payments.payment.models import GatewayInbox, Payment
from payments.transfer.models import BankCredit
from payments.transfer.service import Credit, apply_credit

log = get_logger(__name__)


def _length(model: Any, column: str) -> int:
    length = getattr(table_of(model).c[column].type, "length", None)
    assert isinstance(length, int)
    return length


# The inbox row is written first and settled last, with Core statements built once (no ORM flush on this path).
_INBOX = table_of(GatewayInbox)
_INBOX_KEY = (_INBOX.c.gateway == bindparam("b_gateway"), _INBOX.c.event_id == bindparam("b_event_id"))
_INBOX_INSERT = Prepared(insert(_INBOX).values(gateway=bindparam("b_gateway"), event_id=bindparam("b_event_id")))
_INBOX_UPDATE = Prepared(update(_INBOX).where(*_INBOX_KEY))
_INBOX_DELETE = Prepared(delete(_INBOX).where(*_INBOX_KEY))


class _DuplicateEvent(Exception):
    """This gateway event id is already in the inbox."""


# The payment and its agency's code in one query: the account check costs no second round trip. A Core statement
# built once: the callback writes with Core statements and only reads the payment.
_PAYMENT, _AGENCY = table_of(Payment), table_of(Agency)
_WITH_AGENCY = sa_select(*_PAYMENT.c, _AGENCY.c.code.label("agency_code")).join(
    _AGENCY, _AGENCY.c.id == _PAYMENT.c.agency_id
)
_BY_ID = Prepared(_WITH_AGENCY.where(_PAYMENT.c.id == bindparam("b_id")))
_BY_REFERENCE = Prepared(
    _WITH_AGENCY.where(
        _PAYMENT.c.gateway == bindparam("b_gateway"), _PAYMENT.c.gateway_reference == bindparam("b_reference")
    )
)


def find_callback_payment(s: Session, gateway: str, event: CallbackEvent, agency_code: str | None) -> Payment | None:
    """The payment a verified callback speaks of: by our id when the gateway echoes it, else by the gateway's
    reference; a payment of another agency than the callback's account is not it."""
    if event.merchant_reference:
        found = _BY_ID(s, {"b_id": event.merchant_reference}).first()
    elif event.gateway_reference:
        found = _BY_REFERENCE(s, {"b_gateway": gateway, "b_reference": event.gateway_reference}).first()
    else:
        return None
    if found is None or found.gateway != gateway:
        return None
    values = found._asdict()
    code = values.pop("agency_code")
    # Built as the ORM builds a loaded row, outside any session: an ORM query would cost a fifth of the callback.
    payment = loaded(Payment, values)
    if agency_code is not None and code != agency_code:
        log.warning("gateway.callback.wrong_account", gateway=gateway, agency=agency_code, payment_id=payment.id)
        return None
    return payment


# Outcomes that refuse a message without acting on it: its event id stays free, so that the gateway's corrected
# message (same transaction, right amount) is applied instead of being answered "duplicate".
NOT_CONSUMED = frozenset({CallbackOutcome.amount_mismatch, CallbackOutcome.unknown_order})
_TEXT_LIMITS = {
    "event_id": _length(GatewayInbox, "event_id"),
    "gateway_reference": _length(Payment, "gateway_reference"),
    "merchant_reference": _length(Payment, "id"),
}
# A bank credit's event id is also its bank transaction id.
_CREDIT_ID_LIMIT = _length(BankCredit, "bank_transaction_id")
_CURRENCY = re.compile(r"[A-Z]{3}")


def malformed_event(event: CallbackEvent, pushes_funds: bool = False) -> str | None:
    """Why a verified event cannot be stored as it is (too long for its column, control characters, an amount out
    of range), or None. Checked for every adapter, built in or not, before anything is written."""
    limits = {**_TEXT_LIMITS, "event_id": _CREDIT_ID_LIMIT} if pushes_funds else _TEXT_LIMITS
    for name, limit in limits.items():
        value = getattr(event, name)
        if not isinstance(value, str) or len(value) > limit or not value.isprintable():
            return f"{name} is not printable text of at most {limit} characters"
    if not event.event_id:
        return "event_id is empty"
    if type(event.amount) is not int or not 0 <= event.amount <= MAX_AMOUNT:
        return f"amount is not a whole number between 0 and {MAX_AMOUNT}"
    if not isinstance(event.currency, str) or not _CURRENCY.fullmatch(event.currency):
        return "currency is not a three-letter code"
    return None


def handle_callback(
    ctx: AppContext, gateway: PaymentGateway, event: CallbackEvent, agency_code: str | None = None
) -> CallbackOutcome:
    """Apply a verified callback once, in the order: known order, amount, state."""
    why = malformed_event(event, gateway.pushes_funds)
    if why is not None:
        log.warning("gateway.callback.malformed", gateway=gateway.name, reason=why)
        return CallbackOutcome.invalid_signature
    try:
        with ctx.db.write() as s:
            key = {"b_gateway": gateway.name, "b_event_id": event.event_id}
            try:
                _INBOX_INSERT(s, {**key, "outcome": "processing", "received_at": utcnow()})
            except IntegrityError as exc:
                raise _DuplicateEvent from exc
            if gateway.pushes_funds:
                return _credit_callback(s, gateway.name, event, agency_code, key)
            payment = find_callback_payment(s, gateway.name, event, agency_code)
            # From here the callback's writes read nothing back but the status change's row count: on PostgreSQL
            # they go to the server with the COMMIT (a broken guarantee is raised there, and handled below).
            defer_writes(s)
            if payment is None:
                outcome = CallbackOutcome.unknown_order
                log.warning("gateway.callback.unknown_order", gateway=gateway.name, reference=event.gateway_reference)
            elif event.currency != payment.currency:
                outcome = CallbackOutcome.amount_mismatch
                note(s, payment, "gateway.currency_mismatch", f"gateway:{gateway.name}", got=event.currency)
            else:
                outcome = apply_gateway_status(
                    s,
                    payment,
                    event.status,
                    actor=f"gateway:{gateway.name}",
                    kind="gateway.callback",
                    amount=event.amount,
                    gateway_reference=event.gateway_reference,
                    raw_code=event.raw_code,
                )
            # Everything above wrote with Core statements: nothing is pending in the session for these to flush first.
            if outcome in NOT_CONSUMED:
                _INBOX_DELETE.write(s, key)
            else:
                inbox = {**key, "payment_id": payment.id if payment else None, "outcome": outcome}
                _INBOX_UPDATE.write(s, inbox)
            return outcome
    except _DuplicateEvent:
        log.info("gateway.callback.duplicate", gateway=gateway.name, event_id=event.event_id)
        return CallbackOutcome.duplicate
    except IntegrityError:
        # Not a repeat: applying it would break a database guarantee (e.g. a second paid payment for one dossier).
        # Nothing was written; answer so that the gateway sends it again, and make a person look.
        log.error(
            "gateway.callback.conflict",
            gateway=gateway.name,
            event_id=event.event_id,
            reference=event.gateway_reference,
        )
        with ctx.db.write() as s:
            payment = find_callback_payment(s, gateway.name, event, agency_code)
            if payment is not None:
                note(s, payment, "gateway.callback_conflict", f"gateway:{gateway.name}", reported=event.status.value)
                flag_for_review(s, payment)
        return CallbackOutcome.error


def _credit_callback(
    s: Session, gateway: str, event: CallbackEvent, agency_code: str | None, key: dict[str, str]
) -> CallbackOutcome:
    """Money that arrived by transfer is real whatever it says: it is recorded and matched, never rejected."""
    credit = Credit(gateway, event.event_id, event.amount, event.gateway_reference, event.description, "notification")
    status, outcome = apply_credit(s, credit, agency_code)
    _INBOX_UPDATE(s, {**key, "payment_id": None, "outcome": status.value if status else outcome.value})
    return outcome
