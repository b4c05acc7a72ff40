"""Payments: creation with one live attempt per dossier, the state machine, reads, cancelling and status queries.

Habits kept here: state changes are compare-and-set on the current status; every change writes an event row in the
same transaction; no database transaction is held open across a gateway call.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import bindparam, insert, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm.attributes import set_committed_value
from sqlmodel import Session, col, select

from adapters.base import (
    CallbackOutcome,
    GatewayDeclinedError,
    GatewayStatus,
    GatewayTechnicalError,
    PaymentGateway,
    StartPayment,
    StatusQuery,
)
from payments.agency.models import Agency
from payments.auth.access import owned_or_404
from payments.auth.service import Principal
from payments.core.context import AppContext
from payments.core.db import affected, table_of
from payments.core.errors import (
    DossierNotPayable,
    GatewayUnavailable,
    InvalidTransition,
    MethodNotEnabled,
    NotFound,
    PaymentInProgress,
)
from payments.core.logging import get_logger
from payments.core.pagination import newest_first_page
from payments.core.types import new_id, utcnow
from payments.dossier.models import Dossier, DossierStatus
from payments.dossier.service import find_dossier
from payments.idempotency.service import Claim
from payments.outbox.service import enqueue, enqueue_many
from payments.payment import kinds
from payments.payment.models import Payment, PaymentEvent
from payments.payment.schemas import EventOut, PaymentIn, PaymentOut
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


@dataclass(frozen=True)
class PaymentFilter:
    status: PaymentStatus | None = None
    dossier_code: str | None = None
    method: str | None = None
    created_from: datetime | None = None
    created_to: datetime | None = None


# --- the state machine ------------------------------------------------------------------------------------------
# Writes here are Core statements built once: they run in every callback and status change, where ORM flushes and
# ORM-enabled update()s (which autoflush and synchronise the session) cost more than the SQL itself.
_PAYMENTS = table_of(Payment)
_DOSSIERS = table_of(Dossier)
_MOVE = update(_PAYMENTS).where(_PAYMENTS.c.id == bindparam("b_id"), _PAYMENTS.c.status == bindparam("b_status"))
_FLAG = update(_PAYMENTS).where(_PAYMENTS.c.id == bindparam("b_id")).values(requires_review=True)
_DOSSIER_PAID = update(_DOSSIERS).where(_DOSSIERS.c.id == bindparam("b_id"), _DOSSIERS.c.status == DossierStatus.unpaid)
_INSERT_EVENT = insert(table_of(PaymentEvent))


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
    if affected(s.execute(_MOVE, {"b_id": payment.id, "b_status": current, **changes})) != 1:
        return False
    for key, value in changes.items():
        # Written already: the object follows without becoming dirty (no second UPDATE at commit).
        set_committed_value(payment, key, value)
    s.execute(
        _INSERT_EVENT,
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
        s.execute(
            _DOSSIER_PAID,
            {"b_id": payment.dossier_id, "status": DossierStatus.paid, "paid_at": now, "updated_at": now},
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
    row = {"payment_id": payment.id, "kind": kind, "from_status": None, "to_status": None, "actor": actor}
    s.execute(
        _INSERT_EVENT,
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
    s.execute(_FLAG, {"b_id": payment.id})
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


# --- creating and starting a payment --------------------------------------------------------------------------
def _gateway_for(ctx: AppContext, agency: Agency, method: str) -> PaymentGateway:
    if method not in agency.payment_methods or method not in ctx.gateways:
        enabled = sorted(set(agency.payment_methods) & set(ctx.gateways.names()))
        raise MethodNotEnabled(f"method {method!r} is not enabled for this agency; enabled: {enabled}")
    try:
        return ctx.gateways.get(method, agency.code)
    except ValueError as exc:  # the adapter refused its settings: the agency's account is not configured
        log.error("gateway.not_configured", gateway=method, agency=agency.code, error=str(exc))
        raise MethodNotEnabled(f"method {method!r} is not configured for this agency") from exc


class PaymentCreation:
    """Creating a payment in two steps: ``prepare`` writes the attempt in the transaction that claims the
    Idempotency-Key; ``run`` then asks the gateway (no transaction open) and records its answer."""

    def __init__(self, ctx: AppContext, principal: Principal, data: PaymentIn, actor: str) -> None:
        self.ctx, self.principal, self.data, self.actor = ctx, principal, data, actor
        self.payment: Payment | None = None

    def prepare(self, s: Session, claim: Claim | None) -> None:
        agency = s.get(Agency, self.principal.agency_id)
        assert agency is not None
        _gateway_for(self.ctx, agency, self.data.method)
        try:
            self.payment = _insert_payment(s, self.ctx, self.principal, self.data, self.actor)
        except IntegrityError as exc:
            # Another request created a live attempt between our check and our insert (PostgreSQL, READ COMMITTED).
            raise PaymentInProgress("another payment for this dossier is in progress") from exc
        if claim:
            claim.attach(s, self.payment.id)

    def run(self, claim: Claim | None) -> PaymentOut:
        payment = self.payment
        if payment is None:  # resumed after a crash: the attempt exists, named by the recovery point
            assert claim is not None and claim.resource_id is not None
            with self.ctx.db.read() as s:
                payment = get_for_agency(s, self.principal.agency_id, claim.resource_id)
        return start_payment(
            self.ctx, payment, self.ctx.gateway(payment.gateway, payment.agency_id), claim, self.data.dossier_code
        )


def _insert_payment(s: Session, ctx: AppContext, principal: Principal, data: PaymentIn, actor: str) -> Payment:
    dossier = find_dossier(s, principal.agency_id, data.dossier_code)
    if dossier.status is not DossierStatus.unpaid:
        raise DossierNotPayable(f"dossier {dossier.code!r} is {dossier.status.value}")
    live = s.exec(
        select(Payment.id).where(Payment.dossier_id == dossier.id, col(Payment.status).in_(list(LIVE)))
    ).first()
    if live is not None:
        raise PaymentInProgress(f"payment {live} for this dossier is in progress", payment_id=live)
    now = utcnow()
    payment = Payment(
        agency_id=principal.agency_id,
        dossier_id=dossier.id,
        gateway=data.method,
        amount=dossier.total_amount,
        gateway_token=new_id("gtk"),
        return_url=str(data.return_url),
        description=f"Le phi ho so {dossier.code}",
        expires_at=now + timedelta(seconds=ctx.settings.payment_expiry_seconds),
        created_at=now,
        updated_at=now,
    )
    s.add(payment)
    s.flush()
    s.add(
        PaymentEvent(
            payment_id=payment.id,
            kind="payment.created",
            to_status=S.created.value,
            actor=actor,
            amount=payment.amount,
            created_at=now,
        )
    )
    enqueue(s, "payment.expire", {"payment_id": payment.id}, run_after=payment.expires_at)
    first = ctx.settings.requery_schedule_seconds[:1]
    if first:
        enqueue(
            s, "payment.requery", {"payment_id": payment.id, "step": 0}, run_after=now + timedelta(seconds=first[0])
        )
    return payment


def start_payment(
    ctx: AppContext, payment: Payment, gateway: PaymentGateway, claim: Claim | None, dossier_code: str
) -> PaymentOut:
    payment_id = payment.id
    # A pending attempt without a next_url was settled by a status query after its start timed out: asking the
    # gateway again with the same token returns the same payment and the page to send the payer to.
    if payment.status is not S.created and not (payment.status is S.pending and payment.next_url is None):
        return _finish(ctx, payment_id, claim)
    request = StartPayment(
        merchant_reference=payment.id,
        idempotency_key=payment.gateway_token,
        amount=payment.amount,
        currency=payment.currency,
        description=payment.description,
        return_url=payment.return_url,
        callback_url=ctx.callback_url(payment.gateway, ctx.agency_code(payment.agency_id)),
        created_at=payment.created_at,
        expires_at=payment.expires_at,
    )
    try:
        result = gateway.start_payment(request)
    except GatewayTechnicalError as exc:
        # The gateway may or may not have created it: leave the attempt for a retry or the status query.
        log.warning("gateway.start_failed", payment_id=payment.id, gateway=payment.gateway, error=str(exc))
        raise GatewayUnavailable("the payment gateway did not answer; retry with the same Idempotency-Key") from exc
    except GatewayDeclinedError as exc:
        with ctx.db.write() as s:
            payment = _get(s, payment_id)
            transition(
                s,
                payment,
                S.failed,
                actor=f"gateway:{payment.gateway}",
                kind="gateway.start_declined",
                detail={"reason": str(exc)[:200]},
            )
        return _finish(ctx, payment_id, claim)
    with ctx.db.write() as s:
        values = {"gateway_reference": result.gateway_reference, "next_url": result.next_url}
        moved = False
        if payment.status is S.created:
            moved = transition(
                s,
                payment,
                S.pending,
                actor=f"gateway:{payment.gateway}",
                kind="gateway.started",
                gateway_reference=result.gateway_reference,
                values=values,
            )
        elif payment.status is S.pending and payment.next_url is None:
            stmt = update(Payment).where(col(Payment.id) == payment.id, col(Payment.next_url).is_(None))
            moved = affected(s.execute(stmt.values(next_url=result.next_url))) == 1
            payment.next_url = result.next_url
        if not moved:  # a callback or a worker got there first: answer with what is stored now
            payment = _get(s, payment_id)
        out = to_out(s, payment, dossier_code=dossier_code)
        if claim:
            claim.finish(s, 201, out.model_dump(mode="json"))
    return out


def _finish(ctx: AppContext, payment_id: str, claim: Claim | None) -> PaymentOut:
    with ctx.db.write() as s:
        out = to_out(s, _get(s, payment_id))
        if claim:
            claim.finish(s, 201, out.model_dump(mode="json"))
    return out


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
