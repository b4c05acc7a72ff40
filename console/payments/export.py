"""The search's matches as a CSV or an XLSX file, for the accountants' spreadsheets.

Headers are Vietnamese whatever the page's language: the files go into the agency's books. The CSV is UTF-8 with a
byte order mark, without which Excel reads Vietnamese text as Windows-1252. Any text cell that a spreadsheet would
take for a formula (starting with = + - @, a tab or a carriage return, or their full-width forms) gets a leading
apostrophe: payer names and dossier codes come from outside systems and must never run as formulas on a clerk's
machine."""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from datetime import datetime

from openpyxl import Workbook  # type: ignore[import-untyped]
from openpyxl.cell import WriteOnlyCell  # type: ignore[import-untyped]
from openpyxl.styles import Font  # type: ignore[import-untyped]

from console.payments.search import Filters, Row
from payments.pages.fmt import local
from payments.reconcile.reports import cell_text

MAX_ROWS = 100_000
HEADERS = [
    "Thời gian tạo (giờ Việt Nam)",
    "Cơ quan",
    "Mã hồ sơ",
    "Người nộp",
    "Email",
    "Điện thoại",
    "Số tiền (đồng)",
    "Phương thức",
    "Trạng thái",
    "Số biên lai",
    "Mã thanh toán",
    "Mã tham chiếu của cổng",
]
FILTER_NAMES = {
    "dossier": "Mã hồ sơ",
    "payer": "Người nộp",
    "amount": "Số tiền",
    "min": "Số tiền từ",
    "max": "Số tiền đến",
    "from": "Từ ngày",
    "to": "Đến ngày",
    "method": "Phương thức",
    "status": "Trạng thái",
}


def safe(value: str | None) -> str:
    # The reconciliation reports' rule, so that every file the service hands out is neutralised the same way.
    return cell_text(value or "")


@dataclass(frozen=True)
class Title:
    agency: str
    filters: Filters
    generated_at: datetime
    statuses: dict[str, str]  # status -> its Vietnamese name


def filters_line(title: Title) -> str:
    parts = []
    for name, value in title.filters.query().items():
        shown = title.statuses.get(value, value) if name == "status" else value
        parts.append(f"{FILTER_NAMES[name]}: {shown}")
    return "; ".join(parts) or "không có"


def _local_naive(moment: datetime) -> datetime:
    # Spreadsheet cells have no time zone: the Vietnam time a clerk expects to read.
    return local(moment).replace(tzinfo=None, microsecond=0)


def to_csv(rows: list[Row], statuses: dict[str, str]) -> bytes:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(HEADERS)
    for r in rows:
        writer.writerow(
            [
                _local_naive(r.created_at).strftime("%d/%m/%Y %H:%M:%S"),
                safe(r.agency_code),
                safe(r.dossier_code),
                safe(r.payer_name),
                safe(r.payer_email),
                safe(r.payer_phone),
                r.amount,
                safe(r.method),
                statuses.get(r.status.value, r.status.value),
                safe(r.receipt),
                r.id,
                safe(r.gateway_reference),
            ]
        )
    return ("\ufeff" + out.getvalue()).encode("utf-8")


def to_xlsx(rows: list[Row], title: Title) -> bytes:
    book = Workbook(write_only=True)
    sheet = book.create_sheet("Thanh toán")
    sheet.column_dimensions["A"].width = 20
    for letter in "BCDEFGHIJKL":
        sheet.column_dimensions[letter].width = 18
    bold = Font(bold=True)

    def text(value: str, strong: bool = False) -> WriteOnlyCell:
        cell = WriteOnlyCell(sheet, value=safe(value))
        cell.data_type = "s"  # never a formula, whatever openpyxl would guess from the text
        if strong:
            cell.font = bold
        return cell

    sheet.append([text("Danh sách thanh toán", strong=True)])
    sheet.append([text("Cơ quan"), text(title.agency)])
    sheet.append([text("Bộ lọc"), text(filters_line(title))])
    made = WriteOnlyCell(sheet, value=_local_naive(title.generated_at))
    made.number_format = "dd/mm/yyyy hh:mm:ss"
    sheet.append([text("Thời điểm lập (giờ Việt Nam)"), made])
    sheet.append([text("Số dòng"), len(rows)])
    sheet.append([])
    sheet.append([text(h, strong=True) for h in HEADERS])
    for r in rows:
        at = WriteOnlyCell(sheet, value=_local_naive(r.created_at))
        at.number_format = "dd/mm/yyyy hh:mm:ss"
        amount = WriteOnlyCell(sheet, value=r.amount)
        amount.number_format = "#,##0"
        sheet.append(
            [
                at,
                text(r.agency_code),
                text(r.dossier_code),
                text(r.payer_name),
                text(r.payer_email or ""),
                text(r.payer_phone or ""),
                amount,
                text(r.method),
                text(title.statuses.get(r.status.value, r.status.value)),
                text(r.receipt or ""),
                text(r.id),
                text(r.gateway_reference or ""),
            ]
        )
    out = io.BytesIO()
    book.save(out)
    return out.getvalue()
