"""Loaded at start-up by the ``lephi worker`` processes of tests/test_worker_kill.py (this folder is put first on
their PYTHONPATH); inert unless LEPHI_TEST_BLOCK_KIND is set.

LEPHI_TEST_BLOCK_KIND: the outbox job kind whose handler blocks, in this process, for ever.
LEPHI_TEST_BLOCK_PHASE: ``before`` (the handler has not started its work) or ``after`` (the handler's work is
  committed, the worker has not yet marked the job done).
LEPHI_TEST_BLOCK_DIR: where a file named after the kind is written once a handler is blocked, so that the test knows
  when to kill the process.
LEPHI_TEST_MUTANT=done_first: a broken worker that marks a job done before running its handler, to show that the
  test catches it.
"""

from __future__ import annotations

import os

_KIND = os.environ.get("LEPHI_TEST_BLOCK_KIND")

if _KIND:
    import threading
    from pathlib import Path
    from typing import Any

    from lephi import jobs

    _PHASE = os.environ.get("LEPHI_TEST_BLOCK_PHASE", "before")
    _DIR = Path(os.environ["LEPHI_TEST_BLOCK_DIR"])
    _real = jobs.HANDLERS[_KIND]

    def _block() -> None:
        (_DIR / _KIND).write_text(_PHASE)
        threading.Event().wait()  # until SIGKILL

    def _blocking(ctx: Any, payload: dict[str, Any]) -> None:
        if _PHASE == "after":
            _real(ctx, payload)
        _block()

    # In place: ``lephi worker`` reads this same dict when it starts.
    jobs.HANDLERS[_KIND] = _blocking

    if os.environ.get("LEPHI_TEST_MUTANT") == "done_first":
        from payments.outbox.worker import Worker

        def _done_first(self: Any, job: Any) -> bool:
            self._finish([job.id])
            self.handlers[job.kind](self.ctx, job.payload)
            return False  # already marked

        Worker._run_job = _done_first  # type: ignore[method-assign]
