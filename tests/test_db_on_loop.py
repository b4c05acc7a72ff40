"""PostgreSQL's hot paths on the event loop: ``Database.offload`` runs the work in a greenlet through asyncpg, which
gives the loop to other requests at every round trip, a bounded number at a time (payments.core.db)."""

from __future__ import annotations

import asyncio
import threading
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import func, insert, select, text
from sqlalchemy.exc import IntegrityError

from payments.core.db import Database, make_engine, table_of
from payments.core.sql import Prepared
from payments.idempotency.models import IdempotencyRecord
from payments.outbox.models import OutboxJob, OutboxStatus
from tests.conftest import BACKENDS, Api, make_settings

pytestmark = [
    pytest.mark.postgres,
    pytest.mark.parametrize("database_url", [b for b in BACKENDS if b == "postgres"], indirect=True),
]

_request: ContextVar[str] = ContextVar("test_request", default="none")
_JOB = table_of(OutboxJob)
_ADD_JOB = Prepared(insert(_JOB))
_READ_JOB = Prepared(select(_JOB.c.status, _JOB.c.run_after, _JOB.c.payload).where(_JOB.c.kind == "test.loop"))
_RECORD = table_of(IdempotencyRecord)
_ADD_RECORD = Prepared(insert(_RECORD))


def _record(key: str) -> dict[str, Any]:
    now = datetime.now(UTC)
    return {
        "client_id": "key_loop",
        "key": key,
        "fingerprint": "f",
        "state": "completed",
        "locked_until": now,
        "created_at": now,
        "expires_at": now,
    }


def test_the_work_runs_on_the_loop_a_bounded_number_at_once_each_in_its_requests_context(api: Api) -> None:
    settings = api.ctx.settings.model_copy(update={"db_async_concurrency": 3})
    db = Database(make_engine(settings.effective_database_url, settings))
    assert db.on_loop
    running = most = 0

    def work(tag: str) -> tuple[str, str]:
        nonlocal running, most
        running += 1
        most = max(most, running)
        with db.read() as s:  # waits on the server: the loop runs the other requests meanwhile
            s.execute(text("SELECT pg_sleep(0.05)"))
        running -= 1
        return threading.current_thread().name, f"{tag}:{_request.get()}"

    async def one(tag: str) -> tuple[str, str]:
        _request.set(tag)
        return await db.offload(work, tag)

    async def many() -> tuple[str, list[tuple[str, str]]]:
        await db.start()  # the serving loop, as the app's lifespan makes it
        results = await asyncio.gather(*(one(f"r{i}") for i in range(8)))
        await db.aclose()
        return threading.current_thread().name, list(results)

    try:
        loop_thread, results = asyncio.run(many())
    finally:
        db.dispose()
    assert {name for name, _ in results} == {loop_thread}  # no thread of the database's, none of the pool's
    assert [seen for _, seen in results] == [f"r{i}:r{i}" for i in range(8)]
    assert most == 3  # overlapping at their round trips, never more than the setting
    assert db._executor is None


def test_work_that_opens_a_second_transaction_gets_a_connection_with_every_slot_taken(api: Api) -> None:
    settings = api.ctx.settings.model_copy(update={"db_async_concurrency": 1})
    db = Database(make_engine(settings.effective_database_url, settings))

    def nested() -> int:
        with db.write() as outer:
            outer.execute(text("SELECT 1"))
            with db.read() as inner:  # a second connection while the slot's is held
                return int(inner.execute(text("SELECT 2")).scalar_one())

    async def run() -> list[int]:
        await db.start()
        try:
            return list(await asyncio.wait_for(asyncio.gather(db.offload(nested), db.offload(nested)), 30))
        finally:
            await db.aclose()

    try:
        assert asyncio.run(run()) == [2, 2]
    finally:
        db.dispose()


