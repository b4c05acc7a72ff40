"""Workers wake on PostgreSQL NOTIFY instead of waiting for the poll interval, survive their LISTEN connection dying,
claim in batches without ever running a job twice, and run network-bound jobs several at once.

The wake-up tests set a poll interval of 30 s and expect the job to run within a generous 10 s: a behaviour check
(the worker was woken rather than polling), not a timing benchmark."""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text
from sqlmodel import select

from lephi.container import Container, build_container
from lephi.settings import Settings
from payments.core.context import AppContext
from payments.core.db import Database, make_engine
from payments.outbox.models import OutboxJob, OutboxStatus
from payments.outbox.service import enqueue
from payments.outbox.worker import Handler, Worker
from tests.conftest import make_settings

BOUND = 10.0  # seconds: far above a wake-up, far below the 30 s poll interval


def _until(check: Callable[[], bool], timeout: float = BOUND) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.02)
    return check()


# NOTIFY needs PostgreSQL: these tests have no SQLite variant, and fail (not skip) without LEPHI_TEST_POSTGRES_URL.
ON_POSTGRES = pytest.mark.parametrize("database_url", ["postgres"], indirect=True)


@pytest.fixture
def pg_ctx(database_url: str, tmp_path: Path) -> Iterator[Container]:
    """A context whose workers would poll only every 30 s."""
    settings = make_settings(database_url, tmp_path, worker_poll_seconds=30.0)
    context = build_container(settings, Database(make_engine(settings.effective_database_url, settings)))
    yield context
    context.close()


@pytest.fixture
def settings(database_url: str, tmp_path: Path) -> Settings:
    # Small batches, so that the two workers interleave; a short poll, for SQLite, which has no NOTIFY.
    return make_settings(database_url, tmp_path, worker_poll_seconds=0.05, worker_batch_size=7)


class Running:
    """A worker's ``run_forever`` on a thread, stopped and joined at the end."""

    def __init__(self, worker: Worker[Any]) -> None:
        self.worker = worker
        self.thread = threading.Thread(target=worker.run_forever, daemon=True)

    def __enter__(self) -> Worker[Any]:
        self.thread.start()
        return self.worker

    def __exit__(self, *_: object) -> None:
        self.worker.stop()
        self.thread.join(30)
        assert not self.thread.is_alive()


def _listening(worker: Worker[Any]) -> bool:
    return worker.listener is not None and worker.listener.listening.is_set()


@ON_POSTGRES
def test_a_job_queued_on_postgres_wakes_a_sleeping_worker(pg_ctx: Container) -> None:
    ran = threading.Event()
    worker = Worker(pg_ctx, {"test.wake": lambda _c, _p: ran.set()}, name="sleeper")
    with Running(worker):
        assert _until(lambda: _listening(worker))
        time.sleep(0.3)  # let the loop go back to sleep after the wake-up its listener gives on connecting
        with pg_ctx.db.write() as s:
            enqueue(s, "test.wake", {})
        assert ran.wait(BOUND), "the job waited for the poll interval: the worker was not woken"


@ON_POSTGRES
def test_a_job_for_later_sends_no_notification(pg_ctx: Container) -> None:
    from datetime import timedelta

    from payments.core.types import utcnow

    listener = psycopg_listener(pg_ctx)
    with pg_ctx.db.write() as s:
        enqueue(s, "test.later", {}, run_after=utcnow() + timedelta(minutes=5))
    with pg_ctx.db.write() as s:
        enqueue(s, "test.now", {})
    payloads = [n.payload for n in listener.notifies(timeout=BOUND, stop_after=1)]
    listener.close()
    assert payloads == ["test.now"]


def psycopg_listener(ctx: AppContext) -> Any:
    import psycopg

    conn = psycopg.connect(
        ctx.db.engine.url.set(drivername="postgresql").render_as_string(hide_password=False), autocommit=True
    )
    conn.execute("LISTEN lephi_outbox")
    return conn


@ON_POSTGRES
def test_the_worker_survives_its_listen_connection_dying(pg_ctx: Container) -> None:
    ran: list[int] = []
    worker = Worker(pg_ctx, {"test.after": lambda _c, p: ran.append(int(p["n"]))}, name="survivor")
    with Running(worker):
        assert _until(lambda: _listening(worker))
        assert worker.listener is not None
        first = worker.listener.backend_pid
        with pg_ctx.db.write() as s:
            killed = s.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": first}).scalar()
        assert killed
        # It reconnects (with a new backend) and listens again...
        assert _until(
            lambda: (
                _listening(worker) and worker.listener is not None and worker.listener.backend_pid not in (None, first)
            )
        )
        time.sleep(0.3)
        # ...and a job queued afterwards still wakes it.
        with pg_ctx.db.write() as s:
            enqueue(s, "test.after", {"n": 1})
        assert _until(lambda: ran == [1]), "no job ran after the LISTEN connection was terminated"


