"""How many statements and commits a request costs, and that the agency cache follows changes made elsewhere."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select, update
from sqlmodel import col

from payments.agency.models import Agency, FeeScheduleLine, Procedure
from payments.agency.service import touch
from payments.core.db import Database, make_engine
from tests.conftest import Api
from tests.factories import dossier_body, payment_body

_WRITES = ("INSERT", "UPDATE", "DELETE")


@dataclass
class Tally:
    """Per transaction: its statements; a transaction counts as a write when it changed something."""

    current: dict[int, list[str]] = field(default_factory=dict)
    committed: list[list[str]] = field(default_factory=list)

    @property
    def write_transactions(self) -> list[list[str]]:
        return [t for t in self.committed if any(s.startswith(_WRITES) for s in t)]


@contextmanager
def tally(db: Database) -> Iterator[Tally]:
    seen = Tally()

    def on_statement(conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        text = statement.lstrip().upper()
        if not text.startswith("BEGIN"):
            seen.current.setdefault(id(conn), []).append(text)

    def on_commit(conn: Any) -> None:
        seen.committed.append(seen.current.pop(id(conn), []))

    def on_rollback(conn: Any) -> None:
        seen.current.pop(id(conn), None)

    db.listen("before_cursor_execute", on_statement)
    db.listen("commit", on_commit)
    db.listen("rollback", on_rollback)
    try:
        yield seen
    finally:
        db.unlisten("before_cursor_execute", on_statement)
        db.unlisten("commit", on_commit)
        db.unlisten("rollback", on_rollback)


def _dossier(api: Api) -> str:
    r = api.post("/v1/dossiers", dossier_body())
    assert r.status_code == 201, r.text
    return str(r.json()["code"])


def test_sandbox_payment_is_one_write_transaction(api: Api) -> None:
    assert api.post("/v1/payments", payment_body(_dossier(api))).status_code == 201  # the agency is now cached
    code = _dossier(api)
    with tally(api.ctx.db) as seen:
        r = api.post("/v1/payments", payment_body(code))
    assert r.status_code == 201 and r.json()["status"] == "pending" and r.json()["next_url"], r.text
    writes = seen.write_transactions
    assert len(writes) == 1, writes
    statements = writes[0]
    # claim, dossier with the agency's version, sandbox record, payment, events, jobs, stored answer
    assert len(statements) == 7, statements
    assert sum(s.startswith("INSERT") for s in statements) == 5
    assert not any(s.startswith("SELECT") and "FEE_SCHEDULE_LINE" in s for s in statements)
    # What was committed is what is answered, and replayed.
    stored = api.get(f"/v1/payments/{r.json()['id']}").json()
    assert [e["kind"] for e in stored["events"]] == ["payment.created", "gateway.started"]
    assert stored["next_url"] == r.json()["next_url"]


def test_dossier_is_one_write_transaction(api: Api) -> None:
    _dossier(api)
    with tally(api.ctx.db) as seen:
        code = _dossier(api)
    writes = seen.write_transactions
    assert len(writes) == 1, writes
    statements = writes[0]
    assert statements[0].startswith("INSERT INTO IDEMPOTENCY_RECORD") and "ON CONFLICT" in statements[0]
    # claim, agency version with the dossier's existence, dossier, its fee lines, stored answer: no schedule read
    assert len(statements) == 5, statements
    assert not any("FEE_SCHEDULE_LINE" in s or "FROM PROCEDURE" in s for s in statements)
    stored = api.get(f"/v1/dossiers/{code}").json()
    assert stored["total_amount"] == 110_000 and [line["fee_code"] for line in stored["fee_lines"]] == [
        "LE_PHI",
        "BAN_SAO",
    ]


def test_agency_change_from_another_process_is_seen_by_the_next_request(api: Api) -> None:
    assert api.post("/v1/payments", payment_body(_dossier(api))).status_code == 201  # cached: sandbox enabled
    code = _dossier(api)
    settings = api.ctx.settings
    elsewhere = Database(make_engine(settings.effective_database_url, settings))
    try:
        with elsewhere.write() as s:
            s.execute(update(Agency).where(col(Agency.id) == api.agency_id).values(payment_methods=["vietqr"]))
            fee = select(Procedure.id).where(Procedure.agency_id == api.agency_id)
            s.execute(
                update(FeeScheduleLine)
                .where(col(FeeScheduleLine.procedure_id).in_(fee), col(FeeScheduleLine.code) == "LE_PHI")
                .values(unit_amount=150_000)
            )
            touch(s, api.agency_id)
    finally:
        elsewhere.dispose()
    r = api.post("/v1/payments", payment_body(code))
    assert r.status_code == 422 and r.json()["code"] == "method_not_enabled", r.text
    r = api.post("/v1/dossiers", dossier_body(copies=0))
    assert r.status_code == 201 and r.json()["total_amount"] == 150_000, r.text
