"""Stored Idempotency-Key records: the request's fingerprint and, once finished, its response."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from sqlalchemy import Text, UniqueConstraint
from sqlmodel import Field, SQLModel

from payments.core.types import UTCDateTime, str_enum, utcnow


class IdempotencyState(StrEnum):
    in_progress = "in_progress"
    completed = "completed"


class IdempotencyRecord(SQLModel, table=True):
    __tablename__ = "idempotency_record"
    __table_args__ = (UniqueConstraint("client_id", "key"),)

    id: int | None = Field(default=None, primary_key=True)
    client_id: str = Field(max_length=40)
    key: str = Field(max_length=255)
    fingerprint: str = Field(max_length=64)
    state: IdempotencyState = Field(default=IdempotencyState.in_progress, sa_type=str_enum(IdempotencyState))
    # The resource created so far (a recovery point): a retry after a crash resumes with it instead of
    # starting a second one.
    resource_id: str | None = Field(default=None, max_length=40)
    response_status: int | None = None
    response_body: str | None = Field(default=None, sa_type=Text)
    locked_until: datetime = Field(sa_type=UTCDateTime)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    expires_at: datetime = Field(sa_type=UTCDateTime, index=True)
