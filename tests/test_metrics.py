"""Prometheus metrics and request ids: the scrape read with prometheus-client's own text parser after a payment, its
callback, a receipt issued by the worker, a failing webhook, a queued tax message and an open reconciliation
exception; several processes adding up through the multiprocess directory; nothing served when off; request ids in
and out, in log lines and in job payloads, and hostile ones replaced."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.parser import text_string_to_metric_families
from sqlmodel import select
from starlette.types import Message, Scope

from lephi import metrics
from lephi.jobs import HANDLERS
from lephi.settings import Settings
from payments.core import observe, requestid
from payments.core.db import Database, make_engine
from payments.core.logging import get_logger
from payments.core.types import utcnow
from payments.outbox.models import OutboxJob
from payments.outbox.service import enqueue
from payments.outbox.worker import Worker
from payments.reconcile.models import Category, ReconException
from tests.conftest import Api, make_settings
from tests.factories import dossier_body, payment_body, sandbox_outcome

# Nothing listens on the discard port: a webhook sent there fails at once ("refused").
CLOSED_PORT = 9
ROOT = Path(__file__).resolve().parent.parent
Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


@pytest.fixture(autouse=True)
def _observer_put_back() -> Iterator[None]:
    previous = observe.install(observe.NOTHING)
    yield
    observe.install(previous)


@pytest.fixture
def settings(database_url: str, tmp_path: Path) -> Settings:
    return make_settings(
        database_url,
        tmp_path,
        metrics=True,
        metrics_address="127.0.0.1:0",
        metrics_cache_seconds=0,
        webhook_allowed_private_hosts=["127.0.0.1/32"],
        webhook_allowed_ports=[CLOSED_PORT],
        webhook_retry_schedule_seconds=[],
    )


def _scrape(api: Api) -> tuple[str, Samples]:
    """What Prometheus would read: an HTTP GET of the metrics address, parsed by prometheus-client's parser."""
    port = api.client.app.state.metrics_server.server_port  # type: ignore[attr-defined]
    text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text
    samples: Samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return text, samples


def _value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def test_every_series_is_scraped_with_its_labels(api: Api) -> None:
    _, before = _scrape(api)
    endpoint = {"url": f"http://127.0.0.1:{CLOSED_PORT}/events", "event_types": ["payment.succeeded"]}
    assert api.post("/v1/webhook-endpoints", endpoint).status_code == 201
    code = api.post("/v1/dossiers", dossier_body()).json()["code"]
    created = api.post("/v1/payments", payment_body(code))
    assert created.status_code == 201
    # The payer pays on the sandbox's page; the sandbox calls the service back, server to server.
    sandbox_outcome(api.client, api.ctx.settings, created.json()["gateway_reference"], "success")
    worker = Worker(api.ctx, HANDLERS)
    for _ in range(6):  # receipt, its tax message, webhook fan-out and the failing delivery
        worker.run_once()
    assert api.get(f"/v1/payments/{created.json()['id']}").json()["status"] == "succeeded"
    with api.ctx.db.write() as s:
        s.add(
            ReconException(
                agency_id=api.agency_id,
                key="metrics-test",
                category=Category.paid_not_settled,
                business_day=date(2026, 11, 20),
                first_run_id="run_x",
                last_run_id="run_x",
            )
        )
        # A job a minute late, as if no worker had run it.
        enqueue(s, "webhook.deliver", {"delivery_id": "whd_none"}, run_after=utcnow() - timedelta(seconds=60))
    assert api.client.delete("/no/such/address/7f3a").status_code == 404
    # A message for an agency the service does not know: nothing can verify it.
    assert api.client.post("/v1/gateways/sandbox/callback/NO-SUCH-AGENCY", content=b"{}").status_code < 500

    text, after = _scrape(api)

    def delta(name: str, **labels: str) -> float:
        return _value(after, name, **labels) - _value(before, name, **labels)

    # Requests, by route template and status; the latency histogram by status class.
    assert delta("lephi_http_requests_total", method="POST", route="/v1/payments", status="201") == 1
    assert delta("lephi_http_request_duration_seconds_count", method="POST", route="/v1/payments", status_class="2xx")
    bucket = {"method": "POST", "route": "/v1/payments", "status_class": "2xx", "le": "+Inf"}
    assert delta("lephi_http_request_duration_seconds_bucket", **bucket) == 1
    assert delta("lephi_http_requests_total", method="DELETE", route=metrics.UNMATCHED, status="404") == 1
    assert "/no/such/address" not in text  # the raw path never becomes a label
    callback_route = "/v1/gateways/{gateway}/callback/{agency_code}"
    assert delta("lephi_http_requests_total", method="POST", route=callback_route, status="200") == 1
    # Payments by method and status: created, then pending at the gateway, then succeeded.
    assert delta("lephi_payments_created_total", method="sandbox") == 1
    for status in ("created", "pending", "succeeded"):
        assert delta("lephi_payment_status_changes_total", method="sandbox", status=status) == 1, status
    assert _value(after, "lephi_payments_open", method="sandbox", status="pending") == 0
    assert ("lephi_payments_open", frozenset({("method", "sandbox"), ("status", "created")})) in after
    # Callbacks by gateway and outcome, receipts issued, webhook failures.
    assert delta("lephi_gateway_callbacks_total", gateway="sandbox", outcome="accepted") == 1
    assert delta("lephi_gateway_callbacks_total", gateway="sandbox", outcome="invalid_signature") == 1
    assert delta("lephi_receipts_issued_total", purpose="original") == 1
    assert delta("lephi_webhook_failures_total", reason="refused", final="true") == 1
    # State read from the database.
    assert _value(after, "lephi_metrics_database_up") == 1
    assert _value(after, "lephi_outbox_jobs_pending", kind="payment.expire") == 1  # due in 90 minutes
    assert _value(after, "lephi_outbox_jobs_due", kind="payment.expire") == 0
    assert _value(after, "lephi_outbox_jobs_due", kind="webhook.deliver") == 1
    assert 59 <= _value(after, "lephi_outbox_oldest_due_job_age_seconds", kind="webhook.deliver") < 600
    assert _value(after, "lephi_outbox_oldest_due_job_age_seconds", kind="payment.expire") == 0
    for kind in HANDLERS:  # every kind has its series, zero or not, so an alert never meets an absent one
        assert ("lephi_outbox_jobs_dead", frozenset({("kind", kind)})) in after, kind
    # Handed to the T-VAN folder; no reply yet.
    assert _value(after, "lephi_tax_messages_unaccepted", status="sent") == 1
    assert _value(after, "lephi_tax_messages_unaccepted", status="queued") == 0
    assert _value(after, "lephi_tax_messages_unaccepted", status="rejected") == 0
    assert _value(after, "lephi_tax_message_oldest_unaccepted_age_seconds") >= 0
    assert _value(after, "lephi_reconciliation_exceptions_open", category="paid_not_settled") == 1
    assert _value(after, "lephi_reconciliation_exceptions_open", category="settled_not_paid") == 0


