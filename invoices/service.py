"""Issuing the e-receipt of a succeeded payment: exactly one original document per payment, numbered without gaps
and signed in the transaction that stores it (a signing failure rolls the number back for the next document)."""

from __future__ import annotations

import secrets
from datetime import UTC, datetime, timedelta, timezone

from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from invoices.format import DocumentKind
from invoices.keys import SignerStore
from invoices.model import Buyer, Document, Seller, lines_from_dossier
from invoices.models import Document as DocumentRow
from invoices.models import DocumentPurpose
from invoices.numbering import series_for_year, take_number
from invoices.validate import validate
from invoices.xml import build_xml
from payments.agency.models import Agency
from payments.core.context import AppContext
from payments.core.logging import get_logger
from payments.dossier.models import Dossier, DossierFeeLine
from payments.payment.models import Payment
from payments.payment.states import PAID

log = get_logger(__name__)
GMT7 = timezone(timedelta(hours=7))
METHOD_TEXT = {"stripe": "Thẻ", "vietqr": "CK", "vnpay": "CK", "momo": "Ví điện tử", "sandbox": "CK"}


def issue_receipt(ctx: AppContext, signers: SignerStore, payment_id: str, now: datetime | None = None) -> str | None:
    """Issue the payment's e-receipt if it has none; returns the document id (None if the payment is not paid)."""
    try:
        with ctx.db.write() as s:
            existing = _original(s, payment_id)
            if existing is not None:
                return existing
            payment = s.get(Payment, payment_id)
            if payment is None or payment.status not in PAID:
                return None
            row = _issue(s, ctx, signers, payment, now or datetime.now(UTC))
            log.info("receipt.issued", document_id=row.id, payment_id=payment_id, series=row.series, number=row.number)
            return row.id
    except IntegrityError:
        # Another worker issued it first (PostgreSQL); its document stands and our number went back with the rollback.
        with ctx.db.read() as s:
            return _original(s, payment_id)


def _original(s: Session, payment_id: str) -> str | None:
    return s.exec(
        select(DocumentRow.id).where(
            DocumentRow.payment_id == payment_id, DocumentRow.purpose == DocumentPurpose.original
        )
    ).first()


def _issue(s: Session, ctx: AppContext, signers: SignerStore, payment: Payment, now: datetime) -> DocumentRow:
    agency = s.get(Agency, payment.agency_id)
    dossier = s.get(Dossier, payment.dossier_id)
    assert agency is not None and dossier is not None
    lines = s.exec(
        select(DossierFeeLine).where(DossierFeeLine.dossier_id == dossier.id).order_by(col(DossierFeeLine.position))
    ).all()
    issue_date = now.astimezone(GMT7).date()
    series = series_for_year(ctx.settings.receipt_series, issue_date.year)
    fees, services = lines_from_dossier(lines)
    draft = Document(
        kind=DocumentKind.receipt,
        series=series,
        number=1,
        issue_date=issue_date,
        dossier_code=dossier.code,
        payment_method=METHOD_TEXT.get(payment.gateway, "CK"),
        provider_tax_code=ctx.settings.provider_tax_code,
        seller=Seller.from_agency(agency),
        buyer=Buyer.from_dossier(dossier),
        fee_lines=fees,
        service_lines=services,
        document_id="DLHDon",
    )
    number = take_number(s, agency.id, draft.template, series, issue_date.year)
    doc = draft.model_copy(update={"number": number})
    xml = build_xml(doc)
    validate(xml)  # never sign a document the format would reject
    signed = signers.for_agency(agency.code, agency.tax_code, agency.name).sign(xml)
    row = DocumentRow(
        agency_id=agency.id,
        payment_id=payment.id,
        purpose=DocumentPurpose.original,
        template=doc.template,
        series=series,
        year=issue_date.year,
        number=number,
        issue_date=issue_date,
        total=doc.total_payable,
        lookup_code=_lookup_code(),
        xml=signed,
    )
    s.add(row)
    s.flush()
    return row


def _lookup_code() -> str:
    """The code a payer types to look the receipt up: unguessable, short, without look-alike characters."""
    alphabet = "23456789ABCDEFGHJKMNPQRSTUVWXYZ"
    return "".join(secrets.choice(alphabet) for _ in range(12))
