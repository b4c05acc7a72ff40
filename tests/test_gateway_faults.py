"""What happens when the gateway times out, declines, or the process dies mid-request."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import func
from sqlmodel import select

from adapters.base import GatewayDeclinedError, GatewayTechnicalError
from payments.gateway.models import SandboxTransaction
from payments.payment.models import Payment
from tests.conftest import Api
from tests.factories import dossier_body, payment_body, sandbox_outcome
from tests.fakes import Crash, FaultyGateway


@pytest.fixture
def faulty(api: Api) -> FaultyGateway:
    gateway = FaultyGateway(api.ctx.gateways.get("sandbox"))
    api.ctx.gateways.override("sandbox", gateway)  # type: ignore[arg-type]
    return gateway


def _dossier(api: Api) -> str:
    return str(api.post("/v1/dossiers", dossier_body()).json()["code"])


def _count(api: Api, model: Any) -> int:
    with api.ctx.db.read() as s:
        return int(s.exec(select(func.count()).select_from(model)).one())


def test_start_timeout_leaves_the_attempt_and_a_retry_resumes_it(api: Api, faulty: FaultyGateway) -> None:
    code = _dossier(api)
    faulty.faults["start_payment"] = [GatewayTechnicalError("timeout")]
    r = api.post("/v1/payments", payment_body(code), key="k")
    assert r.status_code == 503 and r.json()["code"] == "gateway_unavailable"
    with api.ctx.db.read() as s:
        (payment,) = s.exec(select(Payment)).all()
    assert payment.status == "created"  # not failed on a guess
    r = api.post("/v1/payments", payment_body(code), key="k")
    assert r.status_code == 201 and r.json()["id"] == payment.id and r.json()["status"] == "pending"
    assert _count(api, Payment) == 1


def test_crash_after_gateway_call_reuses_the_same_gateway_attempt(api: Api, faulty: FaultyGateway) -> None:
    code = _dossier(api)
    faulty.after_call["start_payment"] = [Crash("died before the local commit")]
    r = api.post("/v1/payments", payment_body(code), key="k")
    assert r.status_code == 500 and r.json()["code"] == "internal_error"
    assert "Traceback" not in r.text
    r = api.post("/v1/payments", payment_body(code), key="k")
    assert r.status_code == 201 and r.json()["status"] == "pending"
    # The gateway was given the same idempotency token twice and created one transaction.
    assert _count(api, SandboxTransaction) == 1 and _count(api, Payment) == 1


def test_start_declined_fails_the_attempt(api: Api, faulty: FaultyGateway) -> None:
    code = _dossier(api)
    faulty.faults["start_payment"] = [GatewayDeclinedError("merchant disabled")]
    r = api.post("/v1/payments", payment_body(code))
    assert r.status_code == 201 and r.json()["status"] == "failed"
    events = api.get(f"/v1/payments/{r.json()['id']}").json()["events"]
    assert events[-1]["kind"] == "gateway.start_declined"
    assert api.post("/v1/payments", payment_body(code)).status_code == 201  # a new attempt is allowed


def _succeeded(api: Api) -> dict[str, Any]:
    code = _dossier(api)
    payment = api.post("/v1/payments", payment_body(code)).json()
    sandbox_outcome(api.client, api.ctx.settings, payment["gateway_reference"], "success")
    out = api.get(f"/v1/payments/{payment['id']}").json()
    assert out["status"] == "succeeded"
    return dict(out)


def test_cancel_refused_when_the_gateway_already_took_the_money(api: Api, faulty: FaultyGateway) -> None:
    code = _dossier(api)
    payment = api.post("/v1/payments", payment_body(code)).json()
    # The payer paid but the callback was lost: only a status query can tell.
    sandbox = faulty.inner
    sandbox._store.set_status(payment["gateway_reference"], "pending", "succeeded")  # type: ignore[attr-defined]
    r = api.post(f"/v1/payments/{payment['id']}/cancel")
    assert r.status_code == 409 and r.json()["code"] == "invalid_transition"
    assert api.get(f"/v1/payments/{payment['id']}").json()["status"] == "succeeded"


def test_cancel_a_pending_payment(api: Api) -> None:
    payment = api.post("/v1/payments", payment_body(_dossier(api))).json()
    r = api.post(f"/v1/payments/{payment['id']}/cancel")
    assert r.status_code == 200 and r.json()["status"] == "cancelled"
    assert api.post(f"/v1/payments/{payment['id']}/cancel").status_code == 409


def test_cancel_when_gateway_unreachable_changes_nothing(api: Api, faulty: FaultyGateway) -> None:
    payment = api.post("/v1/payments", payment_body(_dossier(api))).json()
    faulty.faults["cancel"] = [GatewayTechnicalError("down")]
    r = api.post(f"/v1/payments/{payment['id']}/cancel")
    assert r.status_code == 503
    assert api.get(f"/v1/payments/{payment['id']}").json()["status"] == "pending"


def test_partial_then_full_refund(api: Api) -> None:
    payment = _succeeded(api)
    r = api.post(f"/v1/payments/{payment['id']}/refunds", {"amount": 10_000, "reason": "một phần"})
    assert r.status_code == 201 and r.json()["status"] == "succeeded"
    out = api.get(f"/v1/payments/{payment['id']}").json()
    assert out["status"] == "partially_refunded" and out["refundable_amount"] == payment["amount"] - 10_000
    r = api.post(f"/v1/payments/{payment['id']}/refunds", {"amount": payment["amount"], "reason": "quá"})
    assert r.status_code == 422 and r.json()["refundable_amount"] == payment["amount"] - 10_000
    r = api.post(f"/v1/payments/{payment['id']}/refunds", {"amount": payment["amount"] - 10_000, "reason": "còn lại"})
    assert r.status_code == 201
    out = api.get(f"/v1/payments/{payment['id']}").json()
    assert out["status"] == "refunded" and out["refunded_amount"] == payment["amount"]
    assert api.get(f"/v1/dossiers/{payment['dossier_code']}").json()["status"] == "refunded"
    assert len(api.get(f"/v1/payments/{payment['id']}/refunds").json()) == 2
    r = api.post(f"/v1/payments/{payment['id']}/refunds", {"amount": 1, "reason": "x"})
    assert r.status_code == 409


def test_refund_of_unpaid_payment_is_refused(api: Api) -> None:
    payment = api.post("/v1/payments", payment_body(_dossier(api))).json()
    r = api.post(f"/v1/payments/{payment['id']}/refunds", {"amount": 1, "reason": "x"})
    assert r.status_code == 409 and r.json()["code"] == "invalid_transition"


def test_refund_declined_releases_the_reservation(api: Api, faulty: FaultyGateway) -> None:
    payment = _succeeded(api)
    faulty.faults["refund"] = [GatewayDeclinedError("not allowed")]
    r = api.post(f"/v1/payments/{payment['id']}/refunds", {"amount": 5_000, "reason": "x"})
    assert r.status_code == 201 and r.json()["status"] == "failed"
    out = api.get(f"/v1/payments/{payment['id']}").json()
    assert out["status"] == "succeeded" and out["refundable_amount"] == payment["amount"]


def test_refund_timeout_stays_pending_and_the_worker_completes_it(api: Api, faulty: FaultyGateway) -> None:
    from datetime import timedelta

    from sqlalchemy import update

    from lephi.jobs import HANDLERS
    from payments.core.types import utcnow
    from payments.outbox.models import OutboxJob
    from payments.outbox.worker import Worker

    payment = _succeeded(api)
    faulty.faults["refund"] = [GatewayTechnicalError("timeout")]
    r = api.post(f"/v1/payments/{payment['id']}/refunds", {"amount": 5_000, "reason": "x"})
    assert r.status_code == 201 and r.json()["status"] == "pending"
    # While pending, the reserved amount cannot be refunded a second time.
    assert api.get(f"/v1/payments/{payment['id']}").json()["refundable_amount"] == payment["amount"] - 5_000
    with api.ctx.db.write() as s:
        s.execute(update(OutboxJob).values(run_after=utcnow() - timedelta(seconds=1)))
    Worker(api.ctx, HANDLERS).run_once()
    refunds = api.get(f"/v1/payments/{payment['id']}/refunds").json()
    assert refunds[0]["status"] == "succeeded"
    assert api.get(f"/v1/payments/{payment['id']}").json()["status"] == "partially_refunded"


def test_timed_out_start_settled_by_requery_still_gives_the_payer_a_page(api: Api, faulty: FaultyGateway) -> None:
    from datetime import timedelta

    from sqlalchemy import update

    from lephi.jobs import HANDLERS
    from payments.core.types import utcnow
    from payments.outbox.models import OutboxJob
    from payments.outbox.worker import Worker

    code = _dossier(api)
    faulty.after_call["start_payment"] = [GatewayTechnicalError("answer lost")]
    assert api.post("/v1/payments", payment_body(code), key="k").status_code == 503
    with api.ctx.db.write() as s:
        s.execute(
            update(OutboxJob)
            .where(OutboxJob.kind == "payment.requery")
            .values(run_after=utcnow() - timedelta(seconds=1))
        )
    Worker(api.ctx, HANDLERS).run_once()  # the status query finds the attempt at the gateway: pending
    with api.ctx.db.read() as s:
        (payment,) = s.exec(select(Payment)).all()
    assert payment.status == "pending" and payment.next_url is None
    r = api.post("/v1/payments", payment_body(code), key="k")
    assert r.status_code == 201 and r.json()["id"] == payment.id and r.json()["next_url"]
    assert _count(api, SandboxTransaction) == 1
