"""Drill: a client's webhook receiver accepts the connection and never answers. The attempt ends after
``LEPHI_WEBHOOK_TIMEOUT_SECONDS``, is recorded as a timeout and rescheduled; the receipt job of the same payment
runs in the same pass (the hang holds a worker no longer than the timeout); the API answers meanwhile; once the
receiver answers, the delivery is made and recorded once."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import update
from sqlmodel import col, select

from invoices.tables import Document
from lephi.jobs import HANDLERS
from payments.core.types import utcnow
from payments.outbox.models import OutboxJob, OutboxStatus
from payments.outbox.worker import Worker
from payments.webhooks.models import WebhookDelivery
from payments.webhooks.service import DELIVER
from tests.drills.service import pay, service


class Receiver:
    """Holds every connection open without a word until ``answer`` is set; then answers 204."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = int(self.sock.getsockname()[1])
        self.answer = threading.Event()
        self.hung = threading.Event()
        self.held: list[socket.socket] = []
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            if not self.answer.is_set():
                self.held.append(conn)
                self.hung.set()
                continue
            with conn:
                conn.recv(65536)
                conn.sendall(b"HTTP/1.1 204 No Content\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")

    def close(self) -> None:
        self.sock.close()
        for conn in self.held:
            conn.close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.close()


def test_hung_receiver_times_out_is_retried_and_blocks_nothing(
    database_url: str, tmp_path: Path, receiver: Receiver
) -> None:
    with service(
        database_url,
        tmp_path,
        webhook_timeout_seconds=0.5,
        webhook_allowed_private_hosts=["127.0.0.1/32"],
        webhook_allowed_ports=[receiver.port],
    ) as api:
        url = f"http://127.0.0.1:{receiver.port}/events"
        assert api.post("/v1/webhook-endpoints", {"url": url, "event_types": ["payment.succeeded"]}).status_code == 201
        payment_id = pay(api, "HS-W1")

        worker = Worker(api.ctx, HANDLERS)
        drained = threading.Thread(target=lambda: [worker.run_once() for _ in range(4)])
        drained.start()
        assert receiver.hung.wait(30)
        # While a worker waits on the receiver, the API answers.
        assert api.get(f"/v1/payments/{payment_id}").status_code == 200
        drained.join(60)
        assert not drained.is_alive()

        with api.ctx.db.read() as s:
            assert s.exec(select(Document).where(Document.payment_id == payment_id)).first() is not None
            (delivery,) = s.exec(select(WebhookDelivery)).all()
            (job,) = s.exec(select(OutboxJob).where(OutboxJob.kind == DELIVER)).all()
        assert delivery.status.value == "pending" and delivery.attempts == 1 and delivery.last_error == "timeout"
        assert job.status == OutboxStatus.pending and job.run_after > utcnow()
        r = api.get("/v1/webhook-deliveries")
        assert r.status_code == 200, r.text

        receiver.answer.set()
        with api.ctx.db.write() as s:  # the retry's time has come
            s.execute(update(OutboxJob).where(col(OutboxJob.id) == job.id).values(run_after=utcnow() - timedelta(1)))
        worker.run_once()
        with api.ctx.db.read() as s:
            (delivery,) = s.exec(select(WebhookDelivery)).all()
            done = s.get(OutboxJob, job.id)
        assert delivery.status.value == "delivered" and delivery.attempts == 2 and delivery.last_status_code == 204
        assert done is not None and done.status == OutboxStatus.done
