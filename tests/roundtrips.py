"""Round trips to PostgreSQL, counted from libpq's own trace of the protocol: one ReadyForQuery message each."""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from psycopg import pq
from sqlalchemy import Engine, event


class RoundTrips:
    def __init__(self) -> None:
        self.count = 0


@contextmanager
def counted(engine: Engine) -> Iterator[RoundTrips]:
    """Every round trip made on connections the engine hands out inside the block (each traced from its checkout
    to its checkin); ``count`` is set when the block ends."""
    result = RoundTrips()
    with tempfile.TemporaryFile() as trace:

        def on_checkout(dbapi: Any, _record: Any, _proxy: Any) -> None:
            dbapi.pgconn.trace(trace.fileno())
            dbapi.pgconn.set_trace_flags(pq.Trace.SUPPRESS_TIMESTAMPS | pq.Trace.REGRESS_MODE)

        def on_checkin(dbapi: Any, _record: Any) -> None:
            if dbapi is not None:
                dbapi.pgconn.untrace()

        event.listen(engine, "checkout", on_checkout)
        event.listen(engine, "checkin", on_checkin)
        try:
            yield result
        finally:
            event.remove(engine, "checkout", on_checkout)
            event.remove(engine, "checkin", on_checkin)
        trace.seek(0)
        result.count = sum("\tReadyForQuery\t" in line for line in trace.read().decode().splitlines())
