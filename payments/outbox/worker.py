"""Runs outbox jobs. Several workers (threads or processes) may run at once: each claims a batch under a lease,
taken with ``FOR UPDATE SKIP LOCKED`` on PostgreSQL and under SQLite's single writer lock (``BEGIN IMMEDIATE``).
A job whose worker died is taken again when its lease runs out, so handlers must be idempotent (they are: each
re-reads state and changes it by compare-and-set).

On PostgreSQL a worker sleeps until a job is queued (``LISTEN``, payments.outbox.wake), with the poll interval as a
fallback; on SQLite it polls. Jobs of the kinds it is told wait on the network run on a few threads of its own, the
rest (receipt issuance: CPU-bound) one at a time. ``stop`` drains: no new claims, running jobs get
``worker_shutdown_seconds`` to finish, and every job still leased is handed back to the queue at once."""

from __future__ import annotations

import os
import random
import socket
import threading
import time
from collections.abc import Callable, Collection, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import wait as wait_for
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Generic, TypeVar

from sqlalchemy import bindparam, or_, update
from sqlmodel import col, select

from adapters.base import GatewayTechnicalError
from payments.core import requestid
from payments.core.context import AppContext
from payments.core.db import table_of
from payments.core.logging import get_logger
from payments.core.sql import claiming, loaded
from payments.core.types import utcnow
from payments.outbox.models import OutboxJob, OutboxStatus
from payments.outbox.wake import Listener

log = get_logger(__name__)
_OUTBOX = table_of(OutboxJob)
# Built once: a job's own transaction around it would cost more than the handler of a small job.
_FINISH = (
    update(_OUTBOX)
    .where(_OUTBOX.c.id.in_(bindparam("job_ids", expanding=True)), _OUTBOX.c.locked_by == bindparam("worker"))
    .values(status=OutboxStatus.done, done_at=bindparam("finished_at"), locked_until=None)
)

# The context a worker's handlers take: each package's handlers declare the context they need (payments' take an
# AppContext, invoices' a ReceiptContext); the service's worker runs them all with its container, which is both.
C = TypeVar("C", bound=AppContext)
C_contra = TypeVar("C_contra", bound=AppContext, contravariant=True)

Handler = Callable[[C, dict[str, Any]], None]


