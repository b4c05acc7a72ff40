"""Gap-free numbering: per (agency, template, series, year), in issue order, inside the caller's transaction."""

from __future__ import annotations

from sqlalchemy import update
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col

from invoices.errors import SeriesExhausted
from invoices.tables import SeriesCounter

MAX_NUMBER = 99_999_999  # SHDon has at most 8 digits


def series_for_year(series: str, year: int) -> str:
    """The series' year digits (characters 2-3) follow the issue date: C26TAA issued in 2027 is C27TAA."""
    return f"{series[0]}{year % 100:02d}{series[3:]}"


def take_number(s: Session, agency_id: str, template: str, series: str, year: int) -> int:
    """The next number, taken under the counter row's lock until the caller commits (or rolls back and gives it
    back). On PostgreSQL the UPDATE locks the row; on SQLite the write transaction already holds the database."""
    where = (
        col(SeriesCounter.agency_id) == agency_id,
        col(SeriesCounter.template) == template,
        col(SeriesCounter.series) == series,
        col(SeriesCounter.year) == year,
    )
    stmt = update(SeriesCounter).where(*where).values(last_number=col(SeriesCounter.last_number) + 1)
    for _ in range(2):
        row = s.execute(stmt.returning(col(SeriesCounter.last_number))).first()
        if row is not None:
            if row[0] > MAX_NUMBER:
                raise SeriesExhausted(f"series {template}{series} has no number left in {year}")
            return int(row[0])
        try:
            with s.begin_nested():  # the first document of the series this year; a concurrent first one may win
                s.add(SeriesCounter(agency_id=agency_id, template=template, series=series, year=year))
        except IntegrityError:
            pass
    raise RuntimeError("could not take a number")  # pragma: no cover - the counter row exists after the insert
