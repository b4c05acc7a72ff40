"""A statement line always belongs to an existing import of its own agency (migration 0019): enforced by triggers
instead of foreign keys, so that PostgreSQL checks a bulk insert once per statement rather than once per row. Both
databases."""

from __future__ import annotations

import secrets
from datetime import date
from pathlib import Path

import pytest
from sqlalchemy import delete, func, select, text, update
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session

from adapters.statements.base import StatementFormat
from payments.agency.models import Agency
from payments.core.context import AppContext
from payments.reconcile.importer import import_file
from payments.reconcile.models import StatementEntry, StatementImport
from tests.factories import seed_agency
from tests.reconcile.test_matching import _file, _row

DAY = date(2026, 11, 20)


@pytest.fixture
def agencies(ctx: AppContext) -> tuple[str, str]:
    with ctx.db.write() as s:
        return seed_agency(s, "AGC-I").id, seed_agency(s, "AGC-J").id


def _import(ctx: AppContext, agency_id: str) -> str:
    with ctx.db.write() as s:
        row = StatementImport(
            agency_id=agency_id, source="vnpay", format="vnpay_csv", file_name="f.csv", sha256=secrets.token_hex(32)
        )
        s.add(row)
        s.flush()
        return row.id


def _line(agency_id: str, import_id: str, external_id: str = "T1") -> StatementEntry:
    return StatementEntry(
        agency_id=agency_id,
        import_id=import_id,
        source="vnpay",
        line_no=2,
        external_id=external_id,
        kind="payment",
        amount=1_000,
        booked_on=DAY,
    )


def _count(ctx: AppContext) -> int:
    with ctx.db.read() as s:
        return int(s.execute(select(func.count()).select_from(StatementEntry)).scalar_one())


def test_a_line_must_name_an_existing_import_of_its_agency(ctx: AppContext, agencies: tuple[str, str]) -> None:
    mine, other = agencies
    imported = _import(ctx, mine)
    for agency_id, import_id in ((mine, "imp_missing"), (other, imported), ("agc_missing", imported)):
        with pytest.raises(IntegrityError), ctx.db.write() as s:
            s.add(_line(agency_id, import_id))
    with ctx.db.write() as s:
        s.add(_line(mine, imported))
    assert _count(ctx) == 1
    # Moving a line to another import or agency is checked too.
    for values in ({"import_id": "imp_missing"}, {"agency_id": other}):
        with pytest.raises(IntegrityError), ctx.db.write() as s:
            s.execute(update(StatementEntry).values(**values))
    with ctx.db.write() as s:  # a change that keeps the import and agency is not refused
        s.execute(update(StatementEntry).values(payment_id="pay_x", import_id=imported))


def _insert_three(third_import: str, prefix: str = "T") -> str:
    """As the importer moves staged lines: one INSERT ... SELECT of many rows."""
    return (
        "INSERT INTO statement_entry (agency_id, import_id, source, line_no, external_id, kind, amount, fee, "
        f"currency, booked_on, description) SELECT :agency, CASE WHEN n = 3 THEN {third_import} ELSE :import END, "
        f"'vnpay', n, '{prefix}' || n, 'payment', 1000, 0, 'VND', :day, '' "
        "FROM (SELECT 1 AS n UNION ALL SELECT 2 UNION ALL SELECT 3) lines"
    )


def test_one_bad_line_refuses_the_whole_set_based_insert(ctx: AppContext, agencies: tuple[str, str]) -> None:
    mine, _ = agencies
    params = {"agency": mine, "import": _import(ctx, mine), "day": DAY}
    with pytest.raises(IntegrityError), ctx.db.write() as s:
        s.execute(text(_insert_three("'imp_missing'")), params)
    assert _count(ctx) == 0
    with ctx.db.write() as s:
        s.execute(text(_insert_three(":import")), params)
    assert _count(ctx) == 3


def test_an_import_with_lines_is_neither_deleted_nor_moved(ctx: AppContext, agencies: tuple[str, str]) -> None:
    mine, other = agencies
    imported = _import(ctx, mine)
    with ctx.db.write() as s:
        s.add(_line(mine, imported))
    for statement in (
        delete(StatementImport).where(StatementImport.id == imported),  # type: ignore[arg-type]
        update(StatementImport).values(agency_id=other),
        delete(Agency).where(Agency.id == mine),  # type: ignore[arg-type]
    ):
        with pytest.raises(IntegrityError), ctx.db.write() as s:
            s.execute(statement)
    assert _count(ctx) == 1
    with ctx.db.write() as s:  # without its lines it goes, as undo does it
        s.execute(delete(StatementEntry))
        s.execute(delete(StatementImport).where(StatementImport.id == imported))  # type: ignore[arg-type]
    with ctx.db.read() as s:
        assert s.execute(select(func.count()).select_from(StatementImport)).scalar_one() == 0


