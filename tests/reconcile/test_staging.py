"""The import stages each file in a temporary table and moves it into ``statement_entry`` in one statement: what
that statement must keep (file order, the first of two lines with one transaction id, links to payments) and what
a failed import must leave behind (nothing, not even the staging table, on either database)."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import text
from sqlmodel import col, select

from adapters.statements.base import StatementFormat
from payments.core.context import AppContext
from payments.reconcile.importer import (
    ANALYZED_COLUMNS,
    BATCH,
    WORK_MEM_BYTES_PER_LINE,
    ImportFailed,
    import_file,
    work_mem_kib,
)
from payments.reconcile.models import StatementEntry, StatementImport
from tests.factories import seed_agency
from tests.reconcile.test_matching import _file, _payment, _row


@pytest.fixture
def agency(ctx: AppContext) -> str:
    with ctx.db.write() as s:
        return seed_agency(s, "AGC-R", ["vnpay"]).id


def _entries(ctx: AppContext) -> list[StatementEntry]:
    with ctx.db.read() as s:
        return list(s.exec(select(StatementEntry).order_by(col(StatementEntry.id))).all())


def test_the_staged_file_goes_in_in_file_order_linked_and_once(ctx: AppContext, agency: str, tmp_path: Path) -> None:
    paid = _payment(ctx, agency, "REF-A", 50_000)
    rows = [_row("9", "REF-Z", 3_000), _row("1", "REF-A", 50_000), _row("9", "REF-Z", 7_000), _row("5", "", 1)]
    result = import_file(ctx, "AGC-R", _file(tmp_path, rows), StatementFormat.vnpay_csv)
    assert (result.lines, result.new_lines, result.total_amount) == (4, 3, 60_001)
    entries = _entries(ctx)
    # Ids follow the file; of the two lines of transaction 9 the first is kept.
    assert [(e.external_id, e.line_no, e.amount) for e in entries] == [("9", 2, 3_000), ("1", 3, 50_000), ("5", 5, 1)]
    assert [e.payment_id for e in entries] == [None, paid.id, None]
    assert {e.import_id for e in entries} == {result.import_id}
    assert {(e.agency_id, e.source) for e in entries} == {(agency, "vnpay")}
    assert entries[2].reference is None  # an empty reference is stored as none, not as ""


def test_a_failed_import_leaves_nothing_and_the_next_one_works(ctx: AppContext, agency: str, tmp_path: Path) -> None:
    bad = _file(tmp_path, [_row("1", "REF-A", 1_000), "2,REF-B,20/11/2026 12:00:00,Thanh toán,abc,0,NCB,x"], "bad.csv")
    for _ in range(2):  # the staging table of the first attempt must not be in the way of the second
        with pytest.raises(ImportFailed):
            import_file(ctx, "AGC-R", bad, StatementFormat.vnpay_csv)
    with ctx.db.read() as s:
        assert s.exec(select(StatementImport)).all() == []
    good = _file(tmp_path, [_row("1", "REF-A", 1_000), _row("2", "REF-B", 2_000)], "good.csv")
    for name in ("good.csv", "again.csv"):
        path = good if name == "good.csv" else _file(tmp_path, [_row("2", "REF-B", 2_000)], name)
        import_file(ctx, "AGC-R", path, StatementFormat.vnpay_csv)
    assert [(e.external_id, e.amount) for e in _entries(ctx)] == [("1", 1_000), ("2", 2_000)]


def test_work_mem_is_sized_by_the_file() -> None:
    assert work_mem_kib(10_000) is None  # the server's default is enough
    assert work_mem_kib(1_000_000) == 1_000_000 * WORK_MEM_BYTES_PER_LINE // 1024
    assert work_mem_kib(100_000_000) == 256 * 1024


def test_a_bad_line_after_rows_already_streamed_names_its_line_and_stores_nothing(
    ctx: AppContext, agency: str, tmp_path: Path
) -> None:
    # Rows go from the parser into COPY (or the staging table) as they are read: the bad line comes after more than
    # a batch of them has been sent, and still nothing of the file is kept.
    rows = [_row(str(i), f"REF-{i}", 1_000) for i in range(BATCH + 10)]
    rows.append("X-1,REF-X,31/02/2026 12:00:00,Thanh toán,1000,0,NCB,x")
    with pytest.raises(ImportFailed) as failed:
        import_file(ctx, "AGC-R", _file(tmp_path, rows), StatementFormat.vnpay_csv)
    assert failed.value.extra["line"] == BATCH + 12  # the header is line 1
    assert "31/02/2026" in failed.value.detail
    with ctx.db.read() as s:
        assert s.exec(select(StatementImport)).all() == [] and _entries(ctx) == []


def _statistics(ctx: AppContext) -> tuple[float, dict[str, float]]:
    """The table's row estimate and, per analyzed column, the fraction of NULLs the planner believes."""
    with ctx.db.read() as s:
        rows = s.execute(text("SELECT reltuples FROM pg_class WHERE oid = 'statement_entry'::regclass")).scalar_one()
        nulls = s.execute(text("SELECT attname, null_frac FROM pg_stats WHERE tablename = 'statement_entry'")).all()
    return float(rows), {name: float(frac) for name, frac in nulls}


def test_an_import_that_changes_the_table_enough_refreshes_the_planners_statistics(
    ctx: AppContext, agency: str, tmp_path: Path
) -> None:
    """Matching runs right after an import, before autovacuum: without fresh statistics PostgreSQL would plan the
    day's lookups for an empty table. The rule is autovacuum's (50 rows plus a tenth of the table)."""
    if ctx.db.dialect != "postgresql":
        import_file(ctx, "AGC-R", _file(tmp_path, [_row("1", "REF-A", 1_000)]), StatementFormat.vnpay_csv)
        return  # SQLite plans without sampled statistics: the import has nothing to refresh
    _payment(ctx, agency, "REF-0", 1_000)
    assert _statistics(ctx)[0] < 0  # emptied by the test's set-up: never analyzed since
    rows = [_row(str(i), f"REF-{i}", 1_000) for i in range(60)]  # one line of 60 settles a known payment
    import_file(ctx, "AGC-R", _file(tmp_path, rows, "sixty.csv"), StatementFormat.vnpay_csv)
    estimate, nulls = _statistics(ctx)
    assert estimate == 60
    assert nulls["payment_id"] == pytest.approx(59 / 60)
    assert set(ANALYZED_COLUMNS) <= set(nulls)
    # 60 more lines are over the threshold for a table of 60 (50 + 6). (Under it, the server's own count of changes,
    # flushed a moment after each transaction, may or may not include this run's: not checked.)
    again = [_row(str(i), f"REF-{i}", 1_000) for i in range(60, 120)]
    import_file(ctx, "AGC-R", _file(tmp_path, again, "sixty-more.csv"), StatementFormat.vnpay_csv)
    assert _statistics(ctx)[0] == 120
