"""The console's settings, mixed into ``lephi.settings.Settings`` (environment variables ``LEPHI_<FIELD>``)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field, model_validator

from payments.core.logging import get_logger


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

    @model_validator(mode="after")
    def _warn_log_mail_in_production(self) -> ConsoleSettings:
        # Mixed into the service's settings, which know the environment; links still go to the log, so that an
        # operator can hand one over by hand, but nobody receives them by mail.
        if str(getattr(self, "env", "")) == "production" and self.mail_backend == "log":
            get_logger(__name__).warning(
                "settings.mail_backend_log",
                detail="LEPHI_MAIL_BACKEND is log: set-password and reset links are written to the log, not mailed",
            )
        return self

    # Resolving or reopening a reconciliation exception above this amount (whole VND) needs the approver role.
    approval_threshold: int = Field(default=10_000_000, ge=0)
