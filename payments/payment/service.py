"""Payments: creation with one live attempt per dossier, the state machine, gateway callbacks and status queries.

Habits kept here: state changes are compare-and-set on the current status; every change writes an event row in the
same transaction; no database transaction is held open across a gateway call.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import update
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from adapters.base import (
    CallbackEvent,
    CallbackOutcome,
    GatewayStatus,
    GatewayTechnicalError,
    PaymentGateway,
    StatusQuery,
)
from adapters.money import MAX_AMOUNT
from payments.agency.models import Agency
from payments.auth.access import owned_or_404
from payments.auth.service import Principal
from payments.core.context import AppContext
from payments.core.db import affected
from payments.core.errors import (
    GatewayUnavailable,
    InvalidTransition,
    NotFound,
)
from payments.core.logging import get_logger
from payments.core.pagination import newest_first_page
from payments.core.types import utcnow
from payments.dossier.models import Dossier, DossierStatus
from payments.outbox.service import enqueue
from payments.payment.models import GatewayInbox, Payment, PaymentEvent
from payments.payment.schemas import EventOut, PaymentOut
from payments.payment.states import LIVE, PAID, PaymentStatus, can_transition
from payments.transfer.models import BankCredit
from payments.webhooks.service import emit

log = get_logger(__name__)
S = PaymentStatus

_FROM_GATEWAY = {
    GatewayStatus.succeeded: S.succeeded,
    GatewayStatus.failed: S.failed,
    GatewayStatus.cancelled: S.cancelled,
    GatewayStatus.pending: S.pending,
}


@dataclass(frozen=True)
class PaymentFilter:
    status: PaymentStatus | None = None
    dossier_code: str | None = None
    method: str | None = None
    created_from: datetime | None = None
    created_to: datetime | None = None


# --- the state machine ------------------------------------------------------------------------------------------
def transition(
    s: Session,
    payment: Payment,
    to: PaymentStatus,
    *,
    actor: str,
    kind: str,
    gateway_reference: str | None = None,
    detail: dict[str, Any] | None = None,
    values: dict[str, Any] | None = None,
) -> bool:
    """Move ``payment`` to ``to`` if the table allows it and nobody moved it first; write the event."""
    current = payment.status
    if not can_transition(current, to):
        return False
    now = utcnow()
    changes: dict[str, Any] = {"status": to, "updated_at": now, **(values or {})}
    if to is S.succeeded:
        changes["succeeded_at"] = now
    result = s.execute(
        update(Payment).where(col(Payment.id) == payment.id, col(Payment.status) == current).values(**changes)
    )
    if affected(result) != 1:
        return False
    for key, value in changes.items():
        setattr(payment, key, value)
    s.add(
        PaymentEvent(
            payment_id=payment.id,
            kind=kind,
            from_status=current.value,
            to_status=to.value,
            actor=actor,
            gateway_reference=gateway_reference or payment.gateway_reference,
            amount=payment.amount,
            detail=detail or {},
            created_at=now,
        )
    )
    if to in NOTIFIED:
        emit(s, payment.agency_id, f"payment.{to.value}", _event_data(payment, kind, detail))
    if to is S.succeeded:
        # The e-receipt is issued by the outbox, in the same transaction as the success it follows.
        enqueue(s, "receipt.issue", {"payment_id": payment.id})
        s.execute(
            update(Dossier)
            .where(col(Dossier.id) == payment.dossier_id, col(Dossier.status) == DossierStatus.unpaid)
            .values(status=DossierStatus.paid, paid_at=now, updated_at=now)
        )
    log.info(
        "payment.transition",
        payment_id=payment.id,
        from_status=current.value,
        to_status=to.value,
        actor=actor,
    )
    return True


NOTIFIED = frozenset({S.succeeded, S.failed, S.cancelled, S.expired, S.partially_refunded, S.refunded})


def _event_data(payment: Payment, kind: str, detail: dict[str, Any] | None) -> dict[str, Any]:
    """What a client system needs to act on the change without calling back; no personal data."""
    return {
        "payment_id": payment.id,
        "dossier_id": payment.dossier_id,
        "status": payment.status.value,
        "gateway": payment.gateway,
        "amount": payment.amount,
        "currency": payment.currency,
        "refunded_amount": payment.refunded_amount,
        "reason": kind,
        "refund_id": (detail or {}).get("refund_id"),
    }


def note(s: Session, payment: Payment, kind: str, actor: str, **detail: Any) -> None:
    """An event that records a fact without a status change (a rejected or ignored gateway message)."""
    s.add(
        PaymentEvent(
            payment_id=payment.id,
            kind=kind,
            actor=actor,
            gateway_reference=payment.gateway_reference,
            detail=detail,
        )
    )


def apply_gateway_status(
    s: Session,
    payment: Payment,
    status: GatewayStatus,
    *,
    actor: str,
    kind: str,
    amount: int | None = None,
    gateway_reference: str | None = None,
    raw_code: str = "",
) -> CallbackOutcome:
    """Apply what the gateway says (by callback or status query) without ever moving a payment backwards."""
    if gateway_reference and payment.gateway_reference and gateway_reference != payment.gateway_reference:
        note(s, payment, "gateway.reference_mismatch", actor, got=gateway_reference)
        log.warning("gateway.reference_mismatch", payment_id=payment.id, got=gateway_reference)
        return CallbackOutcome.unknown_order
    if amount is not None and amount != payment.amount:
        note(
            s,
            payment,
            "gateway.amount_mismatch",
            actor,
            expected=payment.amount,
            got=amount,
            raw_code=raw_code,
        )
        log.error("gateway.amount_mismatch", payment_id=payment.id, expected=payment.amount, got=amount)
        return CallbackOutcome.amount_mismatch
    target = _FROM_GATEWAY.get(status)
    if target is None or target is payment.status:
        return CallbackOutcome.duplicate if target is not None else CallbackOutcome.accepted
    if payment.status in PAID or (payment.status not in LIVE and target is not S.succeeded):
        note(s, payment, "gateway.status_ignored", actor, reported=status.value, raw_code=raw_code)
        log.warning("gateway.out_of_order", payment_id=payment.id, current=payment.status.value, got=status.value)
        return CallbackOutcome.already_final
    if target is S.succeeded and payment.status not in LIVE:
        # The payer's money was taken after we gave up on the attempt: never drop it silently.
        note(s, payment, "gateway.late_success", actor, raw_code=raw_code)
        s.execute(update(Payment).where(col(Payment.id) == payment.id).values(requires_review=True))
        log.error("gateway.late_success", payment_id=payment.id, status=payment.status.value)
        return CallbackOutcome.already_final
    values = {"gateway_reference": gateway_reference} if gateway_reference and not payment.gateway_reference else None
    moved = transition(
        s,
        payment,
        target,
        actor=actor,
        kind=kind,
        gateway_reference=gateway_reference,
        detail={"raw_code": raw_code} if raw_code else None,
        values=values,
    )
    return CallbackOutcome.accepted if moved else CallbackOutcome.already_final


# --- reading ----------------------------------------------------------------------------------------------------
def _get(s: Session, payment_id: str) -> Payment:
    payment = s.get(Payment, payment_id)
    if payment is None:
        raise NotFound(f"no payment {payment_id!r}")
    return payment


def get_for_agency(s: Session, agency_id: str, payment_id: str) -> Payment:
    return owned_or_404(s.get(Payment, payment_id), agency_id, "payment", payment_id)


def to_out(s: Session, payment: Payment, with_events: bool = False, dossier_code: str | None = None) -> PaymentOut:
    if dossier_code is None:
        dossier = s.get(Dossier, payment.dossier_id)
        assert dossier is not None
        dossier_code = dossier.code
    events = None
    if with_events:
        rows = s.exec(select(PaymentEvent).where(PaymentEvent.payment_id == payment.id).order_by(col(PaymentEvent.id)))
        events = [EventOut.model_validate(e, from_attributes=True) for e in rows]
    return PaymentOut(
        id=payment.id,
        status=payment.status,
        amount=payment.amount,
        currency=payment.currency,
        dossier_code=dossier_code,
        method=payment.gateway,
        next_url=payment.next_url if payment.status in LIVE else None,
        return_url=payment.return_url,
        gateway_reference=payment.gateway_reference,
        refunded_amount=payment.refunded_amount,
        refundable_amount=payment.amount - payment.refund_reserved if payment.status in PAID else 0,
        requires_review=payment.requires_review,
        created_at=payment.created_at,
        updated_at=payment.updated_at,
        expires_at=payment.expires_at,
        succeeded_at=payment.succeeded_at,
        events=events,
    )


def list_payments(
    s: Session, agency_id: str, flt: PaymentFilter, limit: int, cursor: str | None
) -> tuple[list[PaymentOut], str | None]:
    query = select(Payment).where(Payment.agency_id == agency_id)
    if flt.status:
        query = query.where(Payment.status == flt.status)
    if flt.method:
        query = query.where(Payment.gateway == flt.method)
    if flt.dossier_code:
        query = query.join(Dossier, col(Dossier.id) == Payment.dossier_id).where(Dossier.code == flt.dossier_code)
    rows, next_cursor = newest_first_page(s, query, Payment, limit, cursor, flt.created_from, flt.created_to)
    return [to_out(s, p) for p in rows], next_cursor


# --- cancelling, and settling by status query ----------------------------------------------------------------
def status_query(payment: Payment) -> StatusQuery:
    return StatusQuery(
        merchant_reference=payment.id,
        gateway_reference=payment.gateway_reference,
        idempotency_key=payment.gateway_token,
        amount=payment.amount,
        created_at=payment.created_at,
    )


def cancel_payment(ctx: AppContext, principal: Principal, payment_id: str, actor: str) -> PaymentOut:
    with ctx.db.read() as s:
        payment = get_for_agency(s, principal.agency_id, payment_id)
    if payment.status not in LIVE:
        raise InvalidTransition(f"payment {payment_id} is {payment.status.value} and cannot be cancelled")
    try:
        result = ctx.gateway(payment.gateway, payment.agency_id).cancel(status_query(payment))
    except GatewayTechnicalError as exc:
        raise GatewayUnavailable("the gateway did not confirm the cancellation; retry later") from exc
    with ctx.db.write() as s:
        payment = _get(s, payment_id)
        if result.status in (GatewayStatus.cancelled, GatewayStatus.unknown):
            transition(s, payment, S.cancelled, actor=actor, kind="payment.cancelled")
        else:
            apply_gateway_status(
                s,
                payment,
                result.status,
                actor=f"gateway:{payment.gateway}",
                kind="gateway.status_query",
                amount=result.amount,
                raw_code=result.raw_code,
            )
        out = to_out(s, payment)
    # Raised after the commit: what the gateway reported (e.g. it already took the money) must be kept.
    if out.status is not S.cancelled:
        raise InvalidTransition(f"payment {payment_id} is {out.status.value} at the gateway and cannot be cancelled")
    return out


def payment_by_reference(s: Session, gateway: str, reference: str) -> Payment | None:
    """The payment a gateway knows by its own reference (unique per gateway)."""
    return s.exec(select(Payment).where(Payment.gateway == gateway, Payment.gateway_reference == reference)).first()


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
    why = malformed_event(event, getattr(gateway, "pushes_funds", False))
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
            if getattr(gateway, "pushes_funds", False):
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
    from payments.transfer.service import Credit, apply_credit

    credit = Credit(gateway, event.event_id, event.amount, event.gateway_reference, event.description, "notification")
    status, outcome = apply_credit(s, credit, agency_code)
    inbox.outcome = status.value if status else outcome.value
    s.add(inbox)
    return outcome


def settle_by_query(ctx: AppContext, payment_id: str, actor: str) -> PaymentStatus:
    """Ask the gateway and apply the answer; raises GatewayTechnicalError when it cannot be asked."""
    with ctx.db.read() as s:
        payment = _get(s, payment_id)
    if payment.status not in LIVE:
        return payment.status
    result = ctx.gateway(payment.gateway, payment.agency_id).query_status(status_query(payment))
    with ctx.db.write() as s:
        payment = _get(s, payment_id)
        apply_gateway_status(
            s,
            payment,
            result.status,
            actor=actor,
            kind="gateway.status_query",
            amount=result.amount,
            gateway_reference=result.gateway_reference,
            raw_code=result.raw_code,
        )
        return payment.status


def expire_payment(ctx: AppContext, payment_id: str) -> PaymentStatus:
    """Expire a payment left unfinished, after asking the gateway and cancelling there first."""
    actor = "worker:payment.expire"
    status = settle_by_query(ctx, payment_id, actor)
    if status not in LIVE:
        return status
    with ctx.db.read() as s:
        payment = _get(s, payment_id)
    result = ctx.gateway(payment.gateway, payment.agency_id).cancel(status_query(payment))
    with ctx.db.write() as s:
        payment = _get(s, payment_id)
        if result.status in (GatewayStatus.cancelled, GatewayStatus.unknown, GatewayStatus.failed):
            transition(s, payment, S.expired, actor=actor, kind="payment.expired")
        else:
            apply_gateway_status(
                s,
                payment,
                result.status,
                actor=actor,
                kind="gateway.status_query",
                amount=result.amount,
                raw_code=result.raw_code,
            )
        status = payment.status
    if status in LIVE:
        raise GatewayTechnicalError("the gateway still reports the payment as pending")
    return status
