"""The database's own threads for the hot write paths, and multi-row inserts, on both databases."""

from __future__ import annotations

import asyncio
import threading
from contextvars import ContextVar
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select
from sqlmodel import col

from adapters.base import StartPayment, StartResult
from payments.core.db import Database
from payments.core.sql import insert_rows
from payments.outbox.models import OutboxJob, OutboxStatus
from payments.outbox.service import insert_jobs, job_row
from tests.conftest import Api
from tests.factories import dossier_body, payment_body
from tests.fakes import FaultyGateway

_request: ContextVar[str] = ContextVar("test_request", default="none")


def test_offload_runs_on_the_databases_threads_with_the_callers_context(api: Api) -> None:
    db = api.ctx.db
    # SQLite's writes run on the event loop by default; a thread of their own is a setting away.
    assert db.threads == (0 if db.dialect == "sqlite" else 4)
    db = Database(db.engine, threads=1 if db.dialect == "sqlite" else None, on_loop=False)
    running = 0
    most = 0
    lock = threading.Lock()

    def work(tag: str) -> tuple[str, str]:
        nonlocal running, most
        with lock:
            running += 1
            most = max(most, running)
        threading.Event().wait(0.02)
        with lock:
            running -= 1
        return threading.current_thread().name, f"{tag}:{_request.get()}"

    async def one(tag: str) -> tuple[str, str]:
        _request.set(tag)
        return await db.offload(work, tag)

    async def many() -> list[tuple[str, str]]:
        return list(await asyncio.gather(*(one(f"r{i}") for i in range(8))))

    try:
        results = asyncio.run(many())
    finally:
        db.dispose()
    assert all(name.startswith("lephi-db") for name, _ in results)
    # Each call saw the context of the request that made it.
    assert [seen for _, seen in results] == [f"r{i}:r{i}" for i in range(8)]
    assert most <= db.threads
    if db.dialect == "sqlite":
        assert len({name for name, _ in results}) == 1


def test_with_no_threads_the_work_runs_on_the_event_loop_in_turn(api: Api) -> None:
    db = Database(api.ctx.db.engine, threads=0, on_loop=False)
    order: list[str] = []

    def work(tag: str) -> tuple[str, str]:
        order.append(f"start {tag}")
        threading.Event().wait(0.01)
        order.append(f"end {tag}")
        return threading.current_thread().name, f"{tag}:{_request.get()}"

    async def one(tag: str) -> tuple[str, str]:
        _request.set(tag)
        return await db.offload(work, tag)

    async def many() -> tuple[str, list[tuple[str, str]]]:
        results = await asyncio.gather(*(one(f"r{i}") for i in range(4)))
        return threading.current_thread().name, list(results)

    loop_thread, results = asyncio.run(many())
    assert {name for name, _ in results} == {loop_thread}
    assert [seen for _, seen in results] == [f"r{i}:r{i}" for i in range(4)]
    # One at a time, each to its end: nothing else on the loop ran in between.
    assert order == [f"{what} r{i}" for i in range(4) for what in ("start", "end")]
    assert db._executor is None  # no thread was started for it


def test_offload_works_again_after_dispose(api: Api) -> None:
    settings = api.ctx.settings
    db = Database(api.ctx.db.engine, threads=2, on_loop=False)
    assert asyncio.run(db.offload(lambda: threading.current_thread().name)).startswith("lephi-db")
    db.dispose()
    assert asyncio.run(db.offload(lambda: 41 + 1)) == 42
    db.dispose()
    assert settings.db_threads is None


class _ThreadRecorder(FaultyGateway):
    """A gateway that says nothing of starting offline, so it is taken to call the network."""

    threads: list[str]

    def start_payment(self, request: StartPayment) -> StartResult:
        self.threads.append(threading.current_thread().name)
        return super().start_payment(request)


def test_a_gateway_reached_over_the_network_never_waits_on_the_database_threads(api: Api) -> None:
    recorder = _ThreadRecorder(api.ctx.gateways.get("sandbox"))
    recorder.threads = []
    api.ctx.gateways.override("sandbox", recorder)
    code = api.post("/v1/dossiers", dossier_body()).json()["code"]
    r = api.post("/v1/payments", payment_body(code))
    assert r.status_code == 201, r.text
    assert recorder.threads and not any(name.startswith("lephi-db") for name in recorder.threads)


def test_an_offline_gateway_starts_on_the_database_threads(api: Api, monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[str] = []
    kind = type(api.ctx.gateways.get("sandbox", api.agency_code))
    start = kind.start_payment

    def recording(self: object, request: StartPayment) -> StartResult:
        seen.append(threading.current_thread().name)
        return start(self, request)  # type: ignore[arg-type]

    monkeypatch.setattr(kind, "start_payment", recording)
    code = api.post("/v1/dossiers", dossier_body()).json()["code"]
    r = api.post("/v1/payments", payment_body(code))
    assert r.status_code == 201, r.text
    assert seen
    if api.ctx.db.threads and not api.ctx.db.on_loop:
        assert all(name.startswith("lephi-db") for name in seen)
    else:
        # On the event loop itself: neither the database's threads nor the general thread pool's.
        assert not any(name.startswith(("lephi-db", "AnyIO worker thread")) for name in seen)


def test_insert_rows_writes_every_row_with_the_columns_types(api: Api) -> None:
    now = datetime.now(UTC).replace(microsecond=123456)
    rows = [job_row(f"test.kind{i}", {"i": i, "name": "Nguyễn"}, now + timedelta(seconds=i), now) for i in range(123)]
    with api.ctx.db.write() as s:
        insert_jobs(s.connection(), rows)
        insert_jobs(s.connection(), [])  # nothing to write: no statement, no error
    with api.ctx.db.read() as s:
        got = s.execute(
            select(OutboxJob).where(col(OutboxJob.kind).like("test.kind%")).order_by(col(OutboxJob.run_after))
        ).scalars()
        jobs = list(got)
    assert [job.kind for job in jobs] == [f"test.kind{i}" for i in range(123)]
    assert all(job.status is OutboxStatus.pending for job in jobs)
    assert [job.payload for job in jobs] == [{"i": i, "name": "Nguyễn"} for i in range(123)]
    assert [job.run_after for job in jobs] == [now + timedelta(seconds=i) for i in range(123)]


def test_insert_rows_refuses_rows_that_name_different_columns(api: Api) -> None:
    now = datetime.now(UTC)
    first = job_row("test.a", {}, now, now)
    second = {k: v for k, v in job_row("test.b", {}, now, now).items() if k != "attempts"}
    table = OutboxJob.__table__  # type: ignore[attr-defined]
    with pytest.raises(ValueError, match="same columns"), api.ctx.db.write() as s:
        insert_rows(s.connection(), table, [first, second])
    with pytest.raises(KeyError), api.ctx.db.write() as s:
        insert_rows(s.connection(), table, [{**first, "nope": 1}, {**first, "nope": 2}])
    with api.ctx.db.read() as s:
        assert s.execute(select(OutboxJob).where(col(OutboxJob.kind).like("test.%"))).first() is None
