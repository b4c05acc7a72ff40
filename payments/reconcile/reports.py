"""The daily close and the day's exceptions, computed in SQL and written as CSV or XLSX for finance staff.

The business day is GMT+7, as in matching. A payment counts on the day it succeeded, a refund on the day it
completed, whatever day its payment was made: that is how the money moved.

Spreadsheets are a way in for anything that reaches a cell: procedure names come from agencies, exception details
from gateways and bank memos, notes from staff. Every text cell goes through :func:`cell_text`, so a value that a
spreadsheet would read as a formula is written as text.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any, Literal

from openpyxl import Workbook  # type: ignore[import-untyped]
from openpyxl.styles import Font  # type: ignore[import-untyped]
from openpyxl.utils import get_column_letter  # type: ignore[import-untyped]
from sqlalchemy import Integer, Select, func, literal_column, select, union_all
from sqlmodel import Session, col

from payments.agency.models import Agency, Procedure
from payments.core.errors import NotFound
from payments.dossier.models import Dossier
from payments.payment.models import Payment, Refund, RefundStatus
from payments.payment.states import PAID
from payments.reconcile.matching import GMT7, day_bounds
from payments.reconcile.models import ExceptionStatus, ReconException, StatementEntry, StatementImport

# What Excel, LibreOffice and Google Sheets start a formula (or a DDE call) with, the full-width forms included
# because some input methods produce them and some spreadsheets fold them to ASCII.
FORMULA_START = frozenset("=+-@\t\r\uff1d\uff0b\uff0d\uff20")
# Control characters XML 1.0 cannot carry: openpyxl refuses them, and they mean nothing in a cell.
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f]")
XLSX_MEDIA_TYPE = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
CSV_MEDIA_TYPE = "text/csv; charset=utf-8"

Cell = str | int | None
Kind = Literal["text", "count", "amount"]


def cell_text(value: str) -> str:
    """``value`` as a cell that is only ever text: a leading quote makes a spreadsheet show, never evaluate, it."""
    value = _CONTROL.sub("", value)
    stripped = value.lstrip(" \t\r\n")
    if value[:1] in FORMULA_START or stripped[:1] in FORMULA_START:
        return "'" + value
    return value


# --- the daily close ----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class CloseRow:
    procedure_code: str
    procedure_name: str
    method: str
    payments: int
    gross: int
    refund_count: int
    refunds: int
    net: int


@dataclass(frozen=True)
class CloseTotals:
    payments: int
    gross: int
    refund_count: int
    refunds: int
    net: int


@dataclass(frozen=True)
class DailyClose:
    agency_id: str
    agency_code: str
    business_day: date
    rows: list[CloseRow]
    totals: CloseTotals
    open_exceptions: int


def _agency_code(s: Session, agency_id: str) -> str:
    agency = s.get(Agency, agency_id)
    if agency is None:
        raise NotFound(f"no agency {agency_id!r}")
    return agency.code


def daily_close(s: Session, agency_id: str, day: date) -> DailyClose:
    """Per procedure and payment method: the payments that succeeded on ``day`` and the refunds completed on it."""
    start, end = day_bounds(day)
    paid: Select[*tuple[Any, ...]] = (
        select(
            col(Dossier.procedure_id).label("procedure_id"),
            col(Payment.gateway).label("method"),
            func.count().label("payments"),
            func.sum(Payment.amount).label("gross"),
            literal_column("0", Integer).label("refund_count"),
            literal_column("0", Integer).label("refunds"),
        )
        .select_from(Payment)
        .join(Dossier, col(Dossier.id) == col(Payment.dossier_id))
        .where(
            col(Payment.agency_id) == agency_id,
            col(Payment.succeeded_at) >= start,
            col(Payment.succeeded_at) < end,
            col(Payment.status).in_(sorted(PAID)),
        )
        .group_by(col(Dossier.procedure_id), col(Payment.gateway))
    )
    refunded: Select[*tuple[Any, ...]] = (
        select(
            col(Dossier.procedure_id).label("procedure_id"),
            col(Payment.gateway).label("method"),
            literal_column("0", Integer).label("payments"),
            literal_column("0", Integer).label("gross"),
            func.count().label("refund_count"),
            func.sum(Refund.amount).label("refunds"),
        )
        .select_from(Refund)
        .join(Payment, col(Payment.id) == col(Refund.payment_id))
        .join(Dossier, col(Dossier.id) == col(Payment.dossier_id))
        .where(
            col(Payment.agency_id) == agency_id,
            col(Refund.status) == RefundStatus.succeeded,
            col(Refund.completed_at) >= start,
            col(Refund.completed_at) < end,
        )
        .group_by(col(Dossier.procedure_id), col(Payment.gateway))
    )
    both = union_all(paid, refunded).subquery()
    query = (
        select(
            col(Procedure.code),
            col(Procedure.name),
            both.c.method,
            func.sum(both.c.payments),
            func.sum(both.c.gross),
            func.sum(both.c.refund_count),
            func.sum(both.c.refunds),
        )
        .select_from(both)
        .join(Procedure, col(Procedure.id) == both.c.procedure_id)
        .group_by(col(Procedure.id), col(Procedure.code), col(Procedure.name), both.c.method)
        .order_by(col(Procedure.code), col(Procedure.name), both.c.method)
    )
    rows = []
    # PostgreSQL sums BIGINT as NUMERIC: bring every figure back to a whole number of VND.
    for code, name, method, payments, gross_sum, refund_count, refund_sum in s.execute(query):
        gross, refunds = int(gross_sum), int(refund_sum)
        rows.append(CloseRow(code, name, method, int(payments), gross, int(refund_count), refunds, gross - refunds))
    totals = CloseTotals(
        payments=sum(r.payments for r in rows),
        gross=sum(r.gross for r in rows),
        refund_count=sum(r.refund_count for r in rows),
        refunds=sum(r.refunds for r in rows),
        net=sum(r.net for r in rows),
    )
    open_count = s.execute(
        select(func.count())
        .select_from(ReconException)
        .where(
            col(ReconException.agency_id) == agency_id,
            col(ReconException.business_day) == day,
            col(ReconException.status) == ExceptionStatus.open,
        )
    ).scalar_one()
    return DailyClose(agency_id, _agency_code(s, agency_id), day, rows, totals, int(open_count))


CLOSE_COLUMNS: list[tuple[str, Kind]] = [
    ("procedure_code", "text"),
    ("procedure_name", "text"),
    ("method", "text"),
    ("payments", "count"),
    ("gross", "amount"),
    ("refund_count", "count"),
    ("refunds", "amount"),
    ("net", "amount"),
]


def _close_table(close: DailyClose) -> tuple[list[list[Cell]], list[int]]:
    """The rows under the header, and which of them are bold."""
    body: list[list[Cell]] = [
        [r.procedure_code, r.procedure_name, r.method, r.payments, r.gross, r.refund_count, r.refunds, r.net]
        for r in close.rows
    ]
    t = close.totals
    body.append(["Totals", None, None, t.payments, t.gross, t.refund_count, t.refunds, t.net])
    body.append([])
    body.append(["Open exceptions", close.open_exceptions])
    return body, [len(close.rows), len(close.rows) + 2]


def to_csv(close: DailyClose) -> bytes:
    body, _ = _close_table(close)
    return _csv([name for name, _ in CLOSE_COLUMNS], body)


def to_xlsx(close: DailyClose) -> bytes:
    body, bold = _close_table(close)
    return _xlsx(f"Daily close {close.business_day.isoformat()}", CLOSE_COLUMNS, body, bold)


def close_file_name(close: DailyClose, extension: str) -> str:
    return f"daily-close-{_file_part(close.agency_code)}-{close.business_day.isoformat()}.{extension}"


# --- the day's exceptions -----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ExceptionLine:
    id: str
    category: str
    status: str
    business_day: date
    payment_id: str | None
    dossier_id: str | None
    dossier_code: str | None
    document_id: str | None
    refund_id: str | None
    entry_id: int | None
    expected_amount: int | None
    actual_amount: int | None
    detail: str
    note: str | None
    resolved_by: str | None
    resolved_at: datetime | None
    created_at: datetime
    updated_at: datetime
    # Where the statement line behind the exception came from (None when it is not about a line).
    source_file: str | None = None
    source_line: int | None = None
    external_id: str | None = None
    reference: str | None = None
    memo: str | None = None
    line_amount: int | None = None


@dataclass(frozen=True)
class ExceptionsReport:
    agency_id: str
    agency_code: str
    business_day: date
    rows: list[ExceptionLine]


def day_exceptions(s: Session, agency_id: str, day: date) -> ExceptionsReport:
    """Every exception of ``day``, whatever its status, by category."""
    query = (
        select(ReconException, col(Dossier.code), StatementEntry, col(StatementImport.file_name))
        .outerjoin(Dossier, col(Dossier.id) == col(ReconException.dossier_id))
        .outerjoin(
            StatementEntry,
            (col(StatementEntry.id) == col(ReconException.entry_id))
            & (col(StatementEntry.agency_id) == col(ReconException.agency_id)),
        )
        .outerjoin(StatementImport, col(StatementImport.id) == col(StatementEntry.import_id))
        .where(col(ReconException.agency_id) == agency_id, col(ReconException.business_day) == day)
        .order_by(col(ReconException.category), col(ReconException.created_at), col(ReconException.id))
    )
    rows = [
        ExceptionLine(
            id=e.id,
            category=e.category.value,
            status=e.status.value,
            business_day=e.business_day,
            payment_id=e.payment_id,
            dossier_id=e.dossier_id,
            dossier_code=code,
            document_id=e.document_id,
            refund_id=e.refund_id,
            entry_id=e.entry_id,
            expected_amount=e.expected_amount,
            actual_amount=e.actual_amount,
            detail=e.detail,
            note=e.note,
            resolved_by=e.resolved_by,
            resolved_at=e.resolved_at,
            created_at=e.created_at,
            updated_at=e.updated_at,
            source_file=file_name,
            source_line=line.line_no if line else None,
            external_id=line.external_id if line else None,
            reference=line.reference if line else None,
            memo=line.description if line else None,
            line_amount=line.amount if line else None,
        )
        for e, code, line, file_name in s.execute(query)
    ]
    return ExceptionsReport(agency_id, _agency_code(s, agency_id), day, rows)


EXCEPTION_COLUMNS: list[tuple[str, Kind]] = [
    ("id", "text"),
    ("category", "text"),
    ("status", "text"),
    ("business_day", "text"),
    ("payment_id", "text"),
    ("dossier_code", "text"),
    ("document_id", "text"),
    ("refund_id", "text"),
    ("entry_id", "count"),
    ("expected_amount", "amount"),
    ("actual_amount", "amount"),
    ("detail", "text"),
    ("note", "text"),
    ("resolved_by", "text"),
    ("resolved_at", "text"),
    ("created_at", "text"),
    ("source_file", "text"),
    ("source_line", "count"),
    ("external_id", "text"),
    ("reference", "text"),
    ("memo", "text"),
    ("line_amount", "amount"),
]


def _exception_table(report: ExceptionsReport) -> list[list[Cell]]:
    return [
        [
            e.id,
            e.category,
            e.status,
            e.business_day.isoformat(),
            e.payment_id,
            e.dossier_code,
            e.document_id,
            e.refund_id,
            e.entry_id,
            e.expected_amount,
            e.actual_amount,
            e.detail,
            e.note,
            e.resolved_by,
            _local_time(e.resolved_at),
            _local_time(e.created_at),
            e.source_file,
            e.source_line,
            e.external_id,
            e.reference,
            e.memo,
            e.line_amount,
        ]
        for e in report.rows
    ]


def exceptions_to_csv(report: ExceptionsReport) -> bytes:
    return _csv([name for name, _ in EXCEPTION_COLUMNS], _exception_table(report))


def exceptions_to_xlsx(report: ExceptionsReport) -> bytes:
    title = f"Exceptions {report.business_day.isoformat()}"
    return _xlsx(title, EXCEPTION_COLUMNS, _exception_table(report), [])


def exceptions_file_name(report: ExceptionsReport, extension: str) -> str:
    return f"exceptions-{_file_part(report.agency_code)}-{report.business_day.isoformat()}.{extension}"


# --- writing ------------------------------------------------------------------------------------------------------
def _local_time(moment: datetime | None) -> str | None:
    # Staff read times on the business day's clock, with the offset so that nothing is ambiguous.
    return None if moment is None else moment.astimezone(GMT7).isoformat(timespec="seconds")


def _file_part(text: str) -> str:
    # The name goes into a Content-Disposition header: nothing that could end the quoted string or the header.
    return re.sub(r"[^A-Za-z0-9._-]", "_", text) or "agency"


def _csv(header: Sequence[str], body: Sequence[Sequence[Cell]]) -> bytes:
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow([cell_text(h) for h in header])
    for row in body:
        writer.writerow(["" if v is None else cell_text(v) if isinstance(v, str) else v for v in row])
    # The BOM is what makes Excel read the file as UTF-8 rather than the ANSI code page, which garbles Vietnamese.
    return buffer.getvalue().encode("utf-8-sig")


def table_xlsx(
    title: str, columns: Sequence[tuple[str, Kind]], body: Sequence[Sequence[Cell]], bold: Sequence[int] = ()
) -> bytes:
    """One sheet: bold headers, numbers as numbers, text that can never turn into a formula (other reports too)."""
    return _xlsx(title, columns, body, bold)


def _xlsx(
    title: str, columns: Sequence[tuple[str, Kind]], body: Sequence[Sequence[Cell]], bold: Sequence[int]
) -> bytes:
    book = Workbook()
    sheet = book.active
    sheet.title = title[:31]  # Excel's limit on sheet names
    strong = Font(bold=True)
    widths = [len(name) for name, _ in columns]
    for j, (name, _) in enumerate(columns, start=1):
        _put(sheet, 1, j, name).font = strong
    for i, row in enumerate(body):
        for j, value in enumerate(row, start=1):
            cell = _put(sheet, i + 2, j, value)
            if isinstance(value, int) and j <= len(columns):
                cell.number_format = "#,##0" if columns[j - 1][1] == "amount" else "0"
            if i in bold:
                cell.font = strong
            if j <= len(widths):
                widths[j - 1] = max(widths[j - 1], len(f"{value:,}" if isinstance(value, int) else str(value or "")))
    for j, width in enumerate(widths, start=1):
        sheet.column_dimensions[get_column_letter(j)].width = min(max(width + 2, 8), 60)
    sheet.freeze_panes = "A2"
    buffer = io.BytesIO()
    book.save(buffer)
    return buffer.getvalue()


def _put(sheet: Any, row: int, column: int, value: Cell) -> Any:
    cell = sheet.cell(row=row, column=column)
    if isinstance(value, str):
        cell.value = cell_text(value)
        # Never let openpyxl decide from the first character that this is a formula.
        cell.data_type = "s"
    else:
        cell.value = value
    return cell
