"""Issuing documents: the e-receipt of a succeeded payment, the adjustment that records a refund, and a replacement
asked for by staff. Each is numbered without gaps and signed in the transaction that stores it (a signing failure
rolls the number back for the next document), and each is queued for the client systems in that same transaction.

Exactly-once rules, enforced by unique indexes rather than by checks alone: one original per payment, one adjustment
per refund, one replacement per replaced document.
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from contextlib import nullcontext
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any, NamedTuple, cast

from pydantic import ValidationError as PydanticValidationError
from sqlalchemy import and_, bindparam, insert
from sqlalchemy import select as sa_select
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from invoices.content import (
    Buyer,
    CorrectionKind,
    Document,
    FeeLine,
    LineFacts,
    PayerFacts,
    Related,
    Seller,
    ServiceLine,
    lines_from_dossier,
)
from invoices.context import ReceiptContext
from invoices.errors import DocumentAdjusted, DocumentReplaced, OriginalNotIssued
from invoices.format import DocumentKind
from invoices.keys import SignerStore
from invoices.numbering import take_numbers_then
from invoices.series import OpenSeries, confirm_open, open_series, receipt_template, status_read
from invoices.tables import Document as DocumentRow
from invoices.tables import DocumentPurpose, ReceiptSeries, SeriesStatus
from invoices.tax.envelope import Shell
from invoices.tax.notice import Notice, NoticeAction, NoticedDocument
from invoices.tax.service import (
    SEND,
    message_for_issue,
    queue_issued,
    queue_notice,
    send_job_needed,
    send_waiting_read,
)
from invoices.validate import validate
from invoices.xml import DRAFT_NUMBER, build_xml, with_number
from invoices.xmldsig import parse_xml
from payments.agency.models import Agency
from payments.auth.access import owned_or_404
from payments.core import requestid
from payments.core.db import table_of
from payments.core.errors import Conflict, ValidationFailed
from payments.core.logging import get_logger
from payments.core.observe import after_commit, observer
from payments.core.sql import Prepared, defer_writes, together
from payments.core.types import new_id, utcnow
from payments.dossier.models import Dossier, DossierFeeLine
from payments.outbox.service import enqueue
from payments.payment.models import Payment, Refund, RefundStatus
from payments.payment.states import PAID
from payments.webhooks.service import emit

log = get_logger(__name__)
GMT7 = timezone(timedelta(hours=7))
METHOD_TEXT = {
    "stripe": "Thẻ",
    "vietqr": "CK",
    "vnpay": "CK",
    "momo": "Ví điện tử",
    "zalopay": "Ví điện tử",
    "sandbox": "CK",
}
CURRENT_PURPOSES = (DocumentPurpose.original, DocumentPurpose.replacement)

# The tables the Core statements below are built on.
_PAYMENT = table_of(Payment)
_DOSSIER = table_of(Dossier)
_LINE = table_of(DossierFeeLine)
_AGENCY = table_of(Agency)
_DOCUMENT = table_of(DocumentRow)
_SERIES = table_of(ReceiptSeries)
# One row per fee line (one with NULL line columns when the dossier has none), each carrying the payment, dossier,
# agency and any original already issued: everything a receipt needs in one round trip. Built once.
# The agency's open series of the receipt template for the issue year comes with it (NULL when there is none yet).
_RECEIPT_FACTS = Prepared(
    sa_select(
        _DOCUMENT.c.id.label("issued_id"),
        _SERIES.c.id.label("series_id"),
        _SERIES.c.series.label("series"),
        _PAYMENT.c.status,
        _PAYMENT.c.gateway,
        _PAYMENT.c.agency_id,
        _DOSSIER.c.code.label("dossier_code"),
        _DOSSIER.c.payer_name,
        _DOSSIER.c.payer_tax_code,
        _DOSSIER.c.payer_address,
        _DOSSIER.c.payer_email,
        _DOSSIER.c.payer_phone,
        _DOSSIER.c.payer_id_number,
        _DOSSIER.c.payer_passport_number,
        _AGENCY.c.code.label("agency_code"),
        _AGENCY.c.name.label("agency_name"),
        _AGENCY.c.tax_code.label("agency_tax_code"),
        _AGENCY.c.address.label("agency_address"),
        _AGENCY.c.bank_account.label("agency_bank_account"),
        _AGENCY.c.bank_name.label("agency_bank_name"),
        _LINE.c.kind,
        _LINE.c.name,
        _LINE.c.quantity,
        _LINE.c.unit_amount,
        _LINE.c.amount,
        _LINE.c.position,
    )
    .select_from(
        _PAYMENT.join(_DOSSIER, _DOSSIER.c.id == _PAYMENT.c.dossier_id)
        .join(_AGENCY, _AGENCY.c.id == _PAYMENT.c.agency_id)
        .outerjoin(
            _DOCUMENT,
            and_(_DOCUMENT.c.payment_id == _PAYMENT.c.id, _DOCUMENT.c.purpose == DocumentPurpose.original.value),
        )
        .outerjoin(
            _SERIES,
            and_(
                _SERIES.c.agency_id == _PAYMENT.c.agency_id,
                _SERIES.c.template == bindparam("template"),
                _SERIES.c.year == bindparam("year"),
                _SERIES.c.status == SeriesStatus.open.value,
            ),
        )
        .outerjoin(_LINE, _LINE.c.dossier_id == _DOSSIER.c.id)
    )
    .where(_PAYMENT.c.id == bindparam("payment_id"))
    .order_by(_LINE.c.position)
)
_INSERT_DOCUMENT = Prepared(insert(_DOCUMENT))


def issue_receipt(
    ctx: ReceiptContext, signers: SignerStore, payment_id: str, now: datetime | None = None
) -> str | None:
    """Issue the payment's e-receipt if it has none; returns the document id (None if the payment is not paid).

    One write transaction: one joined SELECT reads the payment, its dossier and fee lines, its agency and any
    original already issued; then the number, the signed document, its event and its outbox jobs are written with
    Core statements and committed together."""
    now = now or datetime.now(UTC)
    key = {"payment_id": payment_id, "template": receipt_template(), "year": now.astimezone(GMT7).year}
    try:
        with ctx.db.write() as s:
            rows = _RECEIPT_FACTS(s, key).all()
            wanted = _wanted(payment_id, rows)
            if wanted is None:
                return _issued_id(rows)
            issued = _issue(
                s, ctx, signers, wanted.facts, wanted.content, DocumentPurpose.original, now, series=wanted.series
            )
            return issued.id
    except IntegrityError:
        # Another worker issued it first (PostgreSQL); its document stands and our number went back with the rollback.
        with ctx.db.read() as s:
            return _original(s, payment_id)


def issue_receipts(
    ctx: ReceiptContext,
    signers: SignerStore,
    payment_ids: Sequence[str],
    now: datetime | None = None,
    request_ids: Sequence[object] | None = None,
) -> list[str | None]:
    """The e-receipts of several payments in one transaction: what ``issue_receipt`` does for each, with the facts
    read in one round trip, each series' numbers taken together (its counter row locked once), and one commit.
    Returns each payment's document id, as ``issue_receipt`` would.

    All or nothing: should one document fail (its data, its signature, another worker issuing it first), the
    error is raised, nothing is stored and the numbers go back, so that the caller can issue them one by one and
    learn which one failed. ``request_ids``: the request each receipt was asked for by, carried by its event."""
    now = now or datetime.now(UTC)
    issue_date = now.astimezone(GMT7).date()
    template = receipt_template()
    ids = list(payment_ids)
    if len(set(ids)) != len(ids):
        raise ValueError("a payment is asked for twice")
    asked = dict(zip(ids, request_ids, strict=True)) if request_ids is not None else None
    results: dict[str, str | None] = {}
    with ctx.db.write() as s:
        key = {"template": template, "year": issue_date.year}
        found = together(s, [(_RECEIPT_FACTS, {**key, "payment_id": payment_id}) for payment_id in ids])
        by_series: dict[tuple[str, str], tuple[OpenSeries, list[_Draft]]] = {}
        for payment_id, rows in zip(ids, found, strict=True):
            lines = rows.all()
            wanted = _wanted(payment_id, lines)
            if wanted is None:
                results[payment_id] = _issued_id(lines)
                continue
            agency_id = wanted.facts.agency_id
            in_use = wanted.series or open_series(s, ctx.settings, agency_id, template, issue_date.year)
            _, drafts = by_series.setdefault((agency_id, in_use.series), (in_use, []))
            drafts.append(
                _draft(ctx, wanted.facts, wanted.content, DocumentPurpose.original, issue_date, in_use.series)
            )
        # Counter rows are locked in one order by every worker, so that two batches never wait for each other.
        for _key, (in_use, drafts) in sorted(by_series.items()):
            rids = [asked[d.facts.payment_id] for d in drafts] if asked is not None else None
            for doc in _number_sign_store(s, ctx, signers, in_use, issue_date.year, drafts, rids):
                results[doc.payment_id] = doc.id
    return [results[payment_id] for payment_id in ids]


@dataclass(frozen=True)
class _Wanted:
    """A paid payment without a receipt, and what its receipt will say."""

    facts: _Facts
    content: _Content
    series: OpenSeries | None  # the agency's open series of the year, if it has one yet


def _issued_id(rows: Sequence[Any]) -> str | None:
    """The original already issued, as ``_RECEIPT_FACTS`` found it."""
    return str(rows[0].issued_id) if rows and rows[0].issued_id is not None else None


def _wanted(payment_id: str, rows: Sequence[Any]) -> _Wanted | None:
    """What ``_RECEIPT_FACTS`` found, as the receipt to issue; None when there is none to issue (no such payment,
    not paid, or already issued)."""
    if not rows:
        return None
    first = rows[0]
    if first.issued_id is not None or first.status not in PAID:
        return None
    lines = cast("list[LineFacts]", [row for row in rows if row.position is not None])
    fees, services = lines_from_dossier(lines)
    facts = _Facts(
        payment_id=payment_id,
        gateway=first.gateway,
        dossier_code=first.dossier_code,
        agency_id=first.agency_id,
        agency_code=first.agency_code,
        seller=Seller.from_agency(
            _Agency(
                first.agency_name,
                first.agency_tax_code,
                first.agency_address,
                first.agency_bank_account,
                first.agency_bank_name,
            )
        ),
    )
    content = _Content(Buyer.from_dossier(cast("PayerFacts", first)), fees, services)
    series = OpenSeries(first.series_id, first.series) if first.series_id is not None else None
    return _Wanted(facts, content, series)


def issue_adjustment(
    ctx: ReceiptContext, signers: SignerStore, refund_id: str, now: datetime | None = None
) -> str | None:
    """Issue the adjustment document (TCHDon 2, negative amounts) that records a succeeded refund."""
    try:
        with ctx.db.write() as s:
            existing = s.exec(select(DocumentRow.id).where(DocumentRow.refund_id == refund_id)).first()
            if existing is not None:
                return existing
            refund = s.get(Refund, refund_id)
            if refund is None or refund.status is not RefundStatus.succeeded:
                return None
            payment = s.get(Payment, refund.payment_id)
            assert payment is not None
            current = current_document(s, payment.id)
            if current is None:
                raise OriginalNotIssued(f"payment {payment.id} has no receipt yet to adjust")
            earlier = s.exec(
                select(DocumentRow.total).where(
                    DocumentRow.payment_id == payment.id, DocumentRow.purpose == DocumentPurpose.adjustment
                )
            ).all()
            fees, services = _dossier_lines(s, payment.dossier_id)
            fees, services = decreased_lines(fees, services, already=-sum(earlier), amount=refund.amount)
            content = _Content(
                _buyer_of(current.xml),
                fees,
                services,
                related=current,
                reason=f"Điều chỉnh giảm do hoàn tiền {refund.id}",
            )
            issued = _issue(
                s,
                ctx,
                signers,
                _facts_of(s, payment),
                content,
                DocumentPurpose.adjustment,
                now or datetime.now(UTC),
                refund_id=refund.id,
                created_by=refund.created_by,
            )
            return issued.id
    except IntegrityError:
        with ctx.db.read() as s:
            return s.exec(select(DocumentRow.id).where(DocumentRow.refund_id == refund_id)).first()


@dataclass(frozen=True)
class BuyerChanges:
    """What a replacement corrects: the payer's details. Amounts come from the dossier and cannot change here."""

    name: str | None = None
    tax_code: str | None = None
    address: str | None = None
    email: str | None = None
    phone: str | None = None


