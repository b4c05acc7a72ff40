"""One payment as finance staff inspect it: its dossier and fee lines, every attempt to pay that dossier, the
payment's event timeline, the gateway callbacks received for it, its receipts and its refunds.

Only what staff need is read: the payment's gateway token (its idempotency token at the gateway) and the receipts'
lookup codes stay out of the page except as the links of the public receipt pages."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlmodel import Session, col, select

from invoices.tables import Document, DocumentPurpose
from payments.agency.models import Agency, Procedure
from payments.dossier.models import Dossier, DossierFeeLine
from payments.payment.models import GatewayInbox, Payment, PaymentEvent, Refund
from payments.payment.states import PaymentStatus

MAX_ID = 40
# Event details that help staff; anything else an event may carry stays in the database.
SHOWN_DETAIL = ("reason", "raw_code", "refund_id")
REFUNDABLE = frozenset({PaymentStatus.succeeded, PaymentStatus.partially_refunded})


class NoSuchPayment(Exception):
    """An unknown id, or one of an agency the user may not see: both answer the same 404 page."""


@dataclass(frozen=True)
class Receipt:
    doc: Document
    in_force: bool


@dataclass(frozen=True)
class Detail:
    payment: Payment
    agency: Agency
    dossier: Dossier
    procedure: Procedure | None
    lines: list[DossierFeeLine]
    attempts: list[Payment]
    events: list[PaymentEvent]
    callbacks: list[GatewayInbox]
    receipts: list[Receipt]
    refunds: list[Refund]

    @property
    def refundable(self) -> bool:
        return self.payment.status in REFUNDABLE and self.payment.amount > self.payment.refund_reserved


def shown_detail(event: PaymentEvent) -> str:
    detail: dict[str, Any] = event.detail or {}
    return "; ".join(f"{k}: {str(detail[k])[:200]}" for k in SHOWN_DETAIL if detail.get(k) is not None)


def load(s: Session, payment_id: str, agency_id: str | None) -> Detail:
    """The payment ``payment_id`` of agency ``agency_id`` (any agency when None)."""
    if not payment_id or len(payment_id) > MAX_ID or not (payment_id.isascii() and payment_id.isprintable()):
        raise NoSuchPayment
    query = select(Payment).where(col(Payment.id) == payment_id)
    if agency_id is not None:
        query = query.where(col(Payment.agency_id) == agency_id)
    payment = s.exec(query).first()
    if payment is None:
        raise NoSuchPayment
    agency = s.get(Agency, payment.agency_id)
    dossier = s.get(Dossier, payment.dossier_id)
    if agency is None or dossier is None:
        raise NoSuchPayment
    lines = s.exec(
        select(DossierFeeLine)
        .where(col(DossierFeeLine.dossier_id) == dossier.id)
        .order_by(col(DossierFeeLine.position), col(DossierFeeLine.id))
    ).all()
    attempts = s.exec(
        select(Payment)
        .where(col(Payment.dossier_id) == dossier.id, col(Payment.agency_id) == payment.agency_id)
        .order_by(col(Payment.created_at), col(Payment.id))
    ).all()
    events = s.exec(
        select(PaymentEvent).where(col(PaymentEvent.payment_id) == payment.id).order_by(col(PaymentEvent.id))
    ).all()
    callbacks = s.exec(
        select(GatewayInbox).where(col(GatewayInbox.payment_id) == payment.id).order_by(col(GatewayInbox.id))
    ).all()
    docs = s.exec(
        select(Document)
        .where(col(Document.payment_id) == payment.id, col(Document.agency_id) == payment.agency_id)
        .order_by(col(Document.created_at), col(Document.year), col(Document.number))
    ).all()
    replaced = {d.related_document_id for d in docs if d.purpose == DocumentPurpose.replacement}
    receipts = [Receipt(d, d.purpose != DocumentPurpose.adjustment and d.id not in replaced) for d in docs]
    refunds = s.exec(
        select(Refund).where(col(Refund.payment_id) == payment.id).order_by(col(Refund.created_at), col(Refund.id))
    ).all()
    return Detail(
        payment=payment,
        agency=agency,
        dossier=dossier,
        procedure=s.get(Procedure, dossier.procedure_id),
        lines=list(lines),
        attempts=list(attempts),
        events=list(events),
        callbacks=list(callbacks),
        receipts=receipts,
        refunds=list(refunds),
    )
