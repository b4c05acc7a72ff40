"""SQLite plans without sampled statistics, so an index choice that depends on the schema's order of indexes is a
choice by chance: the lookups that must go by payment name their index, whatever order the table's indexes were
created in (a table rebuilt by a migration lists them in another order). On PostgreSQL the day's payments are read
in one pass over each table."""

from __future__ import annotations

from datetime import date
from typing import Any

import pytest
from sqlalchemy import bindparam, text

from payments.core.context import AppContext
from payments.reconcile.matching import _DAY_PAYMENTS_PG, _DAY_PAYMENTS_SQLITE, PAID_STATUSES, SETTLING, day_bounds

INDEXES = {
    "ix_statement_entry_day": "CREATE INDEX ix_statement_entry_day ON statement_entry (agency_id, booked_on)",
    "ix_statement_entry_payment": "CREATE INDEX ix_statement_entry_payment ON statement_entry (payment_id)",
}


def _explain(ctx: AppContext, how: str, query: str) -> list[Any]:
    """The plan of one of the day's statements, ``how`` being the dialect's EXPLAIN."""
    explained = text(f"{how} {query}").bindparams(
        bindparam("paid", expanding=True), bindparam("settling", expanding=True)
    )
    start, end = day_bounds(date(2026, 11, 20))
    args = {"agency": "agc", "start": start, "end": end, "paid": list(PAID_STATUSES), "settling": list(SETTLING)}
    with ctx.db.read() as s:
        return list(s.execute(explained, args))


def _plan(ctx: AppContext) -> list[str]:
    return [str(row[3]) for row in _explain(ctx, "EXPLAIN QUERY PLAN", _DAY_PAYMENTS_SQLITE.text)]


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
@pytest.mark.parametrize("last", sorted(INDEXES))
def test_a_days_payments_look_their_lines_up_by_payment_whatever_the_index_order(ctx: AppContext, last: str) -> None:
    with ctx.db.write() as s:  # dropped and created again: listed last in the schema
        s.execute(text(f"DROP INDEX {last}"))
        s.execute(text(INDEXES[last]))
    with ctx.db.read() as s:
        listed = "SELECT name FROM sqlite_master WHERE name LIKE 'ix_statement_entry_%' ORDER BY rowid"
        order = s.execute(text(listed)).scalars().all()
    assert order[-1] == last
    lines = [step for step in _plan(ctx) if " e " in f" {step} "]
    assert len(lines) == 4  # count, sum and first line of the payment's lines, and the check in the filter
    assert all("USING INDEX ix_statement_entry_payment (payment_id=?)" in step for step in lines), lines


def _relations(node: dict[str, Any]) -> list[str]:
    own = [node["Relation Name"]] if "Relation Name" in node else []
    return own + [name for child in node.get("Plans", []) for name in _relations(child)]


@pytest.mark.parametrize("database_url", ["postgres"], indirect=True)
def test_a_days_payments_read_each_table_once_on_postgresql(ctx: AppContext) -> None:
    """At a million lines the payments read a second time, to join the lines' totals back to them, cost a third of
    the statement."""
    plan = _explain(ctx, "EXPLAIN (FORMAT JSON)", _DAY_PAYMENTS_PG.text)[0][0][0]["Plan"]
    assert sorted(_relations(plan)) == ["document", "payment", "statement_entry"]
