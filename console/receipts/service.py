"""The receipts pages' logic: the search over issued documents, one document with its chain and its messages to the
tax authority, and a replacement asked for by staff.

A replacement goes through ``invoices.service.replace_document``, the function the API's replace route calls, so the
rules are the same on both (one replacement per document, never an adjustment or a replaced one, the payer details
the format accepts), and the audit row is written in the transaction that issues it."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

from sqlalchemy import and_, case, func, or_
from sqlalchemy import select as select_columns
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from console import roles
from console.audit.service import record
from console.staff.models import Role, StaffUser
from invoices.context import ReceiptContext
from invoices.errors import DocumentAdjusted, DocumentReplaced, InvalidDocument, InvoiceError
from invoices.render import ReceiptView, receipt_view
from invoices.service import BuyerChanges, replace_document
from invoices.tables import Document, DocumentPurpose
from invoices.tax.envelope import documents_in
from invoices.tax.tables import TaxMessage, TaxMessageKind, TaxMessageStatus
from invoices.xmldsig import parse_xml
from payments.agency.models import Agency
from payments.core.errors import Conflict, NotFound, ValidationFailed
from payments.core.pagination import decode_cursor, encode_cursor
from payments.dossier.models import Dossier
from payments.payment.models import Payment

PAGE_SIZE = 50
MAX_ID = 40
MIN_YEAR, MAX_YEAR = 1970, 9998
MAX_REASON = 255
_DAY = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
# "1K26TLP-00000042", "K26TLP-42", "00000042" or "42": staff copy the number as printed or type its digits.
_NUMBER = re.compile(r"(?:(?P<template>[1-9])?(?P<series>[CK][0-9]{2}[A-Z]{3})-)?(?P<number>[0-9]{1,8})")
_SERIES = re.compile(r"(?P<template>[1-9])?(?P<series>[CK][0-9]{2}[A-Z]{3})")
NONE = "none"  # the transmission filter's value for a document no message carries
TRANSMISSIONS = [NONE, *(s.value for s in TaxMessageStatus)]
ACCEPTED = frozenset({TaxMessageStatus.acknowledged, TaxMessageStatus.coded})
LIMITS = {"number": 24, "series": 8, "dossier": 21, "payer": 400, "from": 10, "to": 10, "kind": 20}
LIMITS |= {"transmission": 20, "before": 200, "after": 200}
# The payer fields a replacement may correct, as the form names them.
PAYER_FIELDS = ("name", "tax_code", "address", "email", "phone")
MAKERS = roles.RECEIPT_REPLACERS


class BadFilter(Exception):
    """A filter value our form cannot have sent."""


class NotHere(Exception):
    """An unknown document, or one of an agency the user may not see: both answer the same 404 page."""


@dataclass(frozen=True)
class Filters:
    template: str = ""
    series: str = ""
    number: int | None = None
    dossier: str = ""
    payer: str = ""
    since: date | None = None
    until: date | None = None
    kind: DocumentPurpose | None = None
    transmission: str = ""
    number_text: str = ""
    series_text: str = ""

    def query(self) -> dict[str, str]:
        """The filters as query parameters again, for the links that keep them."""
        values = {
            "number": self.number_text,
            "series": self.series_text,
            "dossier": self.dossier,
            "payer": self.payer,
            "from": self.since.isoformat() if self.since else "",
            "to": self.until.isoformat() if self.until else "",
            "kind": self.kind.value if self.kind else "",
            "transmission": self.transmission,
        }
        return {k: v for k, v in values.items() if v}


@dataclass(frozen=True)
class Cursor:
    before: tuple[datetime, str] | None = None
    after: tuple[datetime, str] | None = None


def _text(q: Mapping[str, str], name: str) -> str:
    value = q.get(name, "").strip()
    if len(value) > LIMITS[name] or any(ord(c) < 32 or ord(c) == 127 or c == "\ufffd" for c in value):
        raise BadFilter
    return value


def _day(q: Mapping[str, str], name: str) -> date | None:
    value = _text(q, name)
    if not value:
        return None
    if not _DAY.fullmatch(value):
        raise BadFilter
    try:
        day = date.fromisoformat(value)
    except ValueError as exc:
        raise BadFilter from exc
    if not MIN_YEAR <= day.year <= MAX_YEAR:
        raise BadFilter
    return day


def parse_filters(q: Mapping[str, str]) -> Filters:
    number_text = _text(q, "number").upper()
    template = series = ""
    number = None
    if number_text:
        match = _NUMBER.fullmatch(number_text)
        if match is None:
            raise BadFilter
        template, series = match["template"] or "", match["series"] or ""
        number = int(match["number"])
    series_text = _text(q, "series").upper()
    if series_text:
        match = _SERIES.fullmatch(series_text)
        if match is None or (series and match["series"] != series):
            raise BadFilter
        template, series = match["template"] or template, match["series"]
    dossier = _text(q, "dossier")
    if "*" in dossier.rstrip("*") or dossier.count("*") > 1:
        raise BadFilter
    kind = _text(q, "kind")
    if kind and kind not in DocumentPurpose.__members__:
        raise BadFilter
    transmission = _text(q, "transmission")
    if transmission and transmission not in TRANSMISSIONS:
        raise BadFilter
    return Filters(
        template=template,
        series=series,
        number=number,
        dossier=dossier,
        payer=_text(q, "payer"),
        since=_day(q, "from"),
        until=_day(q, "to"),
        kind=DocumentPurpose(kind) if kind else None,
        transmission=transmission,
        number_text=number_text,
        series_text=series_text,
    )


def parse_cursor(q: Mapping[str, str]) -> Cursor:
    before, after = _text(q, "before"), _text(q, "after")
    if before and after:
        raise BadFilter
    try:
        return Cursor(
            before=decode_cursor(before) if before else None,
            after=decode_cursor(after) if after else None,
        )
    except ValidationFailed as exc:
        raise BadFilter from exc


def _latest_status() -> Any:
    """The status of the newest message carrying the document (NULL when none does), for the row being read."""
    return (
        select_columns(col(TaxMessage.status))
        .where(col(TaxMessage.document_id) == col(Document.id), col(TaxMessage.kind) == TaxMessageKind.document)
        .order_by(col(TaxMessage.created_at).desc(), col(TaxMessage.id).desc())
        .limit(1)
        .correlate(Document)
        .scalar_subquery()
    )


def _payer_name() -> Any:
    """The payer the document names: a replacement's correction, else the dossier's."""
    return func.coalesce(col(Document.buyer_name), col(Dossier.payer_name))


def _payer_tax_code() -> Any:
    return case(
        (col(Document.buyer_name).is_not(None), col(Document.buyer_tax_code)), else_=col(Dossier.payer_tax_code)
    )


def conditions(flt: Filters, agency_id: str | None) -> list[Any]:
    """The WHERE clauses of a search, over ``document`` joined to its payment's ``dossier``."""
    where: list[Any] = []
    if agency_id is not None:
        where.append(col(Document.agency_id) == agency_id)
    if flt.template:
        where.append(col(Document.template) == flt.template)
    if flt.series:
        where.append(col(Document.series) == flt.series)
    if flt.number is not None:
        where.append(col(Document.number) == flt.number)
    if flt.dossier.endswith("*"):
        where.append(col(Dossier.code).startswith(flt.dossier[:-1], autoescape=True))
    elif flt.dossier:
        where.append(col(Dossier.code) == flt.dossier)
    if flt.payer:
        where.append(
            or_(
                _payer_name().icontains(flt.payer, autoescape=True),
                _payer_tax_code().icontains(flt.payer, autoescape=True),
            )
        )
    # The issue date is already Vietnam's calendar day (NLap).
    if flt.since:
        where.append(col(Document.issue_date) >= flt.since)
    if flt.until:
        where.append(col(Document.issue_date) <= flt.until)
    if flt.kind:
        where.append(col(Document.purpose) == flt.kind)
    if flt.transmission == NONE:
        where.append(_latest_status().is_(None))
    elif flt.transmission:
        where.append(_latest_status() == TaxMessageStatus(flt.transmission))
    return where


