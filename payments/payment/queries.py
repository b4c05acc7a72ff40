"""Reading payments: by id (within an agency), by a gateway's reference, as the API shows them, and listed."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlmodel import Session, col, select

from payments.auth.access import owned_or_404
from payments.core.errors import NotFound
from payments.core.pagination import newest_first_page
from payments.dossier.models import Dossier
from payments.payment.models import Payment, PaymentEvent
from payments.payment.schemas import EventOut, PaymentOut
from payments.payment.states import LIVE, PAID, PaymentStatus


@dataclass(frozen=True)
class PaymentFilter:
    status: PaymentStatus | None = None
    dossier_code: str | None = None
    method: str | None = None
    created_from: datetime | None = None
    created_to: datetime | None = None


def get_payment(s: Session, payment_id: str) -> Payment:
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


def payment_by_reference(s: Session, gateway: str, reference: str) -> Payment | None:
    """The payment a gateway knows by its own reference (unique per gateway)."""
    return s.exec(select(Payment).where(Payment.gateway == gateway, Payment.gateway_reference == reference)).first()
