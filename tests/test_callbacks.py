"""Gateway callbacks: only verified messages change state, once, and never backwards."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
from sqlalchemy import func
from sqlmodel import select

from adapters.sandbox import SIGNATURE_HEADER, sign
from payments.dossier.models import Dossier, DossierStatus
from payments.outbox.models import OutboxJob
from payments.payment import kinds as kinds_module
from payments.payment.models import GatewayInbox, Payment, PaymentEvent
from payments.webhooks.models import WebhookMessage
from tests.conftest import BACKENDS, Api
from tests.factories import dossier_body, payment_body, seed_agency
from tests.roundtrips import counted


def _pending_payment(api: Api) -> dict[str, Any]:
    code = api.post("/v1/dossiers", dossier_body()).json()["code"]
    r = api.post("/v1/payments", payment_body(code))
    assert r.status_code == 201
    return dict(r.json())


def _callback(
    api: Api,
    payment: dict[str, Any],
    status: str,
    *,
    event_id: str = "evt_1",
    amount: int | None = None,
    secret: str | None = None,
    timestamp: int | None = None,
    currency: str = "VND",
    reference: str | None = None,
) -> Any:
    body = json.dumps(
        {
            "event_id": event_id,
            "transaction_id": payment["gateway_reference"],
            "merchant_reference": reference or payment["id"],
            "status": status,
            "amount": payment["amount"] if amount is None else amount,
            "currency": currency,
        }
    ).encode()
    header = sign(secret or api.ctx.settings.sandbox_secret, body, timestamp or int(time.time()))
    return api.client.post(
        "/v1/gateways/sandbox/callback",
        content=body,
        headers={SIGNATURE_HEADER: header, "content-type": "application/json"},
    )


def _status(api: Api, payment: dict[str, Any]) -> str:
    return str(api.get(f"/v1/payments/{payment['id']}").json()["status"])


def _events(api: Api, payment_id: str) -> int:
    with api.ctx.db.read() as s:
        return int(
            s.exec(select(func.count()).select_from(PaymentEvent).where(PaymentEvent.payment_id == payment_id)).one()
        )


@pytest.mark.parametrize("case", ["wrong_secret", "stale", "future", "no_header", "tampered"])
def test_unverifiable_callbacks_are_rejected_and_change_nothing(api: Api, case: str) -> None:
    payment = _pending_payment(api)
    before = _events(api, payment["id"])
    if case == "wrong_secret":
        r = _callback(api, payment, "succeeded", secret="not-the-secret")
    elif case == "stale":
        r = _callback(api, payment, "succeeded", timestamp=int(time.time()) - 301)
    elif case == "future":
        # Well past the window: a slow machine must not bring it back inside before it is checked.
        r = _callback(api, payment, "succeeded", timestamp=int(time.time()) + 400)
    elif case == "no_header":
        r = api.client.post("/v1/gateways/sandbox/callback", json={"status": "succeeded"})
    else:
        body = json.dumps(
            {
                "event_id": "e",
                "transaction_id": payment["gateway_reference"],
                "merchant_reference": payment["id"],
                "status": "failed",
                "amount": payment["amount"],
                "currency": "VND",
            }
        ).encode()
        header = sign(api.ctx.settings.sandbox_secret, body, int(time.time()))
        r = api.client.post(
            "/v1/gateways/sandbox/callback",
            content=body.replace(b"failed", b"succeeded"),
            headers={SIGNATURE_HEADER: header},
        )
    assert r.status_code == 401
    assert _status(api, payment) == "pending"
    assert _events(api, payment["id"]) == before
    with api.ctx.db.read() as s:
        assert s.exec(select(func.count()).select_from(GatewayInbox)).one() == 0


def test_valid_callback_succeeds_once_and_duplicate_changes_nothing(api: Api) -> None:
    payment = _pending_payment(api)
    assert _callback(api, payment, "succeeded").status_code == 200
    events = _events(api, payment["id"])
    r = _callback(api, payment, "succeeded")
    assert r.status_code == 200 and r.json()["result"] == "duplicate"
    assert _events(api, payment["id"]) == events
    assert _status(api, payment) == "succeeded"


def test_same_status_under_a_new_event_id_is_not_a_second_transition(api: Api) -> None:
    payment = _pending_payment(api)
    _callback(api, payment, "succeeded", event_id="a")
    events = _events(api, payment["id"])
    assert _callback(api, payment, "succeeded", event_id="b").json()["result"] == "duplicate"
    assert _events(api, payment["id"]) == events


def test_failed_after_succeeded_never_moves_backwards(api: Api) -> None:
    payment = _pending_payment(api)
    _callback(api, payment, "succeeded", event_id="a")
    r = _callback(api, payment, "failed", event_id="b")
    assert r.status_code == 200 and r.json()["result"] == "already_final"
    assert _status(api, payment) == "succeeded"
    kinds = [e["kind"] for e in api.get(f"/v1/payments/{payment['id']}").json()["events"]]
    assert kinds[-1] == "gateway.status_ignored"


def test_amount_mismatch_is_rejected_and_logged(api: Api, capfd: pytest.CaptureFixture[str]) -> None:
    payment = _pending_payment(api)
    r = _callback(api, payment, "succeeded", amount=payment["amount"] - 1)
    assert r.status_code == 422 and r.json()["result"] == "amount_mismatch"
    assert _status(api, payment) == "pending"
    assert "gateway.amount_mismatch" in capfd.readouterr().err
    detail = api.get(f"/v1/payments/{payment['id']}").json()["events"][-1]
    assert detail["kind"] == "gateway.amount_mismatch" and detail["to_status"] is None


def test_currency_mismatch_is_rejected(api: Api) -> None:
    payment = _pending_payment(api)
    assert _callback(api, payment, "succeeded", currency="USD").json()["result"] == "amount_mismatch"
    assert _status(api, payment) == "pending"


def test_unknown_order_is_rejected(api: Api) -> None:
    payment = _pending_payment(api)
    r = _callback(api, payment, "succeeded", reference="pay_doesnotexist")
    assert r.status_code == 422 and r.json()["result"] == "unknown_order"
    assert _status(api, payment) == "pending"


def test_unknown_gateway_is_404(api: Api) -> None:
    r = api.client.post("/v1/gateways/nope/callback", content=b"{}")
    assert r.status_code == 404 and r.json()["code"] == "unknown_gateway"


def test_late_success_after_expiry_is_flagged_not_lost(api: Api) -> None:
    payment = _pending_payment(api)
    with api.ctx.db.write() as s:
        from payments.payment.lifecycle import transition
        from payments.payment.models import Payment
        from payments.payment.states import PaymentStatus

        row = s.get(Payment, payment["id"])
        assert row is not None
        transition(s, row, PaymentStatus.expired, actor="test", kind="payment.expired")
    r = _callback(api, payment, "succeeded")
    assert r.json()["result"] == "already_final"
    out = api.get(f"/v1/payments/{payment['id']}").json()
    assert out["status"] == "expired" and out["requires_review"] is True
    assert out["events"][-1]["kind"] == "gateway.late_success"


def test_callback_before_and_after_browser_return(api: Api) -> None:
    """The return page only displays; the outcome comes from the server-to-server callback alone."""
    payment = _pending_payment(api)
    page = api.client.get(payment["next_url"])
    assert page.status_code == 200
    assert _status(api, payment) == "pending"  # viewing pages changes nothing
    _callback(api, payment, "succeeded")
    assert _status(api, payment) == "succeeded"


def test_callbacks_arrive_on_the_agency_route_and_another_agencys_route_cannot_settle(api: Api) -> None:
    payment = _pending_payment(api)
    with api.ctx.db.write() as s:
        seed_agency(s, "AGC-OTHER")
    with api.ctx.db.read() as s:
        rows = s.exec(select(GatewayInbox)).all()
    assert rows == []
    body = json.dumps(
        {
            "event_id": "e-x",
            "transaction_id": payment["gateway_reference"],
            "merchant_reference": payment["id"],
            "status": "succeeded",
            "amount": payment["amount"],
            "currency": "VND",
        }
    ).encode()
    headers = {SIGNATURE_HEADER: sign(api.ctx.settings.sandbox_secret, body, int(time.time()))}
    r = api.client.post("/v1/gateways/sandbox/callback/AGC-OTHER", content=body, headers=headers)
    assert r.json()["result"] == "unknown_order" and _status(api, payment) == "pending"
    headers = {SIGNATURE_HEADER: sign(api.ctx.settings.sandbox_secret, body.replace(b"e-x", b"e-y"), int(time.time()))}
    r = api.client.post("/v1/gateways/sandbox/callback/AGC-A", content=body.replace(b"e-x", b"e-y"), headers=headers)
    assert r.json()["result"] == "accepted" and _status(api, payment) == "succeeded"


def test_a_success_that_would_be_a_second_payment_is_not_dropped(api: Api, capfd: pytest.CaptureFixture[str]) -> None:
    """If a success ever broke the one-paid-payment-per-dossier rule, it is neither applied nor taken for a
    duplicate: the gateway is asked to send it again and the payment is flagged for a person."""
    from payments.payment.models import Payment

    first = _pending_payment(api)
    _callback(api, first, "succeeded", event_id="a")
    with api.ctx.db.write() as s:  # an attempt that slipped past the one-live-attempt rule
        row = s.get(Payment, first["id"])
        assert row is not None
        s.add(
            Payment(
                agency_id=row.agency_id,
                dossier_id=row.dossier_id,
                gateway="sandbox",
                amount=row.amount,
                gateway_token="gtk_x",
                gateway_reference="sbx_second",
                return_url=row.return_url,
                description="x",
                expires_at=row.expires_at,
                status="pending",
                id="pay_second",
            )
        )
    second = {**first, "id": "pay_second", "gateway_reference": "sbx_second"}
    r = _callback(api, second, "succeeded", event_id="b")
    assert r.status_code == 500
    out = api.get("/v1/payments/pay_second").json()
    assert out["status"] == "pending" and out["requires_review"] is True
    assert "gateway.callback.conflict" in capfd.readouterr().err
    with api.ctx.db.read() as s:
        assert s.exec(select(GatewayInbox).where(GatewayInbox.event_id == "b")).first() is None  # not swallowed


@pytest.mark.postgres
@pytest.mark.settings(db_async=False)  # psycopg's pipeline; asyncpg on the event loop sends each statement alone
@pytest.mark.parametrize("database_url", [b for b in BACKENDS if b == "postgres"], indirect=True)
def test_a_success_callback_on_postgresql_is_five_round_trips(api: Api) -> None:
    """BEGIN, the inbox row (a repeat fails there, at once), the payment, the guarded status change; then the event,
    the webhook message, the outbox jobs, the NOTIFY, the dossier marked paid and the inbox outcome all go with the
    COMMIT. One round trip a statement was eleven."""
    payment = _pending_payment(api)
    with counted(api.ctx.db.engine) as trips:
        assert _callback(api, payment, "succeeded").json()["result"] == "accepted"
    assert trips.count == 5
    assert _status(api, payment) == "succeeded"
    with api.ctx.db.read() as s:
        kinds = s.exec(select(PaymentEvent.kind).where(PaymentEvent.payment_id == payment["id"])).all()
        assert "gateway.callback" in kinds
        assert s.exec(select(GatewayInbox.outcome).where(GatewayInbox.gateway == "sandbox")).all() == ["accepted"]
        dossier = s.exec(select(Dossier).join(Payment).where(Payment.id == payment["id"])).one()
        assert dossier.status is DossierStatus.paid
        jobs = s.exec(select(OutboxJob.kind)).all()
        assert kinds_module.SUCCEEDED in jobs
        assert s.exec(select(WebhookMessage.event_type)).all() == ["payment.succeeded"]
