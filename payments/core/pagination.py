"""Keyset pagination with opaque cursors: stable under inserts, cheap at any depth."""

from __future__ import annotations

import base64
import binascii
import json
from datetime import UTC, datetime
from typing import Any, Generic, TypeVar

from pydantic import BaseModel
from sqlalchemy import and_, or_
from sqlmodel import Session, col
from sqlmodel.sql.expression import SelectOfScalar

from payments.core.errors import ValidationFailed

T = TypeVar("T")
R = TypeVar("R")


class Page(BaseModel, Generic[T]):
    data: list[T]
    next_cursor: str | None = None


def encode_cursor(created_at: datetime, row_id: str) -> str:
    raw = json.dumps([created_at.isoformat(), row_id]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, str]:
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        created, row_id = json.loads(base64.urlsafe_b64decode(padded.encode()))
        moment = datetime.fromisoformat(created)
        if moment.tzinfo is None:
            raise ValueError("naive datetime in cursor")
        # Ids are short printable ASCII; anything else (a NUL, which PostgreSQL refuses) was not made here.
        if not isinstance(row_id, str) or len(row_id) > 64 or not (row_id.isascii() and row_id.isprintable()):
            raise ValueError("not an id in cursor")
        return moment.astimezone(UTC), row_id
    except (ValueError, TypeError, OverflowError, binascii.Error, UnicodeDecodeError) as exc:
        raise ValidationFailed("the cursor is not one this API returned", field="cursor") from exc


def newest_first_page(
    session: Session,
    query: SelectOfScalar[R],
    model: Any,
    limit: int,
    cursor: str | None,
    created_from: datetime | None = None,
    created_to: datetime | None = None,
    created_attr: str = "created_at",
) -> tuple[list[R], str | None]:
    """One page of ``query`` over ``model`` (which has ``created_at`` and ``id``), newest first, ties by id."""
    created_col, id_col = col(getattr(model, created_attr)), col(model.id)
    if created_from:
        query = query.where(created_col >= created_from)
    if created_to:
        query = query.where(created_col < created_to)
    if cursor:
        created, row_id = decode_cursor(cursor)
        query = query.where(or_(created_col < created, and_(created_col == created, id_col < row_id)))
    rows = list(session.exec(query.order_by(created_col.desc(), id_col.desc()).limit(limit + 1)))
    if len(rows) <= limit:
        return rows, None
    last = rows[limit - 1]
    return rows[:limit], encode_cursor(getattr(last, created_attr), last.id)  # type: ignore[attr-defined]