def replace_document(
    s: Session,
    ctx: ReceiptContext,
    signers: SignerStore,
    agency_id: str,
    document_id: str,
    changes: BuyerChanges,
    reason: str,
    actor: str,
    now: datetime | None = None,
) -> DocumentRow:
    """Issue a replacement (TCHDon 1) of the payment's current document, in the caller's transaction."""
    replaced = owned_or_404(s.get(DocumentRow, document_id), agency_id, "receipt", document_id)
    if replaced.purpose is DocumentPurpose.adjustment:
        raise Conflict("an adjustment document is not replaced; issue a replacement of the receipt it adjusts")
    current = current_document(s, replaced.payment_id)
    if current is None or current.id != replaced.id:
        raise DocumentReplaced(f"receipt {document_id} has been replaced by {current.id if current else '?'}")
    adjusted = s.exec(
        select(DocumentRow.id).where(
            DocumentRow.payment_id == replaced.payment_id, DocumentRow.purpose == DocumentPurpose.adjustment
        )
    ).first()
    if adjusted is not None:
        raise DocumentAdjusted(f"receipt {document_id} has adjustments; a replacement would not carry them")
    payment = s.get(Payment, replaced.payment_id)
    assert payment is not None
    old = _buyer_of(replaced.xml)
    updates = {k: v for k, v in vars(changes).items() if v is not None}
    try:
        buyer = Buyer.model_validate({**old.model_dump(), **updates})
    except PydanticValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        raise ValidationFailed(f"the corrected payer details are not valid: {problems}") from None
    fees, services = _dossier_lines(s, payment.dossier_id)
    content = _Content(buyer, fees, services, related=replaced, reason=reason)
    issued = _issue(
        s,
        ctx,
        signers,
        _facts_of(s, payment),
        content,
        DocumentPurpose.replacement,
        now or datetime.now(UTC),
        created_by=actor,
    )
    _notify_tax_office(s, ctx, signers, replaced, reason, issued.issue_date)
    row = s.get(DocumentRow, issued.id)
    assert row is not None  # written above, in this transaction
    return row


