"""Corrections of issued documents: a refund issues an adjustment (TCHDon 2, negative amounts, naming the document
it corrects); staff replace a receipt whose payer details are wrong (TCHDon 1). Each is signed, numbered in the
same gap-free series, exactly once, and announced to client systems."""

from __future__ import annotations

import itertools
import json
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from lxml import etree  # type: ignore[import-untyped]
from sqlmodel import col, select

from invoices.model import FeeLine, ServiceLine
from invoices.models import Document, DocumentPurpose
from invoices.service import _decrease, issue_adjustment
from invoices.verify import pinned, verify
from lephi.jobs import HANDLERS
from payments.outbox.models import OutboxJob, OutboxStatus
from payments.outbox.worker import Worker
from payments.webhooks.models import WebhookMessage
from tests.conftest import Api
from tests.factories import dossier_body, payment_body, sandbox_outcome

STAFF = ["receipts:write", "payments:read"]


def _paid_and_issued(api: Api, copies: int = 3) -> dict[str, Any]:
    code = api.post("/v1/dossiers", dossier_body(copies=copies)).json()["code"]
    payment = api.post("/v1/payments", payment_body(code)).json()
    sandbox_outcome(api.client, api.ctx.settings, payment["gateway_reference"], "success")
    Worker(api.ctx, HANDLERS).run_once()
    return dict(payment)


def _refund(api: Api, payment_id: str, amount: int) -> dict[str, Any]:
    r = api.post(f"/v1/payments/{payment_id}/refunds", {"amount": amount, "reason": "Hồ sơ bị trả lại"})
    assert r.status_code == 201, r.text
    assert r.json()["status"] == "succeeded", r.json()
    return dict(r.json())


def _documents(api: Api, payment_id: str) -> list[Document]:
    with api.ctx.db.read() as s:
        return list(s.exec(select(Document).where(Document.payment_id == payment_id).order_by(col(Document.number))))


def _data(xml: bytes) -> Any:
    return etree.fromstring(xml).find("DLHDon")


def _certificate(api: Api) -> Any:
    return api.ctx.signers.for_agency("AGC-A", "0100000001", "Agency AGC-A").certificate


def test_a_full_refund_issues_one_signed_adjustment_with_negative_amounts(api: Api) -> None:
    payment = _paid_and_issued(api)
    refund = _refund(api, payment["id"], 115_000)
    Worker(api.ctx, HANDLERS).run_once()
    original, adjustment = _documents(api, payment["id"])
    assert adjustment.purpose is DocumentPurpose.adjustment and adjustment.refund_id == refund["id"]
    assert adjustment.number == original.number + 1 and adjustment.series == original.series
    assert adjustment.total == -115_000 and adjustment.related_document_id == original.id
    verified = verify(adjustment.xml, pinned(_certificate(api)))
    assert verified.total == -115_000 and verified.number == adjustment.number
    data = _data(adjustment.xml)
    related = data.find("TTChung/TTHDLQuan")
    assert related.findtext("TCHDon") == "2"
    assert related.findtext("SHDCLQuan") == str(original.number)
    assert related.findtext("KHHDCLQuan") == original.series
    assert related.findtext("NLHDCLQuan") == original.issue_date.isoformat()
    assert refund["id"] in related.findtext("GChu")
    fees = [(f.findtext("TLPhi"), f.findtext("TPhi")) for f in data.iterfind("NDHDon/TToan/DSLPhi/LPhi")]
    assert fees == [("Lệ phí", "-100000"), ("Bản sao", "-15000")]
    assert data.findtext("NDHDon/TToan/TgTTTBChu") == "Âm một trăm mười lăm nghìn đồng"
    assert data.findtext("NDHDon/NMua/Ten") == "Nguyễn Văn An"


def test_partial_refunds_adjust_line_by_line_and_add_up(api: Api) -> None:
    payment = _paid_and_issued(api)
    first = _refund(api, payment["id"], 95_000)
    second = _refund(api, payment["id"], 20_000)
    Worker(api.ctx, HANDLERS).run_once()
    docs = _documents(api, payment["id"])
    adjustments = [d for d in docs if d.purpose is DocumentPurpose.adjustment]
    assert [d.refund_id for d in adjustments] == [first["id"], second["id"]]
    assert [d.total for d in adjustments] == [-95_000, -20_000]
    lines = [
        [(f.findtext("TLPhi"), int(f.findtext("TPhi"))) for f in _data(d.xml).iterfind("NDHDon/TToan/DSLPhi/LPhi")]
        for d in adjustments
    ]
    # 95,000 comes off the fee; the second refund takes the rest of the fee, then the copies.
    assert lines == [[("Lệ phí", -95_000)], [("Lệ phí", -5_000), ("Bản sao", -15_000)]]


