"""Receipts issued together (``issue_receipts``, the worker's batch of receipt jobs): one transaction, each series'
numbers taken at once, and the same documents, events and tax messages as one by one; all or nothing when one of
them fails, the numbers given back."""

from __future__ import annotations

import json
from typing import Any

import pytest
from sqlmodel import col, select

from invoices.keys import SignerStore
from invoices.service import issue_receipt, issue_receipts
from invoices.tables import Document, SeriesCounter
from invoices.tax.service import SEND
from invoices.tax.tables import TaxMessage
from invoices.verify import pinned, verify
from lephi.jobs import HANDLERS
from payments.auth.service import create_key
from payments.dossier.models import Dossier
from payments.outbox.models import OutboxJob, OutboxStatus
from payments.outbox.service import enqueue
from payments.outbox.worker import Worker
from payments.payment import kinds
from payments.payment.models import Payment
from payments.webhooks.models import WebhookMessage
from tests.conftest import ALL_SCOPES, BACKENDS, Api
from tests.factories import dossier_body, payment_body, sandbox_outcome, seed_agency
from tests.roundtrips import counted


def _paid(api: Api, key: str | None = None) -> str:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    code = api.post("/v1/dossiers", dossier_body(copies=2), headers=headers).json()["code"]
    payment = api.post("/v1/payments", payment_body(code), headers=headers).json()
    sandbox_outcome(api.client, api.ctx.settings, payment["gateway_reference"], "success")
    return str(payment["id"])


def _documents(api: Api) -> list[Document]:
    with api.ctx.db.read() as s:
        return list(s.exec(select(Document).order_by(col(Document.number))).all())


def _counter(api: Api) -> list[int]:
    with api.ctx.db.read() as s:
        return sorted(s.exec(select(SeriesCounter.last_number)).all())


def test_receipts_issued_together_are_numbered_in_order_and_each_is_whole(api: Api) -> None:
    first = _paid(api)
    assert issue_receipt(api.ctx, api.ctx.signers, first) is not None  # number 1: the series is in use
    payments = [_paid(api) for _ in range(4)]
    ids = issue_receipts(api.ctx, api.ctx.signers, payments, request_ids=["req-a", None, "req-c", "bad id!"])
    docs = _documents(api)
    assert [d.number for d in docs] == [1, 2, 3, 4, 5]
    by_payment = {d.payment_id: d for d in docs}
    assert ids == [by_payment[p].id for p in payments]
    assert [by_payment[p].number for p in payments] == [2, 3, 4, 5]  # in the order asked
    certificate = api.ctx.signers.for_agency("AGC-A", "0100000001", "Agency AGC-A").certificate
    for doc in docs:
        assert verify(doc.xml, pinned(certificate)).number == doc.number
    with api.ctx.db.read() as s:
        taxed = s.exec(select(TaxMessage.document_id)).all()
        events = s.exec(select(WebhookMessage).where(WebhookMessage.event_type == "receipt.issued")).all()
        fanouts = s.exec(select(OutboxJob).where(OutboxJob.kind == "webhook.fanout")).all()
        sends = s.exec(select(OutboxJob).where(OutboxJob.kind == SEND)).all()
    assert sorted(str(d) for d in taxed) == sorted(d.id for d in docs)
    numbers = {json.loads(e.body)["data"]["payment_id"]: json.loads(e.body)["data"]["number"] for e in events}
    assert numbers == {d.payment_id: d.number for d in docs}
    # Each receipt's job carries the request that asked for it (an id that is not one is dropped).
    asked = {by_payment[p].id: r for p, r in zip(payments, ["req-a", None, "req-c", None], strict=True)}
    message_of = {e.id: json.loads(e.body)["data"]["id"] for e in events}
    carried = {
        message_of[m]: j.payload.get("request_id") for j in fanouts if (m := j.payload["message_id"]) in message_of
    }
    assert all(carried[doc_id] == request for doc_id, request in asked.items())
    assert len(sends) == 1  # one hand-off job waits for every queued message


def test_what_is_not_to_issue_in_a_batch_takes_no_number(api: Api) -> None:
    issued, fresh = _paid(api), _paid(api)
    existing = issue_receipt(api.ctx, api.ctx.signers, issued)
    code = api.post("/v1/dossiers", dossier_body()).json()["code"]
    unpaid = api.post("/v1/payments", payment_body(code)).json()["id"]
    ids = issue_receipts(api.ctx, api.ctx.signers, [issued, "pay_missing", unpaid, fresh])
    assert ids[:3] == [existing, None, None] and ids[3] is not None
    assert [d.number for d in _documents(api)] == [1, 2] and _counter(api) == [2]
    assert issue_receipts(api.ctx, api.ctx.signers, []) == []


def test_a_payment_asked_twice_in_one_batch_is_refused(api: Api) -> None:
    payment = _paid(api)
    with pytest.raises(ValueError, match="twice"):
        issue_receipts(api.ctx, api.ctx.signers, [payment, payment])
    assert _documents(api) == []


def test_each_agency_numbers_its_own_series_in_one_batch(api: Api) -> None:
    with api.ctx.db.write() as s:
        seed_agency(s, "AGC-B", tax_code="0100000002")
        _, other_key = create_key(s, "AGC-B", "b", ALL_SCOPES)
    payments = [_paid(api), _paid(api, other_key), _paid(api), _paid(api, other_key), _paid(api, other_key)]
    issue_receipts(api.ctx, api.ctx.signers, payments)
    docs = _documents(api)
    by_agency: dict[str, list[int]] = {}
    for doc in sorted(docs, key=lambda d: d.number):
        by_agency.setdefault(doc.agency_id, []).append(doc.number)
    assert sorted(by_agency.values()) == [[1, 2], [1, 2, 3]]
    assert _counter(api) == [2, 3]


