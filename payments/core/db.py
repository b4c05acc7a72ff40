"""Engines and transactions for SQLite (embedded default) and PostgreSQL (psycopg 3; asyncpg for the hot paths).

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
import uuid
import weakref
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ParamSpec, TypeVar

from sqlalchemy import Engine, Table, create_engine, event
from sqlalchemy.engine import URL, Connection, make_url
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.pool import NullPool, StaticPool
from sqlalchemy.util import greenlet_spawn
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
    if settings.db_async:
        _ON_LOOP[engine] = OnLoopDriver(
            make_url(url).set(drivername="postgresql+asyncpg"), settings.db_async_concurrency, settings.db_pgbouncer
        )
    return engine


@dataclass(frozen=True)
class OnLoopDriver:
    """How a PostgreSQL database runs the hot paths' transactions on the event loop (``Database.offload``): asyncpg,
    each request's work in a greenlet that gives the loop back at every round trip, at most ``concurrency`` at
    once."""

    url: URL
    concurrency: int
    pgbouncer: bool


# The on-loop driver of each engine ``make_engine`` built for PostgreSQL with ``db_async``: a Database made from the
# engine finds it here, so every way of building one (the container, the tests, the benchmarks) gets the same.
_ON_LOOP: weakref.WeakKeyDictionary[Engine, OnLoopDriver] = weakref.WeakKeyDictionary()


def _statement_name() -> str:
    return f"__lephi_{uuid.uuid4().hex}__"


class _LoopEngine:
    """An asyncpg engine for the hot paths' transactions. Pooled, it serves one event loop (asyncpg's connections
    belong to the loop that opened them), with the slots that bound its transactions; without a pool (``loop`` None)
    it serves any loop, each transaction on a connection of its own, closed with it."""

    __slots__ = ("engine", "loop", "owner", "slots", "sync", "write")

    def __init__(self, owner: Database, driver: OnLoopDriver, loop: asyncio.AbstractEventLoop | None) -> None:
        url, connect_args = driver.url, {}
        if driver.pgbouncer:
            # A pooler in transaction mode moves transactions between server connections: no statement may stay
            # prepared on one (asyncpg's cache, SQLAlchemy's), and each one prepared gets a name no other has.
            url = url.update_query_dict({"prepared_statement_cache_size": "0"})
            connect_args = {"statement_cache_size": 0, "prepared_statement_name_func": _statement_name}
        pool: dict[str, Any] = (
            # A connection for each slot, kept open; as many again for work that opens a second transaction while
            # it holds one, which with no overflow would wait for a connection that every slot holds.
            {
                "pool_size": driver.concurrency,
                "max_overflow": driver.concurrency,
                "pool_recycle": 1800,
                "pool_timeout": 60,
            }
            if loop is not None
            else {"poolclass": NullPool}
        )
        self.owner, self.loop = owner, loop
        self.engine: AsyncEngine = create_async_engine(url, connect_args=connect_args, hide_parameters=True, **pool)
        self.sync = self.engine.sync_engine
        self.write = self.sync.execution_options(**{_WRITE: True})
        self.slots = asyncio.Semaphore(driver.concurrency) if loop is not None else None
        event.listen(self.sync, "do_connect", _connect_or_unavailable)
        for name, fn in owner._listeners:
            event.listen(self.sync, name, fn)


def _connect_or_unavailable(dialect: Any, _record: Any, cargs: Any, cparams: Any) -> Any:
    """asyncpg's connection, or the driver's OperationalError when the server cannot be reached: asyncpg lets the
    socket's own error through (connection refused, a timeout), which psycopg reports as OperationalError, and the
    service answers that with 503 and Retry-After, not 500."""
    try:
        return dialect.connect(*cargs, **cparams)
    except OSError as exc:
        raise dialect.loaded_dbapi.OperationalError(f"cannot connect to the database server: {exc}", exc) from exc


_on_loop: contextvars.ContextVar[_LoopEngine | None] = contextvars.ContextVar("lephi_db_on_loop", default=None)


class Database:
    """The engine plus the two kinds of transaction the service uses."""

    def __init__(self, engine: Engine, threads: int | None = None, *, on_loop: bool = True) -> None:
        self.engine = engine
        # PostgreSQL's hot paths run on the event loop through asyncpg where the engine allows it (``make_engine``):
        # measured over HTTP, psycopg on threads cost a quarter more CPU a request (the threads contending for the
        # interpreter lock at every round trip) and a slower p99. Everything else (workers, the CLI, pages) keeps
        # psycopg.
        self._driver = _ON_LOOP.get(engine) if on_loop else None
        self._loops: dict[int, _LoopEngine] = {}  # pooled, by the loop they serve (``start``)
        self._unpooled: _LoopEngine | None = None
        self._listeners: list[tuple[str, Callable[..., Any]]] = []
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
        on_loop = _on_loop.get()
        if on_loop is not None and on_loop.owner is self:
            with Session(on_loop.write, expire_on_commit=False) as session, session.begin():
                yield session
            return
        with (
            self._write_lock or nullcontext(),
            Session(self._write_engine, expire_on_commit=False) as session,
            session.begin(),
        ):
            yield session

    @contextmanager
    def read(self) -> Iterator[Session]:
        on_loop = _on_loop.get()
        engine = on_loop.sync if on_loop is not None and on_loop.owner is self else self.engine
        with Session(engine, expire_on_commit=False) as session, session.begin():
            yield session

    @property
    def on_loop(self) -> bool:
        """Whether ``offload`` runs its work on the event loop through asyncpg."""
        return self._driver is not None

    def listen(self, name: str, fn: Callable[..., Any]) -> None:
        """An engine event listener on every engine this database runs statements on, the event loops' included."""
        self._listeners.append((name, fn))
        for engine in self._engines():
            event.listen(engine, name, fn)

    def unlisten(self, name: str, fn: Callable[..., Any]) -> None:
        self._listeners.remove((name, fn))
        for engine in self._engines():
            event.remove(engine, name, fn)

    def _engines(self) -> list[Engine]:
        unpooled = [self._unpooled.sync] if self._unpooled is not None else []
        return [self.engine, *unpooled, *(loop.sync for loop in self._loops.values())]

    async def offload(self, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        """Run a request's blocking database work on this database's own few threads, or on the event loop when
        ``threads`` is 0 (SQLite's default).

        Only for work that never waits on anything but this database: a gateway call would hold a thread the other
        requests queue for. Few threads rather than the general thread pool's forty: under load every extra thread
        is one more contender for the interpreter lock, which cost a third of a payment's CPU, and on SQLite the
        writers wait for each other anyway. On the event loop a write that waits (another process holding SQLite's
        lock, a checkpoint) holds every request of this process for that long: the price of the cheapest path.

        On PostgreSQL with asyncpg (the default) the work runs on the event loop in a greenlet, which hands the loop
        to other requests at each round trip; at most ``db_async_concurrency`` requests' transactions at once, the
        others waiting their turn in order (unbounded, they all progressed together and the slowest finished late).
        Blocking on anything but this database would stop every request of the process."""
        if self._driver is not None:
            loop = self._loop_engine()
            async with loop.slots or nullcontext():
                return await greenlet_spawn(contextvars.copy_context().run, _in_loop_context, loop, fn, args, kwargs)
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

    def _loop_engine(self) -> _LoopEngine:
        assert self._driver is not None
        found = self._loops.get(id(asyncio.get_running_loop()))
        if found is not None:
            return found
        if self._unpooled is None:
            self._unpooled = _LoopEngine(self, self._driver, None)
        return self._unpooled

    async def start(self) -> None:
        """Keep a pool of asyncpg connections for the running event loop, the one that serves the requests, until
        ``aclose`` (the app's lifespan). Work offloaded from any other loop (a test's, a script's) connects for
        each transaction: connections left in the pool of a loop that ended could not be closed any more."""
        loop = asyncio.get_running_loop()
        if self._driver is not None and id(loop) not in self._loops:
            self._loops[id(loop)] = _LoopEngine(self, self._driver, loop)

    async def aclose(self) -> None:
        """Close the running event loop's pooled connections."""
        found = self._loops.pop(id(asyncio.get_running_loop()), None)
        if found is not None:
            await found.engine.dispose()

    def dispose(self) -> None:
        with self._executor_lock:
            executor, self._executor = self._executor, None
        if executor is not None:
            executor.shutdown(wait=True)
        for loop in self._loops.values():
            loop.sync.dispose(close=False)  # a loop that did not ``aclose``: not this thread's to run, dropped
        self._loops.clear()
        self.engine.dispose()


def _in_loop_context(loop: _LoopEngine, fn: Callable[..., T], args: Any, kwargs: Any) -> T:
    _on_loop.set(loop)  # in the request's copied context only
    return fn(*args, **kwargs)


def affected(result: Any) -> int:
    """Rows matched by an UPDATE or DELETE: the outcome of a compare-and-set."""
    return int(result.rowcount)


def table_of(model: type[SQLModel]) -> Table:
    """A model's table, for Core statements on write paths that must not pay for the ORM unit of work."""
    table = model.__table__  # type: ignore[attr-defined]
    assert isinstance(table, Table)
    return table
