"""Drill: the T-VAN folder cannot be written (here its ``outgoing`` folder is a file, which fails for every user,
root included, where a permission bit would not). The hand-off job fails, is logged and rescheduled with backoff;
the message stays queued with the error; once the folder is usable again the message is written once."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import update
from sqlmodel import col, select

from invoices.tax.service import SEND
from invoices.tax.tables import TaxMessage, TaxMessageStatus
from lephi.jobs import HANDLERS
from payments.core.types import utcnow
from payments.outbox.models import OutboxJob, OutboxStatus
from payments.outbox.worker import Worker
from payments.payment import kinds
from tests.conftest import Api
from tests.drills.service import pay, run_due_jobs


def _send_job(api: Api) -> OutboxJob:
    with api.ctx.db.read() as s:
        (job,) = s.exec(select(OutboxJob).where(OutboxJob.kind == SEND)).all()
        return job


def test_unwritable_tvan_folder_retries_with_backoff_and_delivers_once(
    api: Api, capsys: pytest.CaptureFixture[str]
) -> None:
    outgoing = api.ctx.settings.effective_tax_drop_dir / "outgoing"
    outgoing.parent.mkdir(parents=True, exist_ok=True)
    outgoing.write_text("")  # in the folder's place: nothing can be written under it
    pay(api, "HS-T1")
    run_due_jobs(api, {kinds.SUCCEEDED})
    before = utcnow()
    Worker(api.ctx, HANDLERS).run_once()

    job = _send_job(api)
    assert job.status == OutboxStatus.pending and job.attempts == 1
    assert job.last_error is not None and "T-VAN" in job.last_error
    assert job.run_after >= before  # backoff: from now, with jitter
    with api.ctx.db.read() as s:
        (message,) = s.exec(select(TaxMessage)).all()
    assert message.status == TaxMessageStatus.queued and message.error
    logged = capsys.readouterr()
    assert "tax.send_failed" in logged.err + logged.out and "outbox.job_failed" in logged.err + logged.out

    outgoing.unlink()
    outgoing.mkdir()
    with api.ctx.db.write() as s:  # the backoff has run out
        s.execute(update(OutboxJob).where(col(OutboxJob.id) == job.id).values(run_after=utcnow() - timedelta(1)))
    Worker(api.ctx, HANDLERS).run_once()
    assert _send_job(api).status == OutboxStatus.done
    with api.ctx.db.read() as s:
        (message,) = s.exec(select(TaxMessage)).all()
    assert message.status == TaxMessageStatus.sent and message.error is None
    assert [p.name for p in outgoing.iterdir()] == [f"{message.mtdiep}.xml"]
