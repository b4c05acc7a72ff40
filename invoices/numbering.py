"""Gap-free numbering: per (agency, template, series, year), in issue order, inside the caller's transaction."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import and_, bindparam, insert, update
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session

from invoices import rules2026
from invoices.errors import SeriesExhausted
from invoices.tables import SeriesCounter
from payments.core.db import table_of
from payments.core.sql import Prepared, Rows, together

MAX_NUMBER = rules2026.MAX_NUMBER  # SHDon has at most 8 digits


def series_for_year(series: str, year: int) -> str:
    """The series' year digits (characters 2-3) follow the issue date: C26TAA issued in 2027 is C27TAA."""
    return f"{series[0]}{year % 100:02d}{series[3:]}"


_COUNTER = table_of(SeriesCounter)
# Built once: Core statements on the session's connection, without the ORM's per-statement work (autoflush,
# ORM compile state), on the path every issued document takes.
_NEXT = Prepared(
    update(_COUNTER)
    .where(
        and_(
            _COUNTER.c.agency_id == bindparam("a"),
            _COUNTER.c.template == bindparam("t"),
            _COUNTER.c.series == bindparam("s"),
            _COUNTER.c.year == bindparam("y"),
        )
    )
    .values(last_number=_COUNTER.c.last_number + bindparam("n"))
    .returning(_COUNTER.c.last_number)
)
_FIRST = Prepared(insert(_COUNTER))


def take_number(s: Session, agency_id: str, template: str, series: str, year: int) -> int:
    """The next number, taken under the counter row's lock until the caller commits (or rolls back and gives it
    back). On PostgreSQL the UPDATE locks the row; on SQLite the write transaction already holds the database."""
    conn = s.connection()
    key = {"a": agency_id, "t": template, "s": series, "y": year, "n": 1}
    for _ in range(2):
        row = _NEXT(conn, key).first()
        if row is not None:
            _check_left(template, series, year, int(row[0]))
            return int(row[0])
        try:
            with conn.begin_nested():  # the first document of the series this year; a concurrent first one may win
                _FIRST(conn, {"agency_id": agency_id, "template": template, "series": series, "year": year})
        except IntegrityError:
            pass
    raise RuntimeError("could not take a number")  # pragma: no cover - the counter row exists after the insert


def take_numbers_then(
    s: Session,
    agency_id: str,
    template: str,
    series: str,
    year: int,
    count: int,
    reads: Sequence[tuple[Prepared, Mapping[str, Any]]],
) -> tuple[int, list[Rows]]:
    """The first of ``count`` consecutive numbers (``take_number`` for several documents of one series at once), and
    the reads that must follow it, in the same round trip on PostgreSQL: each read runs once the counter row is
    locked, and sees what committed while the numbers waited for it; what they return comes back in order. The
    caller stores a document under each number before it commits, or rolls back and gives them all back."""
    if count < 1:
        raise ValueError("at least one number is taken")
    conn = s.connection()
    key = {"a": agency_id, "t": template, "s": series, "y": year, "n": count}
    taken, *found = together(conn, [(_NEXT, key), *reads])
    row = taken.first()
    if row is None:  # the first document of the series this year: the counter row is made, then locked
        first = take_number(s, agency_id, template, series, year)
        if count > 1:
            more = _NEXT(conn, {**key, "n": count - 1}).first()
            assert more is not None  # the row was just made and is locked by this transaction
            _check_left(template, series, year, int(more[0]))
        return first, together(conn, reads)
    last = int(row[0])
    _check_left(template, series, year, last)
    return last - count + 1, found


def _check_left(template: str, series: str, year: int, last: int) -> None:
    if last > MAX_NUMBER:
        raise SeriesExhausted(f"series {template}{series} has no number left in {year}")
