"""The payment's life: the state machine's moves (each a compare-and-set with its event row), what a gateway's
reported status means for it, and cancelling. Creation is in ``create``, callbacks in ``callbacks``, expiry and
status queries in ``expiry``, reads in ``queries``.

Habits kept here: state changes are compare-and-set on the current status; every change writes an event row in the
same transaction; no database transaction is held open across a gateway call.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import bindparam, insert, update
from sqlalchemy.orm.attributes import set_committed_value
from sqlmodel import Session

from adapters.base import (
    CallbackOutcome,
    GatewayStatus,
    GatewayTechnicalError,
    StatusQuery,
)
from payments.auth.service import Principal
from payments.core.context import AppContext
from payments.core.db import affected, table_of
from payments.core.errors import (
    GatewayUnavailable,
    InvalidTransition,
)
from payments.core.logging import get_logger
from payments.core.observe import after_commit, observer
from payments.core.sql import Prepared, defer_writes
from payments.core.types import utcnow
from payments.dossier.models import Dossier, DossierStatus
from payments.outbox.service import enqueue_many
from payments.payment import kinds
from payments.payment.models import Payment, PaymentEvent
from payments.payment.queries import get_for_agency, get_payment, to_out
from payments.payment.schemas import PaymentOut
from payments.payment.states import LIVE, PAID, PaymentStatus, can_transition
from payments.webhooks.service import emit

log = get_logger(__name__)
S = PaymentStatus

_FROM_GATEWAY = {
    GatewayStatus.succeeded: S.succeeded,
    GatewayStatus.failed: S.failed,
    GatewayStatus.cancelled: S.cancelled,
    GatewayStatus.pending: S.pending,
}


# --- the state machine ------------------------------------------------------------------------------------------
# Writes here are Core statements built once: they run in every callback and status change, where ORM flushes and
# ORM-enabled update()s (which autoflush and synchronise the session) cost more than the SQL itself.
_PAYMENTS = table_of(Payment)
_DOSSIERS = table_of(Dossier)
_MOVE = Prepared(
    update(_PAYMENTS).where(_PAYMENTS.c.id == bindparam("b_id"), _PAYMENTS.c.status == bindparam("b_status"))
)
_FLAG = Prepared(update(_PAYMENTS).where(_PAYMENTS.c.id == bindparam("b_id")).values(requires_review=True))
_DOSSIER_PAID = Prepared(
    update(_DOSSIERS).where(_DOSSIERS.c.id == bindparam("b_id"), _DOSSIERS.c.status == DossierStatus.unpaid)
)
_INSERT_EVENT = Prepared(insert(table_of(PaymentEvent)))


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
    if affected(_MOVE(s, {"b_id": payment.id, "b_status": current, **changes})) != 1:
        return False
    for key, value in changes.items():
        # Written already: the object follows without becoming dirty (no second UPDATE at commit).
        set_committed_value(payment, key, value)
    # The rest records the move and reads nothing back: on PostgreSQL it goes to the server with the next read or
    # the COMMIT, in one round trip.
    defer_writes(s)
    _INSERT_EVENT.write(
        s,
        {
            "payment_id": payment.id,
            "kind": kind,
            "from_status": current.value,
            "to_status": to.value,
            "actor": actor,
            "gateway_reference": gateway_reference or payment.gateway_reference,
            "amount": payment.amount,
            "detail": detail or {},
            "created_at": now,
        },
    )
    # Announced in the same transaction as the success it follows (the invoices package issues the e-receipt).
    jobs = [(kinds.SUCCEEDED, {"payment_id": payment.id})] if to is S.succeeded else []
    if to in NOTIFIED:
        emit(s, payment.agency_id, f"payment.{to.value}", _event_data(payment, kind, detail), also=jobs)
    else:
        enqueue_many(s, jobs)
    if to is S.succeeded:
        _DOSSIER_PAID.write(
            s,
            {"b_id": payment.dossier_id, "status": DossierStatus.paid, "paid_at": now, "updated_at": now},
        )
    method = payment.gateway
    after_commit(s, lambda: observer().payment_status(method, to.value))
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
    row = {"payment_id": payment.id, "kind": kind, "from_status": None, "to_status": None, "actor": actor}
    _INSERT_EVENT.write(
        s,
        {
            **row,
            "gateway_reference": payment.gateway_reference,
            "amount": None,
            "detail": detail,
            "created_at": utcnow(),
        },
    )


def flag_for_review(s: Session, payment: Payment) -> None:
    """A person must look at this payment (money that arrived late or did not match, a conflicting callback)."""
    _FLAG(s, {"b_id": payment.id})
    set_committed_value(payment, "requires_review", True)


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
        flag_for_review(s, payment)
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
        payment = get_payment(s, payment_id)
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
