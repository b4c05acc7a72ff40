"""SIGKILL of a real ``lephi worker`` in the middle of a handler, for every outbox job kind, on both databases.

A test-only start-up hook (tests/worker_hook/sitecustomize.py, on the process's PYTHONPATH) makes one kind's handler
block for ever, either before its work (``before``) or after its work is committed but before the worker records
the job as done (``after``). The test waits until the handler is blocked, kills the process with SIGKILL, checks that
no job of that kind is recorded as done, then lets another worker (this process, once the dead worker's leases have
run out) take everything left, and checks that each piece of work was done exactly once: one receipt and one
adjustment, one tax message per document, one payment event per move, each webhook message delivered (at least once)
with a single delivery row per endpoint.

``before`` catches a worker that marks a job done before its handler runs (the job would be lost: no receipt);
``after`` catches a handler that is not safe to run twice (a second receipt, a second refund). The last test runs
such a broken worker and shows that the check fails.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import update
from sqlmodel import col, select

from invoices.tables import Document, DocumentPurpose
from invoices.tax.tables import TaxMessage, TaxMessageKind, TaxMessageStatus
from lephi.jobs import HANDLERS, NETWORK_KINDS, PERIODIC
from lephi.settings import Settings
from payments.core.types import utcnow
from payments.gateway.models import SandboxTransaction
from payments.outbox.models import OutboxJob, OutboxStatus
from payments.outbox.worker import Worker
from payments.payment.models import Payment, PaymentEvent, Refund, RefundStatus
from payments.payment.refunds import reserve_refund
from payments.webhooks.models import DeliveryStatus, WebhookDelivery, WebhookEndpoint, WebhookMessage
from payments.webhooks.service import new_secret
from tests.conftest import Api, make_settings
from tests.factories import dossier_body, payment_body, sandbox_outcome

LEPHI = str(Path(sys.executable).parent / "lephi")
HOOK = Path(__file__).parent / "worker_hook"
KINDS = sorted(HANDLERS)
REFUND = 10_000


class Receiver:
    """A client system's webhook endpoint: records the id of each message it is sent and answers 204."""

    def __init__(self) -> None:
        self.ids: list[str] = []
        self.lock = threading.Lock()
        state = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                self.rfile.read(int(self.headers["content-length"]))
                with state.lock:
                    state.ids.append(self.headers["webhook-id"])
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.server.shutdown()
    r.server.server_close()


@pytest.fixture
def settings(database_url: str, tmp_path: Path, receiver: Receiver) -> Settings:
    return make_settings(
        database_url, tmp_path, webhook_allowed_private_hosts=["127.0.0.1/32"], webhook_allowed_ports=[receiver.port]
    )


def _prepare(api: Api, receiver: Receiver) -> dict[str, str]:
    """Work of every kind waiting in the outbox: a paid payment (receipt, tax message, webhooks) with a refund asked
    for (the retry job, then the adjustment), a pending payment past its expiry, and a pending payment the gateway
    has settled without a callback (the status query)."""
    with api.ctx.db.write() as s:
        s.add(WebhookEndpoint(agency_id=api.agency_id, url=f"http://127.0.0.1:{receiver.port}/e", secret=new_secret()))

    def payment() -> dict[str, Any]:
        code = api.post("/v1/dossiers", dossier_body(copies=2)).json()["code"]
        r = api.post("/v1/payments", payment_body(code))
        assert r.status_code == 201, r.text
        return dict(r.json())

    paid, expiring, queried = payment(), payment(), payment()
    r = sandbox_outcome(api.client, api.ctx.settings, paid["gateway_reference"], "success", follow_redirects=False)
    assert r.status_code == 303, r.text
    now = utcnow()
    with api.ctx.db.write() as s:
        refund = reserve_refund(s, api.agency_id, paid["id"], REFUND, "Hồ sơ không đủ điều kiện", "test")
        s.execute(update(Payment).where(col(Payment.id) == expiring["id"]).values(expires_at=now - timedelta(hours=1)))
        s.execute(
            update(SandboxTransaction)
            .where(col(SandboxTransaction.id) == queried["gateway_reference"])
            .values(status="succeeded")
        )
    _all_due(api)
    return {"paid": paid["id"], "expiring": expiring["id"], "queried": queried["id"], "refund": refund.id}


