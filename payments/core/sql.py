"""Small SQLAlchemy Core helpers for the write paths that must stay cheap."""

from __future__ import annotations

import functools
from collections import namedtuple
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any, TypeVar

from sqlalchemy import ColumnElement, Connection, Engine, Select, Table, bindparam, event, insert, inspect, text
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Dialect
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session
from sqlalchemy.sql import Executable
from sqlalchemy.sql.compiler import SQLCompiler

_joined: ContextVar[Session | None] = ContextVar("lephi_joined_transaction", default=None)
_Model = TypeVar("_Model")


def loaded(model: type[_Model], values: Mapping[Any, Any]) -> _Model:
    """An instance of a table model from its row read with a Core statement, built as the ORM builds one it loads
    (no validation: the row is the database's, already converted by the columns' types), outside any session. For
    paths that only read the object and write with Core statements, where the model's validating constructor or an
    ORM query would cost more than the statement."""
    instance: _Model = inspect(model).class_manager.new_instance()
    instance.__dict__.update(values)
    return instance


class Rows:
    """What a prepared statement returned: the few parts of SQLAlchemy's ``Result`` the write paths use."""

    __slots__ = ("_rows", "rowcount")

    def __init__(self, rows: list[Any], rowcount: int) -> None:
        self._rows, self.rowcount = rows, rowcount

    def first(self) -> Any:
        return self._rows[0] if self._rows else None

    def scalar(self) -> Any:
        return self._rows[0][0] if self._rows else None

    def all(self) -> list[Any]:
        return self._rows


class _Compiled:
    """One statement compiled for one dialect and one set of parameter names."""

    __slots__ = ("binds", "positional", "results", "row", "sql")

    def __init__(self, compiled: SQLCompiler, dialect: Dialect) -> None:
        self.sql = compiled.string
        self.positional = compiled.positional
        order = compiled.positiontup if compiled.positional else list(compiled.binds)
        assert order is not None
        processors: Mapping[str, Callable[[Any], Any]] = compiled._bind_processors  # type: ignore[assignment]
        self.binds = [(name, processors.get(name), compiled.binds[name]) for name in order]
        columns = compiled._result_columns
        self.row: Any = namedtuple("row", [column[0] for column in columns], rename=True) if columns else None
        self.results = [column[3]._cached_result_processor(dialect, None) for column in columns]

    def result(self, cursor: Any) -> Rows:
        """What the executed statement returned, through the columns' result processors."""
        rows: list[Any] = list(cursor.fetchall()) if cursor.description is not None else []
        if self.row is not None:
            make: Any = self.row
            processors = self.results
            rows = [
                make(*(value if p is None else p(value) for p, value in zip(processors, row, strict=True)))
                for row in rows
            ]
        return Rows(rows, cursor.rowcount)

    def parameters(self, params: Mapping[str, Any]) -> Any:
        values = []
        for name, process, bind in self.binds:
            if name in params:
                value = params[name]
            elif bind.callable is not None:
                value = bind.callable()
            elif bind.required:
                raise KeyError(f"a value is required for bind parameter {name!r}")
            else:
                value = bind.value
            values.append(process(value) if process is not None and value is not None else value)
        if self.positional:
            return tuple(values)
        return {name: value for (name, _, _), value in zip(self.binds, values, strict=True)}


def _fits(compiled: SQLCompiler) -> bool:
    """Whether the statement runs as its text alone: no Python-side defaults to compute first, no expanding IN lists
    and no escaped parameter names, which SQLAlchemy's own execution handles."""
    return not (
        compiled.insert_prefetch
        or compiled.update_prefetch
        or compiled.escaped_bind_names
        or any(bind.expanding or bind.literal_execute for bind in compiled.binds.values())
    )