def test_the_database_gauges_are_cached_and_a_failing_database_is_not_a_failed_scrape(tmp_path: Path) -> None:
    settings = make_settings(f"sqlite:///{tmp_path / 'absent' / 'no.db'}", tmp_path)
    now = [100.0]
    broken = metrics.DatabaseCollector(
        Database(make_engine(settings.effective_database_url, settings)), 10, clock=lambda: now[0]
    )
    first = {m.name: m for m in broken.collect()}
    assert first["lephi_metrics_database_up"].samples[0].value == 0
    now[0] += 5
    list(broken.collect())
    assert broken.reads == 1  # within the cache's time: not read again
    now[0] += 6
    list(broken.collect())
    assert broken.reads == 2


def test_several_processes_add_up_in_the_multiprocess_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "prometheus"
    folder.mkdir()
    script = (
        "from lephi import metrics\n"
        "metrics.enable()\n"
        "from payments.core.observe import observer\n"
        "observer().receipt_issued('original')\n"
        "observer().callback('vnpay', 'accepted')\n"
    )
    env = {**os.environ, metrics.MULTIPROC_ENV: str(folder)}
    for _ in range(2):
        subprocess.run([sys.executable, "-c", script], env=env, check=True, timeout=120, cwd=ROOT)
    registry = CollectorRegistry()
    MultiProcessCollector(registry, path=str(folder))
    assert registry.get_sample_value("lephi_receipts_issued_total", {"purpose": "original"}) == 2
    # The service's own scrape takes the directory from the environment, as the operator sets it.
    monkeypatch.setenv(metrics.MULTIPROC_ENV, str(folder))
    settings = make_settings(f"sqlite:///{tmp_path / 'x.db'}", tmp_path)
    collector = metrics.DatabaseCollector(Database(make_engine(settings.effective_database_url, settings)), 5)
    text = generate_latest(metrics.registry(collector)).decode()
    values = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }
    assert values[("lephi_gateway_callbacks_total", (("gateway", "vnpay"), ("outcome", "accepted")))] == 2


def test_metrics_off_serve_nothing(client_off: Any) -> None:
    assert client_off.app.state.metrics_server is None
    assert client_off.get("/metrics").status_code == 404
    assert not observe.observer().enabled
    assert not any(m.cls is metrics.MetricsMiddleware for m in client_off.app.user_middleware)


@pytest.fixture
def client_off(database_url: str, tmp_path: Path) -> Iterator[Any]:
    from fastapi.testclient import TestClient

    from lephi.app import create_app

    off = make_settings(database_url, tmp_path)
    assert off.metrics is False  # the default
    with TestClient(create_app(off), raise_server_exceptions=False) as c:
        yield c


