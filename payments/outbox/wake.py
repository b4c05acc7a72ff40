"""Waking a worker when a job is queued: a thread holding one PostgreSQL connection in ``LISTEN`` sets an event on
each notification (payments.outbox.service.wake_workers sends them at commit).

The worker still polls at its interval: a notification sent while the connection was down is lost, and a job queued
for later (``run_after``) sends none. When the connection dies (a database restart, a terminated backend) the thread
reconnects with a growing pause and wakes the worker once it listens again, in case it missed something meanwhile."""

from __future__ import annotations

import threading

from sqlalchemy.engine import URL

from payments.core.logging import get_logger
from payments.outbox.service import CHANNEL

log = get_logger(__name__)

# How often the listening thread looks at its stop flag while no notification comes.
_TICK_SECONDS = 1.0
_MAX_PAUSE_SECONDS = 30.0


class Listener:
    def __init__(self, url: URL, wake: threading.Event, name: str) -> None:
        # psycopg takes a libpq URI: the same URL without SQLAlchemy's "+psycopg" driver suffix.
        self._conninfo = url.set(drivername="postgresql").render_as_string(hide_password=False)
        self._wake = wake
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"{name}-listen", daemon=True)
        self.listening = threading.Event()  # set while the connection is in LISTEN; for health and tests
        self.backend_pid: int | None = None

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def join(self, timeout: float) -> None:
        self._thread.join(timeout)

    def _run(self) -> None:
        failures = 0
        while not self._stop.is_set():
            try:
                self._listen()
                failures = 0
            except Exception as exc:  # the thread must outlive the database: the worker polls meanwhile
                self.listening.clear()
                self.backend_pid = None
                log.warning("worker.listen_failed", error=str(exc)[:500], attempt=failures + 1)
                self._stop.wait(min(_MAX_PAUSE_SECONDS, 0.5 * 2**failures))
                failures += 1

    def _listen(self) -> None:
        import psycopg

        with psycopg.connect(self._conninfo, autocommit=True, connect_timeout=10) as conn:
            conn.execute(f"LISTEN {CHANNEL}")
            self.backend_pid = conn.info.backend_pid
            self.listening.set()
            self._wake.set()  # jobs queued while nobody listened
            while not self._stop.is_set():
                for _notify in conn.notifies(timeout=_TICK_SECONDS):
                    self._wake.set()
                if conn.broken:
                    raise ConnectionError("the LISTEN connection was lost")
            self.listening.clear()
