"""Engines and transactions for SQLite (embedded default) and PostgreSQL (psycopg 3).

Every unit of work is an explicit ``with db.write() as s:`` or ``with db.read() as s:`` block that commits on
success and rolls back on error. On SQLite a write transaction starts with ``BEGIN IMMEDIATE`` so that concurrent
writers queue on the busy timeout up front instead of failing later with "database is locked" when a read
transaction tries to upgrade.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import sqlite3
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Any, ParamSpec, TypeVar

from sqlalchemy import Engine, Table, create_engine, event
from sqlalchemy.engine import Connection, make_url
from sqlalchemy.pool import StaticPool
from sqlmodel import Session, SQLModel

from payments.core.config import PaymentSettings
from payments.core.sql import send_deferred_writes

_WRITE = "lephi_write"
P = ParamSpec("P")
T = TypeVar("T")


def normalise_url(url: str) -> str:
    """Accept plain ``postgresql://`` URLs and route them to psycopg 3."""
    if url.startswith("postgresql://") or url.startswith("postgres://"):
        return "postgresql+psycopg://" + url.split("://", 1)[1]
    return url


def _sqlite_engine(url: str, settings: PaymentSettings) -> Engine:
    path = make_url(url).database
    connect_args = {"timeout": settings.sqlite_busy_timeout_ms / 1000, "check_same_thread": False}
    if not path or path == ":memory:":
        engine = create_engine(url, connect_args=connect_args, poolclass=StaticPool, hide_parameters=True)
    else:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(
            url,
            connect_args=connect_args,
            pool_size=settings.db_pool_size,
            max_overflow=settings.db_pool_size,
            pool_timeout=60,
            hide_parameters=True,
        )

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: sqlite3.Connection, _record: Any) -> None:
        # Take transaction control away from the sqlite3 module so that BEGIN is ours to emit.
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute(f"PRAGMA busy_timeout={int(settings.sqlite_busy_timeout_ms)}")
        cur.execute(f"PRAGMA synchronous={settings.sqlite_synchronous}")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        conn.exec_driver_sql("BEGIN IMMEDIATE" if conn.get_execution_options().get(_WRITE) else "BEGIN")

    return engine


def postgres_connect_args(prepared: bool) -> dict[str, Any]:
    """psycopg's connection arguments: ``prepared=False`` never prepares a statement on the server (psycopg's
    default prepares one after it ran 5 times on a connection), for a pooler that moves transactions between server
    connections."""
    return {} if prepared else {"prepare_threshold": None}


def make_engine(url: str, settings: PaymentSettings) -> Engine:
    url = normalise_url(url)
    if url.startswith("sqlite"):
        return _sqlite_engine(url, settings)
    engine = create_engine(
        url,
        connect_args=postgres_connect_args(prepared=not settings.db_pgbouncer),
        pool_size=settings.db_pool_size,
        max_overflow=settings.db_pool_size,
        # No pre-ping: it costs a round trip per checkout; connections are recycled instead, and a dropped one
        # fails its transaction, which every caller already treats as retryable.
        pool_recycle=1800,
        pool_timeout=60,
        # Statement parameters carry personal data (payers' names in bank memos): never in errors or logs.
        hide_parameters=True,
    )
    send_deferred_writes(engine)
    return engine


class Database:
    """The engine plus the two kinds of transaction the service uses."""

    def __init__(self, engine: Engine, threads: int | None = None) -> None:
        self.engine = engine
        # PostgreSQL overlaps its round trips on a few threads. SQLite takes one writer at a time, so a thread of its
        # own only overlaps the commit's flush of the WAL with other requests' Python; measured, the hop and the
        # interpreter lock passed back and forth cost more (a quarter of a dossier's CPU) than that overlap gained.
        self.threads = (0 if engine.dialect.name == "sqlite" else 4) if threads is None else threads
        self._executor: ThreadPoolExecutor | None = None
        self._executor_lock = threading.Lock()
        self._write_engine = engine.execution_options(**{_WRITE: True})
        # SQLite has one writer at a time. Queueing this process's writers on a lock is fair and wakes the next one
        # at once; left to SQLite's busy handler they poll with growing sleeps, which multiplies tail latency.
        # Other processes still wait on the busy timeout.
        self._write_lock = threading.Lock() if engine.dialect.name == "sqlite" else None

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    @contextmanager
    def write(self) -> Iterator[Session]:
        with (
            self._write_lock or nullcontext(),
            Session(self._write_engine, expire_on_commit=False) as session,
            session.begin(),
        ):
            yield session

    @contextmanager
    def read(self) -> Iterator[Session]:
        with Session(self.engine, expire_on_commit=False) as session, session.begin():
            yield session

    async def offload(self, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        """Run a request's blocking database work on this database's own few threads, or on the event loop when
        ``threads`` is 0 (SQLite's default).

        Only for work that never waits on anything but this database: a gateway call would hold a thread the other
        requests queue for. Few threads rather than the general thread pool's forty: under load every extra thread
        is one more contender for the interpreter lock, which cost a third of a payment's CPU, and on SQLite the
        writers wait for each other anyway. On the event loop a write that waits (another process holding SQLite's
        lock, a checkpoint) holds every request of this process for that long: the price of the cheapest path."""
        if not self.threads:
            return fn(*args, **kwargs)
        executor = self._executor or self._start_executor()
        call = functools.partial(contextvars.copy_context().run, fn, *args, **kwargs)
        return await asyncio.get_running_loop().run_in_executor(executor, call)

    def _start_executor(self) -> ThreadPoolExecutor:
        with self._executor_lock:
            if self._executor is None:
                self._executor = ThreadPoolExecutor(self.threads, thread_name_prefix="lephi-db")
            return self._executor

    def dispose(self) -> None:
        with self._executor_lock:
            executor, self._executor = self._executor, None
        if executor is not None:
            executor.shutdown(wait=True)
        self.engine.dispose()


def affected(result: Any) -> int:
    """Rows matched by an UPDATE or DELETE: the outcome of a compare-and-set."""
    return int(result.rowcount)


def table_of(model: type[SQLModel]) -> Table:
    """A model's table, for Core statements on write paths that must not pay for the ORM unit of work."""
    table = model.__table__  # type: ignore[attr-defined]
    assert isinstance(table, Table)
    return table