@dataclass(frozen=True)
class Row:
    id: str
    created_at: datetime
    agency_code: str
    purpose: DocumentPurpose
    template: str
    series: str
    number: int
    issue_date: date
    total: int
    dossier_code: str
    payer_name: str
    transmission: TaxMessageStatus | None

    @property
    def symbol(self) -> str:
        return f"{self.template}{self.series}"


@dataclass(frozen=True)
class Found:
    rows: list[Row]
    count: int
    newer: str | None
    older: str | None


def _select() -> Any:
    return (
        select_columns(
            col(Document.id),
            col(Document.created_at),
            col(Agency.code),
            col(Document.purpose),
            col(Document.template),
            col(Document.series),
            col(Document.number),
            col(Document.issue_date),
            col(Document.total),
            col(Dossier.code),
            _payer_name(),
            _latest_status(),
        )
        .select_from(Document)
        .join(Payment, col(Payment.id) == col(Document.payment_id))
        .join(Dossier, col(Dossier.id) == col(Payment.dossier_id))
        .join(Agency, col(Agency.id) == col(Document.agency_id))
    )


def _row(values: Any) -> Row:
    doc_id, created, agency, purpose, template, series, number, issued, total, dossier, payer, status = values
    return Row(
        id=doc_id,
        created_at=created,
        agency_code=agency,
        purpose=DocumentPurpose(purpose),
        template=template,
        series=series,
        number=number,
        issue_date=issued,
        total=total,
        dossier_code=dossier,
        payer_name=payer,
        transmission=TaxMessageStatus(status) if status else None,
    )