class FailingSigner:
    """Signs as the agency's signer does, except the ``fail_at``-th document: a key that stops working mid-batch."""

    def __init__(self, store: SignerStore, fail_at: int) -> None:
        self.store, self.fail_at, self.signed = store, fail_at, 0

    def for_agency(self, code: str, tax_code: str, name: str) -> Any:
        signer = self.store.for_agency(code, tax_code, name)
        outer = self

        class Signer:
            certificate = signer.certificate

            def sign(self, xml: bytes) -> bytes:
                outer.signed += 1
                if outer.signed == outer.fail_at:
                    raise OSError("the signing device is unplugged")
                return signer.sign(xml)

        return Signer()


def test_a_document_that_fails_mid_batch_stores_nothing_and_gives_every_number_back(api: Api) -> None:
    issue_receipt(api.ctx, api.ctx.signers, _paid(api))
    payments = [_paid(api) for _ in range(3)]
    failing: Any = FailingSigner(api.ctx.signers, fail_at=2)
    with pytest.raises(OSError, match="unplugged"):
        issue_receipts(api.ctx, failing, payments)
    assert [d.number for d in _documents(api)] == [1] and _counter(api) == [1]
    with api.ctx.db.read() as s:  # the first receipt's only
        assert len(s.exec(select(TaxMessage)).all()) == 1
        events = s.exec(select(WebhookMessage).where(WebhookMessage.event_type == "receipt.issued")).all()
    assert len(events) == 1
    assert all(issue_receipts(api.ctx, api.ctx.signers, payments))
    assert [d.number for d in _documents(api)] == [1, 2, 3, 4]


def test_the_worker_issues_a_batch_one_by_one_when_one_receipt_fails(api: Api, monkeypatch: pytest.MonkeyPatch) -> None:
    """The batch rolls back; each job then runs alone: the good ones get their receipts without a gap, the bad one
    is retried later with its error."""
    payments = [_paid(api) for _ in range(3)]
    Worker(api.ctx, HANDLERS).run_once()  # the receipts of the payments (a batch), and other jobs they queued
    assert [d.number for d in _documents(api)] == [1, 2, 3]
    more = [_paid(api) for _ in range(3)]
    failing = FailingSigner(api.ctx.signers, fail_at=2)  # the batch's second document, and no other
    monkeypatch.setattr(type(api.ctx), "signers", property(lambda _self: failing), raising=False)
    Worker(api.ctx, {kinds.SUCCEEDED: HANDLERS[kinds.SUCCEEDED]}).run_once(limit=20)
    docs = _documents(api)
    assert [d.number for d in docs] == [1, 2, 3, 4, 5, 6]
    assert {d.payment_id for d in docs} == set(payments + more)
    with api.ctx.db.read() as s:
        jobs = s.exec(select(OutboxJob).where(OutboxJob.kind == kinds.SUCCEEDED)).all()
    assert {j.status for j in jobs} == {OutboxStatus.done}


def test_the_worker_retries_alone_the_receipt_that_fails_alone(api: Api, monkeypatch: pytest.MonkeyPatch) -> None:
    payments = [_paid(api) for _ in range(3)]
    with api.ctx.db.read() as s:
        bad_code = s.exec(select(Dossier.code).join(Payment).where(Payment.id == payments[1])).one()
    store = api.ctx.signers

    class Broken:
        """A signer that cannot sign one payer's receipt (its dossier code is in the document)."""

        def for_agency(self, code: str, tax_code: str, name: str) -> Any:
            signer = store.for_agency(code, tax_code, name)

            class Signer:
                certificate = signer.certificate

                def sign(self, xml: bytes) -> bytes:
                    if bad_code.encode() in xml:
                        raise OSError("this one cannot be signed")
                    return signer.sign(xml)

            return Signer()

    broken = Broken()
    monkeypatch.setattr(type(api.ctx), "signers", property(lambda _self: broken), raising=False)
    with api.ctx.db.write() as s:
        enqueue(s, kinds.SUCCEEDED, {"payment_id": payments[0]})  # queued twice: still one receipt
    Worker(api.ctx, {kinds.SUCCEEDED: HANDLERS[kinds.SUCCEEDED]}).run_once(limit=20)
    docs = _documents(api)
    assert [d.number for d in docs] == [1, 2] and {d.payment_id for d in docs} == {payments[0], payments[2]}
    with api.ctx.db.read() as s:
        jobs = s.exec(select(OutboxJob).where(OutboxJob.kind == kinds.SUCCEEDED)).all()
    failed = [j for j in jobs if j.status is not OutboxStatus.done]
    assert len(jobs) == 4 and [j.payload["payment_id"] for j in failed] == [payments[1]]
    assert failed[0].last_error == "OSError: this one cannot be signed" and failed[0].attempts == 1


@pytest.mark.postgres
@pytest.mark.parametrize("database_url", [b for b in BACKENDS if b == "postgres"], indirect=True)
def test_a_batch_of_receipts_on_postgresql_takes_as_many_round_trips_as_one(api: Api) -> None:
    """BEGIN with every payment's facts, the series' numbers with the reads that must follow them, every write with
    the COMMIT: the counter row is locked for two round trips and the signatures, whatever the batch's size."""
    issue_receipt(api.ctx, api.ctx.signers, _paid(api))
    payments = [_paid(api) for _ in range(6)]
    with counted(api.ctx.db.engine) as trips:
        ids = issue_receipts(api.ctx, api.ctx.signers, payments)
    assert trips.count == 4
    assert all(ids) and [d.number for d in _documents(api)] == [1, 2, 3, 4, 5, 6, 7]