def _notify_tax_office(
    s: Session, ctx: ReceiptContext, signers: SignerStore, replaced: DocumentRow, reason: str, on: date
) -> None:
    """The 04/SS-HĐĐT notice that a document was replaced (TCTBao 3), signed and queued with the replacement."""
    settings = ctx.settings
    if not settings.tax_transmission:
        return
    if not settings.tax_office_code:
        log.warning("tax.notice_not_queued", document_id=replaced.id, why="LEPHI_TAX_OFFICE_CODE is not set")
        return
    agency = s.get(Agency, replaced.agency_id)
    assert agency is not None
    notice = Notice(
        tax_office_code=settings.tax_office_code,
        tax_office_name=settings.tax_office_name,
        taxpayer_name=agency.name,
        tax_code=agency.tax_code,
        place=settings.effective_notice_place,
        notice_date=on,
        documents=(NoticedDocument.from_document(replaced, 1, NoticeAction.replace, reason),),
    )
    queue_notice(
        s, settings, signers.for_agency(agency.code, agency.tax_code, agency.name), agency, notice, about=replaced.id
    )
    if send_job_needed(s.connection()):
        enqueue(s, SEND, {})


@dataclass(frozen=True)
class _Content:
    buyer: Buyer
    fees: tuple[FeeLine, ...]
    services: tuple[ServiceLine, ...]
    related: DocumentRow | None = None
    reason: str | None = None