class Prepared:
    """A Core statement compiled once per dialect and set of parameter names, then executed on the driver's cursor
    of the caller's connection, in its transaction.

    For the few statements of the hot paths (a payment, a dossier, a callback, a receipt): SQLAlchemy's execution of
    a cached statement costs about three times what the driver does with it (60 us against 25 on SQLite, 230 against
    100 on PostgreSQL, measured on the development machine), and a request runs five to nine of them. The bound
    values go through the same type processors SQLAlchemy would apply, and the rows come back through the same
    result processors. Where a connection has statement listeners (the SQL counters of the tests and benchmarks),
    the statement runs through SQLAlchemy so that they see it; a statement that needs SQLAlchemy's execution
    (Python-side defaults, expanding IN) always does."""

    __slots__ = ("_compiled", "statement")

    def __init__(self, statement: Executable) -> None:
        self.statement = statement
        self._compiled: dict[tuple[str, tuple[str, ...]], _Compiled | None] = {}

    def __call__(self, target: Session | Connection, params: Mapping[str, Any] | None = None) -> Any:
        conn = target.connection() if isinstance(target, Session) else target
        params = params if params is not None else {}
        if queue := conn.info.get(_QUEUE):  # the writes deferred before this statement reach the server first
            _send(conn, queue, commit=False)
        if conn.dispatch.before_cursor_execute or conn.dispatch.after_cursor_execute:
            return conn.execute(self.statement, dict(params))
        dialect = conn.dialect
        compiled = self._for(dialect, params)
        if compiled is None:
            return conn.execute(self.statement, dict(params))
        args = compiled.parameters(params)
        cursor = conn.connection.cursor()
        try:
            cursor.execute(compiled.sql, args)
            return compiled.result(cursor)
        except dialect.loaded_dbapi.Error as exc:
            raise _translated(conn, compiled.sql, exc, cursor) from exc
        finally:
            cursor.close()

    def _for(self, dialect: Dialect, params: Mapping[str, Any]) -> _Compiled | None:
        key = (f"{dialect.name}+{dialect.driver}", tuple(params))
        try:
            return self._compiled[key]
        except KeyError:
            return self._compile(dialect, key)

    def write(self, target: Session | Connection, params: Mapping[str, Any] | None = None) -> None:
        """Run a write whose outcome (rows, row count) nobody reads. In a transaction that defers its writes
        (``defer_writes``) it waits, with the others, for the next statement that reads or for the commit; an
        error it causes is raised there. Elsewhere it runs at once, as a call does."""
        conn = target.connection() if isinstance(target, Session) else target
        params = params if params is not None else {}
        queue = conn.info.get(_QUEUE)
        if queue is None:
            self(conn, params)
            return
        compiled = self._for(conn.dialect, params)
        if compiled is None:
            self(conn, params)  # SQLAlchemy's execution sends what is queued first
            return
        queue.append((compiled.sql, compiled.parameters(params)))

    def _compile(self, dialect: Dialect, key: tuple[str, tuple[str, ...]]) -> _Compiled | None:
        compiled = self.statement.compile(dialect=dialect, column_keys=list(key[1]))  # type: ignore[attr-defined]
        assert isinstance(compiled, SQLCompiler)
        prepared = _Compiled(compiled, dialect) if _fits(compiled) else None
        self._compiled[key] = prepared
        return prepared


def _translated(conn: Connection, sql: str, exc: Exception, cursor: Any) -> DBAPIError:
    """The driver's error as SQLAlchemy would raise it (IntegrityError, OperationalError, ...), the connection
    invalidated when the server went away, as SQLAlchemy's own execution does, so the pool does not hand it out
    again."""
    dialect = conn.dialect
    disconnect = dialect.is_disconnect(exc, conn.connection.dbapi_connection, cursor)  # type: ignore[arg-type]
    if disconnect:
        conn.invalidate(exc)
    error = DBAPIError.instance(
        sql,
        None,
        exc,
        dialect.loaded_dbapi.Error,
        hide_parameters=True,
        connection_invalidated=disconnect,
        dialect=dialect,
    )
    assert isinstance(error, DBAPIError)
    return error


# Deferred writes (PostgreSQL through psycopg). Each statement of a transaction is a round trip to the server, and on
# a busy machine every round trip also waits for a turn on a core, twice. The writes at the end of a hot path (the
# rows that record what was decided: a document, its event, its jobs) read nothing back; sent together in psycopg's
# pipeline mode, with the COMMIT, they cost one round trip instead of one each.
_DEFERRABLE = "lephi_deferrable"  # set on connections of engines that send deferred writes (``send_deferred_writes``)
_QUEUE = "lephi_deferred"  # the statements waiting, on the connection's info while its transaction defers writes


