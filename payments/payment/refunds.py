"""Refunds, partial or full, never above what is refundable.

The amount is reserved on the payment by compare-and-set before the gateway is asked, so two concurrent refunds
cannot together exceed the payment; a declined refund releases its reservation.
"""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import update
from sqlmodel import Session, col, select

from adapters.base import GatewayDeclinedError, GatewayTechnicalError, RefundOutcome, RefundRequest
from payments.auth.service import Principal
from payments.core.context import AppContext
from payments.core.db import affected
from payments.core.errors import InvalidTransition, RefundExceedsAvailable
from payments.core.logging import get_logger
from payments.core.types import new_id, utcnow
from payments.dossier.models import Dossier, DossierStatus
from payments.idempotency.service import Claim
from payments.outbox.service import enqueue
from payments.payment import kinds
from payments.payment.lifecycle import transition
from payments.payment.models import Payment, PaymentEvent, Refund, RefundStatus
from payments.payment.queries import get_for_agency
from payments.payment.schemas import RefundIn, RefundOut
from payments.payment.states import PaymentStatus

log = get_logger(__name__)
REFUNDABLE = (PaymentStatus.succeeded, PaymentStatus.partially_refunded)
RETRY_AFTER = timedelta(minutes=2)


class RefundCreation:
    """``prepare`` reserves the amount and writes the refund in the transaction that claims the Idempotency-Key;
    ``run`` asks the gateway and stores the answer."""

    def __init__(self, ctx: AppContext, principal: Principal, payment_id: str, data: RefundIn, actor: str) -> None:
        self.ctx, self.principal, self.payment_id, self.data, self.actor = ctx, principal, payment_id, data, actor

    def prepare(self, s: Session, claim: Claim) -> None:
        refund = reserve_refund(
            s, self.principal.agency_id, self.payment_id, self.data.amount, self.data.reason, self.actor
        )
        claim.attach(s, refund.id)

    def run(self, claim: Claim) -> RefundOut:
        assert claim.resource_id is not None
        out = process_refund(self.ctx, claim.resource_id)
        with self.ctx.db.write() as s:
            claim.finish(s, 201, out.model_dump(mode="json"))
        return out


def reserve_refund(s: Session, agency_id: str, payment_id: str, amount: int, reason: str, actor: str) -> Refund:
    """Reserve ``amount`` on the agency's payment and write the pending refund and its retry job, in the caller's
    transaction; ``process_refund`` then asks the gateway. Raises ``NotFound``, ``InvalidTransition`` or
    ``RefundExceedsAvailable`` and writes nothing when the payment cannot give that much back."""
    payment = get_for_agency(s, agency_id, payment_id)
    if payment.status not in REFUNDABLE:
        raise InvalidTransition(f"payment {payment_id} is {payment.status.value} and cannot be refunded")
    available = payment.amount - payment.refund_reserved
    reserved = s.execute(
        update(Payment)
        .where(col(Payment.id) == payment_id, col(Payment.status).in_(REFUNDABLE))
        .where(col(Payment.amount) - col(Payment.refund_reserved) >= amount)
        .values(refund_reserved=col(Payment.refund_reserved) + amount)
    )
    if amount > available or affected(reserved) != 1:
        raise RefundExceedsAvailable(
            f"at most {available} VND can be refunded on payment {payment_id}", refundable_amount=available
        )
    refund = Refund(
        payment_id=payment_id,
        amount=amount,
        reason=reason,
        gateway_token=new_id("rtk"),
        created_by=actor,
    )
    s.add(refund)
    s.flush()
    s.add(
        PaymentEvent(
            payment_id=payment_id,
            kind="refund.requested",
            actor=actor,
            amount=amount,
            detail={"refund_id": refund.id},
        )
    )
    # Written with the intent, so the refund completes even if this process dies before asking the gateway.
    enqueue(s, kinds.REFUND_RETRY, {"refund_id": refund.id}, run_after=utcnow() + RETRY_AFTER)
    return refund


