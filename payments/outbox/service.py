"""Writing side effects to the outbox, in the caller's transaction."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Connection, insert, text
from sqlmodel import Session

from payments.core import requestid
from payments.core.db import table_of
from payments.core.sql import Prepared, connection, insert_rows
from payments.core.types import utcnow
from payments.outbox.models import OutboxJob, OutboxStatus

# A Core insert, built once: no ORM object or flush per job, and no autoflush of the caller's pending objects (a job
# refers to nothing by foreign key, so it may be written before them).
_JOB = table_of(OutboxJob)
INSERT_JOB = Prepared(insert(_JOB))

# Workers LISTEN on this channel (payments.outbox.wake). PostgreSQL delivers a NOTIFY at commit, and drops it on
# rollback, so a worker never wakes for a job it cannot see yet.
CHANNEL = "lephi_outbox"
_NOTIFY = Prepared(text(f"SELECT pg_notify('{CHANNEL}', :kinds)"))


def enqueue(session: Session, kind: str, payload: dict[str, Any], run_after: datetime | None = None) -> None:
    now = utcnow()
    row = job_row(kind, payload, run_after or now, now)
    conn = connection(session)
    INSERT_JOB.write(conn, row)
    wake_workers(conn, [row], now)


def enqueue_many(session: Session, jobs: list[tuple[str, dict[str, Any]]], run_after: datetime | None = None) -> None:
    """Several jobs due at once, in one statement."""
    if jobs:
        now = utcnow()
        rows = [job_row(kind, payload, run_after or now, now) for kind, payload in jobs]
        conn = connection(session)
        insert_rows(conn, _JOB, rows)
        wake_workers(conn, rows, now)


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
    wake_workers(conn, rows, utcnow())


def wake_workers(conn: Connection, rows: list[dict[str, Any]], now: datetime) -> None:
    """Tell listening workers, on PostgreSQL, that jobs are due: one statement for the lot, and none when every job
    is for later (a new payment's expiry and re-query), which keeps the payment path as cheap as before. SQLite has
    no NOTIFY: its workers poll."""
    if conn.dialect.name != "postgresql":
        return
    kinds = sorted({row["kind"] for row in rows if row["run_after"] <= now})
    if kinds:
        _NOTIFY.write(conn, {"kinds": ",".join(kinds)})
