"""The outbox worker's steps called directly on a real database (payments/outbox/worker.py): which jobs a claim
takes and in what order, the lease it writes, attempts counted or given back, the backoff, a handler that raises or
asks to run later, marking done exactly once, handing jobs back, periodic work and the loop's log lines.
tests/test_worker.py checks the same through the service's own handlers; these pin each branch cheaply, so that the
mutation run (scripts/mutate outbox-worker) takes minutes.
"""

from __future__ import annotations

import concurrent.futures
import random
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event, text, update
from sqlmodel import col, select

from lephi.container import Container, build_container
from payments.core import requestid
from payments.core.context import AppContext
from payments.core.db import Database, make_engine
from payments.core.types import utcnow
from payments.outbox import worker as worker_module
from payments.outbox.models import OutboxJob, OutboxStatus
from payments.outbox.service import enqueue
from payments.outbox.worker import Batched, Handler, Periodic, RetryLater, Worker, backoff
from tests.conftest import make_settings

LEASE = 60
Logs = list[dict[str, Any]]


class Log:
    """Records what the worker logs: structlog may hold a logger configured before the test started."""

    def __init__(self) -> None:
        self.lines: Logs = []

    def _add(self, level: str, event: str, fields: dict[str, Any]) -> None:
        self.lines.append({"event": event, **fields, "log_level": level})

    def info(self, event: str, **fields: Any) -> None:
        self._add("info", event, fields)

    def warning(self, event: str, **fields: Any) -> None:
        self._add("warning", event, fields)

    def error(self, event: str, **fields: Any) -> None:
        self._add("error", event, fields)


@contextmanager
def capture_logs() -> Iterator[Logs]:
    recorder, kept = Log(), worker_module.log
    worker_module.log = recorder
    try:
        yield recorder.lines
    finally:
        worker_module.log = kept


@pytest.fixture
def wctx(database_url: str, tmp_path: Path) -> Iterator[Container]:
    settings = make_settings(
        database_url,
        tmp_path,
        worker_lease_seconds=LEASE,
        worker_batch_size=2,
        worker_threads=1,
        worker_poll_seconds=0.05,
        worker_shutdown_seconds=5.0,
    )
    context = build_container(settings, Database(make_engine(settings.effective_database_url, settings)))
    yield context
    context.close()


def add(ctx: AppContext, kind: str = "t.a", payload: dict[str, Any] | None = None, ago: float = 1.0) -> int:
    """Queue a job due ``ago`` seconds ago (negative: not yet due); returns its id."""
    with ctx.db.write() as s:
        enqueue(s, kind, payload or {}, run_after=utcnow() - timedelta(seconds=ago))
    with ctx.db.read() as s:
        return int(s.exec(select(col(OutboxJob.id)).order_by(col(OutboxJob.id).desc())).first() or 0)


def job(ctx: AppContext, job_id: int) -> OutboxJob:
    with ctx.db.read() as s:
        found = s.get(OutboxJob, job_id)
    assert found is not None
    return found


def set_job(ctx: AppContext, job_id: int, **values: Any) -> None:
    with ctx.db.write() as s:
        s.execute(update(OutboxJob).where(col(OutboxJob.id) == job_id).values(**values))


def near(value: datetime | None, expected: datetime, slack: float = 3.0) -> bool:
    return value is not None and abs((value - expected).total_seconds()) <= slack