def _original(s: Session, payment_id: str) -> str | None:
    return s.exec(
        select(DocumentRow.id).where(
            DocumentRow.payment_id == payment_id, DocumentRow.purpose == DocumentPurpose.original
        )
    ).first()


def current_document(s: Session, payment_id: str) -> DocumentRow | None:
    """The document in force for a payment: the original, or the last replacement in its chain."""
    rows = s.exec(
        select(DocumentRow)
        .where(DocumentRow.payment_id == payment_id, col(DocumentRow.purpose).in_(CURRENT_PURPOSES))
        .order_by(col(DocumentRow.created_at), col(DocumentRow.year), col(DocumentRow.number))
    ).all()
    replaced = {row.related_document_id for row in rows if row.purpose is DocumentPurpose.replacement}
    live = [row for row in rows if row.id not in replaced]
    return live[-1] if live else None


def _dossier_lines(s: Session, dossier_id: str) -> tuple[tuple[FeeLine, ...], tuple[ServiceLine, ...]]:
    lines = s.exec(
        select(DossierFeeLine).where(DossierFeeLine.dossier_id == dossier_id).order_by(col(DossierFeeLine.position))
    ).all()
    return lines_from_dossier(lines)


def decreased_lines(
    fees: Sequence[FeeLine], services: Sequence[ServiceLine], *, already: int, amount: int
) -> tuple[tuple[FeeLine, ...], tuple[ServiceLine, ...]]:
    """The negative lines of a refund of ``amount`` after ``already`` đồng were refunded: the refunded range is laid
    over the original lines in order (fees, then services), so successive partial refunds never take more from a
    line than it held and their adjustments add up to the refunds."""
    start, end = already, already + amount
    out_fees: list[FeeLine] = []
    out_services: list[ServiceLine] = []
    offset = 0
    lines: list[FeeLine | ServiceLine] = [*fees, *services]
    for line in lines:
        low, high = offset, offset + line.amount
        offset = high
        part = max(0, min(end, high) - max(start, low))
        if part == 0:
            continue
        if isinstance(line, FeeLine):
            out_fees.append(FeeLine(name=line.name, amount=-part))
        else:
            out_services.append(
                ServiceLine(
                    line_no=len(out_services) + 1,
                    name=line.name,
                    unit=line.unit,
                    quantity=Decimal(1),
                    unit_price=-part,
                    amount=-part,
                    vat_code=line.vat_code,
                )
            )
    if -sum(f.amount for f in out_fees) - sum(s.amount for s in out_services) != amount:
        raise ValueError(f"a refund of {amount} VND after {already} VND exceeds the document's lines")
    return tuple(out_fees), tuple(out_services)


