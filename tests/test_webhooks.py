"""Signed notifications to client systems (Standard Webhooks), delivered to a real HTTP server on loopback: what is
sent, how it is signed, retries with the same message id, failures kept and retried by staff, and bad registrations
refused without storing anything. Loopback is no place for webhooks by default (tests/test_webhook_targets.py): these
tests open it the way an operator opens a host of their own network, with LEPHI_WEBHOOK_ALLOWED_PRIVATE_HOSTS."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlmodel import func, select

from lephi.jobs import HANDLERS
from lephi.settings import Settings
from payments.outbox.worker import Worker
from payments.webhooks.models import WebhookDelivery, WebhookEndpoint, WebhookMessage
from payments.webhooks.service import emit, verify
from tests.conftest import Api, make_settings
from tests.factories import dossier_body, payment_body, sandbox_outcome, seed_agency

MANAGER = ["webhooks:write"]
# Nothing listens on the discard port: a connection there is refused.
CLOSED_PORT = 9


@dataclass
class Receiver:
    """A client system's endpoint: records every request and answers with the next scripted status."""

    url: str = ""
    port: int = 0
    statuses: list[int] = field(default_factory=list)
    delay: float = 0.0
    requests: list[tuple[dict[str, str], str]] = field(default_factory=list)

    def bodies(self) -> list[dict[str, Any]]:
        return [json.loads(body) for _, body in self.requests]


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    state = Receiver()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["content-length"])).decode()
            state.requests.append(({k.lower(): v for k, v in self.headers.items()}, body))
            time.sleep(state.delay)
            self.send_response(state.statuses.pop(0) if state.statuses else 204)
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    state.port = server.server_address[1]
    state.url = f"http://127.0.0.1:{state.port}/lephi/events"
    yield state
    server.shutdown()
    server.server_close()


@pytest.fixture
def settings(database_url: str, tmp_path: Path, receiver: Receiver) -> Settings:
    return make_settings(
        database_url,
        tmp_path,
        webhook_allowed_private_hosts=["127.0.0.1/32"],
        webhook_allowed_ports=[receiver.port, CLOSED_PORT],
    )


