"""Prepared statements on the driver's cursor (``payments.core.sql.Prepared``): the same values written and read as
through SQLAlchemy's execution, SQLAlchemy's errors, and the statement listeners still served."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import Column, Integer, MetaData, String, Table, bindparam, create_engine, event, insert, select, text
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlmodel import select as sm_select

from lephi.container import Container
from payments.core.db import table_of
from payments.core.sql import Prepared, defer_writes, insert_rows
from payments.idempotency.models import IdempotencyRecord, IdempotencyState
from payments.outbox.models import OutboxJob, OutboxStatus
from tests.conftest import BACKENDS
from tests.roundtrips import counted_on

_JOB = table_of(OutboxJob)
_RECORD = table_of(IdempotencyRecord)
_JOB_COLUMNS = select(_JOB.c.kind, _JOB.c.payload, _JOB.c.status, _JOB.c.run_after, _JOB.c.attempts).where(
    _JOB.c.kind == bindparam("kind")
)
_READ_JOB = Prepared(_JOB_COLUMNS)


def _job(kind: str, when: datetime) -> dict[str, Any]:
    return {
        "kind": kind,
        "payload": {"payment_id": "pay_1", "nested": [1, "hai", None], "tiền": "đồng"},
        "status": OutboxStatus.pending,
        "run_after": when,
        "attempts": 0,
        "max_attempts": 5,
        "created_at": when,
    }


def test_values_written_and_read_as_sqlalchemy_does(ctx: Container) -> None:
    when = datetime(2026, 12, 3, 8, 30, 15, 123456, tzinfo=UTC)
    with ctx.db.write() as s:
        Prepared(insert(_JOB))(s, _job("test.prepared", when))
        insert_rows(s.connection(), _JOB, [_job("test.many", when), _job("test.many", when + timedelta(seconds=1))])
    with ctx.db.read() as s:
        through_sqlalchemy = s.connection().execute(_JOB_COLUMNS, {"kind": "test.prepared"}).all()
        prepared = _READ_JOB(s, {"kind": "test.prepared"}).all()
        many = _READ_JOB(s, {"kind": "test.many"}).all()
        stored = s.get(
            OutboxJob, s.connection().execute(select(_JOB.c.id).where(_JOB.c.kind == "test.prepared")).scalar()
        )
    assert [tuple(row) for row in prepared] == [tuple(row) for row in through_sqlalchemy]
    row = prepared[0]
    # Converted by the columns' types, both ways: an enum member, a timezone-aware time, the JSON document.
    assert row.status is OutboxStatus.pending
    assert row.run_after == when and row.run_after.tzinfo is not None
    assert row.payload == {"payment_id": "pay_1", "nested": [1, "hai", None], "tiền": "đồng"}
    assert stored is not None and stored.status is OutboxStatus.pending and stored.run_after == when
    assert sorted(r.run_after for r in many) == [when, when + timedelta(seconds=1)]


def test_scalar_rowcount_and_nothing_found(ctx: Container) -> None:
    when = datetime(2026, 12, 3, tzinfo=UTC)
    bump = Prepared(_JOB.update().where(_JOB.c.kind == bindparam("k")).values(attempts=_JOB.c.attempts + 1))
    with ctx.db.write() as s:
        insert_rows(s.connection(), _JOB, [_job("test.count", when), _job("test.count", when)])
        assert bump(s, {"k": "test.count"}).rowcount == 2
        assert bump(s, {"k": "test.none"}).rowcount == 0
        assert _READ_JOB(s, {"kind": "test.none"}).first() is None
        assert _READ_JOB(s, {"kind": "test.none"}).scalar() is None
        assert _READ_JOB(s, {"kind": "test.count"}).scalar() == "test.count"
        assert [r.attempts for r in _READ_JOB(s, {"kind": "test.count"}).all()] == [1, 1]


def _record(key: str) -> dict[str, Any]:
    now = datetime.now(UTC)
    return {
        "client_id": "client",
        "key": key,
        "fingerprint": "f",
        "state": IdempotencyState.in_progress,
        "locked_until": now,
        "created_at": now,
        "expires_at": now + timedelta(hours=1),
    }


def test_a_broken_constraint_is_sqlalchemys_integrity_error_and_rolls_back(ctx: Container) -> None:
    add = Prepared(insert(_RECORD))
    with ctx.db.write() as s:
        add(s, _record("once"))
    with pytest.raises(IntegrityError), ctx.db.write() as s:
        add(s, _record("other"))
        add(s, _record("once"))
    with ctx.db.read() as s:
        keys = s.connection().execute(select(_RECORD.c.key)).scalars().all()
    assert keys == ["once"]  # the row written before the failure went with the transaction
    with ctx.db.write() as s:  # and the connection it failed on still works
        add(s, _record("after"))


def test_statement_listeners_see_prepared_statements(ctx: Container) -> None:
    seen: list[str] = []

    def listener(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        seen.append(statement)

    with ctx.db.read() as s:
        _READ_JOB(s, {"kind": "x"})
    assert seen == []  # no listener: nothing goes through SQLAlchemy's execution
    event.listen(ctx.db.engine, "before_cursor_execute", listener)
    try:
        with ctx.db.read() as s:
            _READ_JOB(s, {"kind": "x"})
    finally:
        event.remove(ctx.db.engine, "before_cursor_execute", listener)
    assert any(_JOB.name in statement and "SELECT" in statement for statement in seen)


def test_python_side_defaults_and_missing_values() -> None:
    engine = create_engine("sqlite://")
    meta = MetaData()
    table = Table(
        "t",
        meta,
        Column("id", Integer, primary_key=True),
        Column("name", String, nullable=False),
        Column("note", String, default=lambda: "computed"),
    )
    meta.create_all(engine)
    add = Prepared(insert(table))
    with engine.begin() as conn:
        add(conn, {"id": 1, "name": "a"})  # needs the default computed: SQLAlchemy's execution runs it
        add(conn, {"id": 2, "name": "b", "note": "given"})
        rows = conn.execute(select(table.c.id, table.c.note).order_by(table.c.id)).all()
        with pytest.raises(KeyError, match=r"bind parameter 'n'"):
            Prepared(table.update().where(table.c.id == bindparam("b_id")).values(name=bindparam("n")))(
                conn, {"b_id": 1}
            )
    assert [tuple(r) for r in rows] == [(1, "computed"), (2, "given")]


@pytest.mark.postgres
@pytest.mark.parametrize("database_url", [b for b in BACKENDS if b == "postgres"], indirect=True)
def test_a_dropped_server_connection_is_invalidated(ctx: Container) -> None:
    """As SQLAlchemy's own execution does: the pool must not hand the dead connection out again."""
    ping = Prepared(text("SELECT 1"))
    with ctx.db.read() as s:
        pid = s.connection().execute(text("SELECT pg_backend_pid()")).scalar()
    admin = create_engine(ctx.db.engine.url)
    with admin.connect() as conn:
        conn.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
    admin.dispose()
    with pytest.raises(OperationalError) as failed, ctx.db.read() as s:
        ping(s)  # the only pooled connection is the terminated one
    assert failed.value.connection_invalidated
    with ctx.db.read() as s:
        assert ping(s).scalar() == 1


