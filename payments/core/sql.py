"""Small SQLAlchemy Core helpers for the write paths that must stay cheap."""

from __future__ import annotations

import functools
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

from sqlalchemy import Connection, Table, bindparam, insert, text
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

_joined: ContextVar[Session | None] = ContextVar("lephi_joined_transaction", default=None)


def insert_or_nothing(s: Session, table: Table, conflict: Sequence[str], returning: Sequence[str] = ()) -> Any:
    """``INSERT ... ON CONFLICT (conflict) DO NOTHING [RETURNING ...]`` in the session's dialect (SQLite >= 3.35 and
    PostgreSQL), built once: execute it with the row as parameters. No row comes back when the conflict happened."""
    return _insert_or_nothing(s.get_bind().dialect.name, table, tuple(conflict), tuple(returning))


@functools.cache
def _insert_or_nothing(dialect: str, table: Table, conflict: tuple[str, ...], returning: tuple[str, ...]) -> Any:
    module: Any = postgresql if dialect == "postgresql" else sqlite
    stmt = module.insert(table).on_conflict_do_nothing(index_elements=list(conflict))
    return stmt.returning(*(table.c[name] for name in returning)) if returning else stmt


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
            conn.execute(_insert_one(table), chunk[0])
            continue
        params: dict[str, Any] = {}
        for i, row in enumerate(chunk):
            if len(row) != len(names):
                raise ValueError("every row of one insert must name the same columns")
            for name in names:
                params[f"r{i}_{name}"] = row[name]
        conn.execute(_insert_many(table, names, len(chunk)), params)


@functools.cache
def _insert_one(table: Table) -> Any:
    return insert(table)


@functools.lru_cache(maxsize=256)
def _insert_many(table: Table, names: tuple[str, ...], count: int) -> Any:
    # Text with typed parameters: SQLAlchemy will not cache the compiled form of a multi-row ``insert().values()``,
    # and compiling it again costs more than the statement. The types keep every value converted as the columns
    # convert it (JSON, enums, timestamps).
    # Only the table's own column names reach the text: an unknown name fails here (KeyError).
    columns = ", ".join(f'"{table.c[name].name}"' for name in names)
    rows = ", ".join("(" + ", ".join(f":r{i}_{name}" for name in names) + ")" for i in range(count))
    params = [bindparam(f"r{i}_{name}", type_=table.c[name].type) for i in range(count) for name in names]
    return text(f'INSERT INTO "{table.name}" ({columns}) VALUES {rows}').bindparams(*params)  # noqa: S608


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
