"""Verified gateway callbacks: each event applied once, in the order known order, amount, state.

The gateway inbox row is written first: its unique (gateway, event_id) index is what makes a repeated or concurrent
delivery of the same event a duplicate, whichever process receives it."""

from __future__ import annotations

import re
from typing import Any

from sqlalchemy import update
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col

from adapters.base import CallbackEvent, CallbackOutcome, PaymentGateway
from adapters.money import MAX_AMOUNT
from payments.agency.models import Agency
from payments.core.context import AppContext
from payments.core.logging import get_logger
from payments.payment.models import GatewayInbox, Payment
from payments.payment.service import apply_gateway_status, note, payment_by_reference
from payments.transfer.models import BankCredit
from payments.transfer.service import Credit, apply_credit

log = get_logger(__name__)


def _length(model: Any, column: str) -> int:
    length = model.__table__.c[column].type.length
    assert isinstance(length, int)
    return length


class _DuplicateEvent(Exception):
    """This gateway event id is already in the inbox."""


def find_callback_payment(s: Session, gateway: str, event: CallbackEvent, agency_code: str | None) -> Payment | None:
    """The payment a verified callback speaks of: by our id when the gateway echoes it, else by the gateway's
    reference; a payment of another agency than the callback's account is not it."""
    payment = s.get(Payment, event.merchant_reference) if event.merchant_reference else None
    if not event.merchant_reference and event.gateway_reference:
        payment = payment_by_reference(s, gateway, event.gateway_reference)
    if payment is None or payment.gateway != gateway:
        return None
    if agency_code is not None:
        agency = s.get(Agency, payment.agency_id)
        if agency is None or agency.code != agency_code:
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
            inbox = GatewayInbox(gateway=gateway.name, event_id=event.event_id, outcome="processing")
            s.add(inbox)
            try:
                s.flush()
            except IntegrityError as exc:
                raise _DuplicateEvent from exc
            if gateway.pushes_funds:
                return _credit_callback(s, gateway.name, event, agency_code, inbox)
            payment = find_callback_payment(s, gateway.name, event, agency_code)
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
            if outcome in NOT_CONSUMED:
                s.delete(inbox)
            else:
                inbox.payment_id = payment.id if payment else None
                inbox.outcome = outcome.value
                s.add(inbox)
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
                s.execute(update(Payment).where(col(Payment.id) == payment.id).values(requires_review=True))
        return CallbackOutcome.error


def _credit_callback(
    s: Session, gateway: str, event: CallbackEvent, agency_code: str | None, inbox: GatewayInbox
) -> CallbackOutcome:
    """Money that arrived by transfer is real whatever it says: it is recorded and matched, never rejected."""
    credit = Credit(gateway, event.event_id, event.amount, event.gateway_reference, event.description, "notification")
    status, outcome = apply_credit(s, credit, agency_code)
    inbox.outcome = status.value if status else outcome.value
    s.add(inbox)
    return outcome
