"""The daily summary of e-receipts, form 01/TH-BLĐT (invoices/rules2026.py), sent to the tax authority through the
T-VAN file drop on the day of issue.

Per agency and day, one line per template and series with documents that day: how many, the range of numbers (a
day's numbers in one series are consecutive: numbering has no gaps), the totals of originals, adjustments and
replacements, and how many were cancelled (never: cancelling an issued document outright is no longer allowed
[S]), adjusted and replaced. Layout: ``invoices/schema/bthdlieu-2.1.0.xsd`` (provisional, the official one is not
public). Model -> deterministic XML -> XSD check -> the agency's signature in ``BTHDLieu/DSCKS/NNT`` -> TDiep 400.

:func:`summarise_day` decides in one transaction whether the day needs a summary: none sent yet, the day's documents
changed since the last one (a document issued after it), or the last one was rejected: then a new one restating the
whole day is queued, with the next sequence number (``LDau`` 0, ``BSLThu``). :func:`send_daily_summaries` is the
worker's periodic task.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from typing import Any, Final, TypeAlias

from lxml import etree  # type: ignore[import-untyped]  # lxml ships no type information and no stubs are installed
from sqlalchemy import select as sa_select
from sqlmodel import Session, col, select

from invoices import rules2026
from invoices.context import ReceiptContext
from invoices.errors import InvalidDocument, InvoiceError, Reason
from invoices.format import CURRENT
from invoices.keys import SignerStore
from invoices.signing import Signer
from invoices.tables import Document, DocumentPurpose, ReceiptSeries
from invoices.tax.service import SEND, queue_summary, send_job_needed
from invoices.tax.tables import ReceiptSummary, TaxMessage, TaxMessageStatus
from invoices.validate import conform
from invoices.xmldsig import parse_xml
from payments.agency.models import Agency
from payments.core.db import table_of
from payments.core.logging import get_logger
from payments.outbox.service import enqueue

__all__ = [
    "Summary",
    "SummaryLine",
    "send_daily_summaries",
    "signed_summary",
    "summarise_day",
    "summary_for_day",
    "summary_xml",
    "validate_summary",
]

_Element: TypeAlias = Any
log = get_logger(__name__)
GMT7 = timezone(timedelta(hours=7))
XSD: Final = "bthdlieu-2.1.0.xsd"
SUMMARY_ID: Final = "DLBTHop"


@dataclass(frozen=True)
class SummaryLine:
    template: str
    series: str
    first: int
    last: int
    originals: int = 0
    adjustments: int = 0
    replacements: int = 0
    cancelled: int = 0
    originals_total: int = 0
    adjustments_total: int = 0
    replacements_total: int = 0

    @property
    def count(self) -> int:
        return self.originals + self.adjustments + self.replacements

    @property
    def total(self) -> int:
        return self.originals_total + self.adjustments_total + self.replacements_total


@dataclass(frozen=True)
class Summary:
    day: date
    sequence: int
    created_on: date
    taxpayer_name: str
    tax_code: str
    lines: tuple[SummaryLine, ...] = field(default=())

    @property
    def documents(self) -> int:
        return sum(line.count for line in self.lines)

    @property
    def total(self) -> int:
        return sum(line.total for line in self.lines)


def summary_for_day(s: Session, agency: Agency, day: date, sequence: int, created_on: date) -> Summary:
    """The summary of the agency's documents issued on ``day``, read from the documents themselves."""
    doc = table_of(Document)
    rows = (
        s.connection()
        .execute(
            sa_select(doc.c.template, doc.c.series, doc.c.number, doc.c.purpose, doc.c.total)
            .where(doc.c.agency_id == agency.id, doc.c.issue_date == day)
            .order_by(doc.c.template, doc.c.series, doc.c.number)
        )
        .all()
    )
    groups: dict[tuple[str, str], list[tuple[int, DocumentPurpose, int]]] = {}
    for template, series, number, purpose, total in rows:
        groups.setdefault((template, series), []).append((number, DocumentPurpose(purpose), total))
    lines = []
    for (template, series), docs in groups.items():

        def of(purpose: DocumentPurpose, docs: list[tuple[int, DocumentPurpose, int]] = docs) -> list[int]:
            return [total for _n, p, total in docs if p is purpose]

        originals, adjustments, replacements = (
            of(DocumentPurpose.original),
            of(DocumentPurpose.adjustment),
            of(DocumentPurpose.replacement),
        )
        lines.append(
            SummaryLine(
                template=template,
                series=series,
                first=docs[0][0],
                last=docs[-1][0],
                originals=len(originals),
                adjustments=len(adjustments),
                replacements=len(replacements),
                originals_total=sum(originals),
                adjustments_total=sum(adjustments),
                replacements_total=sum(replacements),
            )
        )
    return Summary(day, sequence, created_on, agency.name, agency.tax_code, tuple(lines))


