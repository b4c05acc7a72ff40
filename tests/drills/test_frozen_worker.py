"""Drill: a worker freezes in the middle of issuing a receipt (number taken, not yet committed) for longer than its
lease; another worker takes the job. Exactly one receipt comes out, the numbering stays gap-free, and the frozen
worker, once resumed, neither issues a second receipt nor overwrites the job's outcome (PostgreSQL: the second
worker waits on the counter row the frozen one holds)."""

from __future__ import annotations

import threading
import time
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlmodel import col, select

import invoices.numbering
import invoices.service
import payments.outbox.worker as worker_module
from invoices.tables import Document
from lephi.jobs import HANDLERS
from lephi.migrate import upgrade
from payments.core.sql import Rows
from payments.core.types import utcnow
from payments.outbox.models import OutboxJob, OutboxStatus
from payments.outbox.worker import Worker
from payments.payment import kinds
from tests.drills.pgcluster import cluster
from tests.drills.service import pay, run_due_jobs, service


def test_worker_frozen_past_its_lease_gives_one_receipt(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with cluster() as pg:
        url = pg.create_database("lephi")
        upgrade(url)
        with service(url, tmp_path, worker_lease_seconds=5) as api:
            payment_id = pay(api, "HS-F1")
            frozen, resume = threading.Event(), threading.Event()
            take_numbers = invoices.numbering.take_numbers_then

            def take_then_freeze(*args: object, **kw: object) -> tuple[int, list[Rows]]:
                taken = take_numbers(*args, **kw)  # type: ignore[arg-type]
                if threading.current_thread().name == "worker-a":
                    frozen.set()
                    assert resume.wait(60)
                return taken

            monkeypatch.setattr(invoices.service, "take_numbers_then", take_then_freeze)
            a, b = Worker(api.ctx, HANDLERS, name="a"), Worker(api.ctx, HANDLERS, name="b")
            (job,) = [j for j in a.claim(10) if j.kind == kinds.SUCCEEDED]
            thread_a = threading.Thread(target=a.run_claimed, args=(job,), name="worker-a")
            thread_a.start()
            assert frozen.wait(30)

            assert b.claim(10) == []  # still under a's lease
            later = utcnow() + timedelta(seconds=api.ctx.settings.worker_lease_seconds + 1)
            with monkeypatch.context() as m:
                m.setattr(worker_module, "utcnow", lambda: later)
                (taken,) = [j for j in b.claim(10) if j.kind == kinds.SUCCEEDED]
            assert taken.id == job.id and taken.attempts == 2
            thread_b = threading.Thread(target=b.run_claimed, args=(taken,), name="worker-b")
            thread_b.start()
            # b reaches the counter row a holds, and waits there.
            deadline = time.monotonic() + 30
            with api.ctx.db.engine.connect() as conn:
                while time.monotonic() < deadline:
                    waiting = conn.execute(
                        text("SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'")
                    ).scalar()
                    conn.rollback()
                    if waiting:
                        break
                    time.sleep(0.05)
                else:
                    pytest.fail("the second worker never reached the receipt counter")
            resume.set()
            thread_a.join(30)
            thread_b.join(30)
            assert not thread_a.is_alive() and not thread_b.is_alive()

            with api.ctx.db.read() as s:
                documents = s.exec(select(Document).where(Document.payment_id == payment_id)).all()
                assert [d.number for d in documents] == [1]
                done = s.get(OutboxJob, job.id)
                assert done is not None and done.status == OutboxStatus.done and done.locked_by == "b"
            monkeypatch.undo()
            pay(api, "HS-F2")
            run_due_jobs(api, {kinds.SUCCEEDED})
            with api.ctx.db.read() as s:
                assert list(s.exec(select(Document.number).order_by(col(Document.number)))) == [1, 2]
