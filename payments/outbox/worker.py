"""Runs outbox jobs. Several workers (threads or processes) may run at once: each claims a batch under a lease,
taken with ``FOR UPDATE SKIP LOCKED`` on PostgreSQL and under SQLite's single writer lock (``BEGIN IMMEDIATE``).
A job whose worker died is taken again when its lease runs out, so handlers must be idempotent (they are: each
re-reads state and changes it by compare-and-set)."""

from __future__ import annotations

import os
import random
import socket
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Generic, TypeVar

from sqlalchemy import or_, update
from sqlmodel import col, select

from adapters.base import GatewayTechnicalError
from payments.core import requestid
from payments.core.context import AppContext
from payments.core.logging import get_logger
from payments.core.types import utcnow
from payments.outbox.models import OutboxJob, OutboxStatus

log = get_logger(__name__)

# The context a worker's handlers take: each package's handlers declare the context they need (payments' take an
# AppContext, invoices' a ReceiptContext); the service's worker runs them all with its container, which is both.
C = TypeVar("C", bound=AppContext)
C_contra = TypeVar("C_contra", bound=AppContext, contravariant=True)

Handler = Callable[[C, dict[str, Any]], None]


@dataclass(frozen=True)
class Periodic(Generic[C_contra]):
    """Work the worker does on a clock rather than from a job (e.g. reading a folder another system writes)."""

    name: str
    every: Callable[[C_contra], float]  # seconds, read from settings each time
    run: Callable[[C_contra], None]


class RetryLater(Exception):
    """Raised by a handler to run the job again after ``delay`` seconds without counting an error."""

    def __init__(self, delay: float) -> None:
        super().__init__(f"retry in {delay}s")
        self.delay = delay


def backoff(attempt: int) -> float:
    """Exponential backoff with full jitter, capped at one hour."""
    return random.uniform(0, min(3600.0, 5.0 * 2**attempt))  # noqa: S311 - jitter, not security


class Worker(Generic[C]):
    def __init__(
        self,
        ctx: C,
        handlers: dict[str, Handler[C]],
        name: str | None = None,
        periodic: Sequence[Periodic[C]] = (),
    ) -> None:
        self.ctx = ctx
        self.handlers = handlers
        self.periodic = periodic
        self._last_periodic: dict[str, float] = {}
        self.name = name or f"{socket.gethostname()}:{os.getpid()}:{threading.get_ident()}"
        self._stop = threading.Event()

    def claim(self, limit: int) -> list[OutboxJob]:
        now = utcnow()
        lease = now + timedelta(seconds=self.ctx.settings.worker_lease_seconds)
        with self.ctx.db.write() as s:
            query = (
                select(OutboxJob)
                .where(OutboxJob.status == OutboxStatus.pending, col(OutboxJob.run_after) <= now)
                .where(or_(col(OutboxJob.locked_until).is_(None), col(OutboxJob.locked_until) < now))
                .order_by(col(OutboxJob.run_after))
                .limit(limit)
            )
            if self.ctx.db.dialect == "postgresql":
                query = query.with_for_update(skip_locked=True)
            jobs = list(s.exec(query))
            for job in jobs:
                job.locked_by, job.locked_until = self.name, lease
                job.attempts += 1
                s.add(job)
            return jobs

    def run_once(self, limit: int | None = None) -> int:
        """Claim and run one batch of due jobs; returns how many ran."""
        jobs = self.claim(limit or self.ctx.settings.worker_batch_size)
        for job in jobs:
            self._run(job)
        return len(jobs)

    def _run(self, job: OutboxJob) -> None:
        # The request that queued the job: on the lines it logs and on the jobs it queues in turn.
        with requestid.bound(job.payload.get(requestid.PAYLOAD_KEY)):
            self._run_job(job)

    def _run_job(self, job: OutboxJob) -> None:
        handler = self.handlers.get(job.kind)
        try:
            if handler is None:
                raise LookupError(f"no handler for job kind {job.kind!r}")
            handler(self.ctx, job.payload)
        except RetryLater as later:
            self._reschedule(job, later.delay, error=None, count=False)
        except (GatewayTechnicalError, Exception) as exc:
            log.warning("outbox.job_failed", job_id=job.id, kind=job.kind, attempt=job.attempts, error=str(exc)[:500])
            self._reschedule(job, backoff(job.attempts), error=f"{type(exc).__name__}: {exc}"[:2000], count=True)
        else:
            self._finish(job)

    def _finish(self, job: OutboxJob) -> None:
        with self.ctx.db.write() as s:
            s.execute(
                update(OutboxJob)
                .where(col(OutboxJob.id) == job.id, col(OutboxJob.locked_by) == self.name)
                .values(status=OutboxStatus.done, done_at=utcnow(), locked_until=None)
            )

    def _reschedule(self, job: OutboxJob, delay: float, error: str | None, count: bool) -> None:
        dead = count and job.attempts >= job.max_attempts
        with self.ctx.db.write() as s:
            s.execute(
                update(OutboxJob)
                .where(col(OutboxJob.id) == job.id, col(OutboxJob.locked_by) == self.name)
                .values(
                    status=OutboxStatus.dead if dead else OutboxStatus.pending,
                    run_after=utcnow() + timedelta(seconds=delay),
                    locked_until=None,
                    last_error=error,
                    attempts=job.attempts if count else job.attempts - 1,
                )
            )
        if dead:
            log.error("outbox.job_dead", job_id=job.id, kind=job.kind, error=error)

    def run_forever(self) -> None:
        log.info("worker.started", worker=self.name)
        last_purge = 0.0
        while not self._stop.is_set():
            try:
                ran = self.run_once()
                if self._stop.wait(0) or ran:
                    continue
                if (now := utcnow().timestamp()) - last_purge > 3600:
                    self.ctx.idempotency.purge_expired()
                    last_purge = now
                self.run_periodic(now)
            except Exception as exc:  # the loop must survive a database restart
                log.error("worker.loop_error", error=str(exc)[:500])
            self._stop.wait(self.ctx.settings.worker_poll_seconds)
        log.info("worker.stopped", worker=self.name)

    def run_periodic(self, now: float) -> None:
        for task in self.periodic:
            if now - self._last_periodic.get(task.name, 0.0) < task.every(self.ctx):
                continue
            self._last_periodic[task.name] = now
            try:
                task.run(self.ctx)
            except Exception as exc:  # one failing task must not stop the others or the loop
                log.error("worker.periodic_failed", task=task.name, error=str(exc)[:500])

    def stop(self) -> None:
        self._stop.set()