def test_the_adjustment_job_is_idempotent_and_waits_for_the_receipt(api: Api) -> None:
    code = api.post("/v1/dossiers", dossier_body(copies=1)).json()["code"]
    payment = api.post("/v1/payments", payment_body(code)).json()
    sandbox_outcome(api.client, api.ctx.settings, payment["gateway_reference"], "success")
    refund = _refund(api, payment["id"], 5_000)  # before any worker ran: the receipt does not exist yet
    with api.ctx.db.write() as s:  # the adjustment job comes due before the receipt's
        for job in s.exec(select(OutboxJob).where(OutboxJob.kind == "receipt.issue")):
            job.run_after = job.run_after.replace(year=job.run_after.year + 1)
            s.add(job)
    Worker(api.ctx, HANDLERS).run_once()
    assert _documents(api, payment["id"]) == []
    with api.ctx.db.read() as s:
        adjust = s.exec(select(OutboxJob).where(OutboxJob.kind == "receipt.adjust")).one()
    assert adjust.status is OutboxStatus.pending and adjust.attempts == 0  # waiting does not count as a failure
    with api.ctx.db.write() as s:
        for job in s.exec(select(OutboxJob).where(col(OutboxJob.kind).in_(["receipt.issue", "receipt.adjust"]))):
            job.run_after = job.created_at
            s.add(job)
    Worker(api.ctx, HANDLERS).run_once()
    Worker(api.ctx, HANDLERS).run_once()
    first = issue_adjustment(api.ctx, api.ctx.signers, refund["id"])
    again = issue_adjustment(api.ctx, api.ctx.signers, refund["id"])
    docs = _documents(api, payment["id"])
    assert [d.purpose for d in docs] == [DocumentPurpose.original, DocumentPurpose.adjustment]
    assert first == again == docs[1].id


def test_a_failed_refund_issues_no_adjustment(api: Api) -> None:
    payment = _paid_and_issued(api)
    assert issue_adjustment(api.ctx, api.ctx.signers, "rfd_000000000000000000000000") is None
    assert len(_documents(api, payment["id"])) == 1


_STAFF_KEYS: dict[int, str] = {}


def _replace(api: Api, document_id: str, body: dict[str, Any], key: str | None = None) -> Any:
    """As a staff member (one API key per test: Idempotency-Keys belong to the key that sent them)."""
    staff = _STAFF_KEYS.setdefault(id(api), api.new_key(STAFF)) if key else api.new_key(STAFF)
    headers = {"Authorization": f"Bearer {staff}"}
    return api.post(f"/v1/receipts/{document_id}/replace", body, key=key, headers=headers)


def test_staff_replace_a_receipt_with_corrected_payer_details(api: Api) -> None:
    payment = _paid_and_issued(api)
    (original,) = _documents(api, payment["id"])
    body = {"reason": "Sai tên người nộp", "payer": {"name": "Nguyễn Thị Hồng Ánh", "tax_code": "0312345678"}}
    r = _replace(api, original.id, body, key="replace-1")
    assert r.status_code == 201, r.text
    out = r.json()
    assert out["purpose"] == "replacement" and out["related_document_id"] == original.id
    assert out["number"] == original.number + 1 and out["total"] == original.total
    assert out["reason"] == "Sai tên người nộp"
    replacement = _documents(api, payment["id"])[1]
    verify(replacement.xml, pinned(_certificate(api)))
    data = _data(replacement.xml)
    assert data.findtext("NDHDon/NMua/Ten") == "Nguyễn Thị Hồng Ánh"
    assert data.findtext("NDHDon/NMua/MST") == "0312345678"
    assert data.findtext("NDHDon/NMua/DCTDTu") == "an@example.com"  # unchanged details carried over
    assert data.findtext("TTChung/TTHDLQuan/TCHDon") == "1"
    assert data.findtext("TTChung/TTHDLQuan/SHDCLQuan") == str(original.number)
    # The same request again is the same answer, not a second replacement.
    again = _replace(api, original.id, body, key="replace-1")
    assert again.status_code == 201 and again.json() == out
    assert len(_documents(api, payment["id"])) == 2


def test_a_replaced_receipt_cannot_be_replaced_again_but_its_replacement_can(api: Api) -> None:
    payment = _paid_and_issued(api)
    (original,) = _documents(api, payment["id"])
    first = _replace(api, original.id, {"reason": "Sai địa chỉ", "payer": {"address": "12 Lê Lợi, Huế"}})
    assert first.status_code == 201
    r = _replace(api, original.id, {"reason": "Sai tên", "payer": {"name": "Lê Văn Cường"}})
    assert r.status_code == 409 and r.json()["code"] == "document_replaced"
    second = _replace(api, first.json()["id"], {"reason": "Sai tên", "payer": {"name": "Lê Văn Cường"}})
    assert second.status_code == 201, second.text
    assert second.json()["related_document_id"] == first.json()["id"]
    docs = _documents(api, payment["id"])
    assert [d.number for d in docs] == [1, 2, 3]
    assert _data(docs[2].xml).findtext("NDHDon/NMua/DChi") == "12 Lê Lợi, Huế"