def test_values_and_errors_on_the_loop_are_sqlalchemys(api: Api) -> None:
    db = api.ctx.db
    when = datetime(2026, 12, 5, 8, 30, 15, 123456, tzinfo=UTC)
    row = {
        "kind": "test.loop",
        "payload": {"nested": [1, "hai", None], "tiền": "đồng"},
        "status": OutboxStatus.pending,
        "run_after": when,
        "attempts": 0,
        "max_attempts": 5,
        "created_at": when,
    }

    def write_and_read() -> list[Any]:
        with db.write() as s:
            _ADD_JOB(s, row)
        with db.read() as s:
            return list(_READ_JOB(s).all())

    def duplicate() -> None:
        with db.write() as s:
            _ADD_RECORD(s, _record("twice"))
            _ADD_RECORD(s, _record("twice"))

    def count_records() -> int:
        with db.read() as s:
            return int(s.execute(select(func.count()).select_from(_RECORD)).scalar_one())

    async def run() -> tuple[list[Any], int]:
        read = await db.offload(write_and_read)
        with pytest.raises(IntegrityError):  # asyncpg's error as SQLAlchemy's, as psycopg's would be
            await db.offload(duplicate)
        return read, await db.offload(count_records)  # the connection is usable after the rollback

    read, records = asyncio.run(run())
    # Converted by the columns' types both ways, as on psycopg: an enum member, an aware time, the JSON document.
    assert [tuple(r) for r in read] == [(OutboxStatus.pending, when, row["payload"])]
    assert records == 0  # the failed transaction left nothing
    with db.read() as s:  # and psycopg, outside the loop, sees what the loop committed
        assert s.execute(select(_JOB.c.kind).where(_JOB.c.kind == "test.loop")).scalars().all() == ["test.loop"]


def test_statement_listeners_see_the_loops_statements(api: Api) -> None:
    db = api.ctx.db
    seen: list[str] = []
    threads: list[str] = []

    def listener(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        seen.append(statement)
        threads.append(threading.current_thread().name)

    def read() -> int:
        with db.read() as s:
            return int(s.execute(select(func.count()).select_from(_JOB)).scalar_one())

    async def run() -> int:
        await db.offload(read)  # the loop's engine exists before the listener...
        db.listen("before_cursor_execute", listener)
        try:
            return await db.offload(read)
        finally:
            db.unlisten("before_cursor_execute", listener)

    assert asyncio.run(run()) == 0
    assert len(seen) == 1 and "FROM outbox" in seen[0]  # ...and is listened to
    db.listen("before_cursor_execute", listener)
    try:
        asyncio.run(db.offload(read))  # an engine made for a new loop gets it too
    finally:
        db.unlisten("before_cursor_execute", listener)
    assert len(seen) == 2
    asyncio.run(db.offload(read))
    assert len(seen) == 2  # and gone when removed


def test_the_serving_loop_pools_its_connections_other_loops_close_theirs(api: Api) -> None:
    db = Database(make_engine(api.ctx.settings.effective_database_url, api.ctx.settings))

    def backend() -> int:
        with db.read() as s:
            return int(s.execute(text("SELECT pg_backend_pid()")).scalar_one())

    async def twice(serving: bool) -> tuple[int, int]:
        if serving:
            await db.start()  # as the app's lifespan does
        first, second = await db.offload(backend), await db.offload(backend)
        if serving:
            await db.aclose()
        return first, second

    def alive(pids: set[int]) -> set[int]:
        with api.ctx.db.read() as s:
            rows = s.execute(text("SELECT pid FROM pg_stat_activity WHERE pid = ANY(:p)"), {"p": list(pids)})
            return {int(pid) for pid in rows.scalars()}

    def gone(pids: set[int]) -> bool:
        for _ in range(100):  # the server notices a closed connection at its own pace
            if not alive(pids):
                return True
            threading.Event().wait(0.05)
        return False

    try:
        pooled = asyncio.run(twice(serving=True))
        assert pooled[0] == pooled[1]  # one connection, kept between requests
        assert gone(set(pooled))  # and closed with the lifespan
        unpooled = asyncio.run(twice(serving=False))
        assert unpooled[0] != unpooled[1]  # a loop nobody started: a connection per transaction...
        assert gone(set(unpooled))  # ...closed with it, nothing left behind when the loop ends
    finally:
        db.dispose()
    assert asyncio.run(db.offload(lambda: 41 + 1)) == 42  # and it works again after dispose
    db.dispose()


def test_with_db_async_off_postgresql_keeps_psycopg_on_threads(api: Api, tmp_path: Any) -> None:
    settings = make_settings(api.ctx.settings.effective_database_url, tmp_path, db_async=False)
    db = Database(make_engine(settings.effective_database_url, settings))
    try:
        assert not db.on_loop
        assert asyncio.run(db.offload(lambda: threading.current_thread().name)).startswith("lephi-db")
    finally:
        db.dispose()