def process_refund(ctx: AppContext, refund_id: str) -> RefundOut:
    with ctx.db.read() as s:
        refund = s.get(Refund, refund_id)
        assert refund is not None
        payment = s.get(Payment, refund.payment_id)
        assert payment is not None
    if refund.status is not RefundStatus.pending or payment.gateway_reference is None:
        return RefundOut.model_validate(refund, from_attributes=True)
    request = RefundRequest(
        merchant_reference=payment.id,
        gateway_reference=payment.gateway_reference,
        idempotency_key=refund.gateway_token,
        amount=refund.amount,
        payment_amount=payment.amount,
        reason=refund.reason,
    )
    try:
        result = ctx.gateway(payment.gateway, payment.agency_id).refund(request)
    except GatewayTechnicalError as exc:
        log.warning("refund.gateway_unavailable", refund_id=refund_id, error=str(exc)[:200])
        return RefundOut.model_validate(refund, from_attributes=True)
    except GatewayDeclinedError as exc:
        with ctx.db.write() as s:
            _fail(s, refund_id, str(exc)[:500])
            return _out(s, refund_id)
    with ctx.db.write() as s:
        if result.outcome is RefundOutcome.succeeded:
            _succeed(s, refund_id, result.gateway_reference)
        elif result.outcome is RefundOutcome.failed:
            _fail(s, refund_id, result.detail or "declined by the gateway")
        return _out(s, refund_id)


def retry_refund(ctx: AppContext, refund_id: str) -> None:
    if process_refund(ctx, refund_id).status is RefundStatus.pending:
        raise GatewayTechnicalError(f"refund {refund_id} is still pending at the gateway")


def _out(s: Session, refund_id: str) -> RefundOut:
    return RefundOut.model_validate(s.get(Refund, refund_id), from_attributes=True)


def _claim_refund(s: Session, refund_id: str, status: RefundStatus, **values: object) -> Refund | None:
    result = s.execute(
        update(Refund)
        .where(col(Refund.id) == refund_id, col(Refund.status) == RefundStatus.pending)
        .values(status=status, completed_at=utcnow(), **values)
    )
    if affected(result) != 1:
        return None
    return s.get(Refund, refund_id)


def _succeed(s: Session, refund_id: str, gateway_reference: str | None) -> None:
    refund = _claim_refund(s, refund_id, RefundStatus.succeeded, gateway_reference=gateway_reference)
    if refund is None:
        return
    # Row lock on PostgreSQL so that two refunds completing at once both count (SQLite holds the write lock).
    payment = s.exec(select(Payment).where(Payment.id == refund.payment_id).with_for_update()).one()
    refunded = payment.refunded_amount + refund.amount
    target = PaymentStatus.refunded if refunded >= payment.amount else PaymentStatus.partially_refunded
    moved = transition(
        s,
        payment,
        target,
        actor=f"gateway:{payment.gateway}",
        kind="refund.succeeded",
        gateway_reference=gateway_reference,
        detail={"refund_id": refund_id, "refund_amount": refund.amount},
        values={"refunded_amount": refunded},
    )
    if not moved:  # the table allows every refund step from a refundable state; anything else is a bug
        raise InvalidTransition(f"payment {payment.id} could not record refund {refund_id}")
    # The adjustment document (TCHDon 2) that records the refund, issued by the outbox like the receipt itself.
    enqueue(s, kinds.REFUND_SUCCEEDED, {"refund_id": refund_id})
    if target is PaymentStatus.refunded:
        s.execute(
            update(Dossier)
            .where(col(Dossier.id) == payment.dossier_id)
            .values(status=DossierStatus.refunded, updated_at=utcnow())
        )


def _fail(s: Session, refund_id: str, reason: str) -> None:
    refund = _claim_refund(s, refund_id, RefundStatus.failed, failure_reason=reason)
    if refund is None:
        return
    s.execute(
        update(Payment)
        .where(col(Payment.id) == refund.payment_id)
        .values(refund_reserved=col(Payment.refund_reserved) - refund.amount)
    )
    s.add(
        PaymentEvent(
            payment_id=refund.payment_id,
            kind="refund.failed",
            actor="gateway",
            amount=refund.amount,
            detail={"refund_id": refund_id, "reason": reason},
        )
    )


def list_refunds(s: Session, agency_id: str, payment_id: str) -> list[RefundOut]:
    get_for_agency(s, agency_id, payment_id)
    rows = s.exec(select(Refund).where(Refund.payment_id == payment_id).order_by(col(Refund.created_at)))
    return [RefundOut.model_validate(r, from_attributes=True) for r in rows]