def test_an_imported_file_passes_the_check(ctx: AppContext, agencies: tuple[str, str], tmp_path: Path) -> None:
    result = import_file(
        ctx, "AGC-I", _file(tmp_path, [_row("1", "R1", 1_000), _row("2", "R2", 2_000)]), StatementFormat.vnpay_csv
    )
    assert (result.lines, result.new_lines) == (2, 2)
    with pytest.raises(IntegrityError), ctx.db.write() as s:
        s.execute(delete(StatementImport).where(StatementImport.id == result.import_id))  # type: ignore[arg-type]


def test_lines_carry_no_foreign_key_checked_per_row(ctx: AppContext) -> None:
    with ctx.db.read() as s:
        if ctx.db.dialect == "postgresql":
            # A foreign key is a pair of internal per-row triggers; the check left on insert is one trigger whose
            # condition (WHEN) lets a declared import's lines through without a call.
            internal = s.execute(
                text("SELECT count(*) FROM pg_trigger WHERE tgrelid = 'statement_entry'::regclass AND tgisinternal")
            ).scalar_one()
            on_insert = s.execute(
                text(
                    "SELECT tgqual IS NOT NULL, tgnewtable IS NULL FROM pg_trigger "
                    "WHERE tgrelid = 'statement_entry'::regclass AND tgtype & 4 = 4"  # TRIGGER_TYPE_INSERT
                )
            ).all()
            assert internal == 0
            assert [tuple(row) for row in on_insert] == [(True, True)]
        else:
            assert s.execute(text("PRAGMA foreign_key_list(statement_entry)")).all() == []


def _check_calls(s: Session) -> int:
    """How many times this connection called the per-line check and has not yet reported it (PostgreSQL counts
    calls with track_functions and reports them at most once a second: compare two readings)."""
    return int(
        s.execute(
            text(
                "SELECT coalesce(sum(calls), 0) FROM pg_stat_xact_user_functions "
                "WHERE funcname = 'statement_entry_check_imports'"
            )
        ).scalar_one()
    )


def test_a_declared_import_lines_go_in_without_a_check_per_line(ctx: AppContext, agencies: tuple[str, str]) -> None:
    """The bulk import declares its import once (checked and locked); its lines then call no trigger at all, and
    are kept in no transition table. Lines of any other import, or of another agency, are still checked, one by
    one, in the same transaction."""
    if ctx.db.dialect != "postgresql":
        return  # SQLite's triggers check every line (per row is all it has); nothing is declared there
    mine, other = agencies
    imported, second = _import(ctx, mine), _import(ctx, mine)
    declare = text("SELECT statement_entry_declare_import(:import, :agency)")
    lines = text(_insert_three(":import"))
    with ctx.db.write() as s:
        s.execute(text("SET LOCAL track_functions = 'pl'"))
        before = _check_calls(s)
        s.execute(lines, {"agency": mine, "import": imported, "day": DAY})
        assert _check_calls(s) - before == 3  # undeclared: one check per line
    with ctx.db.write() as s:
        s.execute(text("SET LOCAL track_functions = 'pl'"))
        s.execute(declare, {"import": second, "agency": mine})
        before = _check_calls(s)
        s.execute(text(_insert_three(":import", "U")), {"agency": mine, "import": second, "day": DAY})
        assert _check_calls(s) - before == 0
        s.add(_line(mine, imported, external_id="V1"))  # another import of the agency: checked, and it exists
        s.flush()
        assert _check_calls(s) - before == 1
    assert _count(ctx) == 7
    # What the declaration lets through is exactly its import and its agency.
    for agency_id, import_id in ((other, second), (mine, "imp_missing")):
        with pytest.raises(IntegrityError), ctx.db.write() as s:
            s.execute(declare, {"import": second, "agency": mine})
            s.add(_line(agency_id, import_id, external_id="W1"))
    # An import cannot be declared for another agency, nor one that does not exist.
    for import_id, agency_id in ((second, other), ("imp_missing", mine)):
        with pytest.raises(IntegrityError), ctx.db.write() as s:
            s.execute(declare, {"import": import_id, "agency": agency_id})
    # The declaration ends with its transaction.
    with pytest.raises(IntegrityError), ctx.db.write() as s:
        s.add(_line(other, second, external_id="X1"))
    assert _count(ctx) == 7
