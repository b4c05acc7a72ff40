"""Gap-free numbering per (agency, template, series, year), under concurrency and rollbacks."""

from __future__ import annotations

import threading

import pytest
from sqlalchemy import update
from sqlmodel import col

from invoices.errors import SeriesExhausted
from invoices.numbering import MAX_NUMBER, series_for_year, take_number
from invoices.tables import SeriesCounter
from payments.core.context import AppContext
from tests.factories import seed_agency


@pytest.fixture
def agency_id(ctx: AppContext) -> str:
    with ctx.db.write() as s:
        return seed_agency(s, "AGC-N").id


def test_numbers_start_at_one_per_series_and_year(ctx: AppContext, agency_id: str) -> None:
    with ctx.db.write() as s:
        got = [take_number(s, agency_id, "1", "C26TAA", 2026) for _ in range(3)]
        other_series = take_number(s, agency_id, "1", "C26TAB", 2026)
        next_year = take_number(s, agency_id, "1", "C27TAA", 2027)
    assert got == [1, 2, 3] and other_series == 1 and next_year == 1


def test_a_rolled_back_number_is_used_by_the_next_document(ctx: AppContext, agency_id: str) -> None:
    with ctx.db.write() as s:
        assert take_number(s, agency_id, "1", "C26TAA", 2026) == 1
    with pytest.raises(RuntimeError), ctx.db.write() as s:
        assert take_number(s, agency_id, "1", "C26TAA", 2026) == 2
        raise RuntimeError("signing failed")
    with ctx.db.write() as s:
        assert take_number(s, agency_id, "1", "C26TAA", 2026) == 2


def test_hundred_concurrent_takers_get_one_to_hundred(ctx: AppContext, agency_id: str) -> None:
    got: list[int] = []
    lock = threading.Lock()
    start = threading.Barrier(20)

    def worker() -> None:
        start.wait()
        for _ in range(5):
            with ctx.db.write() as s:
                n = take_number(s, agency_id, "2", "C26TYY", 2026)
            with lock:
                got.append(n)

    threads = [threading.Thread(target=worker) for _ in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert sorted(got) == list(range(1, 101))


def test_series_year_digits_follow_the_issue_date() -> None:
    assert series_for_year("C26TAA", 2027) == "C27TAA" and series_for_year("K25DYY", 2030) == "K30DYY"


def test_series_year_digits_are_always_two() -> None:
    """A year whose last two digits start with 0 keeps the 0: the series stays six characters (a mutant that
    dropped the zero padding survived every other test)."""
    assert series_for_year("C99TAA", 2100) == "C00TAA" and series_for_year("K26DYY", 2105) == "K05DYY"


def test_the_last_eight_digit_number_is_issued_and_then_the_series_is_exhausted(
    ctx: AppContext, agency_id: str
) -> None:
    """SHDon has at most 8 digits: 99999999 is the series' last number, and the next request is refused, naming
    the series and the year (the two boundary mutants of the check survived every other test)."""
    with ctx.db.write() as s:
        assert take_number(s, agency_id, "1", "C26TAA", 2026) == 1
        s.execute(
            update(SeriesCounter).where(col(SeriesCounter.agency_id) == agency_id).values(last_number=MAX_NUMBER - 1)
        )
    with ctx.db.write() as s:
        assert take_number(s, agency_id, "1", "C26TAA", 2026) == MAX_NUMBER == 99_999_999
    with pytest.raises(SeriesExhausted, match=r"^series 1C26TAA has no number left in 2026$"), ctx.db.write() as s:
        take_number(s, agency_id, "1", "C26TAA", 2026)
    with ctx.db.write() as s:  # another series is not affected
        assert take_number(s, agency_id, "1", "C26TAB", 2026) == 1