def _all_due(api: Api) -> None:
    """Every waiting job due now, and no lease held: what another worker sees once a dead worker's leases ran out
    (a T-VAN message the dead worker was handing over included: its claim is as old as a lease)."""
    stale = utcnow() - timedelta(seconds=api.ctx.settings.worker_lease_seconds + 1)
    with api.ctx.db.write() as s:
        s.execute(
            update(OutboxJob)
            .where(col(OutboxJob.status) == OutboxStatus.pending)
            .values(run_after=utcnow() - timedelta(seconds=1), locked_until=None, locked_by=None)
        )
        s.execute(update(TaxMessage).where(col(TaxMessage.status) == TaxMessageStatus.sending).values(updated_at=stale))


def _jobs(api: Api) -> list[OutboxJob]:
    with api.ctx.db.read() as s:
        return list(s.exec(select(OutboxJob)))


def _kill_mid_handler(api: Api, receiver: Receiver, tmp_path: Path, kind: str, phase: str, **extra: str) -> None:
    """Start ``lephi worker`` with ``kind``'s handler blocking at ``phase``, wait until it blocks, SIGKILL it."""
    blocked = tmp_path / "blocked"
    blocked.mkdir()
    settings = api.ctx.settings
    env = {k: v for k, v in os.environ.items() if not k.startswith("LEPHI_")}
    env.update(
        {
            "PYTHONPATH": os.pathsep.join([str(HOOK), str(Path(__file__).parents[1])]),
            "LEPHI_ENV": "test",
            "LEPHI_DATABASE_URL": settings.effective_database_url,
            "LEPHI_DATA_DIR": str(settings.data_dir),
            "LEPHI_PUBLIC_URL": settings.public_url,
            "LEPHI_LOG_LEVEL": "WARNING",
            "LEPHI_SANDBOX_ENABLED": "true",
            "LEPHI_WEBHOOK_ALLOWED_PRIVATE_HOSTS": json.dumps(settings.webhook_allowed_private_hosts),
            "LEPHI_WEBHOOK_ALLOWED_PORTS": json.dumps(settings.webhook_allowed_ports),
            "LEPHI_WORKER_POLL_SECONDS": "0.1",
            "LEPHI_TEST_BLOCK_KIND": kind,
            "LEPHI_TEST_BLOCK_PHASE": phase,
            "LEPHI_TEST_BLOCK_DIR": str(blocked),
            **extra,
        }
    )
    proc = subprocess.Popen([LEPHI, "worker"], env=env, cwd=tmp_path, stderr=subprocess.PIPE, text=True)
    try:
        # The bound is wide: starting a process has taken over 30 s on a busy machine.
        deadline = time.monotonic() + 180
        while not (blocked / kind).exists():
            assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
            assert time.monotonic() < deadline, f"no {kind} handler was reached"
            time.sleep(0.05)
        proc.send_signal(signal.SIGKILL)
        assert proc.wait(30) == -signal.SIGKILL
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(30)
        if proc.stderr:
            proc.stderr.close()


def _drain(api: Api) -> None:
    worker = Worker(api.ctx, HANDLERS, periodic=PERIODIC, concurrent=NETWORK_KINDS)
    for _ in range(10):
        _all_due(api)
        while worker.run_once():
            pass
        if all(j.status is not OutboxStatus.pending for j in _jobs(api)):
            return
    pytest.fail(
        f"jobs left: {[(j.kind, j.status, j.last_error) for j in _jobs(api) if j.status is not OutboxStatus.done]}"
    )


def _moves(api: Api, payment_id: str) -> Counter[str]:
    with api.ctx.db.read() as s:
        events = s.exec(select(PaymentEvent).where(PaymentEvent.payment_id == payment_id))
        # The moves the worker makes (the API made the payment and handed it to the payer).
        return Counter(str(e.to_status) for e in events if e.to_status not in (None, "created", "pending"))