@pytest.mark.parametrize(
    ("payer", "status", "code"),
    [
        ({}, 422, "validation_error"),
        ({"tax_code": "12345"}, 422, "validation_error"),
        ({"email": "not-an-email"}, 422, "validation_error"),
        ({"name": "   "}, 422, "validation_error"),
        ({"name": "x", "cccd": "079123456789"}, 422, "validation_error"),
    ],
    ids=["nothing", "bad-tax-code", "bad-email", "blank-name", "unknown-field"],
)
def test_a_bad_replacement_is_refused_and_changes_nothing(
    api: Api, payer: dict[str, Any], status: int, code: str
) -> None:
    payment = _paid_and_issued(api)
    (original,) = _documents(api, payment["id"])
    r = _replace(api, original.id, {"reason": "Sai", "payer": payer})
    assert r.status_code == status and r.json()["code"] == code, r.text
    assert len(_documents(api, payment["id"])) == 1


def test_an_adjusted_receipt_is_not_replaced_and_unknown_ids_are_404(api: Api) -> None:
    payment = _paid_and_issued(api)
    (original,) = _documents(api, payment["id"])
    _refund(api, payment["id"], 5_000)
    Worker(api.ctx, HANDLERS).run_once()
    r = _replace(api, original.id, {"reason": "Sai tên", "payer": {"name": "Lê Văn Cường"}})
    assert r.status_code == 409 and r.json()["code"] == "document_adjusted"
    adjustment = _documents(api, payment["id"])[1]
    r = _replace(api, adjustment.id, {"reason": "Sai tên", "payer": {"name": "Lê Văn Cường"}})
    assert r.status_code == 409
    r = _replace(api, "doc_ffffffffffffffffffffffff", {"reason": "Sai tên", "payer": {"name": "Lê Văn Cường"}})
    assert r.status_code == 404
    assert len(_documents(api, payment["id"])) == 2


def test_every_document_is_announced_as_receipt_issued(api: Api) -> None:
    payment = _paid_and_issued(api)
    (original,) = _documents(api, payment["id"])
    _replace(api, original.id, {"reason": "Sai tên", "payer": {"name": "Lê Văn Cường"}})
    with api.ctx.db.read() as s:
        messages = s.exec(select(WebhookMessage).where(WebhookMessage.event_type == "receipt.issued")).all()
    bodies = [json.loads(m.body) for m in messages]
    assert sorted(b["data"]["purpose"] for b in bodies) == ["original", "replacement"]
    for body in bodies:
        assert body["data"]["payment_id"] == payment["id"]
        assert body["data"]["lookup_url"].endswith("/r/" + body["data"]["lookup_code"])
        assert body["id"] == next(m.id for m in messages if json.loads(m.body) == body)


@given(
    fee_amounts=st.lists(st.integers(min_value=1, max_value=100_000), min_size=1, max_size=3),
    service_amounts=st.lists(st.integers(min_value=1, max_value=100_000), max_size=3),
    cuts=st.lists(st.floats(min_value=0, max_value=1), min_size=1, max_size=4),
)
def test_successive_refunds_never_take_more_from_a_line_than_it_held(
    fee_amounts: list[int], service_amounts: list[int], cuts: list[float]
) -> None:
    fees = tuple(FeeLine(name=f"Phí {i}", amount=a) for i, a in enumerate(fee_amounts))
    services = tuple(
        ServiceLine(line_no=i + 1, name=f"DV {i}", quantity=Decimal(1), unit_price=a, amount=a)
        for i, a in enumerate(service_amounts)
    )
    total = sum(fee_amounts) + sum(service_amounts)
    points = sorted({0, total, *(round(c * total) for c in cuts)})
    taken: dict[str, int] = {}
    for start, end in itertools.pairwise(points):
        out_fees, out_services = _decrease(fees, services, already=start, amount=end - start)
        assert -sum(f.amount for f in out_fees) - sum(s.amount for s in out_services) == end - start
        for line in (*out_fees, *out_services):
            assert line.amount < 0
            taken[line.name] = taken.get(line.name, 0) - line.amount
    assert taken == {line.name: line.amount for line in (*fees, *services)}
    with pytest.raises(ValueError, match="exceeds"):
        _decrease(fees, services, already=total, amount=1)
