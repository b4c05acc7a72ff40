"""Receipt templates and series as data per agency: register, close, list, and the open series issuance takes.

A series is registered for the calendar year its characters 2-3 name, and numbers restart at 1 each year
(``series_counter``). Issuance takes the agency's one open series of the template for the issue year:

- an agency that never registered a series of its own gets the deployment's default (``LEPHI_RECEIPT_SERIES``,
  with the issue year's digits) registered on first use, each year: what happened before series were data;
- once an agency has registered a series, or a series of the year has been closed, only a registered open series
  is used, and issuance is refused (:class:`SeriesNotOpen`) until there is one.

Closing a series takes its counter row's lock first, so that it waits for documents being numbered in it, and an
issuance that was waiting on that lock sees the series closed (``confirm_open``) and rolls back.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from typing import Any

from sqlalchemy import Connection, and_, bindparam, select, update
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col
from sqlmodel import select as sm_select

from invoices.config import ReceiptSettings
from invoices.errors import SeriesNotOpen
from invoices.format import CURRENT, DocumentKind
from invoices.numbering import series_for_year
from invoices.tables import ReceiptSeries, SeriesCounter, SeriesOrigin, SeriesStatus
from payments.core.db import table_of
from payments.core.errors import Conflict, NotFound, ValidationFailed
from payments.core.logging import get_logger
from payments.core.sql import Prepared, Rows
from payments.core.types import utcnow

__all__ = [
    "OpenSeries",
    "close_series",
    "confirm_open",
    "last_numbers",
    "list_series",
    "open_series",
    "receipt_template",
    "register_series",
    "status_read",
    "today",
    "year_of",
]

log = get_logger(__name__)
GMT7 = timezone(timedelta(hours=7))
_SERIES_CHARS = "TDLMNBGH"


def receipt_template() -> str:
    return CURRENT.templates[DocumentKind.receipt]


def year_of(series: str) -> int:
    """The year a series is for: its characters 2-3 are the year's last two digits."""
    return 2000 + int(series[1:3])


def today() -> date:
    return datetime.now(GMT7).date()


@dataclass(frozen=True)
class OpenSeries:
    id: str
    series: str


def _check_symbol(template: str, series: str) -> None:
    if not (len(template) == 1 and template in "123456789"):
        raise ValidationFailed(f"template {template!r} is not a template digit (KHMSHDon, 1-9)")
    if not (
        len(series) == 6
        and series[0] in "CK"
        and series[1:3].isascii()
        and series[1:3].isdigit()
        and series[3] in _SERIES_CHARS
        and series[4:].isascii()
        and series[4:].isalpha()
        and series[4:].isupper()
    ):
        raise ValidationFailed(
            f"series {series!r} is not a series symbol (KHHDon): C or K, the year's two digits, one of "
            f"{_SERIES_CHARS}, two capital letters, e.g. K27TLP"
        )


def register_series(
    s: Session, agency_id: str, template: str, series: str, actor: str, on: date | None = None
) -> ReceiptSeries:
    """Register an open series for the year it names, in the caller's transaction."""
    _check_symbol(template, series)
    year = year_of(series)
    if year < (on or today()).year:
        raise ValidationFailed(f"series {series} is for {year}, a past year")
    existing = s.exec(
        sm_select(ReceiptSeries).where(
            ReceiptSeries.agency_id == agency_id, ReceiptSeries.template == template, ReceiptSeries.series == series
        )
    ).first()
    if existing is not None:
        raise Conflict(f"series {template}{series} is already registered ({existing.status.value})")
    current = _open_row(s, agency_id, template, year)
    if current is not None:
        raise Conflict(f"series {template}{current.series} is open for {year}; close it before registering another")
    row = ReceiptSeries(
        agency_id=agency_id,
        template=template,
        series=series,
        year=year,
        registered_by=actor,
        origin=SeriesOrigin.registered,
    )
    s.add(row)
    try:
        with s.begin_nested():
            s.flush()
    except IntegrityError:
        raise Conflict(f"another series of template {template} was registered for {year} at the same time") from None
    log.info("receipts.series_registered", agency_id=agency_id, symbol=f"{template}{series}", actor=actor)
    return row