def _buyer_of(xml: bytes) -> Buyer:
    """The payer as the signed document names them, so a correction repeats what the original said."""
    buyer = parse_xml(xml).find("DLHDon/NDHDon/NMua")

    def text(tag: str) -> str | None:
        node = buyer.find(tag) if buyer is not None else None
        return node.text if node is not None and node.text else None

    return Buyer(
        name=text("Ten") or "",
        tax_code=text("MST"),
        address=text("DChi"),
        id_number=text("CCCDan"),
        passport_number=text("SHChieu"),
        email=text("DCTDTu"),
        phone=text("SDThoai"),
    )


class _Agency(NamedTuple):
    name: str
    tax_code: str
    address: str
    bank_account: str
    bank_name: str


@dataclass(frozen=True)
class _Facts:
    """What a document needs to know of its payment, dossier and agency."""

    payment_id: str
    gateway: str
    dossier_code: str
    agency_id: str
    agency_code: str
    seller: Seller


def _facts_of(s: Session, payment: Payment) -> _Facts:
    agency = s.get(Agency, payment.agency_id)
    dossier = s.get(Dossier, payment.dossier_id)
    assert agency is not None and dossier is not None
    return _Facts(payment.id, payment.gateway, dossier.code, agency.id, agency.code, Seller.from_agency(agency))


@dataclass(frozen=True)
class IssuedDocument:
    """A document row as written: what the event and the callers need, without loading the row back."""

    id: str
    agency_id: str
    payment_id: str
    purpose: DocumentPurpose
    template: str
    series: str
    year: int
    number: int
    issue_date: date
    total: int
    lookup_code: str
    xml: bytes
    related_document_id: str | None
    refund_id: str | None
    reason: str | None
    created_by: str | None
    created_at: datetime
    buyer_name: str | None = None
    buyer_tax_code: str | None = None


