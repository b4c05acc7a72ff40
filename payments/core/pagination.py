"""Keyset pagination with opaque cursors: stable under inserts, cheap at any depth."""

from __future__ import annotations

import base64
import binascii
import json
from datetime import datetime
from typing import Any, Generic, TypeVar

from pydantic import BaseModel
from sqlalchemy import and_, or_

from payments.core.errors import ValidationFailed

T = TypeVar("T")


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
        return datetime.fromisoformat(created), str(row_id)
    except (ValueError, TypeError, binascii.Error, UnicodeDecodeError) as exc:
        raise ValidationFailed("the cursor is not one this API returned", field="cursor") from exc


def after_cursor(created_col: Any, id_col: Any, cursor: str | None) -> Any:
    """Newest first: rows strictly older than the cursor, ties broken by id."""
    if not cursor:
        return None
    created, row_id = decode_cursor(cursor)
    return or_(created_col < created, and_(created_col == created, id_col < row_id))