# Deferred writes (``defer_writes``): on PostgreSQL the writes of a transaction's end go to the server together.

_ADD_RECORD = Prepared(insert(_RECORD))
_ON_POSTGRES = pytest.mark.parametrize("database_url", [b for b in BACKENDS if b == "postgres"], indirect=True)


def _keys(ctx: Container) -> list[str]:
    with ctx.db.read() as s:
        return sorted(s.connection().execute(select(_RECORD.c.key)).scalars().all())


@pytest.mark.postgres
@_ON_POSTGRES
def test_deferred_writes_go_with_the_commit_in_one_round_trip(ctx: Container) -> None:
    with ctx.db.write() as s:
        _READ_JOB(s, {"kind": "x"})  # the transaction has begun
        with counted_on(s) as deferred:
            defer_writes(s)
            for key in ("a", "b", "c"):
                _ADD_RECORD.write(s, _record(key))
            s.commit()
    with ctx.db.write() as s:
        _READ_JOB(s, {"kind": "x"})
        with counted_on(s) as one_by_one:
            for key in ("d", "e", "f"):
                _ADD_RECORD.write(s, _record(key))
            s.commit()
    assert deferred.count == 1
    # What the same writes cost without it: one each and the COMMIT (and psycopg's PREPARE, once it prepares them).
    assert one_by_one.count >= 4
    assert _keys(ctx) == ["a", "b", "c", "d", "e", "f"]


