"""Issuing the e-receipt of a succeeded payment through the outbox: exactly one signed document per payment,
numbered without gaps, verifiable with the agency's certificate; a signing failure gives the number back."""

from __future__ import annotations

import threading
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
from sqlalchemy import func, update
from sqlmodel import col, select

from invoices.service import issue_receipt
from invoices.tables import Document
from invoices.verify import pinned, verify
from lephi.jobs import HANDLERS
from payments.core.types import utcnow
from payments.outbox.models import OutboxJob
from payments.outbox.worker import Worker
from payments.payment import kinds
from tests.conftest import Api
from tests.factories import dossier_body, payment_body, sandbox_outcome

# The series' year digits follow the issue date (GMT+7), so the expected symbol moves with the calendar.
SERIES = f"K{datetime.now(timezone(timedelta(hours=7))).year % 100:02d}TLP"


def _paid(api: Api) -> dict[str, Any]:
    code = api.post("/v1/dossiers", dossier_body(copies=3)).json()["code"]
    payment = api.post("/v1/payments", payment_body(code)).json()
    sandbox_outcome(api.client, api.ctx.settings, payment["gateway_reference"], "success")
    return dict(payment)


def _documents(api: Api) -> list[Document]:
    with api.ctx.db.read() as s:
        return list(s.exec(select(Document).order_by(col(Document.number))))


def test_success_enqueues_issuance_and_the_worker_issues_a_verifiable_receipt(api: Api) -> None:
    payment = _paid(api)
    with api.ctx.db.read() as s:
        queued = [j.kind for j in s.exec(select(OutboxJob).where(OutboxJob.kind == kinds.SUCCEEDED))]
    assert queued == [kinds.SUCCEEDED]
    Worker(api.ctx, HANDLERS).run_once()
    (doc,) = _documents(api)
    assert doc.payment_id == payment["id"] and doc.number == 1 and doc.total == 115_000
    signer = api.ctx.signers.for_agency("AGC-A", "0100000001", "Agency AGC-A")
    verified = verify(doc.xml, pinned(signer.certificate))
    assert verified.number == 1 and verified.total == 115_000 and verified.seller_tax_code == "0100000001"
    assert "Một trăm mười lăm nghìn đồng".encode() in doc.xml and b"Nguy\xe1\xbb\x85n V\xc4\x83n An" in doc.xml


def test_retries_and_two_workers_still_give_exactly_one_document(api: Api) -> None:
    payment = _paid(api)
    ids = []
    lock = threading.Lock()

    def run() -> None:
        got = issue_receipt(api.ctx, api.ctx.signers, payment["id"])
        with lock:
            ids.append(got)

    threads = [threading.Thread(target=run) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert len(set(ids)) == 1 and len(_documents(api)) == 1
    Worker(api.ctx, HANDLERS).run_once()  # the queued job finds it done
    assert len(_documents(api)) == 1


def test_signing_failure_rolls_back_and_the_number_is_reused(api: Api, monkeypatch: pytest.MonkeyPatch) -> None:
    first, second = _paid(api), _paid(api)
    store = api.ctx.signers
    signer = store.for_agency("AGC-A", "0100000001", "Agency AGC-A")

    class Broken:
        certificate = signer.certificate

        def sign(self, xml: bytes) -> bytes:
            raise RuntimeError("token unplugged")

    monkeypatch.setitem(store._signers, "AGC-A", Broken())
    with pytest.raises(RuntimeError):
        issue_receipt(api.ctx, store, first["id"])
    assert _documents(api) == []
    monkeypatch.setitem(store._signers, "AGC-A", signer)
    issue_receipt(api.ctx, store, second["id"])
    issue_receipt(api.ctx, store, first["id"])
    assert [(d.payment_id, d.number) for d in _documents(api)] == [(second["id"], 1), (first["id"], 2)]


def test_an_unpaid_payment_gets_no_document(api: Api) -> None:
    code = api.post("/v1/dossiers", dossier_body()).json()["code"]
    payment = api.post("/v1/payments", payment_body(code)).json()
    assert issue_receipt(api.ctx, api.ctx.signers, payment["id"]) is None
    with api.ctx.db.read() as s:
        assert s.exec(select(func.count()).select_from(Document)).one() == 0


def test_hundred_concurrent_issuances_are_numbered_one_to_hundred(api: Api) -> None:
    payments = [_paid(api) for _ in range(100)]
    with api.ctx.db.write() as s:
        s.execute(update(OutboxJob).values(run_after=utcnow() - timedelta(seconds=1)))
    workers = [Worker(api.ctx, HANDLERS, name=f"w{i}") for i in range(4)]

    def drain(w: Worker) -> None:
        while w.run_once(limit=5):
            pass

    threads = [threading.Thread(target=drain, args=(w,)) for w in workers]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    docs = _documents(api)
    assert [d.number for d in docs] == list(range(1, 101))
    assert {d.payment_id for d in docs} == {p["id"] for p in payments}


def test_receipt_api_serves_the_signed_original_and_verifies_uploads(api: Api) -> None:
    payment = _paid(api)
    Worker(api.ctx, HANDLERS).run_once()
    (receipt,) = api.get("/v1/receipts", params={"payment_id": payment["id"]}).json()
    assert receipt["number"] == 1 and receipt["symbol"] == f"5{SERIES}" and receipt["total"] == 115_000
    assert api.get(f"/v1/receipts/{receipt['id']}").json() == receipt
    xml = api.get(receipt["xml_url"])
    (doc,) = _documents(api)
    assert xml.headers["content-type"] == "application/xml" and xml.content == doc.xml  # byte for byte
    ok = api.client.post(
        "/v1/receipts/verify", content=xml.content, headers={**api.auth, "Content-Type": "application/xml"}
    )
    assert ok.status_code == 200 and ok.json()["valid"] is True and ok.json()["issued_here"] is True
    assert ok.json()["total"] == 115_000 and "MST:0100000001" in ok.json()["signer"]
    tampered = xml.content.replace(b"115000", b"115001", 1)
    bad = api.client.post("/v1/receipts/verify", content=tampered, headers=api.auth)
    assert bad.status_code == 422 and bad.json()["reason"] == "digest-mismatch"
    doctype = b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY e "x">]><HDon>&e;</HDon>'
    assert api.client.post("/v1/receipts/verify", content=doctype, headers=api.auth).json()["reason"] == "doctype"
    other = api.new_key(["payments:read"], agency_code=None)
    assert (
        api.client.get(f"/v1/receipts/{receipt['id']}", headers={"Authorization": f"Bearer {other}"}).status_code == 200
    )


