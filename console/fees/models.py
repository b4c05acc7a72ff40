"""An uploaded fee schedule waiting for confirmation: what the preview page showed, so that confirming applies
exactly that content and nothing sent later."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from sqlalchemy import JSON
from sqlmodel import Field, SQLModel

from payments.core.types import UTCDateTime, utcnow


class FeeImport(SQLModel, table=True):
    __tablename__ = "fee_import"

    # The confirmation form's hidden token: unguessable, and good for one agency's staff only.
    id: str = Field(primary_key=True, max_length=64)
    agency_id: str = Field(foreign_key="agency.id", index=True, max_length=40)
    staff_id: str = Field(max_length=40)
    source_name: str = Field(max_length=200)
    sha256: str = Field(max_length=64)
    effective_from: date
    # The parsed schedule (payments.agency.schedule.FeeSchedule as JSON).
    content: dict[str, Any] = Field(sa_type=JSON)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    applied_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    version_id: int | None = Field(default=None, foreign_key="fee_schedule_version.id")