def send_deferred_writes(engine: Engine) -> None:
    """Let transactions on ``engine`` defer their writes (psycopg only): queued writes are sent before any other
    statement on the connection and, at the commit, in one round trip with it; a rollback drops them."""
    if engine.dialect.name != "postgresql" or engine.dialect.driver != "psycopg":
        return

    @event.listens_for(engine, "connect")
    def _mark(_dbapi: Any, record: Any) -> None:
        record.info[_DEFERRABLE] = True

    @event.listens_for(engine, "before_execute")
    def _before(conn: Connection, *_: Any) -> None:
        if queue := conn.info.get(_QUEUE):
            _send(conn, queue, commit=False)

    @event.listens_for(engine, "commit")
    def _commit(conn: Connection) -> None:
        queue = conn.info.pop(_QUEUE, None)
        if queue:
            _send(conn, queue, commit=True)  # SQLAlchemy's own COMMIT then finds the transaction ended

    @event.listens_for(engine, "rollback")
    def _rollback(conn: Connection) -> None:
        if not conn.invalidated:  # an invalidated connection's info went with its server connection
            conn.info.pop(_QUEUE, None)

    @event.listens_for(engine, "checkin")
    def _checkin(_dbapi: Any, record: Any) -> None:
        record.info.pop(_QUEUE, None)  # a connection returned without commit or rollback through its Connection


def defer_writes(target: Session | Connection) -> None:
    """From here to the end of the transaction, ``Prepared.write`` statements wait and go to the server together,
    before the next statement that reads, or with the COMMIT: one round trip for the lot. An error one of them
    causes (a broken constraint) is raised there instead of at the write, as SQLAlchemy's error, and the
    transaction rolls back as usual: only for writes whose failure the caller handles for the whole transaction.
    Nothing changes where the connection cannot (SQLite, whose statements are no round trip) or where statement
    listeners watch the connection (they see every statement as it runs)."""
    conn = target.connection() if isinstance(target, Session) else target
    if (
        conn.info.get(_DEFERRABLE)
        and _QUEUE not in conn.info
        and not (conn.dispatch.before_cursor_execute or conn.dispatch.after_cursor_execute)
    ):
        conn.info[_QUEUE] = []


def together(target: Session | Connection, calls: Sequence[tuple[Prepared, Mapping[str, Any]]]) -> list[Rows]:
    """Statements whose results are all needed, each run after the one before it as if called one by one, but on
    PostgreSQL in one round trip (with the deferred writes before them). Each still sees what committed before it
    ran: a statement that waited for a lock does not hold back the snapshot of the next."""
    conn = target.connection() if isinstance(target, Session) else target
    compiled = [c for prepared, params in calls if (c := prepared._for(conn.dialect, params)) is not None]
    if (
        not conn.info.get(_DEFERRABLE)
        or conn.dispatch.before_cursor_execute
        or conn.dispatch.after_cursor_execute
        or len(compiled) != len(calls)
    ):
        return [prepared(conn, params) for prepared, params in calls]
    queue = conn.info.get(_QUEUE) or []
    statements = [*queue, *((c.sql, c.parameters(params)) for c, (_, params) in zip(compiled, calls, strict=True))]
    queue.clear()
    cursors = _pipelined(conn, statements, commit=False)
    try:
        mine = cursors[len(cursors) - len(calls) :]  # after those of the deferred writes
        return [c.result(cursor) for c, cursor in zip(compiled, mine, strict=True)]
    finally:
        for cursor in cursors:
            cursor.close()


def _send(conn: Connection, queue: list[tuple[str, Any]], *, commit: bool) -> None:
    """The queued statements in one round trip (and the COMMIT with them)."""
    statements = list(queue)
    queue.clear()
    for cursor in _pipelined(conn, statements, commit=commit):
        cursor.close()


def _pipelined(conn: Connection, statements: list[tuple[str, Any]], *, commit: bool) -> list[Any]:
    """Run ``statements`` in one psycopg pipeline, then the COMMIT if asked; each statement's cursor, its result
    read (the caller closes them). An error is raised as SQLAlchemy's, and drops what was still deferred."""
    driver: Any = conn.connection.driver_connection
    cursors: list[Any] = []
    try:
        with driver.pipeline():
            # The COMMIT as a statement, not ``driver.commit()``: that one syncs the pipeline, and leaving it syncs
            # again, a round trip each. SQLAlchemy's own commit then finds no transaction open and sends nothing.
            for sql, args in [*statements, ("COMMIT", None)] if commit else statements:
                cursors.append(driver.cursor())
                cursors[-1].execute(sql, args)
    except conn.dialect.loaded_dbapi.Error as exc:
        for cursor in cursors:
            cursor.close()
        conn.info.pop(_QUEUE, None)
        raise _translated(conn, "; ".join(sql for sql, _ in statements), exc, None) from exc
    return cursors


