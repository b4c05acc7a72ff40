"""What start-up builds is frozen out of the garbage collector's full passes, in the service's own processes only.

A full pass over the unfrozen start-up heap held the event loop for about 200 ms, several times a minute under load
(docs/benchmarks.md). The test process itself builds app after app, so it never freezes: these tests check the
helper on its own and that ``lephi serve`` and ``lephi worker`` call it once start-up is done."""

from __future__ import annotations

import gc
import signal
import weakref
from collections.abc import Iterator
from typing import Any

import pytest
import uvicorn

import lephi.cli
from lephi.heap import freeze_heap
from payments.outbox.worker import Worker
from tests.conftest import Cli


@pytest.fixture
def unfrozen() -> Iterator[None]:
    gc.unfreeze()
    yield
    gc.unfreeze()  # give the test process its collector back


class _Cycle:
    def __init__(self) -> None:
        self.me = self


def test_the_heap_is_frozen_after_its_garbage_is_collected(unfrozen: None) -> None:
    kept = [_Cycle() for _ in range(10)]
    garbage = weakref.ref(_Cycle())  # unreachable, in a cycle: reference counting alone never frees it
    assert garbage() is not None and gc.get_freeze_count() == 0
    freeze_heap()
    assert garbage() is None  # collected, not frozen
    assert gc.get_freeze_count() > len(kept)
    passed_over = {id(o) for o in gc.get_objects()}  # what the collector's passes still walk
    assert not any(id(o) in passed_over for o in kept)


@pytest.fixture
def signals() -> Iterator[None]:
    """``serve`` and ``worker`` install their own SIGTERM/SIGINT handlers: the test process gets its own back."""
    before = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGINT)}
    yield
    for sig, handler in before.items():
        signal.signal(sig, handler)


def test_serve_freezes_once_the_app_is_built_and_before_it_serves(
    cli: Cli, monkeypatch: pytest.MonkeyPatch, signals: None
) -> None:
    steps: list[str] = []
    monkeypatch.setattr(lephi.cli, "freeze_heap", lambda: steps.append("freeze"))
    monkeypatch.setattr(uvicorn.Server, "run", lambda self, *a, **k: steps.append(f"serve {type(self.config.app)}"))
    monkeypatch.setenv("LEPHI_PUBLIC_URL", "http://testserver")  # set by serve: monkeypatch restores it
    result = cli("serve", "--no-worker", "--port", "8123")
    assert result.exit_code == 0, result.output
    assert steps == ["freeze", "serve <class 'fastapi.applications.FastAPI'>"]


def test_the_worker_freezes_before_its_loop_starts(cli: Cli, monkeypatch: pytest.MonkeyPatch, signals: None) -> None:
    steps: list[str] = []
    monkeypatch.setattr(lephi.cli, "freeze_heap", lambda: steps.append("freeze"))

    def loop(self: Any) -> None:
        steps.append("loop")

    monkeypatch.setattr(Worker, "run_forever", loop)
    result = cli("worker")
    assert result.exit_code == 0, result.output
    assert steps == ["freeze", "loop"]