def test_backoff_is_jittered_up_to_five_seconds_doubled_per_attempt_capped_at_an_hour(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    bounds: list[tuple[float, float]] = []

    def uniform(low: float, high: float) -> float:
        bounds.append((low, high))
        return high

    monkeypatch.setattr(random, "uniform", uniform)
    assert [backoff(a) for a in (0, 1, 3, 9, 10, 30)] == [5.0, 10.0, 40.0, 2560.0, 3600.0, 3600.0]
    assert {low for low, _ in bounds} == {0}
    monkeypatch.undo()
    samples = [backoff(2) for _ in range(300)]
    assert all(0 <= x <= 20 for x in samples) and max(samples) > 10 and min(samples) < 10


def test_a_claim_takes_due_unleased_jobs_longest_due_first_and_leases_them(wctx: Container) -> None:
    newer = add(wctx, ago=10)
    older = add(wctx, ago=100)
    future = add(wctx, ago=-100)
    leased = add(wctx, ago=200)
    expired = add(wctx, ago=5)
    set_job(wctx, leased, locked_by="other", locked_until=utcnow() + timedelta(seconds=30))
    set_job(wctx, expired, locked_by="other", locked_until=utcnow() - timedelta(seconds=1), attempts=4)
    done = add(wctx, ago=300)
    set_job(wctx, done, status=OutboxStatus.done)
    w = Worker(wctx, {}, name="w1")
    first = w.claim(1)
    assert [j.id for j in first] == [older]
    before = utcnow()
    rest = w.claim(10)
    assert [j.id for j in rest] == [newer, expired]
    for j in first + rest:
        assert j.locked_by == "w1"
    row = job(wctx, expired)
    assert row.locked_by == "w1" and row.attempts == 5 and rest[1].attempts == 5
    assert near(row.locked_until, before + timedelta(seconds=LEASE))
    assert job(wctx, newer).attempts == 1 and job(wctx, future).locked_by is None
    assert job(wctx, leased).locked_by == "other" and job(wctx, done).attempts == 0
    assert w.claim(10) == []


def test_a_claim_leaves_the_excluded_kinds(wctx: Container) -> None:
    a = add(wctx, "t.a", ago=30)
    b = add(wctx, "t.b", ago=20)
    c = add(wctx, "t.c", ago=10)
    w = Worker(wctx, {})
    assert [j.id for j in w.claim(10, exclude={"t.a", "t.c"})] == [b]
    assert [j.id for j in w.claim(10, exclude=["t.b"])] == [a, c]


def test_a_claim_takes_no_more_jobs_than_its_limit(wctx: Container) -> None:
    ids = [add(wctx, ago=30 - n) for n in range(7)]
    w = Worker(wctx, {}, name="w1")
    assert [[j.id for j in w.claim(3)] for _ in range(3)] == [ids[:3], ids[3:6], ids[6:]]
    assert w.claim(3) == []


def test_jobs_due_at_once_are_claimed_in_the_order_they_were_queued(wctx: Container) -> None:
    when = utcnow() - timedelta(seconds=5)
    with wctx.db.write() as s:
        for n in range(4):
            enqueue(s, "t.a", {"n": n}, run_after=when)
    jobs = Worker(wctx, {}).claim(10)
    assert [j.payload["n"] for j in jobs] == [0, 1, 2, 3]


def test_run_once_takes_a_batch_and_marks_each_job_done_once(wctx: Container) -> None:
    ran: list[int] = []
    ids = [add(wctx, payload={"n": n}, ago=10 - n) for n in range(3)]
    w = Worker(wctx, {"t.a": lambda _c, p: ran.append(p["n"])}, name="w1")
    assert w.run_once() == 2  # worker_batch_size
    assert ran == [0, 1]
    before = utcnow()
    assert w.run_once(limit=5) == 1 and ran == [0, 1, 2]
    assert w.run_once() == 0 and ran == [0, 1, 2]
    for i in ids:
        row = job(wctx, i)
        assert row.status is OutboxStatus.done and row.locked_until is None and row.attempts == 1
        assert near(row.done_at, before, slack=30)
    assert near(job(wctx, ids[2]).done_at, before)


def test_only_the_lease_holder_marks_a_job_done(wctx: Container) -> None:
    i = add(wctx)
    w = Worker(wctx, {"t.a": lambda _c, _p: None}, name="w1")
    [claimed] = w.claim(1)
    set_job(wctx, i, locked_by="w2")  # the lease ran out and another worker took it
    w.run_claimed(claimed)
    assert job(wctx, i).status is OutboxStatus.pending
    set_job(wctx, i, locked_by="w1")
    w.run_claimed(claimed)
    row = job(wctx, i)
    assert row.status is OutboxStatus.done and row.done_at is not None


def test_a_failing_handler_is_logged_counted_and_backed_off(wctx: Container, monkeypatch: pytest.MonkeyPatch) -> None:
    delays: list[int] = []

    def fixed(attempt: int) -> float:
        delays.append(attempt)
        return 600.0

    monkeypatch.setattr("payments.outbox.worker.backoff", fixed)

    def boom(_ctx: AppContext, payload: dict[str, Any]) -> None:
        raise ValueError("x" * 3000)

    i = add(wctx)
    set_job(wctx, i, attempts=2)
    w = Worker(wctx, {"t.a": boom}, name="w1")
    before = utcnow()
    with capture_logs() as logs:
        assert w.run_once() == 1
    row = job(wctx, i)
    assert delays == [3]
    assert row.status is OutboxStatus.pending and row.attempts == 3 and row.locked_until is None
    assert row.last_error == ("ValueError: " + "x" * 3000)[:2000]
    assert near(row.run_after, before + timedelta(seconds=600))
    assert logs == [
        {
            "event": "outbox.job_failed",
            "log_level": "warning",
            "job_id": i,
            "kind": "t.a",
            "attempt": 3,
            "error": "x" * 500,
        }
    ]
    # Its own lease only: a job another worker took meanwhile is left alone.
    set_job(wctx, i, run_after=utcnow() - timedelta(seconds=1))
    [again] = w.claim(1)
    set_job(wctx, i, locked_by="w2")
    w.run_claimed(again)
    row = job(wctx, i)
    assert row.locked_by == "w2" and row.attempts == 4 and row.last_error == ("ValueError: " + "x" * 3000)[:2000]
    assert row.locked_until is not None and row.run_after < utcnow()


def test_a_job_out_of_attempts_goes_dead_with_its_error_logged(wctx: Container) -> None:
    def boom(_ctx: AppContext, _payload: dict[str, Any]) -> None:
        raise RuntimeError("gateway said no")

    i = add(wctx)
    set_job(wctx, i, max_attempts=3, attempts=1)
    w = Worker(wctx, {"t.a": boom}, name="w1")
    with capture_logs() as logs:
        w.run_once()
    assert job(wctx, i).status is OutboxStatus.pending and [x["event"] for x in logs] == ["outbox.job_failed"]
    set_job(wctx, i, run_after=utcnow() - timedelta(seconds=1))
    with capture_logs() as logs:
        w.run_once()
    row = job(wctx, i)
    assert row.status is OutboxStatus.dead and row.attempts == 3
    assert row.last_error == "RuntimeError: gateway said no"
    assert logs[-1] == {
        "event": "outbox.job_dead",
        "log_level": "error",
        "job_id": i,
        "kind": "t.a",
        "error": "RuntimeError: gateway said no",
    }
    assert w.run_once() == 0


def test_a_job_without_a_handler_is_retried_with_the_reason(wctx: Container) -> None:
    i = add(wctx, "no.such.kind")
    Worker(wctx, {}).run_once()
    row = job(wctx, i)
    assert row.status is OutboxStatus.pending and row.attempts == 1
    assert row.last_error == "LookupError: no handler for job kind 'no.such.kind'"


def test_retry_later_reschedules_without_counting_an_attempt(wctx: Container) -> None:
    def later(_ctx: AppContext, _payload: dict[str, Any]) -> None:
        raise RetryLater(120)

    assert str(RetryLater(2.5)) == "retry in 2.5s" and RetryLater(2.5).delay == 2.5
    i = add(wctx)
    set_job(wctx, i, last_error="earlier", attempts=2, max_attempts=3)
    w = Worker(wctx, {"t.a": later}, name="w1")
    before = utcnow()
    with capture_logs() as logs:
        w.run_once()
    row = job(wctx, i)
    assert row.status is OutboxStatus.pending and row.attempts == 2 and row.last_error is None
    assert row.locked_until is None and near(row.run_after, before + timedelta(seconds=120))
    assert logs == []


def test_a_job_runs_under_the_request_id_that_queued_it(wctx: Container) -> None:
    seen: list[str | None] = []
    add(wctx, payload={"request_id": "req-42"})
    Worker(wctx, {"t.a": lambda _c, _p: seen.append(requestid.current())}).run_once()
    assert seen == ["req-42"] and requestid.current() is None


def test_a_job_held_past_half_its_lease_is_handed_back_not_run(wctx: Container) -> None:
    ran: list[int] = []
    i = add(wctx)
    w = Worker(wctx, {"t.a": lambda _c, _p: ran.append(1)}, name="w1")
    [claimed] = w.claim(1)
    # Just under half the lease left: too late to start.
    claimed.locked_until = utcnow() + timedelta(seconds=LEASE / 2 - 2)
    w._dispatch([claimed])
    row = job(wctx, i)
    assert ran == [] and row.status is OutboxStatus.pending and row.locked_by is None and row.attempts == 0
    # Just over half: still started.
    [claimed] = w.claim(1)
    claimed.locked_until = utcnow() + timedelta(seconds=LEASE / 2 + 2)
    w._dispatch([claimed])
    assert ran == [1] and job(wctx, i).status is OutboxStatus.done
    # A job without a lease end is started.
    j = add(wctx)
    [claimed] = w.claim(1)
    claimed.locked_until = None
    w._dispatch([claimed])
    assert ran == [1, 1] and job(wctx, j).status is OutboxStatus.done


def test_a_job_not_claimed_by_this_worker_or_after_stop_is_not_started(wctx: Container) -> None:
    ran: list[int] = []
    add(wctx)
    w = Worker(wctx, {"t.a": lambda _c, _p: ran.append(1)}, name="w1")
    [claimed] = w.claim(1)
    other = Worker(wctx, {"t.a": lambda _c, _p: ran.append(2)}, name="w1")
    other._dispatch([claimed])
    assert ran == []
    w.stop()
    w._dispatch([claimed])
    assert ran == [] and w.stopping


def test_network_jobs_run_on_the_pool_and_a_busy_pool_leaves_them_queued(wctx: Container) -> None:
    release = threading.Event()
    started = threading.Event()
    threads: list[str] = []

    def slow(_ctx: AppContext, _payload: dict[str, Any]) -> None:
        threads.append(threading.current_thread().name)
        started.set()
        release.wait(10)

    ran: list[str] = []
    handlers: dict[str, Handler[Container]] = {"t.net": slow, "t.cpu": lambda _c, _p: ran.append("cpu")}
    net1 = add(wctx, "t.net", ago=30)
    w = Worker(wctx, handlers, name="w1", concurrent={"t.net"})
    try:
        assert w._step() == 1
        assert started.wait(10)
        assert threads[0].startswith("lephi-job-w1")
        net2 = add(wctx, "t.net", ago=20)
        cpu = add(wctx, "t.cpu", ago=10)
        assert not w._wake.is_set()
        assert w._step() == 1  # the pool (one thread) is busy: only the receipt job is taken
        assert ran == ["cpu"] and job(wctx, cpu).status is OutboxStatus.done
        assert job(wctx, net2).locked_by is None
        release.set()
        deadline = time.monotonic() + 10
        while job(wctx, net1).status is not OutboxStatus.done and time.monotonic() < deadline:
            time.sleep(0.02)
        assert job(wctx, net1).status is OutboxStatus.done
        assert w._wake.wait(5)  # a thread is free again
        deadline = time.monotonic() + 10
        while w._futures and time.monotonic() < deadline:
            time.sleep(0.02)
        w._wake.clear()
        assert w._step() == 1
        deadline = time.monotonic() + 10
        while job(wctx, net2).status is not OutboxStatus.done and time.monotonic() < deadline:
            time.sleep(0.02)
        assert job(wctx, net2).status is OutboxStatus.done
    finally:
        release.set()
        w.stop()
        w._drain()


def test_a_long_worker_name_is_cut_for_its_thread_names(wctx: Container) -> None:
    names: list[str] = []
    add(wctx, "t.net")
    w = Worker(wctx, {"t.net": lambda _c, _p: names.append(threading.current_thread().name)}, name="n" * 60)
    w.concurrent = frozenset({"t.net"})
    w.run_once()
    w._drain()
    assert names == ["lephi-job-" + "n" * 30 + "_0"]


def test_a_stop_during_a_batch_leaves_the_rest_for_the_drain(wctx: Container) -> None:
    ids = [add(wctx, ago=10 - n) for n in range(2)]
    w: Worker[Container]

    def stopping(_ctx: AppContext, _payload: dict[str, Any]) -> None:
        w.stop()

    w = Worker(wctx, {"t.a": stopping}, name="w1")
    assert w.run_once() == 2
    assert job(wctx, ids[0]).status is OutboxStatus.done
    assert job(wctx, ids[1]).locked_by == "w1"
    with capture_logs() as logs:
        assert w.release_held() == 1
    row = job(wctx, ids[1])
    assert row.locked_by is None and row.locked_until is None and row.attempts == 0
    assert logs == [{"event": "worker.released", "log_level": "info", "worker": "w1", "waiting": 1, "running": 0}]
    with capture_logs() as logs:
        assert w.release_held() == 0
    assert logs == []


def test_release_counts_a_started_job_and_only_touches_this_workers_pending_jobs(wctx: Container) -> None:
    a, b, c = add(wctx, ago=3), add(wctx, ago=2), add(wctx, ago=1)
    w = Worker(wctx, {}, name="w1")
    claimed = w.claim(10)
    assert [j.id for j in claimed] == [a, b, c]
    w._claimed.pop(a)
    w._running.add(a)  # as if its handler were still running past the shutdown bound
    set_job(wctx, c, locked_by="w2")
    with capture_logs() as logs:
        assert w.release_held() == 3
    assert w.abandoned
    assert [(r.locked_by, r.attempts) for r in map(lambda i: job(wctx, i), (a, b, c))] == [
        (None, 1),
        (None, 0),
        ("w2", 1),
    ]
    assert logs == [{"event": "worker.released", "log_level": "info", "worker": "w1", "waiting": 2, "running": 1}]
    d = add(wctx)
    assert d in [j.id for j in w.claim(10)]
    set_job(wctx, d, status=OutboxStatus.dead)
    w.release_held()
    assert job(wctx, d).locked_by == "w1" and job(wctx, b).locked_by is None


def test_release_survives_a_database_that_is_gone(wctx: Container) -> None:
    add(wctx)
    add(wctx)
    w = Worker(wctx, {}, name="w1")
    w.claim(10)
    w._running.add(99)
    wctx.db.engine.dispose()
    with wctx.db.write() as s:
        s.execute(update(OutboxJob).values(locked_by="w1"))

    def fail(*_a: Any, **_k: Any) -> None:
        raise RuntimeError("database is gone " + "y" * 600)

    w._release = fail  # type: ignore[method-assign]
    with capture_logs() as logs:
        assert w.release_held() == 0
    assert logs == [
        {
            "event": "worker.release_failed",
            "log_level": "error",
            "error": ("database is gone " + "y" * 600)[:500],
            "jobs": 3,
        }
    ]
    assert w._claimed == {}


def test_periodic_work_runs_on_its_clock_and_a_failure_stops_nothing(wctx: Container) -> None:
    calls: list[str] = []

    def fail(_ctx: AppContext) -> None:
        calls.append("fail")
        raise OSError("z" * 600)

    tasks = [
        Periodic[Container]("bad", lambda _c: 10.0, fail),
        Periodic[Container]("good", lambda _c: 5.0, lambda _c: calls.append("good")),
    ]
    w = Worker(wctx, {}, periodic=tasks)
    with capture_logs() as logs:
        w.run_periodic(100.0)
    assert calls == ["fail", "good"]
    assert logs == [{"event": "worker.periodic_failed", "log_level": "error", "task": "bad", "error": "z" * 500}]
    w.run_periodic(104.9)
    assert calls == ["fail", "good"]
    w.run_periodic(105.0)
    assert calls == ["fail", "good", "good"]
    w.run_periodic(110.0)
    assert calls == ["fail", "good", "good", "fail", "good"]
    fresh = Worker(wctx, {}, periodic=tasks[1:])
    fresh.run_periodic(4.9)
    fresh.run_periodic(5.0)
    assert calls[-1:] == ["good"] and len(calls) == 6


def test_stop_keeps_the_first_stop_time(wctx: Container) -> None:
    w = Worker(wctx, {})
    w.stop()
    first = w._stopped_at
    time.sleep(0.01)
    w.stop()
    assert first is not None and w._stopped_at == first and w._wake.is_set()


def test_the_drain_waits_for_running_jobs_within_the_bound_then_hands_back(wctx: Container) -> None:
    release = threading.Event()
    started = threading.Event()

    def slow(_ctx: AppContext, _payload: dict[str, Any]) -> None:
        started.set()
        release.wait(10)

    quick = add(wctx, "t.net")
    w = Worker(wctx, {"t.net": slow}, name="w1", concurrent={"t.net"})
    w._step()
    assert started.wait(10)
    timer = threading.Timer(0.3, release.set)
    timer.start()
    w.stop()
    w._drain()  # the job ends within worker_shutdown_seconds: it is done, nothing is abandoned
    assert job(wctx, quick).status is OutboxStatus.done and not w.abandoned


def test_the_drain_abandons_a_job_past_the_bound(wctx: Container) -> None:
    release = threading.Event()
    started = threading.Event()

    def stuck(_ctx: AppContext, _payload: dict[str, Any]) -> None:
        started.set()
        release.wait(10)

    i = add(wctx, "t.net")
    w = Worker(wctx, {"t.net": stuck}, name="w1", concurrent={"t.net"})
    w._step()
    assert started.wait(10)
    w._stopped_at = time.monotonic() - 10  # the bound (5 s) has passed
    w.stop()
    began = time.monotonic()
    w._drain()
    assert time.monotonic() - began < 3
    release.set()
    row = job(wctx, i)
    assert w.abandoned and row.locked_by is None and row.attempts == 1


def test_threads_come_from_the_settings(wctx: Container) -> None:
    assert Worker(wctx, {}).threads == 1
    name = Worker(wctx, {}).name
    assert name.count(":") == 2 and str(threading.get_ident()) in name


def test_a_job_run_late_that_fails_is_not_marked_done(wctx: Container) -> None:
    def boom(_ctx: AppContext, _payload: dict[str, Any]) -> None:
        raise RuntimeError("no")

    i = add(wctx)
    w = Worker(wctx, {"t.a": boom}, name="w1")
    [claimed] = w.claim(1)
    w.run_claimed(claimed)
    row = job(wctx, i)
    assert row.status is OutboxStatus.pending and row.done_at is None and row.last_error == "RuntimeError: no"


def test_periodic_work_is_given_the_workers_context(wctx: Container) -> None:
    seen: list[object] = []

    def every(ctx: Container) -> float:
        seen.append(ctx)
        return 1.0

    w = Worker(wctx, {}, periodic=[Periodic[Container]("p", every, seen.append)])
    w.run_periodic(10.0)
    assert seen == [wctx, wctx]


def test_a_failure_reschedules_only_its_own_job(wctx: Container) -> None:
    def fails_first(_ctx: AppContext, payload: dict[str, Any]) -> None:
        if payload["n"] == 0:
            raise RuntimeError("no")

    bad, good = add(wctx, payload={"n": 0}, ago=10), add(wctx, payload={"n": 1}, ago=5)
    w = Worker(wctx, {"t.a": fails_first}, name="w1")
    claimed = w.claim(2)
    w.run_claimed(claimed[0])
    row = job(wctx, good)
    assert row.locked_by == "w1" and row.locked_until is not None and row.last_error is None
    assert job(wctx, bad).last_error == "RuntimeError: no"


def test_a_step_claims_one_batch_and_the_pool_runs_as_many_jobs_as_it_has_threads(wctx: Container) -> None:
    lock = threading.Lock()
    running = {"now": 0, "most": 0}

    def net(_ctx: AppContext, _payload: dict[str, Any]) -> None:
        with lock:
            running["now"] += 1
            running["most"] = max(running["most"], running["now"])
        time.sleep(0.2)
        with lock:
            running["now"] -= 1

    ids = [add(wctx, "t.net", ago=10 - n) for n in range(3)]
    w = Worker(wctx, {"t.net": net}, name="w1", concurrent={"t.net"})
    assert w._step() == 2  # worker_batch_size
    deadline = time.monotonic() + 10
    while w._futures and time.monotonic() < deadline:
        time.sleep(0.02)
    w._drain()
    assert running["most"] == 1  # worker_threads
    assert [job(wctx, i).status for i in ids] == [OutboxStatus.done, OutboxStatus.done, OutboxStatus.pending]


@contextmanager
def read_in_table_order(ctx: AppContext) -> Iterator[None]:
    """Keep the database from reading the due jobs through ix_outbox_due (status, run_after), whose order would hide
    a claim that does not ask for one: SQLite's copy of the test loses the index, PostgreSQL's sessions are told not
    to scan indexes. The jobs are then read in the order they were written."""
    if ctx.db.dialect == "sqlite":
        with ctx.db.write() as s:
            s.execute(text("DROP INDEX ix_outbox_due"))
        yield
        return

    def no_index_scans(dbapi_connection: Any, _record: Any) -> None:
        for setting in ("enable_indexscan", "enable_bitmapscan", "enable_indexonlyscan"):
            dbapi_connection.execute(f"SET {setting} = off")
        dbapi_connection.commit()

    engine = ctx.db.engine
    event.listen(engine, "connect", no_index_scans)
    engine.dispose()
    try:
        yield
    finally:
        event.remove(engine, "connect", no_index_scans)
        engine.dispose()


def test_a_claim_smaller_than_the_due_jobs_takes_the_longest_due_whatever_order_they_are_read_in(
    wctx: Container,
) -> None:
    ids = {ago: add(wctx, payload={"ago": ago}, ago=ago) for ago in (10, 30, 20, 40)}
    w = Worker(wctx, {}, name="w1")
    with read_in_table_order(wctx):
        assert [j.id for j in w.claim(2)] == [ids[40], ids[30]]
        assert [j.id for j in w.claim(10)] == [ids[20], ids[10]]


@pytest.mark.parametrize("database_url", ["postgres"], indirect=True)
def test_a_claim_on_postgres_skips_a_due_job_another_transaction_holds_instead_of_waiting(wctx: Container) -> None:
    held = add(wctx, ago=30)
    others = [add(wctx, ago=20), add(wctx, ago=10)]
    w = Worker(wctx, {}, name="w1")
    claimed: list[list[int | None]] = []
    with wctx.db.engine.connect() as other:
        other.execute(text("SELECT id FROM outbox WHERE id = :id FOR UPDATE"), {"id": held})
        thread = threading.Thread(target=lambda: claimed.append([j.id for j in w.claim(10)]), daemon=True)
        thread.start()
        thread.join(10)  # at once with SKIP LOCKED; without it the claim would wait for this transaction
        waited = thread.is_alive()
        other.rollback()
    thread.join(10)
    assert not waited and claimed == [others]
    assert job(wctx, held).locked_by is None and [j.id for j in w.claim(10)] == [held]


def test_a_job_with_exactly_half_its_lease_left_is_still_started(
    wctx: Container, monkeypatch: pytest.MonkeyPatch
) -> None:
    ran: list[int] = []
    i = add(wctx)
    w = Worker(wctx, {"t.a": lambda _c, _p: ran.append(1)}, name="w1")
    [claimed] = w.claim(1)
    now = utcnow()
    claimed.locked_until = now + timedelta(seconds=LEASE / 2)
    monkeypatch.setattr(worker_module, "utcnow", lambda: now)
    w._dispatch([claimed])
    assert ran == [1] and job(wctx, i).status is OutboxStatus.done


def test_a_drain_without_a_pool_hands_back_the_claimed_jobs_and_one_with_a_pool_shuts_it(wctx: Container) -> None:
    i = add(wctx)
    w = Worker(wctx, {}, name="w1")
    w.claim(1)
    w.stop()
    w._drain()
    row = job(wctx, i)
    assert w._pool is None and row.locked_by is None and row.attempts == 0
    set_job(wctx, i, status=OutboxStatus.done)
    pooled = Worker(wctx, {"t.net": lambda _c, _p: None}, name="w2", concurrent={"t.net"})
    add(wctx, "t.net")
    assert pooled.run_once() == 1
    pooled.stop()
    pooled._drain()
    assert pooled._pool is not None
    with pytest.raises(RuntimeError, match="shutdown"):
        pooled._pool.submit(print)


def test_a_drain_starts_none_of_the_queued_network_jobs_and_hands_them_back(wctx: Container) -> None:
    release = threading.Event()
    started = threading.Event()
    ran: list[int] = []

    def net(_ctx: AppContext, payload: dict[str, Any]) -> None:
        ran.append(payload["n"])
        started.set()
        release.wait(10)

    running = add(wctx, "t.net", {"n": 0}, ago=20)
    queued = add(wctx, "t.net", {"n": 1}, ago=10)
    w = Worker(wctx, {"t.net": net}, name="w1", concurrent={"t.net"})
    assert w._step() == 2  # one thread: the second job waits in the pool's queue
    assert started.wait(10)
    timer = threading.Timer(0.3, release.set)
    timer.start()
    # Without stop, as when the loop ends on an exception it does not catch: the queue is cancelled all the same.
    w._drain()
    timer.join()
    assert ran == [0] and job(wctx, running).status is OutboxStatus.done and not w.abandoned
    row = job(wctx, queued)
    assert row.status is OutboxStatus.pending and row.locked_by is None and row.attempts == 0


def test_the_drain_waits_only_for_what_is_left_of_the_bound(wctx: Container, monkeypatch: pytest.MonkeyPatch) -> None:
    timeouts: list[float | None] = []
    real_wait = concurrent.futures.wait

    def recording(futures: Any, timeout: float | None = None) -> Any:
        timeouts.append(timeout)
        return real_wait(futures, timeout=timeout)

    monkeypatch.setattr(worker_module, "wait_for", recording)
    late = Worker(wctx, {})
    late._stopped_at = time.monotonic() - 10  # the bound (5 s) has passed
    late.stop()
    late._drain()
    fresh = Worker(wctx, {})
    fresh.stop()
    fresh._drain()
    assert timeouts[0] == 0.0
    assert timeouts[1] is not None and 0.0 < timeouts[1] <= 5.0


def test_a_job_due_this_instant_is_claimed_and_a_lease_ending_this_instant_still_holds(
    wctx: Container, monkeypatch: pytest.MonkeyPatch
) -> None:
    now = utcnow().replace(microsecond=0)
    due, leased = add(wctx, ago=-60), add(wctx, ago=10)
    set_job(wctx, due, run_after=now)
    set_job(wctx, leased, locked_by="other", locked_until=now)
    monkeypatch.setattr(worker_module, "utcnow", lambda: now)
    assert [j.id for j in Worker(wctx, {}, name="w1").claim(10)] == [due]
    assert job(wctx, leased).locked_by == "other"


def test_the_jobs_of_a_batch_are_marked_done_together_after_their_handlers(wctx: Container) -> None:
    seen: list[OutboxStatus] = []
    first = add(wctx, payload={"n": 0}, ago=20)
    second = add(wctx, payload={"n": 1}, ago=10)

    def handler(_ctx: AppContext, payload: dict[str, Any]) -> None:
        if payload["n"] == 1:
            seen.append(job(wctx, first).status)

    assert Worker(wctx, {"t.a": handler}, name="w1").run_once() == 2
    assert seen == [OutboxStatus.pending]
    assert job(wctx, first).status is OutboxStatus.done and job(wctx, second).status is OutboxStatus.done


def test_the_shutdown_bound_counts_from_the_first_stop_not_from_the_drain(
    wctx: Container, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = {"now": 100.0}
    timeouts: list[float | None] = []
    real_wait = concurrent.futures.wait

    def recording(futures: Any, timeout: float | None = None) -> Any:
        timeouts.append(timeout)
        return real_wait(futures, timeout=timeout)

    class Clock:
        @staticmethod
        def monotonic() -> float:
            return clock["now"]

    monkeypatch.setattr(worker_module, "time", Clock)
    monkeypatch.setattr(worker_module, "wait_for", recording)
    w = Worker(wctx, {})
    assert w.abandoned is False
    w.stop()
    clock["now"] = 103.0
    w.stop()
    w._drain()
    assert timeouts == [2.0] and w.abandoned is False  # 5 s from the first stop, 3 s of them gone


# Batched kinds: several claimed jobs of the kind run through one call, all or nothing; each alone after a failure.


class Calls:
    def __init__(self, fail_many: bool = False, fail_one: frozenset[int] = frozenset()) -> None:
        self.many: list[list[int]] = []
        self.one: list[int] = []
        self.running: list[list[int]] = []  # the jobs the worker counted as running while ``many`` ran
        self.fail_many, self.fail_one = fail_many, fail_one
        self.worker: Worker[Container] | None = None

    def run_many(self, _ctx: Container, payloads: list[dict[str, Any]]) -> None:
        self.many.append([p["n"] for p in payloads])
        assert self.worker is not None
        self.running.append(sorted(self.worker._running))
        if self.fail_many:
            raise RuntimeError("the batch failed")

    def run_one(self, _ctx: Container, payload: dict[str, Any]) -> None:
        self.one.append(payload["n"])
        if payload["n"] in self.fail_one:
            raise ValueError(f"job {payload['n']} is bad")

    def handler(self) -> Batched[Container]:
        return Batched(self.run_one, self.run_many)


def batched(wctx: Container, jobs: int, calls: Calls | None = None) -> tuple[Calls, list[int], Worker[Container]]:
    """``jobs`` queued jobs of a batched kind (payloads n = 0, 1, ...), and a worker that runs them."""
    calls = calls or Calls()
    ids = [add(wctx, "t.b", {"n": n}, ago=10 - n) for n in range(jobs)]
    w = Worker(wctx, {"t.b": calls.handler()}, name="w1")
    calls.worker = w
    return calls, ids, w


def test_claimed_jobs_of_a_batched_kind_run_in_one_call_and_are_done_together(wctx: Container) -> None:
    calls, ran = Calls(), []
    ids = [add(wctx, "t.b", {"n": 0}, ago=40), add(wctx, "t.a", {"n": 9}, ago=30)]
    ids += [add(wctx, "t.b", {"n": n}, ago=20 - n) for n in (1, 2)]
    w = Worker(wctx, {"t.b": calls.handler(), "t.a": lambda _c, p: ran.append(p["n"])}, name="w1")
    calls.worker = w
    assert w.run_once(limit=10) == 4
    assert calls.many == [[0, 1, 2]] and calls.one == [] and ran == [9]
    assert calls.running == [sorted(i for i in ids if job(wctx, i).kind == "t.b")]
    assert all(job(wctx, i).status is OutboxStatus.done for i in ids)
    assert w._running == set() and w._claimed == {}


def test_a_lone_job_of_a_batched_kind_runs_through_its_one_job_handler(wctx: Container) -> None:
    calls, [i], w = batched(wctx, 1)
    assert w.run_once() == 1
    assert calls.many == [] and calls.one == [0] and job(wctx, i).status is OutboxStatus.done


def test_a_failed_batch_runs_each_job_alone_and_each_keeps_its_own_outcome(wctx: Container) -> None:
    calls, ids, w = batched(wctx, 3, Calls(fail_many=True, fail_one=frozenset({1})))
    with capture_logs() as logs:
        assert w.run_once(limit=10) == 3
    assert calls.many == [[0, 1, 2]] and calls.one == [0, 1, 2]
    assert [job(wctx, i).status for i in ids] == [OutboxStatus.done, OutboxStatus.pending, OutboxStatus.done]
    failed = job(wctx, ids[1])
    assert failed.last_error == "ValueError: job 1 is bad" and failed.attempts == 1 and failed.locked_until is None
    assert [x["event"] for x in logs] == ["outbox.batch_failed", "outbox.job_failed"]
    assert logs[0]["kind"] == "t.b" and logs[0]["jobs"] == 3 and logs[0]["error"] == "the batch failed"
    assert w._running == set() and w._claimed == {}


def test_a_batch_hands_back_its_jobs_too_late_to_start_and_runs_the_rest(wctx: Container) -> None:
    calls, ids, w = batched(wctx, 3)
    claimed = w.claim(10)
    claimed[1].locked_until = utcnow() + timedelta(seconds=LEASE / 2 - 1)  # waited in the worker too long
    w._dispatch(claimed)
    assert calls.many == [[0, 2]] and calls.one == []
    late = job(wctx, ids[1])
    assert late.status is OutboxStatus.pending and late.locked_by is None and late.attempts == 0
    assert job(wctx, ids[0]).status is OutboxStatus.done and job(wctx, ids[2]).status is OutboxStatus.done


def test_a_stopping_worker_starts_no_batch_and_hands_its_jobs_back(wctx: Container) -> None:
    calls, ids, w = batched(wctx, 2)
    claimed = w.claim(10)
    w.stop()
    w._start_batch(claimed, [])
    assert calls.many == [] and sorted(w._claimed) == sorted(ids)
    assert w.release_held() == 2
    assert all(job(wctx, i).locked_by is None and job(wctx, i).attempts == 0 for i in ids)


def test_a_batched_handler_called_as_one_runs_its_one_job_handler(wctx: Container) -> None:
    calls = Calls()
    calls.handler()(wctx, {"n": 7})
    assert calls.one == [7] and calls.many == []
