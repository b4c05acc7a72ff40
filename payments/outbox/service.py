"""Writing side effects to the outbox, in the caller's transaction."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlmodel import Session

from payments.core.types import utcnow
from payments.outbox.models import OutboxJob


def enqueue(session: Session, kind: str, payload: dict[str, Any], run_after: datetime | None = None) -> None:
    session.add(OutboxJob(kind=kind, payload=payload, run_after=run_after or utcnow()))