# --- request ids ------------------------------------------------------------------------------------------------


def test_a_request_id_comes_back_and_reaches_the_jobs_the_request_queues(api: Api) -> None:
    code = api.post("/v1/dossiers", dossier_body()).json()["code"]
    answer = api.post("/v1/payments", payment_body(code), headers={"X-Request-ID": "portal-7:abc.DEF_42"})
    assert answer.headers["x-request-id"] == "portal-7:abc.DEF_42"
    with api.ctx.db.read() as s:
        jobs = list(s.exec(select(OutboxJob).where(OutboxJob.kind == "payment.expire")))
    assert [job.payload["request_id"] for job in jobs] == ["portal-7:abc.DEF_42"]
    generated = api.client.get("/healthz").headers["x-request-id"]
    assert len(generated) == 32 and generated != api.client.get("/healthz").headers["x-request-id"]


def test_a_request_id_is_on_every_log_line_of_the_request(api: Api, capsys: pytest.CaptureFixture[str]) -> None:
    capsys.readouterr()
    answer = api.client.post("/v1/gateways/sandbox/callback", content=b"{}", headers={"X-Request-ID": "trace-42"})
    assert answer.status_code < 500
    lines = [json.loads(line) for line in capsys.readouterr().err.splitlines() if line.startswith("{")]
    assert lines and all(line["request_id"] == "trace-42" for line in lines), lines


def test_the_worker_runs_a_job_under_the_id_of_the_request_that_queued_it(
    api: Api, capsys: pytest.CaptureFixture[str]
) -> None:
    seen: list[str | None] = []

    def first(ctx: Any, payload: dict[str, Any]) -> None:
        seen.append(requestid.current())
        with ctx.db.write() as s:
            enqueue(s, "test.second", {})
        get_logger("tests").warning("test.first_ran")

    def second(ctx: Any, payload: dict[str, Any]) -> None:
        seen.append(requestid.current())

    with requestid.bound("req-from-api"), api.ctx.db.write() as s:
        enqueue(s, "test.first", {"n": 1})
    with api.ctx.db.write() as s:
        enqueue(s, "test.second", {"request_id": "bad\nid"})  # a stored id is checked again before it is bound
    capsys.readouterr()
    worker = Worker(api.ctx, {"test.first": first, "test.second": second})
    worker.run_once()
    worker.run_once()
    assert seen[0] == "req-from-api" and sorted(map(str, seen[1:])) == ["None", "req-from-api"]
    assert requestid.current() is None
    logged = [json.loads(line) for line in capsys.readouterr().err.splitlines() if "test.first_ran" in line]
    assert logged and logged[0]["request_id"] == "req-from-api"


@pytest.mark.parametrize(
    "hostile",
    [b"x" * 129, b"a\r\nSet-Cookie: x=1", b"\xc3\xa9t\xc3\xa9", b"", b"two words", b"<script>", b"a\x00b"],
    ids=["too-long", "newline", "non-ascii", "empty", "space", "markup", "nul"],
)
def test_a_hostile_request_id_is_replaced_never_echoed(hostile: bytes) -> None:
    answered: list[Message] = []

    async def app(scope: Scope, receive: Any, send: Any) -> None:
        assert requestid.current() is not None
        await send({"type": "http.response.start", "status": 204, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    async def send(message: Message) -> None:
        answered.append(message)

    scope = {"type": "http", "method": "GET", "path": "/", "headers": [(b"x-request-id", hostile)]}
    asyncio.run(requestid.RequestIdMiddleware(app)(scope, None, send))  # type: ignore[arg-type]
    (header,) = [v for k, v in answered[0]["headers"] if k == b"x-request-id"]
    assert header != hostile and len(header) == 32 and header.isalnum()


def test_a_huge_request_id_through_the_service_is_replaced(api: Api) -> None:
    answer = api.client.get("/healthz", headers={"X-Request-ID": "a" * 20_000})
    assert answer.status_code == 200 and len(answer.headers["x-request-id"]) == 32


def test_a_taken_address_is_logged_not_fatal_and_a_bad_one_stops_the_start(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import socket

    from pydantic import ValidationError

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        address = f"127.0.0.1:{taken.getsockname()[1]}"
        assert metrics.serve(address, CollectorRegistry()) is None
    captured = capsys.readouterr()
    assert "metrics.address_unavailable" in captured.err + captured.out  # wherever logging was set up to write
    for bad in ("9464", "localhost:", "127.0.0.1:70000", "127.0.0.1:port"):
        with pytest.raises(ValidationError, match="LEPHI_METRICS_ADDRESS"):
            make_settings("sqlite://", tmp_path, metrics_address=bad)