def claiming(table: Table, due: Select[Any], dialect: str) -> ColumnElement[bool]:
    """The WHERE clause of an ``UPDATE`` of ``table`` that claims the rows ``due`` picks (a SELECT of their ids,
    with its ORDER BY and LIMIT), several claimers at once never taking the same row.

    On PostgreSQL ``due`` locks its rows (``FOR UPDATE SKIP LOCKED``) in a CTE that is run once. Written as
    ``id IN (subquery)`` instead, the planner may make it the inner side of a nested-loop semi-join and run it again
    for every row of the table: each run skips the rows the statement has just claimed (they are its own, changed by
    this very command) and picks the next ones, so one claim took every due row whatever its LIMIT. SQLite runs the
    subquery once, and its writers hold the database one at a time."""
    if dialect == "postgresql":
        picked = due.with_for_update(skip_locked=True).cte("due").prefix_with("MATERIALIZED")
        return table.c.id == picked.c.id
    return table.c.id.in_(due.scalar_subquery())


def insert_or_nothing(s: Session, table: Table, conflict: Sequence[str], returning: Sequence[str] = ()) -> Prepared:
    """``INSERT ... ON CONFLICT (conflict) DO NOTHING [RETURNING ...]`` in the session's dialect (SQLite >= 3.35 and
    PostgreSQL), built once: call it with the session and the row. No row comes back when the conflict happened."""
    return _insert_or_nothing(s.get_bind().dialect.name, table, tuple(conflict), tuple(returning))


@functools.cache
def _insert_or_nothing(dialect: str, table: Table, conflict: tuple[str, ...], returning: tuple[str, ...]) -> Prepared:
    module: Any = postgresql if dialect == "postgresql" else sqlite
    stmt = module.insert(table).on_conflict_do_nothing(index_elements=list(conflict))
    return Prepared(stmt.returning(*(table.c[name] for name in returning)) if returning else stmt)


# Rows per statement: a fixed, small set of statement shapes to build and cache, far below both databases' limits
# on bound parameters.
_ROWS_PER_STATEMENT = 50


def insert_rows(conn: Connection, table: Table, rows: Sequence[Mapping[str, Any]]) -> None:
    """Insert rows that all name the same columns, as ``INSERT ... VALUES (...), (...)``: one statement per 50 rows.

    Not ``executemany``: psycopg runs it as a pipeline of its own, which costs about four times the CPU of one
    statement for two rows (and a round trip more); a multi-row statement costs the same as a one-row one."""
    if not rows:
        return
    names = tuple(rows[0])
    for start in range(0, len(rows), _ROWS_PER_STATEMENT):
        chunk = rows[start : start + _ROWS_PER_STATEMENT]
        if len(chunk) == 1:
            _insert_one(table).write(conn, chunk[0])
            continue
        params: dict[str, Any] = {}
        for i, row in enumerate(chunk):
            if len(row) != len(names):
                raise ValueError("every row of one insert must name the same columns")
            for name in names:
                params[f"r{i}_{name}"] = row[name]
        _insert_many(table, names, len(chunk)).write(conn, params)


@functools.cache
def _insert_one(table: Table) -> Prepared:
    return Prepared(insert(table))


@functools.lru_cache(maxsize=256)
def _insert_many(table: Table, names: tuple[str, ...], count: int) -> Prepared:
    # Text with typed parameters: SQLAlchemy will not cache the compiled form of a multi-row ``insert().values()``,
    # and compiling it again costs more than the statement. The types keep every value converted as the columns
    # convert it (JSON, enums, timestamps).
    # Only the table's own column names reach the text: an unknown name fails here (KeyError).
    columns = ", ".join(f'"{table.c[name].name}"' for name in names)
    rows = ", ".join("(" + ", ".join(f":r{i}_{name}" for name in names) + ")" for i in range(count))
    params = [bindparam(f"r{i}_{name}", type_=table.c[name].type) for i in range(count) for name in names]
    return Prepared(text(f'INSERT INTO "{table.name}" ({columns}) VALUES {rows}').bindparams(*params))  # noqa: S608


def connection(s: Session) -> Connection:
    """The session's connection in its transaction: Core statements executed on it skip the ORM's execution path
    (no autoflush, no ORM compile step), which is most of what a small statement costs."""
    return s.connection()


@contextmanager
def joining(s: Session) -> Iterator[None]:
    """Code run inside writes to the database in ``s``'s transaction (see ``joined``) instead of its own: one
    commit for all, and no second writer waiting on the first (SQLite has one writer at a time)."""
    token = _joined.set(s)
    try:
        yield
    finally:
        _joined.reset(token)


def joined() -> Session | None:
    """The transaction the current code was asked to join, if any."""
    return _joined.get()