def test_batch_claims_by_two_workers_never_run_a_job_twice(ctx: Container) -> None:
    """Two looping workers on the same queue, half the jobs on each worker's pool, half one at a time; every job runs
    exactly once and never while another run of it is in progress."""
    runs: Counter[int] = Counter()
    in_progress: set[int] = set()
    overlaps: list[int] = []
    lock = threading.Lock()

    def handler(_ctx: AppContext, payload: dict[str, Any]) -> None:
        n = int(payload["n"])
        with lock:
            if n in in_progress:
                overlaps.append(n)
            in_progress.add(n)
            runs[n] += 1
        time.sleep(0.002)  # long enough for the other worker to try to claim it
        with lock:
            in_progress.discard(n)

    handlers: dict[str, Handler[Container]] = {"test.net": handler, "test.cpu": handler}
    workers = [Worker(ctx, handlers, name=f"w{i}", concurrent={"test.net"}) for i in range(2)]
    with Running(workers[0]), Running(workers[1]):
        for start in range(0, 120, 30):
            with ctx.db.write() as s:
                for n in range(start, start + 30):
                    enqueue(s, "test.net" if n % 2 else "test.cpu", {"n": n})
        assert _until(lambda: sum(runs.values()) >= 120, timeout=60)
        assert _until(lambda: _statuses(ctx) == {OutboxStatus.done}, timeout=30)
    assert runs == Counter(range(120)) and not overlaps


def _statuses(ctx: AppContext) -> set[OutboxStatus]:
    with ctx.db.read() as s:
        return {j.status for j in s.exec(select(OutboxJob))}


def test_network_jobs_run_concurrently_and_receipts_one_at_a_time(ctx: Container) -> None:
    """Four network jobs that each wait for the others can only finish if they run at once; the serial kind never
    overlaps itself."""
    barrier = threading.Barrier(4, timeout=BOUND)
    serial_active = threading.Semaphore(1)
    serial_overlap: list[bool] = []

    def network(_ctx: AppContext, _payload: dict[str, Any]) -> None:
        barrier.wait()

    def cpu(_ctx: AppContext, _payload: dict[str, Any]) -> None:
        if not serial_active.acquire(blocking=False):
            serial_overlap.append(True)
            return
        time.sleep(0.005)
        serial_active.release()

    with ctx.db.write() as s:
        for _ in range(4):
            enqueue(s, "test.net", {})
        for _ in range(4):
            enqueue(s, "test.cpu", {})
    worker = Worker(ctx, {"test.net": network, "test.cpu": cpu}, concurrent={"test.net"})
    assert worker.run_once(limit=8) == 8
    assert _statuses(ctx) == {OutboxStatus.done} and not serial_overlap


def test_stopping_hands_claimed_jobs_back_at_once(ctx: Container) -> None:
    with ctx.db.write() as s:
        for n in range(5):
            enqueue(s, "test.held", {"n": n})
    held = Worker(ctx, {}, name="leaving")
    assert len(held.claim(10)) == 5
    held.stop()
    assert held.release_held() == 5
    with ctx.db.read() as s:
        jobs = list(s.exec(select(OutboxJob)))
    assert all(j.locked_until is None and j.locked_by is None and j.attempts == 0 for j in jobs)
    seen: list[int] = []
    assert Worker(ctx, {"test.held": lambda _c, p: seen.append(p["n"])}).run_once() == 5  # no lease to wait for
    assert sorted(seen) == list(range(5))


def test_a_job_running_past_the_shutdown_bound_is_handed_back(ctx: Container) -> None:
    started, release = threading.Event(), threading.Event()

    def stuck(_ctx: AppContext, _payload: dict[str, Any]) -> None:
        started.set()
        release.wait(BOUND)

    ctx.settings.worker_shutdown_seconds = 0.2
    with ctx.db.write() as s:
        enqueue(s, "test.stuck", {})
    worker = Worker(ctx, {"test.stuck": stuck}, name="leaving", concurrent={"test.stuck"})
    loop = threading.Thread(target=worker.run_forever, daemon=True)
    loop.start()
    assert started.wait(BOUND)
    worker.stop()
    loop.join(BOUND)
    assert not loop.is_alive() and worker.abandoned
    with ctx.db.read() as s:
        job = s.exec(select(OutboxJob)).one()
    # Free for the next worker at once; the attempt that was cut short counts.
    assert job.status is OutboxStatus.pending and job.locked_until is None and job.attempts == 1
    release.set()
    time.sleep(0.2)  # the abandoned run ends; it no longer holds the lease, so it cannot mark the job done
    with ctx.db.read() as s:
        assert s.exec(select(OutboxJob)).one().status is OutboxStatus.pending
