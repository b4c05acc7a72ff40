"""The console's settings, mixed into ``lephi.settings.Settings`` (environment variables ``LEPHI_<FIELD>``)."""

from __future__ import annotations

from pydantic import BaseModel, Field


class ConsoleSettings(BaseModel):
    # A staff session ends after this many minutes without a request, and in any case this many hours after sign-in.
    staff_idle_minutes: int = Field(default=30, ge=1, le=24 * 60)
    staff_session_hours: int = Field(default=12, ge=1, le=24 * 7)
    # Resolving or reopening a reconciliation exception above this amount (whole VND) needs the approver role.
    approval_threshold: int = Field(default=10_000_000, ge=0)
