"""The console's settings, mixed into ``lephi.settings.Settings`` (environment variables ``LEPHI_<FIELD>``)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field


class ConsoleSettings(BaseModel):
    # A staff session ends after this many minutes without a request, and in any case this many hours after sign-in.
    staff_idle_minutes: int = Field(default=30, ge=1, le=24 * 60)
    staff_session_hours: int = Field(default=12, ge=1, le=24 * 7)
    # How the console's mails (set-password and reset links) leave: ``log`` writes them to the log (development),
    # ``smtp`` sends them through a mail server (console/mail.py).
    mail_backend: Literal["log", "smtp"] = "log"
    mail_host: str = "localhost"
    mail_port: int = Field(default=587, ge=1, le=65535)
    mail_starttls: bool = True
    mail_user: str | None = None
    # ``${NAME}`` reads the environment variable NAME; mail_password_file names a file holding the password instead.
    mail_password: str | None = None
    mail_password_file: Path | None = None
    mail_from: str = "Lephi <no-reply@localhost>"
    mail_timeout_seconds: float = Field(default=10, gt=0, le=120)
