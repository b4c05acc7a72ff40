"""Small SQLAlchemy Core helpers for the write paths that must stay cheap."""

from __future__ import annotations

import functools
from collections import namedtuple
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any, TypeVar

from sqlalchemy import Connection, Table, bindparam, insert, inspect, text
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
        if conn.dispatch.before_cursor_execute or conn.dispatch.after_cursor_execute:
            return conn.execute(self.statement, dict(params))
        dialect = conn.dialect
        key = (dialect.name, tuple(params))
        try:
            compiled = self._compiled[key]
        except KeyError:
            compiled = self._compile(dialect, key)
        if compiled is None:
            return conn.execute(self.statement, dict(params))
        args = compiled.parameters(params)
        cursor = conn.connection.cursor()
        try:
            cursor.execute(compiled.sql, args)
            rows: list[Any] = list(cursor.fetchall()) if cursor.description is not None else []
            rowcount = cursor.rowcount
        except dialect.loaded_dbapi.Error as exc:
            raise _translated(conn, compiled.sql, exc, cursor) from exc
        finally:
            cursor.close()
        if compiled.row is not None:
            make: Any = compiled.row
            processors = compiled.results
            rows = [
                make(*(value if p is None else p(value) for p, value in zip(processors, row, strict=True)))
                for row in rows
            ]
        return Rows(rows, rowcount)

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
            _insert_one(table)(conn, chunk[0])
            continue
        params: dict[str, Any] = {}
        for i, row in enumerate(chunk):
            if len(row) != len(names):
                raise ValueError("every row of one insert must name the same columns")
            for name in names:
                params[f"r{i}_{name}"] = row[name]
        _insert_many(table, names, len(chunk))(conn, params)


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
