"""What one receipt costs the database: one joined read, one transaction, one commit, Core writes with the outbox
jobs in one statement; and the rows written are those the ORM path wrote (event, jobs, tax message)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import pytest
from sqlalchemy import event, update
from sqlmodel import col, select

from invoices.service import issue_receipt
from invoices.tables import Document
from invoices.tax.service import SEND
from invoices.tax.tables import TaxMessage, TaxMessageKind, TaxMessageStatus
from lephi.jobs import HANDLERS
from payments.core.types import utcnow
from payments.outbox.models import OutboxJob, OutboxStatus
from payments.outbox.worker import Worker
from payments.webhooks.models import WebhookMessage
from tests.conftest import BACKENDS, Api
from tests.factories import dossier_body, payment_body, sandbox_outcome
from tests.roundtrips import counted


@dataclass
class Trace:
    statements: list[tuple[str, bool]] = field(default_factory=list)  # (SQL, executemany)
    commits: int = 0

    def kinds(self) -> list[str]:
        return [sql.split(None, 1)[0].upper() for sql, _many in self.statements]


@contextmanager
def traced(api: Api) -> Iterator[Trace]:
    engine = api.ctx.db.engine
    trace = Trace()

    def on_execute(_conn: Any, _cursor: Any, statement: str, _params: Any, _context: Any, many: bool) -> None:
        trace.statements.append((statement.strip(), many))

    def on_commit(_conn: Any) -> None:
        trace.commits += 1

    event.listen(engine, "before_cursor_execute", on_execute)
    event.listen(engine, "commit", on_commit)
    try:
        yield trace
    finally:
        event.remove(engine, "before_cursor_execute", on_execute)
        event.remove(engine, "commit", on_commit)


def _paid(api: Api) -> str:
    code = api.post("/v1/dossiers", dossier_body(copies=3)).json()["code"]
    payment = api.post("/v1/payments", payment_body(code)).json()
    sandbox_outcome(api.client, api.ctx.settings, payment["gateway_reference"], "success")
    return str(payment["id"])


def test_a_receipt_takes_one_read_and_one_transaction(api: Api) -> None:
    first, payment_id = _paid(api), _paid(api)
    store = api.ctx.signers
    issue_receipt(api.ctx, store, first)  # the series' counter row now exists, as it does all year
    with traced(api) as trace:
        document_id = issue_receipt(api.ctx, store, payment_id)
    assert document_id is not None
    kinds = [kind for kind in trace.kinds() if kind not in {"BEGIN", "SAVEPOINT", "RELEASE"}]
    # The facts with the open series, the number, whether a hand-off job is already waiting (the first receipt's
    # is), the document, its tax message, its webhook message, then every outbox job in one statement. On
    # PostgreSQL, the series read again once its counter row is locked (a close may have committed meanwhile), and
    # the NOTIFY that wakes the workers.
    postgres = api.ctx.db.engine.dialect.name == "postgresql"
    recheck, notify = (["SELECT"], ["SELECT"]) if postgres else ([], [])
    expected = ["SELECT", "UPDATE", "SELECT", *recheck, "INSERT", "INSERT", "INSERT", "INSERT", *notify]
    assert kinds == expected, trace.statements
    assert trace.commits == 1
    outbox_inserts = [(sql, many) for sql, many in trace.statements if "INTO outbox" in sql]
    assert len(outbox_inserts) == 1

    with traced(api) as again:
        assert issue_receipt(api.ctx, store, payment_id) == document_id
    assert [kind for kind in again.kinds() if kind != "BEGIN"] == ["SELECT"]


@pytest.mark.postgres
@pytest.mark.parametrize("database_url", [b for b in BACKENDS if b == "postgres"], indirect=True)
def test_a_receipt_on_postgresql_is_four_round_trips_two_of_them_after_the_number(api: Api) -> None:
    """BEGIN and the facts; the number with the two reads that must follow it; every write with the COMMIT. Other
    workers wait for the counter row for the last two, the signature between them, and the commit's flush: a round
    trip per statement would be ten."""
    first, payment_id = _paid(api), _paid(api)
    issue_receipt(api.ctx, api.ctx.signers, first)
    with counted(api.ctx.db.engine) as trips:
        document_id = issue_receipt(api.ctx, api.ctx.signers, payment_id)
    assert trips.count == 4
    with api.ctx.db.read() as s:  # and everything was written
        document = s.get(Document, document_id)
        assert document is not None and document.number == 2
        assert s.exec(select(TaxMessage).where(TaxMessage.document_id == document_id)).one()
        events = s.exec(select(WebhookMessage).where(WebhookMessage.event_type == "receipt.issued")).all()
        assert len(events) == 2


def test_the_rows_written_with_the_document_are_complete(api: Api) -> None:
    payment_id = _paid(api)
    document_id = issue_receipt(api.ctx, api.ctx.signers, payment_id)
    with api.ctx.db.read() as s:
        document = s.get(Document, document_id)
        assert document is not None and document.created_at is not None
        message = s.exec(select(WebhookMessage).where(WebhookMessage.event_type == "receipt.issued")).one()
        body = json.loads(message.body)
        assert body["id"] == message.id and body["type"] == "receipt.issued"
        assert body["data"]["id"] == document_id and body["data"]["number"] == document.number
        assert body["data"]["lookup_code"] == document.lookup_code
        jobs = s.exec(select(OutboxJob).where(col(OutboxJob.created_at) >= document.created_at)).all()
        by_kind = {job.kind: job for job in jobs}
        assert by_kind["webhook.fanout"].payload == {"message_id": message.id}
        assert by_kind["tax.send"].payload == {}
        for job in (by_kind["webhook.fanout"], by_kind["tax.send"]):
            assert job.status is OutboxStatus.pending and job.attempts == 0 and job.max_attempts == 10
        tax = s.exec(select(TaxMessage).where(TaxMessage.document_id == document_id)).one()
        assert tax.kind is TaxMessageKind.document and tax.status is TaxMessageStatus.queued
        assert document.xml.split(b"?>", 1)[1].strip() in tax.xml


def _send_jobs(api: Api) -> list[OutboxJob]:
    with api.ctx.db.read() as s:
        return list(s.exec(select(OutboxJob).where(OutboxJob.kind == SEND)).all())


def test_one_waiting_hand_off_job_carries_every_queued_tax_message(api: Api) -> None:
    """Receipts issued while a hand-off job waits for a worker add none; a job already taken (which may have read the
    queue) or the queue emptied gets a new one for the next message, and the worker hands every message over."""
    store = api.ctx.signers
    for _ in range(3):
        issue_receipt(api.ctx, store, _paid(api))
    assert len(_send_jobs(api)) == 1
    with api.ctx.db.write() as s:  # a worker takes it
        s.execute(update(OutboxJob).where(col(OutboxJob.kind) == SEND).values(locked_until=utcnow()))
    issue_receipt(api.ctx, store, _paid(api))
    assert len(_send_jobs(api)) == 2
    with api.ctx.db.write() as s:
        s.execute(update(OutboxJob).where(col(OutboxJob.kind) == SEND).values(locked_until=None))
    Worker(api.ctx, HANDLERS).run_once()
    Worker(api.ctx, HANDLERS).run_once()
    with api.ctx.db.read() as s:
        statuses = s.exec(select(TaxMessage.status).where(TaxMessage.kind == TaxMessageKind.document)).all()
    assert len(statuses) == 4 and set(statuses) == {TaxMessageStatus.sent}


def test_every_built_in_gateway_names_its_method_on_the_receipt() -> None:
    """A gateway added without its receipt wording would print "CK" (transfer) on a card or wallet payment."""
    from adapters.registry import _builtin
    from invoices.service import METHOD_TEXT

    assert set(_builtin()) <= set(METHOD_TEXT)
    assert METHOD_TEXT["zalopay"] == METHOD_TEXT["momo"] == "Ví điện tử"