def search(s: Session, flt: Filters, agency_id: str | None, cursor: Cursor) -> Found:
    """One page of matches, newest first, and the number of all matches."""
    where = conditions(flt, agency_id)
    count = s.exec(
        select(func.count())
        .select_from(Document)
        .join(Payment, col(Payment.id) == col(Document.payment_id))
        .join(Dossier, col(Dossier.id) == col(Payment.dossier_id))
        .where(*where)
    ).one()
    created, did = col(Document.created_at), col(Document.id)
    query = _select().where(*where)
    if cursor.after is not None:
        at, row_id = cursor.after
        query = query.where(or_(created > at, and_(created == at, did > row_id)))
        rows = [_row(r) for r in s.execute(query.order_by(created.asc(), did.asc()).limit(PAGE_SIZE + 1)).all()]
        more_newer = len(rows) > PAGE_SIZE
        rows = list(reversed(rows[:PAGE_SIZE]))
        more_older = True
    else:
        if cursor.before is not None:
            at, row_id = cursor.before
            query = query.where(or_(created < at, and_(created == at, did < row_id)))
        rows = [_row(r) for r in s.execute(query.order_by(created.desc(), did.desc()).limit(PAGE_SIZE + 1)).all()]
        more_older = len(rows) > PAGE_SIZE
        rows = rows[:PAGE_SIZE]
        more_newer = cursor.before is not None
    newer = encode_cursor(rows[0].created_at, rows[0].id) if rows and more_newer else None
    older = encode_cursor(rows[-1].created_at, rows[-1].id) if rows and more_older else None
    return Found(rows, int(count), newer, older)


# --- One document -----------------------------------------------------------------------------------------------


def _id_ok(value: str) -> bool:
    return 0 < len(value) <= MAX_ID and all(c.isascii() and (c.isalnum() or c == "_") for c in value)


def get_document(s: Session, user: StaffUser, document_id: str) -> Document:
    """The document, if the user may see its agency; a province admin sees every agency's."""
    if not _id_ok(document_id):
        raise NotHere
    doc = s.get(Document, document_id)
    if doc is None or (user.role != Role.province_admin and doc.agency_id != user.agency_id):
        raise NotHere
    return doc


@dataclass(frozen=True)
class Notice:
    """A 04/SS-HĐĐT notice queued about a document, and the signed TBao it carries."""

    message: TaxMessage
    action: str  # TCTBao
    reason: str


@dataclass(frozen=True)
class Detail:
    doc: Document
    agency: Agency
    payment: Payment
    dossier_code: str
    view: ReceiptView | None  # None only for a stored document this service could not read back (never expected)
    replaces: Document | None
    replaced_by: Document | None
    adjusts: Document | None
    adjustments: list[Document]
    messages: list[TaxMessage]
    notice: Notice | None
    payment_adjusted: bool  # a refund's adjustment exists for the payment: no document of it is replaced any more

    @property
    def status(self) -> TaxMessageStatus | None:
        return self.messages[-1].status if self.messages else None

    @property
    def accepted(self) -> bool:
        return self.status in ACCEPTED

    @property
    def replaceable(self) -> bool:
        purpose = self.doc.purpose
        return purpose is not DocumentPurpose.adjustment and self.replaced_by is None and not self.payment_adjusted