def _as(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def _register(api: Api, url: str, **extra: Any) -> Any:
    return api.post("/v1/webhook-endpoints", {"url": url, **extra}, headers=_as(api.new_key(MANAGER)))


def _pay(api: Api, outcome: str = "success") -> dict[str, Any]:
    code = api.post("/v1/dossiers", dossier_body()).json()["code"]
    payment = api.post("/v1/payments", payment_body(code)).json()
    sandbox_outcome(api.client, api.ctx.settings, payment["gateway_reference"], outcome)
    return dict(payment)


def _drain(api: Api, rounds: int = 6) -> None:
    worker = Worker(api.ctx, HANDLERS)
    for _ in range(rounds):
        worker.run_once()


def _independent_signature(secret: str, headers: dict[str, str], body: str) -> str:
    """Computed here from the specification, not with the service's own function."""
    key = base64.b64decode(secret.split("_", 1)[1])
    signed = f"{headers['webhook-id']}.{headers['webhook-timestamp']}.{body}".encode()
    return "v1," + base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()


def _deliveries(api: Api) -> list[WebhookDelivery]:
    with api.ctx.db.read() as s:
        return list(s.exec(select(WebhookDelivery)))


def test_a_paid_dossier_sends_signed_payment_and_receipt_events(api: Api, receiver: Receiver) -> None:
    r = _register(api, receiver.url)
    assert r.status_code == 201, r.text
    endpoint = r.json()
    secret = endpoint["secret"]
    assert secret.startswith("whsec_") and len(base64.b64decode(secret[6:])) == 24
    payment = _pay(api)
    _drain(api)
    kinds = sorted(b["type"] for b in receiver.bodies())
    assert kinds == ["payment.succeeded", "receipt.issued"]
    for headers, body in receiver.requests:
        assert headers["webhook-signature"] == _independent_signature(secret, headers, body)
        assert verify(secret, headers, body)
        assert abs(int(headers["webhook-timestamp"]) - time.time()) < 60
        assert json.loads(body)["id"] == headers["webhook-id"]
        assert headers["content-type"] == "application/json"
    by_type = {b["type"]: b["data"] for b in receiver.bodies()}
    assert by_type["payment.succeeded"]["payment_id"] == payment["id"]
    assert by_type["payment.succeeded"]["amount"] == payment["amount"]
    receipt = by_type["receipt.issued"]
    assert receipt["payment_id"] == payment["id"] and receipt["purpose"] == "original"
    assert api.get(f"/v1/receipts/{receipt['id']}").json()["lookup_code"] == receipt["lookup_code"]
    # Payer's personal data is not sent: the client system already has it, a webhook log need not.
    assert "Nguyễn Văn An" not in "".join(body for _, body in receiver.requests)
    # The secret is shown once only.
    listed = api.get("/v1/webhook-endpoints", headers=_as(api.new_key(MANAGER))).json()
    assert [e["id"] for e in listed] == [endpoint["id"]] and listed[0]["secret"] is None
    assert {d.status.value for d in _deliveries(api)} == {"delivered"}


def test_a_tampered_body_or_an_old_timestamp_does_not_verify(api: Api, receiver: Receiver) -> None:
    secret = _register(api, receiver.url).json()["secret"]
    _pay(api)
    _drain(api)
    headers, body = receiver.requests[0]
    assert verify(secret, headers, body)
    assert not verify(secret, headers, body.replace("succeeded", "failed"))
    assert not verify(secret, {**headers, "webhook-timestamp": str(int(headers["webhook-timestamp"]) - 301)}, body)
    other = "whsec_" + base64.b64encode(b"x" * 24).decode()
    assert not verify(other, headers, body)
    # A receiver following this reference never raises on missing headers: it answers "not verified".
    assert not verify(secret, {}, body)
    assert not verify(secret, {k: v for k, v in headers.items() if k != "webhook-id"}, body)


def test_event_type_filter_and_disabled_endpoints(api: Api, receiver: Receiver) -> None:
    endpoint = _register(api, receiver.url, event_types=["receipt.issued"]).json()
    _pay(api)
    _drain(api)
    assert [b["type"] for b in receiver.bodies()] == ["receipt.issued"]
    key = api.new_key(MANAGER)
    r = api.client.delete(f"/v1/webhook-endpoints/{endpoint['id']}", headers=_as(key))
    assert r.status_code == 200 and r.json()["enabled"] is False
    _pay(api)
    _drain(api)
    assert len(receiver.requests) == 1


def test_failures_are_retried_with_the_same_message_id_until_delivered(
    api: Api, receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(api.ctx.settings, "webhook_retry_schedule_seconds", [0, 0, 0])
    _register(api, receiver.url, event_types=["payment.failed"])
    receiver.statuses = [500, 503]
    _pay(api, "decline")
    _drain(api)
    assert len(receiver.requests) == 3
    assert len({h["webhook-id"] for h, _ in receiver.requests}) == 1
    assert len({b for _, b in receiver.requests}) == 1  # the same bytes every time
    (delivery,) = _deliveries(api)
    assert delivery.status.value == "delivered" and delivery.attempts == 3 and delivery.last_status_code == 204


def test_an_exhausted_schedule_marks_the_delivery_failed_and_staff_can_send_it_again(
    api: Api, receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(api.ctx.settings, "webhook_retry_schedule_seconds", [0])
    _register(api, receiver.url, event_types=["payment.failed"])
    receiver.statuses = [500, 410]
    _pay(api, "decline")
    _drain(api)
    (delivery,) = _deliveries(api)
    assert delivery.status.value == "failed" and delivery.attempts == 2 and delivery.last_status_code == 410
    assert delivery.last_error == "http_410"
    key = api.new_key(MANAGER)
    failed = api.get("/v1/webhook-deliveries", params={"status": "failed"}, headers=_as(key))
    assert [(d["id"], d["last_error"]) for d in failed.json()["data"]] == [(delivery.id, "http_410")]
    r = api.post(f"/v1/webhook-deliveries/{delivery.id}/retry", None, headers=_as(key))
    assert r.status_code == 200 and r.json()["status"] == "pending", r.text
    _drain(api)
    (delivery,) = _deliveries(api)
    assert delivery.status.value == "delivered"
    again = api.post(f"/v1/webhook-deliveries/{delivery.id}/retry", None, headers=_as(key))
    assert again.status_code == 409


def test_a_slow_endpoint_times_out_and_is_retried(
    api: Api, receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The deployment's client is built from LEPHI_WEBHOOK_TIMEOUT_SECONDS (test_rate_limit checks that).
    monkeypatch.setattr(api.ctx.webhook_http, "timeout", httpx.Timeout(0.2))
    monkeypatch.setattr(api.ctx.settings, "webhook_retry_schedule_seconds", [3600])
    _register(api, receiver.url, event_types=["payment.failed"])
    receiver.delay = 1.0
    _pay(api, "decline")
    _drain(api)
    (delivery,) = _deliveries(api)
    assert delivery.status.value == "pending" and delivery.attempts == 1
    assert delivery.last_error == "timeout"


def test_an_unreachable_endpoint_is_recorded_not_raised(api: Api, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(api.ctx.settings, "webhook_retry_schedule_seconds", [])
    _register(api, f"http://127.0.0.1:{CLOSED_PORT}/nothing-listens-here", event_types=["payment.failed"])
    _pay(api, "decline")
    _drain(api)
    (delivery,) = _deliveries(api)
    assert delivery.status.value == "failed" and delivery.last_status_code is None
    assert delivery.last_error == "refused"


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        ({"url": "ftp://example.org/x"}, "absolute"),
        ({"url": "https://user:pw@example.org/x"}, "credentials"),
        ({"url": "https://example.org/x#frag"}, "fragment"),
        ({"url": "/relative/path"}, "absolute"),
        ({"url": "https://example.org/x", "event_types": ["payment.teleported"]}, "unknown event types"),
        ({"url": "https://example.org/x", "secret": "mine"}, "secret"),
    ],
    ids=["scheme", "credentials", "fragment", "relative", "event-type", "unknown-field"],
)
def test_bad_registrations_are_refused_and_store_nothing(api: Api, body: dict[str, Any], fragment: str) -> None:
    r = api.post("/v1/webhook-endpoints", body, headers=_as(api.new_key(MANAGER)))
    assert r.status_code == 422, r.text
    assert fragment in json.dumps(r.json(), ensure_ascii=False)
    with api.ctx.db.read() as s:
        assert s.exec(select(func.count()).select_from(WebhookEndpoint)).one() == 0


def test_plain_http_is_refused_in_production(api: Api, monkeypatch: pytest.MonkeyPatch) -> None:
    from payments.core.config import Environment

    monkeypatch.setattr(api.ctx.settings, "env", Environment.production)
    r = api.post("/v1/webhook-endpoints", {"url": "http://example.org/x"}, headers=_as(api.new_key(MANAGER)))
    assert r.status_code == 422 and "https" in r.json()["detail"]


def test_an_event_of_a_rolled_back_change_is_never_sent(api: Api) -> None:
    with pytest.raises(RuntimeError), api.ctx.db.write() as s:
        emit(s, api.agency_id, "payment.succeeded", {"payment_id": "pay_x"})
        raise RuntimeError("the change failed")
    with api.ctx.db.read() as s:
        assert s.exec(select(func.count()).select_from(WebhookMessage)).one() == 0


def test_another_agency_sees_none_of_the_endpoints_or_deliveries(api: Api, receiver: Receiver) -> None:
    endpoint = _register(api, receiver.url).json()
    _pay(api)
    _drain(api)
    with api.ctx.db.write() as s:
        seed_agency(s, "AGC-B")
    other = _as(api.new_key(MANAGER, "AGC-B"))
    assert api.client.get("/v1/webhook-endpoints", headers=other).json() == []
    assert api.client.get("/v1/webhook-deliveries", headers=other).json()["data"] == []
    r = api.client.delete(f"/v1/webhook-endpoints/{endpoint['id']}", headers=other)
    assert r.status_code == 404
    delivery = _deliveries(api)[0]
    r = api.client.post(
        f"/v1/webhook-deliveries/{delivery.id}/retry", headers={**other, "Idempotency-Key": "k-other-1"}
    )
    assert r.status_code == 404
