"""Bank transfer by VietQR, end to end: the QR page, then the bank's signed credit notification matched to the
payment. Exact amount -> succeeded; short, over, unmatched, garbled or late -> held for finance staff."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func
from sqlmodel import select

from adapters.sandbox import sign
from adapters.vietqr import SIGNATURE_HEADER, parse_payload
from payments.transfer.models import BankCredit
from tests.conftest import Api, agency_api
from tests.factories import dossier_body, payment_body

NOTIFY_SECRET = "bank-notification-secret-0123456789"
GATEWAYS = f"""
[agencies."AGC-Q".vietqr]
bank_bin = "970436"
account_number = "0011001234567"
account_name = "SO TU PHAP TINH DEMO"
reference_secret = "reference-secret-0123456789abcdef"
notification_secret = "{NOTIFY_SECRET}"
"""


@pytest.fixture
def qr_api(database_url: str, tmp_path: Path) -> Iterator[Api]:
    with agency_api(database_url, tmp_path, "AGC-Q", ["vietqr", "sandbox"], GATEWAYS) as api:
        yield api


def _start(api: Api) -> dict[str, Any]:
    code = api.post("/v1/dossiers", dossier_body()).json()["code"]
    r = api.post("/v1/payments", payment_body(code, method="vietqr"))
    assert r.status_code == 201, r.text
    return dict(r.json())


def _notify(api: Api, memo: str, amount: int, txn: str = "FT0001", account: str = "0011001234567") -> Any:
    body = json.dumps(
        {
            "transaction_id": txn,
            "bank_bin": "970436",
            "account_number": account,
            "amount": amount,
            "currency": "VND",
            "description": memo,
            "booked_at": "2026-11-27T09:00:00+07:00",
        }
    ).encode()
    headers = {SIGNATURE_HEADER: sign(NOTIFY_SECRET, body, int(time.time()))}
    return api.client.post("/v1/gateways/vietqr/callback/AGC-Q", content=body, headers=headers)


def _credits(api: Api) -> list[dict[str, Any]]:
    return list(api.get("/v1/bank-credits").json()["data"])


def test_qr_page_shows_a_valid_payload_with_the_reference(qr_api: Api) -> None:
    payment = _start(qr_api)
    reference = payment["gateway_reference"]
    assert payment["next_url"] == f"http://testserver/pay/qr/{reference}"
    page = qr_api.client.get(f"/pay/qr/{reference}")
    assert page.status_code == 200 and reference in page.text and "110.000" in page.text
    assert "Đang chờ tiền về tài khoản" in page.text
    svg = qr_api.client.get(f"/pay/qr/{reference}.svg")
    assert svg.headers["content-type"] == "image/svg+xml" and b"<svg" in svg.content
    assert qr_api.client.get(f"/pay/qr/{reference}.png").content[:4] == b"\x89PNG"
    gateway: Any = qr_api.ctx.gateway("vietqr", qr_api.agency_id)
    fields = parse_payload(gateway.qr_for(reference, 110_000))
    assert reference in json.dumps(fields) and "110000" in json.dumps(fields)
    assert qr_api.client.get("/pay/qr/LPNOTAREFERENCE").status_code == 404


def test_exact_credit_succeeds_and_the_same_credit_counts_once(qr_api: Api) -> None:
    payment = _start(qr_api)
    memo = f"ck {payment['gateway_reference'].lower()} le phi"
    assert _notify(qr_api, memo, 110_000).status_code == 200
    assert qr_api.get(f"/v1/payments/{payment['id']}").json()["status"] == "succeeded"
    assert _notify(qr_api, memo, 110_000).status_code == 200  # the bank retries
    with qr_api.ctx.db.read() as s:
        assert s.exec(select(func.count()).select_from(BankCredit)).one() == 1
    (credit,) = _credits(qr_api)
    assert credit["status"] == "matched" and credit["payment_id"] == payment["id"]


@pytest.mark.parametrize(("amount", "status"), [(100_000, "underpaid"), (120_000, "overpaid")])
def test_wrong_amount_is_held_with_the_reason(qr_api: Api, amount: int, status: str) -> None:
    payment = _start(qr_api)
    assert _notify(qr_api, payment["gateway_reference"], amount).status_code == 200
    out = qr_api.get(f"/v1/payments/{payment['id']}").json()
    assert out["status"] == "pending" and out["requires_review"] is True
    (credit,) = qr_api.get("/v1/bank-credits", params={"held": "true"}).json()["data"]
    assert credit["status"] == status and str(amount) in credit["reason"] and "110000" in credit["reason"]


@pytest.mark.parametrize("memo", ["chuyen tien le phi", "LP0000000000000"])
def test_unmatched_or_garbled_reference_is_held(qr_api: Api, memo: str) -> None:
    payment = _start(qr_api)
    assert _notify(qr_api, memo, 110_000).status_code == 200
    assert qr_api.get(f"/v1/payments/{payment['id']}").json()["status"] == "pending"
    (credit,) = _credits(qr_api)
    assert credit["status"] == "unmatched" and credit["payment_id"] is None and credit["memo"] == memo


def test_credit_after_the_payment_closed_is_held_as_late(qr_api: Api) -> None:
    payment = _start(qr_api)
    assert qr_api.post(f"/v1/payments/{payment['id']}/cancel").json()["status"] == "cancelled"
    _notify(qr_api, payment["gateway_reference"], 110_000)
    (credit,) = _credits(qr_api)
    assert credit["status"] == "late" and "cancelled" in credit["reason"]
    assert qr_api.get(f"/v1/payments/{payment['id']}").json()["requires_review"] is True


def test_forged_or_misdirected_notifications_change_nothing(qr_api: Api) -> None:
    payment = _start(qr_api)
    body = b'{"transaction_id":"X"}'
    r = qr_api.client.post(
        "/v1/gateways/vietqr/callback/AGC-Q",
        content=body,
        headers={SIGNATURE_HEADER: sign("wrong-secret-0123456789", body, int(time.time()))},
    )
    assert r.status_code == 401
    assert _notify(qr_api, payment["gateway_reference"], 110_000, account="999").status_code == 401
    assert _credits(qr_api) == []
    assert qr_api.get(f"/v1/payments/{payment['id']}").json()["status"] == "pending"


def test_unconfigured_method_is_a_clear_error(api: Api) -> None:
    with api.ctx.db.write() as s:
        from sqlalchemy import update

        from payments.agency.models import Agency

        s.execute(update(Agency).values(payment_methods=["sandbox", "vietqr"]))
    code = api.post("/v1/dossiers", dossier_body()).json()["code"]
    r = api.post("/v1/payments", payment_body(code, method="vietqr"))
    assert r.status_code == 422 and r.json()["code"] == "method_not_enabled" and "configured" in r.json()["detail"]
