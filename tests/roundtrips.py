"""Round trips to PostgreSQL, counted from libpq's own trace of the protocol: one ReadyForQuery message each."""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from typing import IO, Any

from psycopg import pq
from sqlalchemy import Engine, event
from sqlalchemy.orm import Session


class RoundTrips:
    def __init__(self) -> None:
        self.count = 0


def _trace(dbapi: Any, into: IO[bytes]) -> None:
    dbapi.pgconn.trace(into.fileno())
    dbapi.pgconn.set_trace_flags(pq.Trace.SUPPRESS_TIMESTAMPS | pq.Trace.REGRESS_MODE)


def _counted(trace: IO[bytes]) -> int:
    trace.seek(0)
    return sum("\tReadyForQuery\t" in line for line in trace.read().decode().splitlines())


@contextmanager
def counted(engine: Engine) -> Iterator[RoundTrips]:
    """Every round trip made on connections the engine hands out inside the block (each traced from its checkout
    to its checkin); ``count`` is set when the block ends."""
    result = RoundTrips()
    with tempfile.TemporaryFile() as trace:

        def on_checkout(dbapi: Any, _record: Any, _proxy: Any) -> None:
            _trace(dbapi, trace)

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
        result.count = _counted(trace)


@contextmanager
def counted_on(s: Session) -> Iterator[RoundTrips]:
    """The round trips the session's connection makes inside the block, in the transaction it is in."""
    dbapi = s.connection().connection.driver_connection
    result = RoundTrips()
    with tempfile.TemporaryFile() as trace:
        _trace(dbapi, trace)
        try:
            yield result
        finally:
            dbapi.pgconn.untrace()
        result.count = _counted(trace)