def _issue(
    s: Session,
    ctx: ReceiptContext,
    signers: SignerStore,
    facts: _Facts,
    content: _Content,
    purpose: DocumentPurpose,
    now: datetime,
    *,
    refund_id: str | None = None,
    created_by: str | None = None,
    series: OpenSeries | None = None,
) -> IssuedDocument:
    issue_date = now.astimezone(GMT7).date()
    template = receipt_template()
    in_use = series or open_series(s, ctx.settings, facts.agency_id, template, issue_date.year)
    draft = _draft(ctx, facts, content, purpose, issue_date, in_use.series, refund_id=refund_id, created_by=created_by)
    return _number_sign_store(s, ctx, signers, in_use, issue_date.year, [draft])[0]


@dataclass(frozen=True)
class _Draft:
    """A document built and checked with a placeholder number, and the tax message's envelope that will carry it:
    everything but the number, made before the series' counter row is locked."""

    facts: _Facts
    purpose: DocumentPurpose
    document: Document
    xml: bytes
    message: Shell | None
    related_document_id: str | None
    refund_id: str | None
    reason: str | None
    created_by: str | None


def _draft(
    ctx: ReceiptContext,
    facts: _Facts,
    content: _Content,
    purpose: DocumentPurpose,
    issue_date: date,
    series_symbol: str,
    *,
    refund_id: str | None = None,
    created_by: str | None = None,
) -> _Draft:
    related = None
    if content.related is not None:
        kind = CorrectionKind.adjustment if purpose is DocumentPurpose.adjustment else CorrectionKind.replacement
        related = Related(
            kind=kind,
            template=content.related.template,
            series=content.related.series,
            number=content.related.number,
            issue_date=content.related.issue_date,
            note=content.reason or "",
        )
    document = Document(
        kind=DocumentKind.receipt,
        template=receipt_template(),
        series=series_symbol,
        number=DRAFT_NUMBER,
        issue_date=issue_date,
        dossier_code=facts.dossier_code,
        payment_method=METHOD_TEXT.get(facts.gateway, "CK"),
        provider_tax_code=ctx.settings.effective_provider_tax_code,
        seller=facts.seller,
        buyer=content.buyer,
        fee_lines=content.fees,
        service_lines=content.services,
        related=related,
        document_id="DLHDon",
    )
    xml = build_xml(document)
    validate(xml)  # never sign a document the format would reject (any number 1-99999999 is as valid)
    transmitted = ctx.settings.tax_transmission
    return _Draft(
        facts=facts,
        purpose=purpose,
        document=document,
        xml=xml,
        message=message_for_issue(ctx.settings, facts.seller.tax_code, series_symbol) if transmitted else None,
        related_document_id=content.related.id if content.related is not None else None,
        refund_id=refund_id,
        reason=content.reason,
        created_by=created_by,
    )


def _number_sign_store(
    s: Session,
    ctx: ReceiptContext,
    signers: SignerStore,
    in_use: OpenSeries,
    year: int,
    drafts: Sequence[_Draft],
    request_ids: Sequence[object] | None = None,
) -> list[IssuedDocument]:
    """Number the drafts of one series consecutively, sign them, and write them with their tax messages, events and
    jobs. The counter row stays locked from the number to the commit, so only the signatures and the writes are
    done while other workers wait for it."""
    conn = s.connection()
    postgres = ctx.db.dialect == "postgresql"
    template = drafts[0].document.template
    transmitted = any(d.message is not None for d in drafts)
    # The reads that must follow the number go with it, in one round trip: the counter row stays locked from here.
    # On PostgreSQL the series is read again: a close may have committed while we waited for the counter row.
    reads = ([send_waiting_read()] if transmitted else []) + ([status_read(in_use)] if postgres else [])
    agency_id = drafts[0].facts.agency_id
    first, found = take_numbers_then(s, agency_id, template, in_use.series, year, len(drafts), reads)
    if postgres:
        confirm_open(conn, in_use, found[-1])
    send_job = transmitted and send_job_needed(conn, found[0])
    issued = [_signed(signers, draft, in_use, year, first + i) for i, draft in enumerate(drafts)]
    # What is left reads nothing back: on PostgreSQL it goes to the server with the COMMIT, one round trip while
    # the counter row is locked instead of one a statement.
    defer_writes(conn)
    for i, (draft, doc) in enumerate(zip(drafts, issued, strict=True)):
        # Each document's event and jobs carry the request id of the job that asked for it.
        with requestid.bound(request_ids[i]) if request_ids is not None else nullcontext():
            _store(s, ctx, draft, doc, send_job=send_job and i == 0)
    return issued


