"""Small SQLAlchemy Core helpers for the write paths that must stay cheap."""

from __future__ import annotations

import functools
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

from sqlalchemy import Connection, Table
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
