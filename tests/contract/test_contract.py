"""The payment gateway contract: the same scenarios, through the service's HTTP API, for every adapter.

Each scenario is one test function, parametrized over the drivers (tests/contract/drivers.py) whose gateway can
take part in it, and run on SQLite and, when LEPHI_TEST_POSTGRES_URL is set, on PostgreSQL (``database_url``):

============================  =======  ======  =====  ====  =======  ======
scenario                      sandbox  stripe  vnpay  momo  zalopay  vietqr
============================  =======  ======  =====  ====  =======  ======
succeed by callback           x        x       x      x     x        x
decline -> failed             x        x       x      x
payer cancel -> cancelled     x        x       x      x
duplicate callback            x        x       x      x     x        x
forged callback               x        x       x      x     x        x
amount mismatch (under/over)  x        x       x      x     x        x
create times out, requery     x        x       x      x     x
5xx retried (create / query)           x c q   x q    x c q x c q
============================  =======  ======  =====  ====  =======  ======

ZaloPay calls back only when the payer has paid: a declined or expired order is learnt by its status query (see
tests/adapters/test_zalopay.py), so no decline or cancel callback is generated for it.
VietQR is a bank transfer: the bank notifies only money that arrived, so there is no decline or cancel callback, and
a transfer cannot be looked up at the bank, so there is no status query to settle a timed-out start (nor an outbound
call to fail). Those combinations are not generated for it at all. Its amount mismatch is not refused either: the
money is in the agency's account, so the credit is recorded and held as underpaid or overpaid for finance staff.
VNPay's pay URL is signed locally, so only its status query (QueryDR) can answer 5xx.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import respx
from fastapi.testclient import TestClient
from sqlalchemy import func, update
from sqlmodel import col, select

import adapters.http
from adapters.base import GatewayTechnicalError
from lephi.app import create_app
from lephi.container import build_container
from lephi.jobs import HANDLERS
from payments.auth.service import create_key
from payments.core.db import Database, make_engine
from payments.core.types import utcnow
from payments.outbox.models import OutboxJob
from payments.outbox.worker import Worker
from payments.payment.expiry import settle_by_query
from payments.payment.models import GatewayInbox, Payment, PaymentEvent
from payments.transfer.models import BankCredit
from tests.conftest import ALL_SCOPES, Api, make_settings
from tests.contract.drivers import AGENCY, DRIVERS, Driver, drivers, payment_row
from tests.factories import dossier_body, payment_body, seed_agency
from tests.fakes import FaultyGateway

ALL = drivers()


@pytest.fixture
def driver(request: pytest.FixtureRequest) -> Driver:
    return DRIVERS[request.param]()


@pytest.fixture
def api(driver: Driver, database_url: str, tmp_path: Path) -> Iterator[Api]:
    """The service for one agency whose only payment method is the driver's gateway, configured by its own
    gateways file; every outbound HTTP request goes to the driver's stand-in or fails the test."""
    with respx.mock(assert_all_called=False, assert_all_mocked=True) as router:
        setup = driver.setup(tmp_path, router)
        path = tmp_path / "gateways.toml"
        path.write_text(setup.gateways_toml)
        settings = make_settings(database_url, tmp_path, gateways_file=path)
        ctx = build_container(settings, Database(make_engine(settings.effective_database_url, settings)))
        with ctx.db.write() as s:
            agency = seed_agency(s, AGENCY, methods=setup.methods)
            _, key = create_key(s, AGENCY, "test", ALL_SCOPES)
        try:
            with TestClient(create_app(settings, ctx), raise_server_exceptions=False) as client:
                yield Api(client, ctx, key, agency.id, AGENCY)
        finally:
            ctx.close()
    assert driver.problems == [], "the gateway stand-in refused what the adapter sent"


def by_driver(names: list[str]) -> Any:
    return pytest.mark.parametrize("driver", names, indirect=True)


# --- what the database says ----------------------------------------------------------------------------------------
def events(api: Api, payment_id: str) -> list[PaymentEvent]:
    with api.ctx.db.read() as s:
        query = select(PaymentEvent).where(PaymentEvent.payment_id == payment_id).order_by(col(PaymentEvent.id))
        return list(s.exec(query))


def count(api: Api, model: Any) -> int:
    with api.ctx.db.read() as s:
        return int(s.exec(select(func.count()).select_from(model)).one())