def _signed(signers: SignerStore, draft: _Draft, in_use: OpenSeries, year: int, number: int) -> IssuedDocument:
    seller = draft.facts.seller
    # A replacement may correct the payer: the row says whom it names. Other documents name the dossier's payer.
    corrected = draft.document.buyer if draft.purpose is DocumentPurpose.replacement else None
    signed = signers.for_agency(draft.facts.agency_code, seller.tax_code, seller.name).sign(
        with_number(draft.xml, number)
    )
    return IssuedDocument(
        id=new_id("doc"),
        agency_id=draft.facts.agency_id,
        payment_id=draft.facts.payment_id,
        purpose=draft.purpose,
        template=draft.document.template,
        series=in_use.series,
        year=year,
        number=number,
        issue_date=draft.document.issue_date,
        total=draft.document.total_payable,
        lookup_code=_lookup_code(),
        xml=signed,
        related_document_id=draft.related_document_id,
        refund_id=draft.refund_id,
        reason=draft.reason,
        created_by=draft.created_by,
        created_at=utcnow(),
        buyer_name=corrected.name if corrected is not None else None,
        buyer_tax_code=corrected.tax_code if corrected is not None else None,
    )


def _store(s: Session, ctx: ReceiptContext, draft: _Draft, issued: IssuedDocument, *, send_job: bool) -> None:
    conn = s.connection()
    _INSERT_DOCUMENT.write(conn, dict(vars(issued)))  # asdict() would deep-copy the signed XML
    jobs: list[tuple[str, dict[str, Any]]] = []
    if draft.message is not None:
        # The tax authority gets every document, in the transaction that issues it; the worker hands it over.
        queue_issued(conn, draft.message, issued.agency_id, issued.id, issued.xml)
        if send_job:
            jobs.append((SEND, {}))
    # Written with the document, so the client systems hear of every document and of no document that rolled back.
    emit(s, issued.agency_id, "receipt.issued", receipt_event(ctx, issued, draft.facts.dossier_code), also=jobs)
    purpose = issued.purpose.value
    after_commit(s, lambda: observer().receipt_issued(purpose))
    log.info(
        "receipt.issued",
        document_id=issued.id,
        purpose=purpose,
        payment_id=issued.payment_id,
        series=issued.series,
        number=issued.number,
    )


def receipt_event(ctx: ReceiptContext, row: IssuedDocument | DocumentRow, dossier_code: str) -> dict[str, object]:
    return {
        "id": row.id,
        "payment_id": row.payment_id,
        "dossier_code": dossier_code,
        "purpose": row.purpose.value,
        "symbol": f"{row.template}{row.series}",
        "number": row.number,
        "issue_date": row.issue_date.isoformat(),
        "total": row.total,
        "related_document_id": row.related_document_id,
        "refund_id": row.refund_id,
        "lookup_code": row.lookup_code,
        "lookup_url": lookup_url(ctx, row.lookup_code),
        "xml_url": f"/v1/receipts/{row.id}.xml",
    }


def lookup_url(ctx: ReceiptContext, code: str) -> str:
    return f"{ctx.settings.public_url.rstrip('/')}/r/{code}"


def _lookup_code() -> str:
    """The code a payer types to look the receipt up: unguessable, short, without look-alike characters."""
    alphabet = "23456789ABCDEFGHJKMNPQRSTUVWXYZ"
    return "".join(secrets.choice(alphabet) for _ in range(12))
