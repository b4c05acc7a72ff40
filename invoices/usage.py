"""The report on the use of e-receipts, form BC26/BLĐT (invoices/rules2026.py): per template and series, for a
period, the numbers used (with the range), cancelled and remaining, as XML (``invoices/schema/bc26-2.1.0.xsd``,
provisional: the official layout is not public) and as an XLSX sheet.

Read from the documents and the series registry: "used" counts the documents numbered in the period (originals,
adjustments and replacements each take a number); "cancelled" is always 0, since an issued document can no longer
be cancelled outright [S]; "remaining" is what the 8-digit range still holds after the last number used by the end
of the period, and 0 for a closed series.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from typing import Any, Final, TypeAlias

from lxml import etree  # type: ignore[import-untyped]  # lxml ships no type information and no stubs are installed
from sqlalchemy import func
from sqlalchemy import select as sa_select
from sqlmodel import Session, select

from invoices import rules2026
from invoices.errors import InvalidDocument, Reason
from invoices.format import CURRENT
from invoices.tables import Document, DocumentPurpose, ReceiptSeries, SeriesStatus
from invoices.validate import conform
from invoices.xmldsig import parse_xml
from payments.agency.models import Agency
from payments.core.db import table_of
from payments.core.errors import ValidationFailed
from payments.reconcile.reports import Cell, Kind, table_xlsx

__all__ = ["UsageLine", "UsageReport", "usage_report", "usage_xlsx", "usage_xml", "validate_usage"]

_Element: TypeAlias = Any
XSD: Final = "bc26-2.1.0.xsd"
MAX_DAYS: Final = 366


@dataclass(frozen=True)
class UsageLine:
    template: str
    series: str
    status: SeriesStatus
    used: int
    first: int | None  # the range used in the period, None when nothing was
    last: int | None
    adjustments: int
    replacements: int
    cancelled: int
    remaining: int


@dataclass(frozen=True)
class UsageReport:
    agency_code: str
    taxpayer_name: str
    tax_code: str
    start: date
    end: date
    created_on: date
    lines: tuple[UsageLine, ...]


def usage_report(s: Session, agency: Agency, start: date, end: date, created_on: date) -> UsageReport:
    if end < start:
        raise ValidationFailed("the period ends before it starts")
    if (end - start).days >= MAX_DAYS:
        raise ValidationFailed(f"a report covers at most {MAX_DAYS} days")
    doc = table_of(Document)
    used_rows = (
        s.connection()
        .execute(
            sa_select(
                doc.c.template,
                doc.c.series,
                doc.c.purpose,
                func.count(),
                func.min(doc.c.number),
                func.max(doc.c.number),
            )
            .where(doc.c.agency_id == agency.id, doc.c.issue_date >= start, doc.c.issue_date <= end)
            .group_by(doc.c.template, doc.c.series, doc.c.purpose)
        )
        .all()
    )
    # The last number used by the end of the period, per series (any purpose, from the start of its year).
    last_rows = (
        s.connection()
        .execute(
            sa_select(doc.c.template, doc.c.series, func.max(doc.c.number))
            .where(doc.c.agency_id == agency.id, doc.c.issue_date <= end)
            .group_by(doc.c.template, doc.c.series)
        )
        .all()
    )
    last_by = {(t, se): int(n) for t, se, n in last_rows}
    registered = s.exec(select(ReceiptSeries).where(ReceiptSeries.agency_id == agency.id)).all()
    status = {(r.template, r.series): r.status for r in registered}
    years = range(start.year, end.year + 1)
    keys = {(t, se) for t, se, *_ in used_rows} | {(r.template, r.series) for r in registered if r.year in years}
    lines = []
    for template, series in sorted(keys):
        mine = [row for row in used_rows if (row[0], row[1]) == (template, series)]
        count = {DocumentPurpose(p): int(n) for _t, _s, p, n, _lo, _hi in mine}
        state = status.get((template, series), SeriesStatus.open)
        lines.append(
            UsageLine(
                template=template,
                series=series,
                status=state,
                used=sum(count.values()),
                first=min((int(lo) for *_, lo, _hi in mine), default=None),
                last=max((int(hi) for *_, hi in mine), default=None),
                adjustments=count.get(DocumentPurpose.adjustment, 0),
                replacements=count.get(DocumentPurpose.replacement, 0),
                cancelled=0,
                remaining=0
                if state is SeriesStatus.closed
                else rules2026.MAX_NUMBER - last_by.get((template, series), 0),
            )
        )
    return UsageReport(agency.code, agency.name, agency.tax_code, start, end, created_on, tuple(lines))


def usage_xml(report: UsageReport) -> bytes:
    """Deterministic: the same report always yields the same bytes."""
    root = etree.Element("BCSDBLai")
    data = etree.SubElement(root, "DLBCao", Id="DLBCao")
    _children(
        etree.SubElement(data, "TTChung"),
        [
            ("PBan", CURRENT.version),
            ("MSo", rules2026.USAGE_REPORT_FORM),
            ("Ten", rules2026.USAGE_REPORT_TITLE),
            ("TNgay", report.start.isoformat()),
            ("DNgay", report.end.isoformat()),
            ("NLap", report.created_on.isoformat()),
            ("TNNT", report.taxpayer_name),
            ("MST", report.tax_code),
        ],
    )
    listing = etree.SubElement(etree.SubElement(data, "NDBCao"), "DSBLai")
    for number, line in enumerate(report.lines, start=1):
        _children(
            etree.SubElement(listing, "BLai"),
            [
                ("STT", str(number)),
                ("KHMSBLai", line.template),
                ("KHBLai", line.series),
                ("TThai", "1" if line.status is SeriesStatus.open else "0"),
                ("TSo", None if line.first is None else str(line.first)),
                ("DSo", None if line.last is None else str(line.last)),
                ("SLSDung", str(line.used)),
                ("SLDChinh", str(line.adjustments)),
                ("SLTThe", str(line.replacements)),
                ("SLHuy", str(line.cancelled)),
                ("SLCLai", str(line.remaining)),
            ],
        )
    xml: bytes = etree.tostring(root, encoding="UTF-8", xml_declaration=True)
    return xml


def validate_usage(xml: bytes) -> None:
    root = parse_xml(xml)
    if root.tag != "BCSDBLai":
        raise InvalidDocument(Reason.schema, f"line {root.sourceline}: not a BCSDBLai")
    conform(root, XSD)


COLUMNS: Final[Sequence[tuple[str, Kind]]] = (
    ("Ký hiệu mẫu", "text"),
    ("Ký hiệu", "text"),
    ("Trạng thái", "text"),
    ("Từ số", "count"),
    ("Đến số", "count"),
    ("Đã sử dụng", "count"),
    ("Điều chỉnh", "count"),
    ("Thay thế", "count"),
    ("Đã hủy", "count"),
    ("Còn lại", "count"),
)


def usage_xlsx(report: UsageReport) -> bytes:
    body: list[list[Cell]] = [
        [
            line.template,
            line.series,
            "Đang dùng" if line.status is SeriesStatus.open else "Đã đóng",
            line.first,
            line.last,
            line.used,
            line.adjustments,
            line.replacements,
            line.cancelled,
            line.remaining,
        ]
        for line in report.lines
    ]
    title = f"{rules2026.USAGE_REPORT_FORM.replace('/', '-')} {report.start:%d-%m-%Y}"
    return table_xlsx(title, COLUMNS, body)


def _children(parent: _Element, children: Sequence[tuple[str, str | None]]) -> None:
    for tag, text in children:
        if text is not None:
            etree.SubElement(parent, tag).text = text
