"""Dossier fee orders: the server computes the fee; a dossier with a payment under way cannot change."""

from __future__ import annotations

import re

from sqlalchemy import func
from sqlmodel import select

from payments.payment.models import Payment
from tests.conftest import Api
from tests.factories import dossier_body, payment_body, sandbox_outcome


def test_create_computes_fee_lines_and_total(api: Api) -> None:
    r = api.post("/v1/dossiers", dossier_body("HS-1", copies=3))
    assert r.status_code == 201
    d = r.json()
    assert d["total_amount"] == 115_000 and d["currency"] == "VND" and d["status"] == "unpaid"
    assert [(line["fee_code"], line["quantity"], line["amount"]) for line in d["fee_lines"]] == [
        ("LE_PHI", 1, 100_000),
        ("BAN_SAO", 3, 15_000),
    ]
    assert d["pay_url"].startswith("http://testserver/pay/") and "HS-1" not in d["pay_url"]


def test_update_by_code_recomputes(api: Api) -> None:
    api.post("/v1/dossiers", dossier_body("HS-2", copies=1))
    r = api.post("/v1/dossiers", dossier_body("HS-2", copies=4))
    assert r.status_code == 200 and r.json()["total_amount"] == 120_000
    assert len(api.get("/v1/dossiers").json()["data"]) == 1


def test_update_refused_while_a_payment_is_live_or_done(api: Api) -> None:
    api.post("/v1/dossiers", dossier_body("HS-3"))
    payment = api.post("/v1/payments", payment_body("HS-3")).json()
    r = api.post("/v1/dossiers", dossier_body("HS-3", copies=9))
    assert r.status_code == 409 and r.json()["code"] == "dossier_locked" and r.json()["payment_id"] == payment["id"]
    sandbox_outcome(api.client, api.ctx.settings, payment["gateway_reference"], "success")
    r = api.post("/v1/dossiers", dossier_body("HS-3", copies=9))
    assert r.status_code == 409 and r.json()["code"] == "dossier_locked"
    assert api.get("/v1/dossiers/HS-3").json()["total_amount"] == 110_000
    r = api.post("/v1/payments", payment_body("HS-3"))
    assert r.status_code == 409 and r.json()["code"] == "dossier_not_payable"


def test_schedule_errors(api: Api) -> None:
    cases = [
        (dossier_body(procedure_code="9.999999"), "procedure_code"),
        (dossier_body(items=[{"fee_code": "NOPE", "quantity": 1}]), "items"),
        (dossier_body(items=[{"fee_code": "BAN_SAO", "quantity": 51}]), "items"),
        (dossier_body(items=[{"fee_code": "BAN_SAO", "quantity": 1}, {"fee_code": "BAN_SAO", "quantity": 2}]), "items"),
    ]
    for body, field in cases:
        r = api.post("/v1/dossiers", body)
        assert r.status_code == 422 and r.json()["code"] == "validation_error", r.text
        assert r.json()["field"] == field
    assert api.get("/v1/dossiers").json()["data"] == []


def test_method_not_enabled(api: Api) -> None:
    api.post("/v1/dossiers", dossier_body("HS-4"))
    r = api.post("/v1/payments", payment_body("HS-4", method="vnpay"))
    assert r.status_code == 422 and r.json()["code"] == "method_not_enabled"
    with api.ctx.db.read() as s:
        assert s.exec(select(func.count()).select_from(Payment)).one() == 0


def test_list_filters_and_pages_without_gaps_or_repeats(api: Api) -> None:
    codes = [f"HS-L{i}" for i in range(7)]
    for code in codes:
        api.post("/v1/dossiers", dossier_body(code))
    api.post("/v1/payments", payment_body("HS-L0"))
    seen: list[str] = []
    cursor = None
    while True:
        params = {"limit": 3, **({"cursor": cursor} if cursor else {})}
        page = api.get("/v1/dossiers", params=params).json()
        seen += [d["code"] for d in page["data"]]
        cursor = page["next_cursor"]
        if not cursor:
            break
    assert sorted(seen) == sorted(codes) and len(seen) == len(set(seen))
    assert seen[0] == "HS-L6"  # newest first
    assert api.get("/v1/dossiers", params={"status": "paid"}).json()["data"] == []
    payments = api.get("/v1/payments", params={"dossier_code": "HS-L0", "status": "pending"}).json()["data"]
    assert len(payments) == 1
    assert api.get("/v1/payments", params={"method": "other"}).json()["data"] == []


def test_payer_page_double_submit_starts_one_payment(api: Api) -> None:
    url = api.post("/v1/dossiers", dossier_body("HS-5")).json()["pay_url"].replace("http://testserver", "")
    page = api.client.get(url)
    assert page.status_code == 200 and "110.000\u00a0₫" in page.text and "Thanh toán" in page.text
    form_key = re.search(r'name="form_key" value="([^"]+)"', page.text)
    assert form_key
    csrf = re.search(r'name="csrf" value="([^"]+)"', page.text)
    assert csrf
    form = {"method": "sandbox", "form_key": form_key.group(1), "csrf": csrf.group(1)}
    first = api.client.post(url, data=form, follow_redirects=False)
    second = api.client.post(url, data=form, follow_redirects=False)
    assert first.status_code == second.status_code == 303
    assert first.headers["location"] == second.headers["location"]
    # A new form (another tab) is sent to the live attempt instead of starting a second one.
    third = api.client.post(url, data={**form, "form_key": "another-form-key"}, follow_redirects=False)
    assert third.headers["location"] == first.headers["location"]
    with api.ctx.db.read() as s:
        assert s.exec(select(func.count()).select_from(Payment)).one() == 1
    english = api.client.get(url, params={"lang": "en"})
    assert "Pay the dossier fee" in english.text


def test_unknown_pay_link_is_404(api: Api) -> None:
    r = api.client.get("/pay/not-a-token")
    assert r.status_code == 404
