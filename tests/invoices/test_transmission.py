"""Issuance and transmission together: every issued document goes to the T-VAN folder by itself, replies come back
through the worker's periodic sync, a replacement sends the 04/SS-HĐĐT notice, and switching transmission off sends
nothing."""

from __future__ import annotations

from typing import Any

import pytest
from lxml import etree  # type: ignore[import-untyped]
from sqlmodel import select

from invoices.models import Document
from invoices.tax.envelope import documents_in
from invoices.tax.models import TaxMessage
from invoices.verify import pinned, verify, verify_notice
from lephi.jobs import HANDLERS, PERIODIC
from payments.outbox.worker import Worker
from tests.conftest import Api
from tests.factories import dossier_body, payment_body, sandbox_outcome
from tests.invoices.test_tax import drop, technical


def _pay_and_drain(api: Api) -> dict[str, Any]:
    code = api.post("/v1/dossiers", dossier_body(copies=2)).json()["code"]
    payment = api.post("/v1/payments", payment_body(code)).json()
    sandbox_outcome(api.client, api.ctx.settings, payment["gateway_reference"], "success")
    worker = Worker(api.ctx, HANDLERS, periodic=PERIODIC)
    for _ in range(3):
        worker.run_once()
    (receipt,) = api.get("/v1/receipts", params={"payment_id": payment["id"]}).json()
    return dict(receipt)


def test_an_issued_receipt_is_handed_to_the_t_van_folder_and_its_acknowledgement_read_back(api: Api) -> None:
    receipt = _pay_and_drain(api)
    transmission = receipt["transmission"]
    assert transmission["status"] == "sent" and transmission["message_type"] == 203  # a K series: uncoded data
    root = api.ctx.settings.effective_tax_drop_dir
    outgoing = root / "outgoing" / f"{transmission['message_id']}.xml"
    envelope = outgoing.read_bytes()
    (carried,) = documents_in(envelope)
    with api.ctx.db.read() as s:
        document = s.get(Document, receipt["id"])
        assert document is not None
    assert carried == document.xml  # the legal original, byte for byte
    certificate = api.ctx.signers.for_agency(api.agency_code, "0100000001", "x").certificate
    assert verify(carried, pinned(certificate)).number == receipt["number"]

    drop(root, technical(transmission["message_id"]))
    Worker(api.ctx, HANDLERS, periodic=PERIODIC).run_periodic(now=10**10)
    again = api.get(f"/v1/receipts/{receipt['id']}").json()
    assert again["transmission"]["status"] == "acknowledged"
    assert not list((root / "replies").glob("*.xml"))  # read and moved to done/


def test_a_replacement_sends_the_signed_04_ss_notice(api: Api, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(api.ctx.settings, "tax_office_code", "10100")
    receipt = _pay_and_drain(api)
    staff = {"Authorization": f"Bearer {api.new_key(['receipts:write', 'payments:read'])}"}
    body = {"reason": "Sai tên người nộp", "payer": {"name": "Trần Thị Bình"}}
    r = api.post(f"/v1/receipts/{receipt['id']}/replace", body, headers=staff)
    assert r.status_code == 201, r.text
    Worker(api.ctx, HANDLERS).run_once()
    with api.ctx.db.read() as s:
        notices = s.exec(select(TaxMessage).where(TaxMessage.message_type == 300)).all()
    (notice,) = notices
    assert notice.status.value == "sent"
    (carried,) = documents_in(notice.xml)
    certificate = api.ctx.signers.for_agency(api.agency_code, "0100000001", "x").certificate
    data = verify_notice(carried, pinned(certificate)).signed_data
    assert data.findtext("MCQT") == "10100"
    assert data.findtext("DSHDon/HDon/SHDon") == str(receipt["number"])
    assert data.findtext("DSHDon/HDon/TCTBao") == "3" and data.findtext("DSHDon/HDon/LDo") == "Sai tên người nộp"
    sent = api.ctx.settings.effective_tax_drop_dir / "outgoing" / f"{notice.mtdiep}.xml"
    assert etree.fromstring(sent.read_bytes()).findtext("TTChung/MLTDiep") == "300"


def test_without_a_tax_office_code_the_replacement_is_issued_and_no_notice_is_queued(api: Api) -> None:
    receipt = _pay_and_drain(api)
    staff = {"Authorization": f"Bearer {api.new_key(['receipts:write'])}"}
    r = api.post(f"/v1/receipts/{receipt['id']}/replace", {"reason": "Sai", "payer": {"name": "B"}}, headers=staff)
    assert r.status_code == 201
    with api.ctx.db.read() as s:
        assert s.exec(select(TaxMessage).where(TaxMessage.message_type == 300)).all() == []


def test_with_transmission_off_nothing_is_queued_or_written(api: Api, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(api.ctx.settings, "tax_transmission", False)
    receipt = _pay_and_drain(api)
    assert receipt["transmission"] is None
    with api.ctx.db.read() as s:
        assert s.exec(select(TaxMessage)).all() == []
    assert not (api.ctx.settings.effective_tax_drop_dir / "outgoing").exists()


def test_periodic_work_runs_on_its_interval_and_one_failure_does_not_stop_the_rest(api: Api) -> None:
    from payments.outbox.worker import Periodic

    calls: list[str] = []

    def broken(_ctx: Any) -> None:
        calls.append("broken")
        raise RuntimeError("the T-VAN share is not mounted")

    tasks = (
        Periodic("broken", lambda ctx: 60.0, broken),
        Periodic("ok", lambda ctx: 60.0, lambda c: calls.append("ok")),
    )
    worker = Worker(api.ctx, HANDLERS, periodic=tasks)
    worker.run_periodic(1000.0)
    worker.run_periodic(1030.0)  # within the interval: nothing
    worker.run_periodic(1061.0)
    assert calls == ["broken", "ok", "broken", "ok"]