def payment_out(api: Api, payment: dict[str, Any]) -> dict[str, Any]:
    r = api.get(f"/v1/payments/{payment['id']}")
    assert r.status_code == 200, r.text
    return dict(r.json())


def dossier_status(api: Api, payment: dict[str, Any]) -> str:
    r = api.get(f"/v1/dossiers/{payment['dossier_code']}")
    assert r.status_code == 200, r.text
    return str(r.json()["status"])


def run_requery(api: Api) -> None:
    """Run the payment.requery job now, as the worker would when its time comes."""
    with api.ctx.db.write() as s:
        stmt = update(OutboxJob).where(col(OutboxJob.kind) == "payment.requery")
        s.execute(stmt.values(run_after=utcnow() - timedelta(seconds=1)))
    assert Worker(api.ctx, HANDLERS).run_once() == 1


# --- callbacks -----------------------------------------------------------------------------------------------------
def settle_by_callback(driver: Driver, api: Api, outcome: str) -> tuple[dict[str, Any], dict[str, Any]]:
    payment = driver.start(api)
    before = len(events(api, payment["id"]))
    driver.expect_reply("accepted").check(driver.callback(api, payment, outcome))  # type: ignore[arg-type]
    out = payment_out(api, payment)
    assert out["status"] == outcome
    (event,) = events(api, payment["id"])[before:]
    assert (event.from_status, event.to_status, event.actor) == ("pending", outcome, f"gateway:{driver.name}")
    assert count(api, GatewayInbox) == 1
    return payment, out


@by_driver(ALL)
def test_succeeds_by_callback(driver: Driver, api: Api) -> None:
    payment, out = settle_by_callback(driver, api, "succeeded")
    assert out["succeeded_at"] and out["refundable_amount"] == payment["amount"] and out["next_url"] is None
    assert dossier_status(api, payment) == "paid"


@by_driver(drivers("decline"))
def test_decline_fails_the_payment(driver: Driver, api: Api) -> None:
    payment, out = settle_by_callback(driver, api, "failed")
    assert out["succeeded_at"] is None and dossier_status(api, payment) == "unpaid"
    assert driver.start(api)["status"] == "pending"  # the dossier can be paid by a new attempt


@by_driver(drivers("cancel"))
def test_payer_cancel_cancels_the_payment(driver: Driver, api: Api) -> None:
    payment, out = settle_by_callback(driver, api, "cancelled")
    assert out["succeeded_at"] is None and dossier_status(api, payment) == "unpaid"


@by_driver(ALL)
def test_duplicate_callback_is_answered_and_not_applied_twice(driver: Driver, api: Api) -> None:
    payment = driver.start(api)
    driver.expect_reply("accepted").check(driver.callback(api, payment, "succeeded", event_id="dup-1"))
    history, inbox = events(api, payment["id"]), count(api, GatewayInbox)
    driver.expect_reply("duplicate").check(driver.callback(api, payment, "succeeded", event_id="dup-1"))
    assert [e.id for e in events(api, payment["id"])] == [e.id for e in history]
    assert count(api, GatewayInbox) == inbox
    assert payment_out(api, payment)["status"] == "succeeded" and dossier_status(api, payment) == "paid"
    if driver.name == "vietqr":
        assert count(api, BankCredit) == 1  # the same bank transaction counts once


@by_driver(ALL)
def test_forged_callback_is_rejected_and_changes_nothing(driver: Driver, api: Api) -> None:
    payment = driver.start(api)
    history = [e.id for e in events(api, payment["id"])]
    driver.expect_reply("invalid_signature").check(driver.callback(api, payment, "succeeded", forged=True))
    out = payment_out(api, payment)
    assert out["status"] == "pending" and out["requires_review"] is False
    assert [e.id for e in events(api, payment["id"])] == history
    assert count(api, GatewayInbox) == 0 and count(api, BankCredit) == 0
    assert dossier_status(api, payment) == "unpaid"


@by_driver(ALL)
@pytest.mark.parametrize("delta", [-10_000, 10_000], ids=["under", "over"])
def test_amount_mismatch_is_not_paid(driver: Driver, api: Api, delta: int) -> None:
    payment = driver.start(api)
    before = len(events(api, payment["id"]))
    r = driver.callback(api, payment, "succeeded", amount=payment["amount"] + delta)
    driver.expect_reply("amount_mismatch").check(r)
    out = payment_out(api, payment)
    assert out["status"] == "pending" and out["succeeded_at"] is None and dossier_status(api, payment) == "unpaid"
    (event,) = events(api, payment["id"])[before:]
    assert event.kind == driver.mismatch_event and event.to_status is None  # recorded, no state change
    if driver.name == "vietqr":  # the money arrived: held for finance staff, with the reason
        assert out["requires_review"] is True
        (credit,) = api.get("/v1/bank-credits", params={"held": "true"}).json()["data"]
        assert credit["status"] == ("underpaid" if delta < 0 else "overpaid")
        assert credit["payment_id"] == payment["id"] and credit["amount"] == payment["amount"] + delta
    else:
        assert event.detail["expected"] == payment["amount"] and event.detail["got"] == payment["amount"] + delta