def _each_done_once(api: Api, receiver: Receiver, ids: dict[str, str]) -> None:
    jobs = _jobs(api)
    assert {j.status for j in jobs} == {OutboxStatus.done}, [(j.kind, j.status, j.last_error) for j in jobs]
    assert set(HANDLERS) <= {j.kind for j in jobs}, "some kind of work was never queued: the scenario is incomplete"
    with api.ctx.db.read() as s:
        documents = list(s.exec(select(Document)))
        messages = list(s.exec(select(TaxMessage)))
        deliveries = list(s.exec(select(WebhookDelivery)))
        webhook_messages = list(s.exec(select(WebhookMessage)))
        refund = s.get(Refund, ids["refund"])
        paid = s.get(Payment, ids["paid"])
        assert refund is not None and paid is not None
        refund_status, refunded = refund.status, paid.refunded_amount
    # The receipts: one original per paid payment, one adjustment for the refund.
    purposes = Counter((d.payment_id, d.purpose) for d in documents)
    assert purposes == {
        (ids["paid"], DocumentPurpose.original): 1,
        (ids["queried"], DocumentPurpose.original): 1,
        (ids["paid"], DocumentPurpose.adjustment): 1,
    }, purposes
    # One tax message per document, each handed to the T-VAN folder once. (From 22:00 in Vietnam the worker's
    # periodic task also queues the day's summary, a message about no one document: every message is still handed
    # over once.)
    per_document = Counter(m.document_id for m in messages if m.kind is TaxMessageKind.document)
    assert per_document == {d.id: 1 for d in documents}, per_document
    outgoing = list((api.ctx.settings.effective_tax_drop_dir / "outgoing").glob("*.xml"))
    assert len(outgoing) == len(messages), outgoing
    # Each payment moved once along its way; the refund was asked of the gateway and counted once.
    assert _moves(api, ids["paid"]) == {"succeeded": 1, "partially_refunded": 1}
    assert _moves(api, ids["queried"]) == {"succeeded": 1}
    # Expiry cancels at the gateway first: killed between the two, the next run finds the gateway's answer
    # (cancelled) and applies that instead. Either way, one move.
    assert _moves(api, ids["expiring"]) in ({"expired": 1}, {"cancelled": 1})
    assert refund_status is RefundStatus.succeeded and refunded == REFUND
    # Webhooks: one delivery row per message and endpoint, each delivered, each message received at least once.
    assert Counter((d.message_id, d.endpoint_id) for d in deliveries).most_common(1)[0][1] == 1
    assert len(deliveries) == len(webhook_messages) > 0
    assert {d.status for d in deliveries} == {DeliveryStatus.delivered}
    with receiver.lock:
        assert set(receiver.ids) == {m.id for m in webhook_messages}


def _none_done(api: Api, kind: str) -> None:
    done = [j.id for j in _jobs(api) if j.kind == kind and j.status is OutboxStatus.done]
    assert done == [], f"{kind} job(s) {done} recorded as done although their handler never returned"


@pytest.mark.parametrize("phase", ["before", "after"])
@pytest.mark.parametrize("kind", KINDS)
def test_sigkill_mid_handler_then_each_job_done_once(
    api: Api, receiver: Receiver, tmp_path: Path, kind: str, phase: str
) -> None:
    ids = _prepare(api, receiver)
    _kill_mid_handler(api, receiver, tmp_path, kind, phase)
    _none_done(api, kind)
    _drain(api)
    _each_done_once(api, receiver, ids)


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_a_worker_marking_jobs_done_before_the_handler_is_caught(api: Api, receiver: Receiver, tmp_path: Path) -> None:
    """The control: the same kill against a worker that records the job as done first loses the receipt."""
    ids = _prepare(api, receiver)
    _kill_mid_handler(api, receiver, tmp_path, "payment.succeeded", "before", LEPHI_TEST_MUTANT="done_first")
    with pytest.raises(AssertionError, match="recorded as done"):
        _none_done(api, "payment.succeeded")
    # The blocked job's receipt is never issued: the drain is left with the refund's adjustment waiting for it, or
    # (when the blocked job was the queried payment's) ends with that payment's receipt missing.
    try:
        _drain(api)
    except pytest.fail.Exception as left:
        assert "refund.succeeded" in str(left), left
    with pytest.raises(AssertionError):
        _each_done_once(api, receiver, ids)
