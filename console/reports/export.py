"""The period report as an XLSX workbook and as a PDF of its page.

The workbook has one sheet per section (summary, by method, by procedure, by day or month, and by agency for the
province), each opening with a title block (agency, period, when it was made) and Vietnamese column headers; days
are real date cells and amounts real numbers, so that a spreadsheet sorts and sums them. Every text cell goes
through ``cell_text`` of the daily close: procedure and agency names come from agencies, and a name a spreadsheet
would read as a formula is written as text. The charts are not in the workbook: pygal draws PNG only through
cairosvg, which the service does not depend on; the PDF has them."""

from __future__ import annotations

import io
import re
from collections.abc import Sequence
from datetime import date, datetime
from typing import Any

from openpyxl import Workbook  # type: ignore[import-untyped]
from openpyxl.styles import Font  # type: ignore[import-untyped]
from openpyxl.utils import get_column_letter  # type: ignore[import-untyped]

from console.reports.figures import Grain, Report, Sums
from invoices.render import _PDF_LOCK, FONTS_DIR, PackageFetcher, _font_config
from payments.reconcile.reports import XLSX_MEDIA_TYPE, cell_text

__all__ = ["XLSX_MEDIA_TYPE", "file_name", "to_pdf", "to_xlsx"]

PDF_MEDIA_TYPE = "application/pdf"
DATE_FORMAT = "dd/mm/yyyy"
MONTH_FORMAT = "mm/yyyy"
AMOUNT_FORMAT = "#,##0"
_FETCHER = PackageFetcher([FONTS_DIR])

SUMS_HEADERS = [
    "Số giao dịch",
    "Tổng thu (₫)",
    "Số lần hoàn",
    "Hoàn tiền (₫)",
    "Thực thu (₫)",
    "Phí cổng (₫)",
    "Còn lại sau phí (₫)",
]


def _sums_cells(sums: Sums) -> list[Any]:
    return [sums.payments, sums.gross, sums.refund_count, sums.refunds, sums.net, sums.fees, sums.net_of_fees]


def _sheet(
    book: Any,
    title: str,
    block: Sequence[tuple[str, Any]],
    headers: Sequence[str],
    rows: Sequence[Sequence[Any]],
    date_format: str = DATE_FORMAT,
) -> None:
    sheet = book.create_sheet(title)
    strong = Font(bold=True)
    widths: dict[int, int] = {}
    for i, (label, value) in enumerate(block, start=1):
        _put(sheet, i, 1, label, date_format).font = strong
        _put(sheet, i, 2, value, date_format)
    top = len(block) + 2
    for j, name in enumerate(headers, start=1):
        _put(sheet, top, j, name, date_format).font = strong
        widths[j] = len(name)
    for i, row in enumerate(rows, start=top + 1):
        for j, value in enumerate(row, start=1):
            _put(sheet, i, j, value, date_format)
            shown = f"{value:,}" if isinstance(value, int) else "dd/mm/yyyy" if isinstance(value, date) else value
            widths[j] = max(widths.get(j, 0), len(str(shown or "")))
    for j, width in widths.items():
        sheet.column_dimensions[get_column_letter(j)].width = min(max(width + 2, 10), 60)
    sheet.freeze_panes = sheet.cell(row=top + 1, column=1)


def _put(sheet: Any, row: int, column: int, value: Any, date_format: str) -> Any:
    cell = sheet.cell(row=row, column=column)
    if isinstance(value, str):
        cell.value = cell_text(value)
        cell.data_type = "s"  # never a formula, whatever the first character
    elif isinstance(value, datetime):
        # Spreadsheets have no time zones: the local (Vietnam) time, as staff read it.
        cell.value = value.replace(tzinfo=None)
        cell.number_format = "dd/mm/yyyy hh:mm"
    elif isinstance(value, date):
        cell.value = value
        cell.number_format = date_format
    else:
        cell.value = value
        if isinstance(value, int) and not isinstance(value, bool):
            cell.number_format = AMOUNT_FORMAT
    return cell


def to_xlsx(report: Report, agency_label: str, generated: datetime) -> bytes:
    block: list[tuple[str, Any]] = [
        ("Báo cáo thu phí, lệ phí", ""),
        ("Cơ quan", agency_label),
        ("Từ ngày", report.start),
        ("Đến ngày", report.end),
        ("Lập lúc (giờ Việt Nam)", generated),
    ]
    book = Workbook()
    book.remove(book.active)
    summary_rows = [[label, value] for label, value in zip(SUMS_HEADERS, _sums_cells(report.summary), strict=True)]
    summary_rows.append(["Sai lệch đối soát đang mở", report.open_exceptions])
    _sheet(book, "Tổng hợp", block, ["Chỉ tiêu", "Giá trị"], summary_rows)
    _sheet(
        book,
        "Theo phương thức",
        block,
        ["Phương thức", *SUMS_HEADERS],
        [[method, *_sums_cells(s)] for method, s in report.by_method.items()],
    )
    _sheet(
        book,
        "Theo thủ tục",
        block,
        ["Cơ quan", "Mã thủ tục", "Tên thủ tục", *SUMS_HEADERS],
        [[a, code, name, *_sums_cells(s)] for (a, code, name), s in report.by_procedure.items()],
    )
    monthly = report.grain is Grain.month
    _sheet(
        book,
        "Theo tháng" if monthly else "Theo ngày",
        block,
        ["Tháng" if monthly else "Ngày", *SUMS_HEADERS],
        [[key, *_sums_cells(s)] for key, s in report.by_period.items()],
        date_format=MONTH_FORMAT if monthly else DATE_FORMAT,
    )
    if len(report.agencies) > 1:
        names = {a.code: a.name for a in report.agencies}
        _sheet(
            book,
            "Theo cơ quan",
            block,
            ["Mã cơ quan", "Tên cơ quan", *SUMS_HEADERS],
            [[code, names[code], *_sums_cells(s)] for code, s in report.by_agency.items()],
        )
    buffer = io.BytesIO()
    book.save(buffer)
    return buffer.getvalue()


def to_pdf(page: str) -> bytes:
    """An A4 PDF of the report's page (its print form: no menu, charts inline), with the receipts' fonts; nothing
    outside the fonts' folder can be fetched."""
    from weasyprint import HTML  # type: ignore[import-untyped]  # imported here: it takes a second to load

    with _PDF_LOCK:
        document = HTML(string=page, base_url=FONTS_DIR.as_uri() + "/", url_fetcher=_FETCHER)
        pdf: bytes = document.write_pdf(font_config=_font_config())
    return pdf


def file_name(code: str, start: date, end: date, extension: str) -> str:
    # The name goes into a Content-Disposition header: nothing that could end the quoted string or the header.
    part = re.sub(r"[^A-Za-z0-9._-]", "_", code) or "agency"
    return f"report-{part}-{start.isoformat()}-{end.isoformat()}.{extension}"
