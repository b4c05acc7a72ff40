"""The period report as an XLSX workbook and as a PDF of its page.

The workbook has one sheet per section (summary, by method, by procedure, by day or month, and by agency for the
province), each opening with a title block (agency, period, when it was made) and Vietnamese column headers; days
are real date cells and amounts real numbers, so that a spreadsheet sorts and sums them. Every text cell goes
through ``cell_text`` of the daily close: procedure and agency names come from agencies, and a name a spreadsheet
would read as a formula is written as text.

The last sheet holds the page's two charts as native spreadsheet charts (openpyxl.chart) over the figures written
beside them, from the same ``charts.Series`` as the page's SVG: they stay editable, follow the cells if someone
corrects one, and need no image library (pygal draws PNG only through cairosvg and the system's cairo)."""

from __future__ import annotations

import io
import re
from collections.abc import Sequence
from datetime import date, datetime
from typing import Any

from openpyxl import Workbook  # type: ignore[import-untyped]
from openpyxl.chart import BarChart, LineChart, Reference  # type: ignore[import-untyped]
from openpyxl.styles import Font  # type: ignore[import-untyped]
from openpyxl.utils import get_column_letter  # type: ignore[import-untyped]

from console.i18n import MESSAGES
from console.reports.charts import Series, series
from console.reports.figures import Grain, Report, Sums
from invoices.render import _PDF_LOCK, FONTS_DIR, PackageFetcher, _font_config
from payments.reconcile.reports import XLSX_MEDIA_TYPE, cell_text

__all__ = ["XLSX_MEDIA_TYPE", "file_name", "to_pdf", "to_xlsx"]

PDF_MEDIA_TYPE = "application/pdf"
DATE_FORMAT = "dd/mm/yyyy"
MONTH_FORMAT = "mm/yyyy"
AMOUNT_FORMAT = "#,##0"
CHARTS_SHEET = "Biểu đồ"
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
) -> Any:
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
    return sheet


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
    _charts_sheet(book, block, series(report), report.end)
    buffer = io.BytesIO()
    book.save(buffer)
    return buffer.getvalue()


def _charts_sheet(book: Any, block: Sequence[tuple[str, Any]], drawn: Series, end: date) -> None:
    """The trend's days in columns A to C and the methods in E and F, each chart drawn over its own columns."""
    headers = ["Ngày", "Tổng thu (₫)", "Thực thu (₫)", "", "Phương thức", "Tổng thu (₫)"]
    trend = [[day, gross, net] for day, gross, net in zip(drawn.days, drawn.gross, drawn.net, strict=True)]
    methods = [[method, gross] for method, gross in drawn.methods]
    rows = [
        (trend[i] if i < len(trend) else [None] * 3) + [None] + (methods[i] if i < len(methods) else [None] * 2)
        for i in range(max(len(trend), len(methods)))
    ]
    sheet = _sheet(book, CHARTS_SHEET, block, headers, rows)
    sheet.freeze_panes = None  # the charts sit beside the rows: frozen rows would cut them in two when scrolling
    top = len(block) + 2  # the header row, as _sheet writes it
    t = MESSAGES["vi"]  # the workbook is in Vietnamese, as its headers

    line = LineChart()
    line.title = t["reports_trend_chart"].format(end=end.strftime("%d/%m/%Y"))
    line.y_axis.title = "₫"
    line.y_axis.number_format = AMOUNT_FORMAT
    line.x_axis.number_format = "dd/mm"
    line.add_data(Reference(sheet, min_col=2, max_col=3, min_row=top, max_row=top + len(trend)), titles_from_data=True)
    line.set_categories(Reference(sheet, min_col=1, min_row=top + 1, max_row=top + len(trend)))
    bar = BarChart()
    bar.type = "bar"  # horizontal, as on the page
    bar.title = t["reports_method_chart"]
    bar.x_axis.title = t["reports_method"]
    bar.y_axis.number_format = AMOUNT_FORMAT
    bar.legend = None
    if methods:
        # With no payment in the period the chart has no series: an empty chart, as the page shows.
        bar.add_data(Reference(sheet, min_col=6, min_row=top, max_row=top + len(methods)), titles_from_data=True)
        bar.set_categories(Reference(sheet, min_col=5, min_row=top + 1, max_row=top + len(methods)))
    for chart, anchor in ((line, "H2"), (bar, "H22")):
        # openpyxl 3.1 writes axes as deleted unless told otherwise: spreadsheet programs would then hide them.
        chart.x_axis.delete = False
        chart.y_axis.delete = False
        chart.width, chart.height = 22, 9.5
        sheet.add_chart(chart, anchor)


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