@dataclass(frozen=True)
class Batched(Generic[C_contra]):
    """A handler that can also run several claimed jobs of its kind at once (``many``), all or nothing: receipts of
    one series under one lock of its counter and one commit. Should ``many`` fail, each job runs alone through
    ``one`` and gets its own outcome, as if no batch had been tried."""

    one: Callable[[C_contra, dict[str, Any]], None]
    many: Callable[[C_contra, list[dict[str, Any]]], None]

    def __call__(self, ctx: C_contra, payload: dict[str, Any]) -> None:
        self.one(ctx, payload)


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
        concurrent: Collection[str] = (),
    ) -> None:
        self.ctx = ctx
        self.handlers = handlers
        self.periodic = periodic
        # Kinds whose handlers mostly wait on the network: they run on the pool, several at once.
        self.concurrent = frozenset(concurrent)
        self._last_periodic: dict[str, float] = {}
        self.name = name or f"{socket.gethostname()}:{os.getpid()}:{threading.get_ident()}"
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._stopped_at: float | None = None
        self._lock = threading.Lock()
        self._claimed: dict[int, OutboxJob] = {}  # leased by this worker, not started
        self._running: set[int] = set()
        self._futures: set[Future[None]] = set()
        self._pool: ThreadPoolExecutor | None = None
        self.listener: Listener | None = None
        self.abandoned = False  # jobs were still running when the shutdown bound ran out

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    @property
    def threads(self) -> int:
        return self.ctx.settings.worker_threads

    def claim(self, limit: int, exclude: Collection[str] = ()) -> list[OutboxJob]:
        """Lease up to ``limit`` due jobs, the longest due first, in one statement (``WITH due AS (SELECT ... FOR UPDATE
        SKIP LOCKED) UPDATE ... RETURNING``, ``payments.core.sql.claiming``): two workers never get the same job, and
        neither waits for the other's rows."""
        now = utcnow()
        lease = now + timedelta(seconds=self.ctx.settings.worker_lease_seconds)
        due = (
            select(col(OutboxJob.id))
            .where(OutboxJob.status == OutboxStatus.pending, col(OutboxJob.run_after) <= now)
            .where(or_(col(OutboxJob.locked_until).is_(None), col(OutboxJob.locked_until) < now))
            .order_by(col(OutboxJob.run_after))
            .limit(limit)
        )
        if exclude:
            due = due.where(col(OutboxJob.kind).not_in(sorted(exclude)))
        # A Core statement on the table, and jobs built as loaded rows: the ORM's bulk UPDATE and the model's
        # validating constructor cost more per job than the claim itself.
        claim = (
            update(_OUTBOX)
            .where(claiming(_OUTBOX, due, self.ctx.db.dialect))
            .values(locked_by=self.name, locked_until=lease, attempts=_OUTBOX.c.attempts + 1)
            .returning(*_OUTBOX.c)
        )
        with self.ctx.db.write() as s:
            rows = s.connection().execute(claim).mappings().all()
        jobs = sorted((loaded(OutboxJob, row) for row in rows), key=lambda job: (job.run_after, job.id or 0))
        with self._lock:
            self._claimed.update((job.id, job) for job in jobs if job.id is not None)
        return jobs

    def run_once(self, limit: int | None = None) -> int:
        """Claim and run one batch of due jobs, waiting for all of them; returns how many were claimed."""
        jobs = self.claim(limit or self.ctx.settings.worker_batch_size)
        wait_for(self._dispatch(jobs))
        return len(jobs)

    def _step(self) -> int:
        """One batch for the loop: network jobs are left running on the pool. While the pool is busy, only jobs
        that do not go to it are claimed, so that a slow webhook target never holds up a receipt."""
        with self._lock:
            busy = len(self._futures) >= self.threads
        jobs = self.claim(self.ctx.settings.worker_batch_size, exclude=self.concurrent if busy else ())
        self._dispatch(jobs)
        return len(jobs)

    def _dispatch(self, jobs: list[OutboxJob]) -> list[Future[None]]:
        futures = [self._submit(job) for job in jobs if job.kind in self.concurrent]
        done: list[int] = []
        # What runs here, in claim order: one job, or every claimed job of a ``Batched`` kind where its first one is.
        runs: list[list[OutboxJob]] = []
        batches: dict[str, list[OutboxJob]] = {}
        for job in jobs:
            if job.kind in self.concurrent:
                continue
            if not isinstance(self.handlers.get(job.kind), Batched):
                runs.append([job])
            elif job.kind in batches:
                batches[job.kind].append(job)
            else:
                batches[job.kind] = [job]
                runs.append(batches[job.kind])
        try:
            for run in runs:
                if self._stop.is_set():
                    break  # the rest are handed back by the drain
                if len(run) > 1:
                    self._start_batch(run, done)
                else:
                    self._start(run[0], done)
        finally:
            # The batch's jobs are marked done together, after their handlers: one commit instead of one per job.
            # Should this process die first, their leases run out and they run again, as after any crash: handlers
            # are idempotent.
            self._finish(done)
        return futures

    def _submit(self, job: OutboxJob) -> Future[None]:
        with self._lock:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(self.threads, thread_name_prefix=f"lephi-job-{self.name}"[:40])
            future = self._pool.submit(self._start, job, None)
            self._futures.add(future)
        future.add_done_callback(self._pooled_done)
        return future

    def _pooled_done(self, future: Future[None]) -> None:
        with self._lock:
            was_busy = len(self._futures) >= self.threads
            self._futures.discard(future)
        if was_busy:
            self._wake.set()  # a thread is free: the loop may take the network jobs it left

    def _start(self, job: OutboxJob, done: list[int] | None) -> None:
        """Run one claimed job. A job that succeeded is marked done at once, or added to ``done`` for the caller to
        mark with others."""
        with self._lock:
            if self._stop.is_set() or job.id not in self._claimed:
                return
            late = self._late(job, utcnow())
            del self._claimed[job.id]
            if not late:
                self._running.add(job.id)
        if late:
            self._release([job.id], started=False)
            return
        try:
            succeeded = self._run(job)
        finally:
            with self._lock:
                self._running.discard(job.id)
        if succeeded and job.id is not None:
            if done is None:
                self._finish([job.id])
            else:
                done.append(job.id)

    def _late(self, job: OutboxJob, now: datetime) -> bool:
        """Whether a claimed job waited in this worker past half its lease: it is handed back rather than started,
        because near the end of the lease another worker may take it, and a job must never run twice at once."""
        margin = timedelta(seconds=self.ctx.settings.worker_lease_seconds / 2)
        return job.locked_until is not None and job.locked_until - now < margin

    def _start_batch(self, jobs: list[OutboxJob], done: list[int]) -> None:
        """Run claimed jobs of one ``Batched`` kind together; should the batch fail, each alone."""
        now = utcnow()
        with self._lock:
            if self._stop.is_set():
                return
            mine = [job for job in jobs if job.id in self._claimed]
            late = [job for job in mine if self._late(job, now)]
            ready = [job for job in mine if job not in late]
            for job in mine:
                self._claimed.pop(job.id or 0, None)
            self._running.update(job.id for job in ready if job.id is not None)
        self._release([job.id for job in late if job.id is not None], started=False)
        if not ready:
            return
        handler = self.handlers[jobs[0].kind]
        assert isinstance(handler, Batched)
        try:
            handler.many(self.ctx, [job.payload for job in ready])
        except Exception as exc:
            log.info("outbox.batch_failed", kind=jobs[0].kind, jobs=len(ready), error=str(exc)[:500])
            for job in ready:
                try:
                    if self._run(job) and job.id is not None:
                        done.append(job.id)
                finally:
                    with self._lock:
                        self._running.discard(job.id)
        else:
            done.extend(job.id for job in ready if job.id is not None)
            with self._lock:
                self._running.difference_update(job.id for job in ready)

    def run_claimed(self, job: OutboxJob) -> None:
        """Run one job this worker has claimed, whenever it is, and mark it done if it succeeded (drills use it to
        run a job late: the handler's compare-and-set, not the worker, must then stop a second outcome)."""
        if self._run(job) and job.id is not None:
            self._finish([job.id])

    def _run(self, job: OutboxJob) -> bool:
        # The request that queued the job: on the lines it logs and on the jobs it queues in turn.
        with requestid.bound(job.payload.get(requestid.PAYLOAD_KEY)):
            return self._run_job(job)

    def _run_job(self, job: OutboxJob) -> bool:
        """Run the job's handler; True when it succeeded (the job is then to be marked done), False when it was
        put back in the queue."""
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
            return True
        return False

    def _finish(self, job_ids: list[int]) -> None:
        """Mark jobs done, as long as this worker still holds their lease."""
        if not job_ids:
            return
        with self.ctx.db.write() as s:
            s.connection().execute(_FINISH, {"job_ids": job_ids, "worker": self.name, "finished_at": utcnow()})

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
        if self.ctx.db.dialect == "postgresql" and self.ctx.settings.db_pgbouncer:
            # A pool in transaction mode hands the LISTEN session's server connection to other clients, and the
            # notifications with it: the worker would seem to listen and never be woken.
            log.warning("worker.not_listening", reason="LEPHI_DB_PGBOUNCER: polling instead of LISTEN")
        elif self.ctx.db.dialect == "postgresql":
            self.listener = Listener(self.ctx.db.engine.url, self._wake, self.name)
            self.listener.start()
        last_purge = 0.0
        try:
            while not self._stop.is_set():
                # Cleared before claiming: a job queued from here on sets it again, and the wait below returns.
                self._wake.clear()
                try:
                    if self._step():
                        continue
                    if (now := utcnow().timestamp()) - last_purge > 3600:
                        self.ctx.idempotency.purge_expired()
                        last_purge = now
                    self.run_periodic(now)
                except Exception as exc:  # the loop must survive a database restart
                    log.error("worker.loop_error", error=str(exc)[:500])
                self._wake.wait(self.ctx.settings.worker_poll_seconds)
        finally:
            if self.listener is not None:
                self.listener.stop()
            self._drain()
        log.info("worker.stopped", worker=self.name, abandoned=self.abandoned)

    def _drain(self) -> None:
        """Let running jobs finish within the bound, then hand every job this worker still leases back."""
        stopped_at = self._stopped_at or time.monotonic()
        deadline = stopped_at + self.ctx.settings.worker_shutdown_seconds
        with self._lock:
            pool, futures = self._pool, list(self._futures)
        if pool is not None:
            pool.shutdown(wait=False, cancel_futures=True)  # queued jobs stay claimed and are released below
        wait_for(futures, timeout=max(0.0, deadline - time.monotonic()))
        self.release_held()

    def release_held(self) -> int:
        """Hand back every job this worker leases: not started ones as if never claimed, running ones (past the
        shutdown bound) with their attempt counted. Another worker may take them at once."""
        with self._lock:
            waiting, running = list(self._claimed), list(self._running)
            self._claimed.clear()
            self.abandoned = self.abandoned or bool(running)
        try:
            self._release(waiting, started=False)
            self._release(running, started=True)
        except Exception as exc:  # the database is gone: the leases run out on their own
            log.error("worker.release_failed", error=str(exc)[:500], jobs=len(waiting) + len(running))
            return 0
        if waiting or running:
            log.info("worker.released", worker=self.name, waiting=len(waiting), running=len(running))
        return len(waiting) + len(running)

    def _release(self, ids: list[int], started: bool) -> None:
        if not ids:
            return
        values: dict[str, Any] = {"locked_by": None, "locked_until": None}
        if not started:
            values["attempts"] = col(OutboxJob.attempts) - 1
        with self.ctx.db.write() as s:
            s.execute(
                update(OutboxJob)
                .where(
                    col(OutboxJob.id).in_(ids),
                    col(OutboxJob.locked_by) == self.name,
                    col(OutboxJob.status) == OutboxStatus.pending,
                )
                .values(**values)
            )

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
        """Stop claiming and drain (from any thread, or a signal handler); ``run_forever`` returns once done."""
        if self._stopped_at is None:
            self._stopped_at = time.monotonic()
        self._stop.set()
        self._wake.set()