def test_cli_makes_a_dev_certificate_and_verifies_a_receipt_file(
    api: Api, tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from typer.testing import CliRunner

    from lephi.cli import app
    from lephi.settings import get_settings

    payment = _paid(api)
    Worker(api.ctx, HANDLERS).run_once()
    (doc,) = _documents(api)
    monkeypatch.setenv("LEPHI_DATABASE_URL", api.ctx.settings.effective_database_url)
    monkeypatch.setenv("LEPHI_DATA_DIR", str(api.ctx.settings.data_dir))
    get_settings.cache_clear()
    try:
        good, bad = tmp_path / "good.xml", tmp_path / "bad.xml"
        good.write_bytes(doc.xml)
        bad.write_bytes(doc.xml.replace(b"115000", b"115001", 1))
        runner = CliRunner()
        ok = runner.invoke(app, ["receipts", "verify", str(good)])
        assert ok.exit_code == 0 and f"valid: 5{SERIES} no. 00000001" in ok.output and payment["id"] not in ok.output
        nok = runner.invoke(app, ["receipts", "verify", str(bad)])
        assert nok.exit_code == 1 and "NOT VALID (digest-mismatch)" in nok.output
        made = runner.invoke(app, ["certs", "dev", "--agency", "AGC-A"])
        assert made.exit_code == 0 and "UID=MST:0100000001" in made.output
        assert runner.invoke(app, ["certs", "dev", "--agency", "NOPE"]).exit_code == 2
    finally:
        get_settings.cache_clear()


def test_a_crash_between_payment_success_and_issuance_still_yields_exactly_one_document(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The success and its issuance job commit together; then every way the issuing worker can die is played:
    a worker that claimed the job and never ran it, one killed in the middle of issuing (after the number was taken
    and the document signed), and the first worker waking up after another one finished the job."""
    import invoices.service as service

    payment = _paid(api)
    asleep = Worker(api.ctx, HANDLERS, name="asleep")
    # It claims the issuance job (and the payment's webhook job) under a lease, then the process freezes.
    (claimed,) = [job for job in asleep.claim(10) if job.kind == kinds.SUCCEEDED]

    def power_cut(*_args: Any, **_kwargs: Any) -> None:
        raise RuntimeError("power cut after signing")

    with api.ctx.db.write() as s:  # the lease runs out
        s.execute(update(OutboxJob).values(locked_until=utcnow() - timedelta(seconds=1)))
    monkeypatch.setattr(service, "emit", power_cut)
    Worker(api.ctx, HANDLERS, name="killed").run_once()
    assert _documents(api) == []  # nothing half-issued: the number and the signature rolled back together
    monkeypatch.undo()

    with api.ctx.db.write() as s:  # retried at once rather than after the backoff
        s.execute(update(OutboxJob).values(run_after=utcnow() - timedelta(seconds=1), locked_until=None))
    Worker(api.ctx, HANDLERS, name="survivor").run_once()
    asleep.run_claimed(claimed)  # the frozen worker wakes up and runs the job it claimed long ago
    Worker(api.ctx, HANDLERS).run_once()
    (doc,) = _documents(api)
    assert doc.payment_id == payment["id"] and doc.number == 1
    with api.ctx.db.read() as s:
        counter = s.exec(select(func.max(Document.number))).one()
    assert counter == 1