@pytest.mark.postgres
@_ON_POSTGRES
def test_a_statement_that_reads_sees_the_deferred_writes_before_it(ctx: Container) -> None:
    when = datetime(2026, 12, 4, tzinfo=UTC)
    with ctx.db.write() as s:
        defer_writes(s)
        Prepared(insert(_JOB)).write(s, _job("test.deferred", when))
        assert [r.kind for r in _READ_JOB(s, {"kind": "test.deferred"}).all()] == ["test.deferred"]
        _ADD_RECORD.write(s, _record("core"))
        assert s.connection().execute(select(_RECORD.c.key)).scalars().all() == ["core"]  # SQLAlchemy's execution
        _ADD_RECORD.write(s, _record("orm"))
        assert s.exec(sm_select(IdempotencyRecord).where(IdempotencyRecord.key == "orm")).first() is not None  # ORM
        _ADD_RECORD.write(s, _record("last"))  # still deferred after those reads: goes with the commit
    assert _keys(ctx) == ["core", "last", "orm"]


@pytest.mark.parametrize("database_url", BACKENDS, indirect=True)
def test_a_deferred_write_that_breaks_a_constraint_fails_the_commit_and_stores_nothing(ctx: Container) -> None:
    with ctx.db.write() as s:
        _ADD_RECORD.write(s, _record("once"))
    with pytest.raises(IntegrityError), ctx.db.write() as s:
        info = s.connection().info
        defer_writes(s)
        _ADD_RECORD.write(s, _record("other"))
        try:
            _ADD_RECORD.write(s, _record("once"))
        except IntegrityError:
            assert ctx.db.dialect == "sqlite"  # no deferring there: the write itself fails
            raise
        assert ctx.db.dialect == "postgresql"  # deferred: the commit fails
    assert _keys(ctx) == ["once"]
    assert "lephi_deferred" not in info  # the connection goes back to the pool deferring nothing
    with pytest.raises(IntegrityError), ctx.db.write() as s:  # and it works, writing at once again
        _ADD_RECORD.write(s, _record("once"))
        pytest.fail("the write should have failed at once")


@pytest.mark.postgres
@_ON_POSTGRES
def test_a_rollback_drops_the_deferred_writes(ctx: Container) -> None:
    with pytest.raises(RuntimeError), ctx.db.write() as s:
        info = s.connection().info
        defer_writes(s)
        _ADD_RECORD.write(s, _record("dropped"))
        raise RuntimeError("the caller changed its mind")
    assert "lephi_deferred" not in info
    assert _keys(ctx) == []


@pytest.mark.postgres
@_ON_POSTGRES
def test_statement_listeners_see_deferred_writes_as_they_are_made(ctx: Container) -> None:
    seen: list[str] = []

    def listener(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        seen.append(statement)

    event.listen(ctx.db.engine, "before_cursor_execute", listener)
    try:
        with ctx.db.write() as s:
            defer_writes(s)
            _ADD_RECORD.write(s, _record("watched"))
            assert any(statement.startswith("INSERT INTO idempotency") for statement in seen)
    finally:
        event.remove(ctx.db.engine, "before_cursor_execute", listener)
    assert _keys(ctx) == ["watched"]
