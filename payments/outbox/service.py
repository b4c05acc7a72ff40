"""Writing side effects to the outbox, in the caller's transaction."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Connection, insert
from sqlmodel import Session

from payments.core import requestid
from payments.core.db import table_of
from payments.core.sql import connection, insert_rows
from payments.core.types import utcnow
from payments.outbox.models import OutboxJob, OutboxStatus

# A Core insert, built once: no ORM object or flush per job, and no autoflush of the caller's pending objects (a job
# refers to nothing by foreign key, so it may be written before them).
_JOB = table_of(OutboxJob)
INSERT_JOB = insert(_JOB)


def enqueue(session: Session, kind: str, payload: dict[str, Any], run_after: datetime | None = None) -> None:
    now = utcnow()
    connection(session).execute(INSERT_JOB, job_row(kind, payload, run_after or now, now))


def enqueue_many(session: Session, jobs: list[tuple[str, dict[str, Any]]], run_after: datetime | None = None) -> None:
    """Several jobs due at once, in one statement."""
    if jobs:
        now = utcnow()
        rows = [job_row(kind, payload, run_after or now, now) for kind, payload in jobs]
        insert_rows(connection(session), _JOB, rows)


def job_row(kind: str, payload: dict[str, Any], run_after: datetime, now: datetime) -> dict[str, Any]:
    """An outbox row for ``INSERT_JOB`` or ``insert_jobs``, for callers that write on their own connection. A job
    queued while a request (or another job) runs carries its request id, which the worker binds when it runs it."""
    request_id = requestid.current()
    if request_id is not None and requestid.PAYLOAD_KEY not in payload:
        payload = {**payload, requestid.PAYLOAD_KEY: request_id}
    return {
        "kind": kind,
        "payload": payload,
        "status": OutboxStatus.pending,
        "run_after": run_after,
        "attempts": 0,
        "max_attempts": OutboxJob.model_fields["max_attempts"].default,
        "created_at": now,
    }


def insert_jobs(conn: Connection, rows: list[dict[str, Any]]) -> None:
    """Rows made by ``job_row``, in one statement."""
    insert_rows(conn, _JOB, rows)
