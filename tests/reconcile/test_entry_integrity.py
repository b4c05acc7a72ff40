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


def _insert_three(third_import: str) -> str:
    """As the importer moves staged lines: one INSERT ... SELECT of many rows."""
    return (
        "INSERT INTO statement_entry (agency_id, import_id, source, line_no, external_id, kind, amount, fee, "
        f"currency, booked_on, description) SELECT :agency, CASE WHEN n = 3 THEN {third_import} ELSE :import END, "
        "'vnpay', n, 'T' || n, 'payment', 1000, 0, 'VND', :day, '' "
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
            # A foreign key is a pair of internal per-row triggers; the check left is one per statement.
            internal = s.execute(
                text("SELECT count(*) FROM pg_trigger WHERE tgrelid = 'statement_entry'::regclass AND tgisinternal")
            ).scalar_one()
            per_row_on_insert = s.execute(
                text(
                    "SELECT count(*) FROM pg_trigger WHERE tgrelid = 'statement_entry'::regclass "
                    "AND tgtype & 1 = 1 AND tgtype & 4 = 4"  # TRIGGER_TYPE_ROW and TRIGGER_TYPE_INSERT
                )
            ).scalar_one()
            assert (internal, per_row_on_insert) == (0, 0)
        else:
            assert s.execute(text("PRAGMA foreign_key_list(statement_entry)")).all() == []
