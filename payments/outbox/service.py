"""Writing side effects to the outbox, in the caller's transaction."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import insert
from sqlmodel import Session

from payments.core.db import table_of
from payments.core.types import utcnow
from payments.outbox.models import OutboxJob, OutboxStatus

# A Core insert, built once: no ORM object or flush per job, and no autoflush of the caller's pending objects (a job
# refers to nothing by foreign key, so it may be written before them).
INSERT_JOB = insert(table_of(OutboxJob))


def enqueue(session: Session, kind: str, payload: dict[str, Any], run_after: datetime | None = None) -> None:
    now = utcnow()
    session.execute(INSERT_JOB, job_row(kind, payload, run_after or now, now))


def enqueue_many(session: Session, jobs: list[tuple[str, dict[str, Any]]], run_after: datetime | None = None) -> None:
    """Several jobs due at once, in one statement."""
    if jobs:
        now = utcnow()
        session.execute(INSERT_JOB, [job_row(kind, payload, run_after or now, now) for kind, payload in jobs])


def job_row(kind: str, payload: dict[str, Any], run_after: datetime, now: datetime) -> dict[str, Any]:
    """An outbox row for ``INSERT_JOB``, for callers that write on their own connection."""
    return {
        "kind": kind,
        "payload": payload,
        "status": OutboxStatus.pending,
        "run_after": run_after,
        "attempts": 0,
        "max_attempts": OutboxJob.model_fields["max_attempts"].default,
        "created_at": now,
    }