def _notice_about(s: Session, doc: Document, around: datetime) -> Notice | None:
    """The notice that a replacement of ``doc`` was issued, queued in the replacement's transaction. Notices carry
    the replaced document's id; ones queued before they did are found by what they say: the document's symbol,
    number and date, among the agency's notices of that hour."""
    linked = s.exec(
        select(TaxMessage)
        .where(col(TaxMessage.document_id) == doc.id, col(TaxMessage.kind) == TaxMessageKind.notice)
        .order_by(col(TaxMessage.created_at).desc())
    ).first()
    messages = (
        [linked]
        if linked is not None
        else s.exec(
            select(TaxMessage)
            .where(
                col(TaxMessage.agency_id) == doc.agency_id,
                col(TaxMessage.kind) == TaxMessageKind.notice,
                col(TaxMessage.created_at) >= around - timedelta(hours=1),
                col(TaxMessage.created_at) <= around + timedelta(hours=1),
                col(TaxMessage.document_id).is_(None),
            )
            .order_by(col(TaxMessage.created_at))
        ).all()
    )
    for message in messages:
        try:
            (tbao,) = documents_in(message.xml)
            root = parse_xml(tbao)
        except (ValueError, InvoiceError):
            continue
        for item in root.iterfind("DLTBao/DSHDon/HDon"):
            if (
                item.findtext("KHMSHDon") == doc.template
                and item.findtext("KHHDon") == doc.series
                and item.findtext("SHDon") == str(doc.number)
                and item.findtext("Ngay") == doc.issue_date.isoformat()
            ):
                return Notice(message, item.findtext("TCTBao") or "", item.findtext("LDo") or "")
    return None


def notice_bytes(message: TaxMessage) -> bytes:
    """The signed TBao a notice message carries, as it was signed."""
    (tbao,) = documents_in(message.xml)
    return tbao


def detail(s: Session, user: StaffUser, document_id: str) -> Detail:
    doc = get_document(s, user, document_id)
    agency = s.get(Agency, doc.agency_id)
    payment = s.get(Payment, doc.payment_id)
    if agency is None or payment is None:
        raise NotHere
    dossier = s.get(Dossier, payment.dossier_id)
    related = s.get(Document, doc.related_document_id) if doc.related_document_id else None
    replaced_by = s.exec(
        select(Document).where(
            col(Document.related_document_id) == doc.id, col(Document.purpose) == DocumentPurpose.replacement
        )
    ).first()
    adjustments = s.exec(
        select(Document)
        .where(col(Document.related_document_id) == doc.id, col(Document.purpose) == DocumentPurpose.adjustment)
        .order_by(col(Document.created_at), col(Document.number))
    ).all()
    payment_adjusted = s.exec(
        select(Document.id).where(
            col(Document.payment_id) == doc.payment_id, col(Document.purpose) == DocumentPurpose.adjustment
        )
    ).first()
    messages = s.exec(
        select(TaxMessage)
        .where(col(TaxMessage.document_id) == doc.id, col(TaxMessage.kind) == TaxMessageKind.document)
        .order_by(col(TaxMessage.created_at), col(TaxMessage.id))
    ).all()
    notice = None
    if doc.purpose is DocumentPurpose.replacement and related is not None:
        notice = _notice_about(s, related, doc.created_at)
    elif replaced_by is not None:
        notice = _notice_about(s, doc, replaced_by.created_at)
    try:
        view = receipt_view(doc.xml)
    except InvalidDocument:
        view = None
    purpose = doc.purpose
    return Detail(
        doc=doc,
        agency=agency,
        payment=payment,
        dossier_code=dossier.code if dossier else "",
        view=view,
        replaces=related if purpose is DocumentPurpose.replacement else None,
        replaced_by=replaced_by,
        adjusts=related if purpose is DocumentPurpose.adjustment else None,
        adjustments=list(adjustments),
        messages=list(messages),
        notice=notice,
        payment_adjusted=payment_adjusted is not None,
    )


# --- Replacement ------------------------------------------------------------------------------------------------