# --- the gateway does not answer -----------------------------------------------------------------------------------
@by_driver(drivers("status_query"))
@pytest.mark.parametrize("answer", ["pending", "succeeded"])
def test_create_timeout_leaves_the_attempt_and_the_status_query_settles_it(
    driver: Driver, api: Api, answer: str
) -> None:
    """The gateway created the payment but its answer was lost: the API says 503 and keeps the attempt as it is
    (never failed on a guess); the status query then learns from the gateway what became of it."""
    faulty = FaultyGateway(api.ctx.gateways.get(driver.name, AGENCY))
    faulty.after_call["start_payment"] = [GatewayTechnicalError("read timeout")]
    api.ctx.gateways.override(driver.name, faulty)  # type: ignore[arg-type]
    code = api.post("/v1/dossiers", dossier_body()).json()["code"]
    r = api.post("/v1/payments", payment_body(code, method=driver.name))
    assert r.status_code == 503 and r.json()["code"] == "gateway_unavailable", r.text
    with api.ctx.db.read() as s:
        (row,) = s.exec(select(Payment)).all()
    assert row.status == "created" and row.gateway_reference is None
    assert [e.kind for e in events(api, row.id)] == ["payment.created"]

    driver.gateway_status(api, row.id, answer)  # type: ignore[arg-type]
    run_requery(api)
    settled = payment_row(api, row.id)
    assert settled.status == answer, f"{driver.name}: the status query left the attempt {settled.status.value}"
    assert settled.gateway_reference, "the gateway's reference was not learnt from the status query"
    assert faulty.calls["query_status"] == 1 and faulty.calls["start_payment"] == 1
    history = events(api, row.id)
    assert history[-1].kind == "gateway.status_query" and history[-1].to_status == answer
    assert all(e.to_status != "failed" for e in history)
    assert dossier_status(api, {"dossier_code": code}) == ("paid" if answer == "succeeded" else "unpaid")


class Jitter:
    """Stands for the ``random`` module in adapters.http: records each draw's bounds and draws for real."""

    def __init__(self) -> None:
        self.bounds: list[tuple[float, float]] = []
        self.values: list[float] = []

    def uniform(self, a: float, b: float) -> float:
        value = random.uniform(a, b)
        self.bounds.append((a, b))
        self.values.append(value)
        return value


@pytest.mark.parametrize(
    ("driver", "call"),
    [pytest.param(name, call, id=f"{name}-{call}") for name in drivers("http") for call in DRIVERS[name].http_calls],
    indirect=["driver"],
)
def test_5xx_is_retried_with_backoff_and_jitter(
    driver: Driver, api: Api, call: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    jitter = Jitter()
    slept: list[float] = []
    monkeypatch.setattr(adapters.http, "random", jitter)
    driver.replace_sleep(api, slept.append)
    if call == "create":
        route = driver.fail_next("create", 2)
        payment = driver.start(api)  # 503, 503, then the gateway's answer: the payer gets the page
        assert route.call_count == 3
        assert len({driver.create_token(c.request) for c in route.calls}) == 1  # one idempotency token: one payment
        driver.expect_reply("accepted").check(driver.callback(api, payment, "succeeded"))
    else:
        payment = driver.start(api)
        driver.gateway_status(api, payment["id"], "succeeded")
        route = driver.fail_next("query", 2)
        assert settle_by_query(api.ctx, payment["id"], actor="test") == "succeeded"
        assert route.call_count == 3
    assert payment_out(api, payment)["status"] == "succeeded" and dossier_status(api, payment) == "paid"
    # Exponential backoff (base 0.25 s, doubled) with full jitter: each wait drawn from [0, cap], then slept.
    assert jitter.bounds == [(0, 0.25), (0, 0.5)]
    assert slept == jitter.values and all(0 <= v <= cap for v, (_, cap) in zip(slept, jitter.bounds, strict=True))