def close_series(s: Session, agency_id: str, template: str, series: str, actor: str) -> ReceiptSeries:
    """Close a series (a year ends, or it is given up): no document is numbered in it after this transaction."""
    row = s.exec(
        sm_select(ReceiptSeries).where(
            ReceiptSeries.agency_id == agency_id, ReceiptSeries.template == template, ReceiptSeries.series == series
        )
    ).first()
    if row is None:
        raise NotFound(f"no series {template}{series}")
    if row.status is SeriesStatus.closed:
        raise Conflict(f"series {template}{series} is already closed")
    # Waits for documents being numbered in the series (they hold this row until they commit).
    counter = table_of(SeriesCounter)
    s.connection().execute(
        update(counter)
        .where(
            and_(
                counter.c.agency_id == agency_id,
                counter.c.template == template,
                counter.c.series == series,
                counter.c.year == row.year,
            )
        )
        .values(last_number=counter.c.last_number)
    )
    row.status = SeriesStatus.closed
    row.closed_at = utcnow()
    row.closed_by = actor
    s.add(row)
    s.flush()
    log.info("receipts.series_closed", agency_id=agency_id, symbol=f"{template}{series}", actor=actor)
    return row


def list_series(s: Session, agency_id: str) -> list[ReceiptSeries]:
    return list(
        s.exec(
            sm_select(ReceiptSeries)
            .where(ReceiptSeries.agency_id == agency_id)
            .order_by(col(ReceiptSeries.year).desc(), col(ReceiptSeries.template), col(ReceiptSeries.series))
        ).all()
    )


def last_numbers(s: Session, agency_id: str) -> dict[tuple[str, str, int], int]:
    """The last number used per (template, series, year) of the agency."""
    rows = s.exec(sm_select(SeriesCounter).where(SeriesCounter.agency_id == agency_id)).all()
    return {(r.template, r.series, r.year): r.last_number for r in rows}


def _open_row(s: Session, agency_id: str, template: str, year: int) -> ReceiptSeries | None:
    return s.exec(
        sm_select(ReceiptSeries).where(
            ReceiptSeries.agency_id == agency_id,
            ReceiptSeries.template == template,
            ReceiptSeries.year == year,
            ReceiptSeries.status == SeriesStatus.open,
        )
    ).first()


def open_series(s: Session, settings: ReceiptSettings, agency_id: str, template: str, year: int) -> OpenSeries:
    """The open series issuance takes, registering the deployment's default for an agency that never registered
    one (module docstring); raises :class:`SeriesNotOpen` otherwise."""
    row = _open_row(s, agency_id, template, year)
    if row is not None:
        return OpenSeries(row.id, row.series)
    rows = s.exec(
        sm_select(ReceiptSeries).where(ReceiptSeries.agency_id == agency_id, ReceiptSeries.template == template)
    ).all()
    closed = [r for r in rows if r.year == year]
    if closed:
        symbols = ", ".join(f"{r.template}{r.series}" for r in closed)
        raise SeriesNotOpen(f"series {symbols} of {year} closed and no open series of template {template} registered")
    if any(r.origin is SeriesOrigin.registered for r in rows):
        raise SeriesNotOpen(f"no series of template {template} is registered for {year}")
    default = ReceiptSeries(
        agency_id=agency_id,
        template=template,
        series=series_for_year(settings.receipt_series, year),
        year=year,
        origin=SeriesOrigin.default,
    )
    try:
        with s.begin_nested():
            s.add(default)
            s.flush()
    except IntegrityError:  # a concurrent first document of the year registered it (PostgreSQL)
        row = _open_row(s, agency_id, template, year)
        if row is None:
            raise SeriesNotOpen(f"no series of template {template} is registered for {year}") from None
        return OpenSeries(row.id, row.series)
    log.info("receipts.series_registered", agency_id=agency_id, symbol=f"{template}{default.series}", actor="default")
    return OpenSeries(default.id, default.series)


_SERIES = table_of(ReceiptSeries)
_STATUS = Prepared(select(_SERIES.c.status).where(_SERIES.c.id == bindparam("id")))


def status_read(series: OpenSeries) -> tuple[Prepared, dict[str, Any]]:
    """The read ``confirm_open`` judges, for a caller that runs it together with others (``together``)."""
    return _STATUS, {"id": series.id}


def confirm_open(conn: Connection, series: OpenSeries, status: Rows | None = None) -> None:
    """After the counter row is locked (PostgreSQL): a close that committed meanwhile is seen, and refuses.
    ``status``: what ``status_read`` returned, when the caller ran it already."""
    if status is None:
        status = _STATUS(conn, {"id": series.id})
    if status.scalar() != SeriesStatus.open:
        raise SeriesNotOpen(f"series {series.series} was closed while this document was being issued")
