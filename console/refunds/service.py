"""Maker-checker refunds: a finance user requests, an approver of the same agency (never the requester) decides.

Only an approval creates the refund, through ``payments.payment.refunds.reserve_refund`` (the path the API takes,
with its checks and its reservation on the payment), in the transaction that moves the request out of ``pending``
and writes its audit row. Leaving ``pending`` is a status-guarded UPDATE: of two approvers at the same moment one
changes the row and the other finds it decided."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, update
from sqlmodel import Session, col, select

from console.audit.service import record
from console.refunds.models import RefundRequest, RequestStatus
from console.staff.models import Role, StaffUser
from payments.core.db import affected
from payments.core.errors import InvalidTransition, NotFound, RefundExceedsAvailable
from payments.core.types import utcnow
from payments.payment.models import Payment
from payments.payment.refunds import REFUNDABLE, reserve_refund

MAX_REASON = 500
MAX_NOTE = 500
MAX_AMOUNT = 999_999_999_999
PAGE_SIZE = 50


class NotHere(Exception):
    """An unknown id, or one of another agency: both answer the same 404."""


class NotAllowed(Exception):
    """The user may not do this to this request (their own approval, someone else's cancellation): 403."""


class AlreadyDecided(Exception):
    """The request has left ``pending`` already, perhaps a moment ago in another tab or by another approver."""

    def __init__(self, status: RequestStatus) -> None:
        super().__init__(status.value)
        self.status = status


class Refused(Exception):
    """Input the rules refuse; ``key`` names the text that says why, ``remaining`` the amount still requestable."""

    def __init__(self, key: str, remaining: int | None = None) -> None:
        super().__init__(key)
        self.key, self.remaining = key, remaining


@dataclass(frozen=True)
class Figures:
    """A payment's amounts as a request sees them; ``remaining`` leaves out what pending requests already ask."""

    payment: Payment
    refunded: int
    in_progress: int
    pending_requests: int

    @property
    def remaining(self) -> int:
        return max(0, self.payment.amount - self.refunded - self.in_progress - self.pending_requests)

    @property
    def refundable(self) -> bool:
        return self.payment.status in REFUNDABLE


def _own_payment(s: Session, agency_id: str | None, payment_id: str, lock: bool = False) -> Payment:
    query = select(Payment).where(Payment.id == payment_id)
    if lock:
        # Requests for one payment queue here, so two cannot both count the same remainder (SQLite: the write lock).
        query = query.with_for_update()
    payment = s.exec(query).first()
    if payment is None or agency_id is None or payment.agency_id != agency_id:
        raise NotHere
    return payment


def figures(s: Session, agency_id: str | None, payment_id: str, lock: bool = False) -> Figures:
    payment = _own_payment(s, agency_id, payment_id, lock)
    pending = s.exec(
        select(func.coalesce(func.sum(RefundRequest.amount), 0)).where(
            RefundRequest.payment_id == payment_id, RefundRequest.status == RequestStatus.pending
        )
    ).one()
    # refund_reserved holds the refunds confirmed and those still with the gateway; declined ones are released.
    in_progress = payment.refund_reserved - payment.refunded_amount
    return Figures(payment, payment.refunded_amount, in_progress, int(pending))


def state(req: RefundRequest) -> dict[str, Any]:
    """What the audit row keeps of a request."""
    return {
        "status": req.status.value,
        "payment_id": req.payment_id,
        "amount": req.amount,
        "reason": req.reason,
        "requested_by": req.requested_by,
        "decided_by": req.decided_by,
        "decision_note": req.decision_note,
        "refund_id": req.refund_id,
    }


def get_request(s: Session, user: StaffUser, request_id: str) -> RefundRequest:
    if not request_id or len(request_id) > 40:
        raise NotHere
    req = s.get(RefundRequest, request_id)
    if req is None or user.agency_id is None or req.agency_id != user.agency_id:
        raise NotHere
    return req


def _clean_text(value: str, limit: int, empty_key: str, long_key: str) -> str:
    value = value.strip()
    if not value:
        raise Refused(empty_key)
    if len(value) > limit:
        raise Refused(long_key)
    return value


def request_refund(
    s: Session, user: StaffUser, payment_id: str, amount: int, reason: str, ip: str = ""
) -> RefundRequest:
    if user.role is not Role.finance or user.agency_id is None:
        raise NotAllowed
    fig = figures(s, user.agency_id, payment_id, lock=True)
    reason = _clean_text(reason, MAX_REASON, "refunds_reason_needed", "refunds_reason_long")
    if not fig.refundable:
        raise Refused("refunds_not_refundable")
    if not 0 < amount <= MAX_AMOUNT:
        raise Refused("refunds_amount_positive", fig.remaining)
    if amount > fig.remaining:
        raise Refused("refunds_amount_over", fig.remaining)
    req = RefundRequest(
        agency_id=user.agency_id, payment_id=payment_id, amount=amount, reason=reason, requested_by=user.id
    )
    s.add(req)
    s.flush()
    record(
        s,
        agency_id=req.agency_id,
        actor=user.id,
        ip=ip,
        action="refund.requested",
        target=req.id,
        after=state(req),
    )
    return req


def _leave_pending(s: Session, req: RefundRequest, status: RequestStatus, user: StaffUser, note: str | None) -> None:
    """Move the request out of ``pending`` once: a request decided meanwhile (another tab, another approver) is not
    changed again. On PostgreSQL the second UPDATE waits for the first transaction and then matches no row."""
    moved = s.execute(
        update(RefundRequest)
        .where(col(RefundRequest.id) == req.id, col(RefundRequest.status) == RequestStatus.pending)
        .values(status=status, decided_by=user.id, decided_at=utcnow(), decision_note=note)
    )
    if affected(moved) != 1:
        s.refresh(req)
        raise AlreadyDecided(req.status)
    s.refresh(req)


def approve(s: Session, user: StaffUser, request_id: str, note: str = "", ip: str = "") -> RefundRequest:
    req = get_request(s, user, request_id)
    if user.role is not Role.approver or req.requested_by == user.id:
        raise NotAllowed
    note = note.strip()
    if len(note) > MAX_NOTE:
        raise Refused("refunds_note_long")
    before = state(req)
    _leave_pending(s, req, RequestStatus.approved, user, note or None)
    try:
        refund = reserve_refund(s, req.agency_id, req.payment_id, req.amount, req.reason, f"staff:{user.id}")
    except RefundExceedsAvailable as exc:
        # The caller's transaction rolls back: the request stays pending, nothing is reserved.
        raise Refused("refunds_approve_over", figures(s, req.agency_id, req.payment_id).remaining) from exc
    except (InvalidTransition, NotFound) as exc:
        raise Refused("refunds_not_refundable") from exc
    req.refund_id = refund.id
    s.add(req)
    s.flush()
    record(
        s,
        agency_id=req.agency_id,
        actor=user.id,
        ip=ip,
        action="refund.approved",
        target=req.id,
        before=before,
        after=state(req),
    )
    return req


def reject(s: Session, user: StaffUser, request_id: str, note: str, ip: str = "") -> RefundRequest:
    req = get_request(s, user, request_id)
    if user.role is not Role.approver or req.requested_by == user.id:
        raise NotAllowed
    note = _clean_text(note, MAX_NOTE, "refunds_note_needed", "refunds_note_long")
    before = state(req)
    _leave_pending(s, req, RequestStatus.rejected, user, note)
    record(
        s,
        agency_id=req.agency_id,
        actor=user.id,
        ip=ip,
        action="refund.rejected",
        target=req.id,
        before=before,
        after=state(req),
    )
    return req


def cancel(s: Session, user: StaffUser, request_id: str, ip: str = "") -> RefundRequest:
    req = get_request(s, user, request_id)
    if req.requested_by != user.id:
        raise NotAllowed
    before = state(req)
    _leave_pending(s, req, RequestStatus.cancelled, user, None)
    record(
        s,
        agency_id=req.agency_id,
        actor=user.id,
        ip=ip,
        action="refund.cancelled",
        target=req.id,
        before=before,
        after=state(req),
    )
    return req


def queue(s: Session, agency_id: str, status: RequestStatus | None, page: int) -> tuple[list[RefundRequest], bool]:
    """One page of the agency's requests: pending ones first, then the newest."""
    query = select(RefundRequest).where(RefundRequest.agency_id == agency_id)
    if status is not None:
        query = query.where(RefundRequest.status == status)
    later = col(RefundRequest.status) != RequestStatus.pending
    query = query.order_by(later, col(RefundRequest.requested_at).desc(), col(RefundRequest.id).desc())
    rows = list(s.exec(query.offset((page - 1) * PAGE_SIZE).limit(PAGE_SIZE + 1)).all())
    return rows[:PAGE_SIZE], len(rows) > PAGE_SIZE
