"""ZaloPay through the service, against the stand-in of its HTTP API (tests/contract/drivers.py): hostile callbacks
get ZaloPay's reply form and change nothing, a refund goes through the usual refund flow (pending at ZaloPay, then
completed by the worker, never sent twice), and nothing about the payer reaches ZaloPay."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

import pytest
import respx
from sqlalchemy import func, select, update

from lephi.jobs import HANDLERS
from lephi.tables import metadata
from payments.core.context import AppContext
from payments.core.types import utcnow
from payments.outbox.models import OutboxJob
from payments.outbox.worker import Worker
from tests.conftest import Api, agency_api
from tests.contract.drivers import AGENCY, ZaloPayDriver, _zalo_mac
from tests.factories import dossier_body, payment_body

CALLBACK = f"/v1/gateways/zalopay/callback/{AGENCY}"
REFUSED = {"return_code": -1, "return_message": "mac not equal"}


@pytest.fixture
def zalo(tmp_path: Path) -> Iterator[tuple[ZaloPayDriver, respx.MockRouter]]:
    with respx.mock(assert_all_mocked=True, assert_all_called=False) as router:
        driver = ZaloPayDriver()
        yield driver, router
    assert driver.problems == [], "the ZaloPay stand-in refused what the adapter sent"


@pytest.fixture
def api(zalo: tuple[ZaloPayDriver, respx.MockRouter], database_url: str, tmp_path: Path) -> Iterator[Api]:
    driver, router = zalo
    setup = driver.setup(tmp_path, router)
    with agency_api(database_url, tmp_path, AGENCY, setup.methods, setup.gateways_toml) as api:
        yield api


@pytest.fixture
def driver(zalo: tuple[ZaloPayDriver, respx.MockRouter]) -> ZaloPayDriver:
    return zalo[0]


def count_rows(ctx: AppContext) -> dict[str, int]:
    with ctx.db.read() as s:
        return {
            t.name: int(s.execute(select(func.count()).select_from(t)).scalar_one()) for t in metadata.sorted_tables
        }


def signed(data: str, key: str = "kLtgPl8HHhfvMuDHPwKfgfsY4Ydm9eIz", kind: Any = 1) -> bytes:
    return json.dumps({"data": data, "mac": _zalo_mac(key, "{d}", {"d": data}), "type": kind}).encode()


def good_data(payment: dict[str, Any], **changes: Any) -> str:
    return json.dumps(
        {
            "app_id": 2553,
            "app_trans_id": payment["gateway_reference"],
            "app_time": 1,
            "app_user": "lephi",
            "amount": payment["amount"],
            "embed_data": "{}",
            "item": "[]",
            "zp_trans_id": 250102000000001,
            "server_time": 2,
            **changes,
        }
    )


def hostile_bodies(payment: dict[str, Any]) -> dict[str, bytes]:
    return {
        "bad mac": signed(good_data(payment), key="PcY4iZIKFCIdgZvA6ueMcMHHUbRLYjPL"),  # key1 is not key2
        "wrong app_id": signed(good_data(payment, app_id=2554)),
        "unknown type": signed(good_data(payment), kind=5),
        "float amount": signed(good_data(payment, amount=float(payment["amount"]))),
        "no zp_trans_id": signed(good_data(payment, zp_trans_id=None)),
        "data not JSON": signed("{not json"),
        "data a list": signed("[]"),
        "body not JSON": b"{",
        "body empty": b"",
        "body a list": b"[1]",
        "no mac": json.dumps({"data": good_data(payment), "type": 1}).encode(),
        "nested": b"[" * 50_000,
    }


def test_hostile_callbacks_get_zalopays_refusal_and_change_nothing(api: Api, driver: ZaloPayDriver) -> None:
    payment = driver.start(api)
    before = count_rows(api.ctx)
    for name, body in hostile_bodies(payment).items():
        r = api.client.post(CALLBACK, content=body, headers={"content-type": "application/json"})
        assert (r.status_code, r.json()) == (200, REFUSED), name
    assert count_rows(api.ctx) == before
    assert api.get(f"/v1/payments/{payment['id']}").json()["status"] == "pending"
    # A refused message did not use up anything: the genuine callback is still accepted.
    r = api.client.post(CALLBACK, content=signed(good_data(payment)), headers={"content-type": "application/json"})
    assert r.json() == {"return_code": 1, "return_message": "success"}
    assert api.get(f"/v1/payments/{payment['id']}").json()["status"] == "succeeded"


def test_a_replayed_callback_is_answered_as_handled_and_applied_once(api: Api, driver: ZaloPayDriver) -> None:
    payment = driver.start(api)
    body = signed(good_data(payment))
    assert api.client.post(CALLBACK, content=body).json()["return_code"] == 1
    after_first = count_rows(api.ctx)
    for _ in range(3):
        assert api.client.post(CALLBACK, content=body).json() == {"return_code": 2, "return_message": "already handled"}
    assert count_rows(api.ctx) == after_first


def test_an_agreement_callback_is_acknowledged_and_changes_nothing(api: Api, driver: ZaloPayDriver) -> None:
    payment = driver.start(api)
    before = count_rows(api.ctx)
    r = api.client.post(CALLBACK, content=signed(good_data(payment), kind=2))
    assert r.json() == {"return_code": 1, "return_message": "success"}  # verified: acknowledged so it is not resent
    assert count_rows(api.ctx) == before


def test_a_callback_for_an_order_lephi_never_made_is_refused(api: Api, driver: ZaloPayDriver) -> None:
    payment = driver.start(api)
    r = api.client.post(CALLBACK, content=signed(good_data(payment, app_trans_id="250102_unknown")))
    assert (r.status_code, r.json()) == (200, {"return_code": -1, "return_message": "order not found"})
    assert api.get(f"/v1/payments/{payment['id']}").json()["status"] == "pending"


def test_nothing_about_the_payer_reaches_zalopay(api: Api, driver: ZaloPayDriver) -> None:
    payer = {"name": "Nguyễn Văn An", "email": "an@example.com", "phone": "0912345678", "tax_code": "0101234567"}
    code = api.post("/v1/dossiers", dossier_body(payer=payer)).json()["code"]
    assert api.post("/v1/payments", payment_body(code, method="zalopay")).status_code == 201
    (call,) = driver.zalopay.create_route.calls
    sent = dict(parse_qsl(call.request.content.decode()))
    text = json.dumps(sent, ensure_ascii=False)
    for value in payer.values():
        assert value not in text
    assert sent["app_user"] == "lephi" and sent["description"] == f"Le phi ho so {code}"


def run_jobs(api: Api) -> None:
    with api.ctx.db.write() as s:
        s.execute(update(OutboxJob).values(run_after=utcnow() - timedelta(seconds=1)))
    while Worker(api.ctx, HANDLERS).run_once():
        pass


def test_a_refund_is_pending_at_zalopay_then_completed_by_the_worker(api: Api, driver: ZaloPayDriver) -> None:
    payment = driver.start(api)
    driver.expect_reply("accepted").check(driver.callback(api, payment, "succeeded"))
    driver.gateway_status(api, payment["id"], "succeeded")  # what ZaloPay's order query now answers
    r = api.post(f"/v1/payments/{payment['id']}/refunds", {"amount": 10_000, "reason": "Thu thừa"})
    assert r.status_code == 201 and r.json()["status"] == "pending", r.text
    assert driver.zalopay.refund_route.call_count == 1
    run_jobs(api)  # still in progress at ZaloPay: the retry asks, and does not send it again
    assert api.get(f"/v1/payments/{payment['id']}/refunds").json()[0]["status"] == "pending"
    driver.zalopay.process_refunds()
    run_jobs(api)
    (refund,) = api.get(f"/v1/payments/{payment['id']}/refunds").json()
    assert refund["status"] == "succeeded"
    assert api.get(f"/v1/payments/{payment['id']}").json()["status"] == "partially_refunded"
    assert driver.zalopay.refund_route.call_count == 1  # one refund at ZaloPay, whatever the retries


def test_a_refund_zalopay_refuses_fails_and_frees_the_amount(api: Api, driver: ZaloPayDriver) -> None:
    payment = driver.start(api)
    driver.expect_reply("accepted").check(driver.callback(api, payment, "succeeded"))
    driver.gateway_status(api, payment["id"], "succeeded")
    api.post(f"/v1/payments/{payment['id']}/refunds", {"amount": 10_000, "reason": "x"})
    driver.zalopay.refund_result = 2
    driver.zalopay.process_refunds()
    run_jobs(api)
    (refund,) = api.get(f"/v1/payments/{payment['id']}/refunds").json()
    assert refund["status"] == "failed"
    assert api.get(f"/v1/payments/{payment['id']}").json()["refundable_amount"] == payment["amount"]