class Refused(Exception):
    """A replacement that cannot be issued: ``key`` names the text that says why; nothing was written."""

    def __init__(self, key: str, status: int = 400, detail: str = "") -> None:
        super().__init__(key)
        self.key = key
        self.status = status
        self.detail = detail


def current_payer(doc: Document) -> dict[str, str]:
    """The payer as the signed document names them: the replace form's starting values."""
    buyer = parse_xml(doc.xml).find("DLHDon/NDHDon/NMua")
    tags = {"name": "Ten", "tax_code": "MST", "address": "DChi", "email": "DCTDTu", "phone": "SDThoai"}
    return {field: (buyer.findtext(tag) or "") if buyer is not None else "" for field, tag in tags.items()}


def changes_of(doc: Document, posted: Mapping[str, str]) -> BuyerChanges:
    """What the form corrects: each field typed differently from the document. A field emptied is refused, not
    cleared: the replacement repeats every detail it is not told to change."""
    old = current_payer(doc)
    changes: dict[str, str] = {}
    for field in PAYER_FIELDS:
        value = posted.get(field, "").strip()
        if not value:
            if old[field]:
                raise Refused("receipts_replace_emptied")
            continue
        if value != old[field]:
            changes[field] = value
    if not changes:
        raise Refused("receipts_replace_nothing")
    return BuyerChanges(**changes)


def _refuse_early(s: Session, doc: Document, reason: str) -> None:
    """The refusals that need no signing: a missing or over-long reason, and a document no longer replaceable. What
    the document has become is said before what is wrong with the payer details: correcting them cannot fix it."""
    if not reason:
        raise Refused("receipts_replace_reason_needed")
    if len(reason) > MAX_REASON:
        raise Refused("receipts_replace_reason_long")
    if doc.purpose is DocumentPurpose.adjustment:
        raise Refused("receipts_replace_adjustment", 409)
    later = s.exec(
        select(Document.purpose).where(
            col(Document.payment_id) == doc.payment_id,
            or_(
                col(Document.purpose) == DocumentPurpose.adjustment,
                and_(
                    col(Document.purpose) == DocumentPurpose.replacement,
                    col(Document.related_document_id) == doc.id,
                ),
            ),
        )
    ).all()
    if DocumentPurpose.replacement in later:
        raise Refused("receipts_replace_already", 409)
    if later:
        raise Refused("receipts_replace_adjusted", 409)


def replace(
    s: Session, ctx: ReceiptContext, user: StaffUser, document_id: str, posted: Mapping[str, str], ip: str
) -> Document:
    """Issue the replacement of ``document_id`` with the corrected payer details, and its audit row, in ``s``'s
    transaction. Raises :class:`Refused` (nothing written) or :class:`NotHere`."""
    if user.role not in MAKERS or user.agency_id is None:
        raise NotHere
    doc = get_document(s, user, document_id)
    reason = posted.get("reason", "").strip()
    _refuse_early(s, doc, reason)
    before = current_payer(doc)
    changes = changes_of(doc, posted)
    try:
        row = replace_document(s, ctx, ctx.signers, user.agency_id, doc.id, changes, reason, f"staff:{user.id}")
    except NotFound as exc:
        raise NotHere from exc
    except DocumentReplaced as exc:
        raise Refused("receipts_replace_already", 409) from exc
    except DocumentAdjusted as exc:
        raise Refused("receipts_replace_adjusted", 409) from exc
    except ValidationFailed as exc:
        raise Refused("receipts_replace_invalid", 400, exc.detail.split(": ", 1)[-1]) from exc
    except Conflict as exc:
        raise Refused("receipts_replace_adjustment", 409) from exc
    except IntegrityError as exc:
        # Two staff replaced the same document at once: the unique index kept the first one only.
        raise Refused("receipts_replace_already", 409) from exc
    except InvoiceError as exc:
        raise Refused("receipts_replace_cannot_issue", 409) from exc
    record(
        s,
        agency_id=doc.agency_id,
        actor=user.id,
        ip=ip,
        action="receipt.replaced",
        target=doc.id,
        before={"number": f"{doc.template}{doc.series}-{doc.number:08d}", "payer": before},
        after={
            "replacement_id": row.id,
            "number": f"{row.template}{row.series}-{row.number:08d}",
            "payer": current_payer(row),
            "reason": reason,
        },
    )
    return row
