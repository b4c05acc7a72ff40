"""The whole path over the API: dossier -> payment -> sandbox page -> signed callback -> status and events."""

from __future__ import annotations

import re

import pytest

from tests.conftest import Api
from tests.factories import dossier_body, page_form, payment_body


def _pay(api: Api, outcome: str) -> dict:
    r = api.post("/v1/dossiers", dossier_body(copies=2))
    assert r.status_code == 201, r.text
    dossier = r.json()
    assert dossier["total_amount"] == 110_000
    r = api.post("/v1/payments", payment_body(dossier["code"]), key="create-1")
    assert r.status_code == 201, r.text
    payment = r.json()
    assert payment["status"] == "pending" and payment["amount"] == 110_000
    page = api.client.get(payment["next_url"])
    assert page.status_code == 200 and "110.000" in page.text
    action = re.search(r'action="([^"]+)"', page.text)
    assert action
    r = api.client.post(action.group(1), data=page_form(page.text, outcome=outcome), follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "https://portal.example.gov.vn/done"
    return api.get(f"/v1/payments/{payment['id']}").json()


def test_success_has_complete_history(api: Api) -> None:
    payment = _pay(api, "success")
    assert payment["status"] == "succeeded"
    kinds = [(e["kind"], e["from_status"], e["to_status"]) for e in payment["events"]]
    assert kinds == [
        ("payment.created", None, "created"),
        ("gateway.started", "created", "pending"),
        ("gateway.callback", "pending", "succeeded"),
    ]
    assert payment["events"][2]["actor"] == "gateway:sandbox"
    assert payment["refundable_amount"] == 110_000
    dossier = api.get(f"/v1/dossiers/{payment['dossier_code']}").json()
    assert dossier["status"] == "paid" and dossier["paid_at"]


@pytest.mark.parametrize(("outcome", "status"), [("decline", "failed"), ("cancel", "cancelled")])
def test_decline_and_cancel(api: Api, outcome: str, status: str) -> None:
    payment = _pay(api, outcome)
    assert payment["status"] == status
    assert payment["next_url"] is None
    assert api.get(f"/v1/dossiers/{payment['dossier_code']}").json()["status"] == "unpaid"


def test_leave_pending_then_pay_again_is_refused(api: Api) -> None:
    payment = _pay(api, "pending")
    assert payment["status"] == "pending"
    r = api.post("/v1/payments", payment_body(payment["dossier_code"]))
    assert r.status_code == 409 and r.json()["code"] == "payment_in_progress"
    assert r.json()["payment_id"] == payment["id"]


def test_failed_attempt_allows_a_new_one(api: Api) -> None:
    payment = _pay(api, "decline")
    r = api.post("/v1/payments", payment_body(payment["dossier_code"]))
    assert r.status_code == 201 and r.json()["id"] != payment["id"]
