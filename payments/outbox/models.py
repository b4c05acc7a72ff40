"""The transactional outbox: side effects written in the same transaction as the state change they follow."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import JSON, Index, Text
from sqlmodel import Field, SQLModel

from payments.core.types import UTCDateTime, str_enum, utcnow


class OutboxStatus(StrEnum):
    pending = "pending"
    done = "done"
    dead = "dead"


class OutboxJob(SQLModel, table=True):
    __tablename__ = "outbox"
    __table_args__ = (Index("ix_outbox_due", "status", "run_after"),)

    id: int | None = Field(default=None, primary_key=True)
    kind: str = Field(max_length=60)
    payload: dict[str, Any] = Field(default_factory=dict, sa_type=JSON)
    status: OutboxStatus = Field(default=OutboxStatus.pending, sa_type=str_enum(OutboxStatus))
    run_after: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    attempts: int = 0
    max_attempts: int = 10
    locked_by: str | None = Field(default=None, max_length=100)
    locked_until: datetime | None = Field(default=None, sa_type=UTCDateTime)
    last_error: str | None = Field(default=None, sa_type=Text)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    done_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
