"""Small SQLAlchemy Core helpers for the write paths that must stay cheap."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

from sqlalchemy import Table
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

_joined: ContextVar[Session | None] = ContextVar("lephi_joined_transaction", default=None)


def insert_or_nothing(s: Session, table: Table, conflict: Sequence[str]) -> Any:
    """``INSERT ... ON CONFLICT (conflict) DO NOTHING`` in the session's dialect (SQLite >= 3.35 and PostgreSQL);
    add ``.values(...)`` and ``.returning(...)``: no row comes back when the conflict happened."""
    dialect = s.get_bind().dialect.name
    module: Any = postgresql if dialect == "postgresql" else sqlite
    return module.insert(table).on_conflict_do_nothing(index_elements=list(conflict))


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
