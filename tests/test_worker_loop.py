"""The outbox worker's loop (``run_forever``) on a real database: it runs jobs, purges expired idempotency keys,
runs periodic work, survives an error in a step and logs its start and stop. Kept apart from
tests/test_worker_units.py: a thread running the loop does not survive mutmut's forked runs, so the mutation run
maps the units only.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from lephi.container import Container, build_container
from payments.core.context import AppContext
from payments.core.db import Database, make_engine
from payments.core.types import utcnow
from payments.outbox import worker as worker_module
from payments.outbox.models import OutboxStatus
from payments.outbox.worker import Periodic, Worker
from tests.conftest import make_settings
from tests.test_worker_units import add, capture_logs, job, wctx

__all__ = ["wctx"]


def run_loop(w: Worker[Container]) -> Callable[[], None]:
    """Start ``run_forever`` on a thread; returns the function that stops it and waits."""
    thread = threading.Thread(target=w.run_forever)
    thread.start()

    def stop() -> None:
        w.stop()
        thread.join(20)
        assert not thread.is_alive()

    return stop


def wait_until(check: Callable[[], bool], timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.02)
    return check()


def test_the_loop_runs_jobs_purges_periodically_survives_errors_and_logs_its_start_and_stop(
    wctx: Container, monkeypatch: pytest.MonkeyPatch
) -> None:
    purges: list[int] = []
    real_purge = wctx.idempotency.purge_expired

    def purge() -> int:
        purges.append(1)
        return real_purge()

    monkeypatch.setattr(wctx.idempotency, "purge_expired", purge)
    ticks: list[int] = []
    flaky = {"n": 0}

    def tick(_ctx: AppContext) -> None:
        ticks.append(1)

    def handler(_ctx: AppContext, _payload: dict[str, Any]) -> None:
        flaky["n"] += 1

    w = Worker(wctx, {"t.a": handler}, name="loop", periodic=[Periodic[Container]("tick", lambda _c: 0.0, tick)])
    real_step = w._step
    failures = {"left": 1}

    def step() -> int:
        if failures["left"]:
            failures["left"] -= 1
            raise RuntimeError("e" * 600)
        return real_step()

    w._step = step  # type: ignore[method-assign]
    with capture_logs() as logs:
        stop = run_loop(w)
        try:
            ids = [add(wctx, ago=1) for _ in range(3)]
            assert wait_until(lambda: all(job(wctx, i).status is OutboxStatus.done for i in ids))
            assert wait_until(lambda: len(ticks) >= 2)
        finally:
            stop()
    assert flaky["n"] == 3 and purges == [1]
    events = [x["event"] for x in logs]
    assert events[0] == "worker.started" and events[-1] == "worker.stopped"
    assert logs[0] == {"event": "worker.started", "log_level": "info", "worker": "loop"}
    assert logs[-1] == {"event": "worker.stopped", "log_level": "info", "worker": "loop", "abandoned": False}
    assert {"event": "worker.loop_error", "log_level": "error", "error": "e" * 500} in logs
    assert "worker.not_listening" not in events


@pytest.fixture
def bouncer_ctx(database_url: str, tmp_path: Path) -> Iterator[Container]:
    """A context configured for a transaction-mode pool (LEPHI_DB_PGBOUNCER): the worker polls, never listens."""
    settings = make_settings(database_url, tmp_path, db_pgbouncer=True, worker_poll_seconds=0.05)
    context = build_container(settings, Database(make_engine(settings.effective_database_url, settings)))
    yield context
    context.close()


def test_a_loop_that_does_not_listen_runs_jobs_and_stops_cleanly(bouncer_ctx: Container) -> None:
    ran: list[int] = []
    w = Worker(bouncer_ctx, {"t.a": lambda _c, _p: ran.append(1)}, name="poller")
    with capture_logs() as logs:
        stop = run_loop(w)
        try:
            i = add(bouncer_ctx, ago=1)
            assert wait_until(lambda: job(bouncer_ctx, i).status is OutboxStatus.done)
        finally:
            stop()
    assert ran == [1] and w.listener is None
    polling = {
        "event": "worker.not_listening",
        "log_level": "warning",
        "reason": "LEPHI_DB_PGBOUNCER: polling instead of LISTEN",
    }
    assert logs[0] == {"event": "worker.started", "log_level": "info", "worker": "poller"}
    assert [x for x in logs if x["event"] == "worker.not_listening"] == (
        [polling] if bouncer_ctx.db.dialect == "postgresql" else []
    )
    assert logs[-1] == {"event": "worker.stopped", "log_level": "info", "worker": "poller", "abandoned": False}


def test_the_loop_purges_again_only_once_more_than_an_hour_has_passed(
    wctx: Container, monkeypatch: pytest.MonkeyPatch
) -> None:
    base = utcnow().replace(microsecond=0)  # whole seconds: the differences below are exact
    clock = {"at": base}
    monkeypatch.setattr(worker_module, "utcnow", lambda: clock["at"])
    purges: list[int] = []

    def purge() -> int:
        purges.append(1)
        return 0

    monkeypatch.setattr(wctx.idempotency, "purge_expired", purge)
    ticks: list[int] = []
    w = Worker(
        wctx, {}, name="loop", periodic=[Periodic[Container]("tick", lambda _c: 0.0, lambda _c: ticks.append(1))]
    )

    def idle_rounds(n: int) -> None:
        seen = len(ticks)
        assert wait_until(lambda: len(ticks) >= seen + n)

    stop = run_loop(w)
    try:
        idle_rounds(2)
        assert purges == [1]
        clock["at"] = base + timedelta(seconds=3600)
        idle_rounds(2)
        assert purges == [1]  # exactly an hour: not yet
        clock["at"] = base + timedelta(seconds=3600.5)
        idle_rounds(2)
        assert purges == [1, 1]
    finally:
        stop()


@pytest.mark.parametrize("database_url", ["postgres"], indirect=True)
def test_the_listeners_thread_is_named_after_its_worker(wctx: Container) -> None:
    w = Worker(wctx, {}, name="loop")
    stop = run_loop(w)
    try:
        assert wait_until(lambda: w.listener is not None and w.listener.listening.is_set())
        assert "loop-listen" in [t.name for t in threading.enumerate()]
    finally:
        stop()