def summary_xml(summary: Summary) -> bytes:
    """The unsigned BTHDLieu, deterministic: the same summary always yields the same bytes."""
    root = etree.Element("BTHDLieu")
    data = etree.SubElement(root, "DLBTHop", Id=SUMMARY_ID)
    general = etree.SubElement(data, "TTChung")
    _children(
        general,
        [
            ("PBan", CURRENT.version),
            ("MSo", rules2026.SUMMARY_FORM),
            ("Ten", rules2026.SUMMARY_TITLE),
            ("SBTHDLieu", str(summary.sequence)),
            ("LKDLieu", "N"),
            ("KDLieu", summary.day.isoformat()),
            ("LDau", "1" if summary.sequence == 1 else "0"),
            ("BSLThu", None if summary.sequence == 1 else str(summary.sequence - 1)),
            ("NLap", summary.created_on.isoformat()),
            ("TNNT", summary.taxpayer_name),
            ("MST", summary.tax_code),
            ("SLBLai", str(summary.documents)),
        ],
    )
    listing = etree.SubElement(etree.SubElement(data, "NDBTHDLieu"), "DSDLieu")
    for number, line in enumerate(summary.lines, start=1):
        _children(
            etree.SubElement(listing, "DLieu"),
            [
                ("STT", str(number)),
                ("KHMSBLai", line.template),
                ("KHBLai", line.series),
                ("SLuong", str(line.count)),
                ("TSo", str(line.first)),
                ("DSo", str(line.last)),
                ("SLGoc", str(line.originals)),
                ("SLHuy", str(line.cancelled)),
                ("SLDChinh", str(line.adjustments)),
                ("SLTThe", str(line.replacements)),
                ("TgTGoc", str(line.originals_total)),
                ("TgTDChinh", str(line.adjustments_total)),
                ("TgTTThe", str(line.replacements_total)),
                ("TgTien", str(line.total)),
            ],
        )
    etree.SubElement(etree.SubElement(root, "DSCKS"), "NNT")
    xml: bytes = etree.tostring(root, encoding="UTF-8", xml_declaration=True)
    return xml


def validate_summary(xml: bytes) -> None:
    root = parse_xml(xml)
    if root.tag != "BTHDLieu":
        raise InvalidDocument(Reason.schema, f"line {root.sourceline}: not a BTHDLieu")
    conform(root, XSD)


def signed_summary(signer: Signer, summary: Summary) -> bytes:
    """Checked against the XSD before it is signed, like every document and notice."""
    xml = summary_xml(summary)
    validate_summary(xml)
    return signer.sign_summary(xml)


def summarise_day(
    s: Session,
    ctx: ReceiptContext,
    signers: SignerStore,
    agency: Agency,
    day: date,
    now: datetime,
    *,
    again: bool = False,
) -> ReceiptSummary | None:
    """Queue the day's summary when it is due (module docstring), in the caller's transaction; None when the last
    one still states the day. ``again``: a new one even so (an operator's resend)."""
    last = s.exec(
        select(ReceiptSummary)
        .where(ReceiptSummary.agency_id == agency.id, ReceiptSummary.day == day)
        .order_by(col(ReceiptSummary.sequence).desc())
    ).first()
    summary = summary_for_day(s, agency, day, (last.sequence + 1) if last else 1, now.astimezone(GMT7).date())
    if last is None:
        if not summary.lines and not rules2026.SUMMARY_ON_EMPTY_DAY:
            return None
    elif not again:
        message = s.get(TaxMessage, last.tax_message_id)
        rejected = message is not None and message.status is TaxMessageStatus.rejected
        if not rejected and (last.documents, last.total) == (summary.documents, summary.total):
            return None
    signed = signed_summary(signers.for_agency(agency.code, agency.tax_code, agency.name), summary)
    message = queue_summary(s, ctx.settings, agency, signed)
    row = ReceiptSummary(
        agency_id=agency.id,
        day=day,
        sequence=summary.sequence,
        tax_message_id=message.id,
        documents=summary.documents,
        total=summary.total,
    )
    s.add(row)
    s.flush()
    if send_job_needed(s.connection()):
        enqueue(s, SEND, {})
    log.info(
        "tax.summary_queued", agency=agency.code, day=day.isoformat(), sequence=row.sequence, documents=row.documents
    )
    return row


def send_daily_summaries(ctx: ReceiptContext, now: datetime | None = None) -> int:
    """The worker's periodic task: from ``LEPHI_RECEIPT_SUMMARY_AT`` each day, every agency on e-receipts (one with a
    series) gets the day's summary; the day before is checked too, for documents issued after its last summary."""
    if not ctx.settings.tax_transmission:
        return 0
    now = now or datetime.now(GMT7)
    local = now.astimezone(GMT7)
    days = [local.date() - timedelta(days=1)]
    if rules2026.SUMMARY_DUE_SAME_DAY and local.time() >= ctx.settings.receipt_summary_at:
        days.append(local.date())
    with ctx.db.read() as s:
        agency_ids = sorted(set(s.exec(select(ReceiptSeries.agency_id)).all()))
    queued = 0
    for agency_id in agency_ids:
        for day in days:
            try:
                with ctx.db.write() as s:
                    agency = s.get(Agency, agency_id)
                    if agency is None or not _due(s, agency_id, day):
                        continue
                    queued += summarise_day(s, ctx, ctx.signers, agency, day, now) is not None
            except InvoiceError as exc:  # e.g. no signing key: the other agencies' summaries still go
                log.error("tax.summary_failed", agency_id=agency_id, day=day.isoformat(), error=str(exc)[:500])
    return queued


def _due(s: Session, agency_id: str, day: date) -> bool:
    """A day before the agency's first series needs no summary (it was not on e-receipts yet)."""
    first = s.exec(
        select(ReceiptSeries.registered_at)
        .where(ReceiptSeries.agency_id == agency_id)
        .order_by(col(ReceiptSeries.registered_at))
    ).first()
    return first is not None and first.astimezone(GMT7).date() <= day


def _children(parent: _Element, children: Sequence[tuple[str, str | None]]) -> None:
    for tag, text in children:
        if text is not None:
            etree.SubElement(parent, tag).text = text
