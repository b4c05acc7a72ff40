"""SIGTERM to real processes: ``lephi worker`` finishes its running jobs, hands the others back and exits 0;
``lephi serve`` stops accepting connections, finishes the requests it has and exits 0."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlmodel import select

from lephi.container import Container, build_container
from lephi.jobs import HANDLERS, NETWORK_KINDS
from lephi.migrate import upgrade
from payments.auth.service import create_key
from payments.core.db import Database, make_engine
from payments.outbox.models import OutboxJob, OutboxStatus
from payments.outbox.worker import Worker
from payments.webhooks.models import DeliveryStatus, WebhookDelivery, WebhookEndpoint
from payments.webhooks.service import emit, new_secret
from tests.conftest import _free_port, make_settings
from tests.factories import dossier_body, seed_agency

LEPHI = str(Path(sys.executable).parent / "lephi")
SHUTDOWN_SECONDS = 15  # the bound given to the processes; every wait below is longer, so it is never the limit
EVENTS = 24
DELAY = 1.0  # seconds each webhook delivery takes at the receiver: long enough to be caught in flight


def _env(tmp_path: Path, database_url: str, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LEPHI_")}
    env.update(
        {
            "LEPHI_ENV": "test",
            "LEPHI_DATABASE_URL": database_url,
            "LEPHI_DATA_DIR": str(tmp_path / "var"),
            "LEPHI_LOG_LEVEL": "WARNING",
            "LEPHI_SANDBOX_ENABLED": "true",
            **extra,
        }
    )
    return env


class Receiver:
    """A client system's webhook endpoint that takes ``DELAY`` to answer; records each message id on arrival."""

    def __init__(self) -> None:
        self.ids: list[str] = []
        self.lock = threading.Lock()
        state = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                self.rfile.read(int(self.headers["content-length"]))
                with state.lock:
                    state.ids.append(self.headers["webhook-id"])
                time.sleep(DELAY)
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def count(self) -> int:
        with self.lock:
            return len(self.ids)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.server.shutdown()
    r.server.server_close()


def _wait(check: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.02)


@pytest.mark.parametrize("database_url", ["postgres"], indirect=True)
def test_sigterm_to_a_worker_with_jobs_in_flight(database_url: str, tmp_path: Path, receiver: Receiver) -> None:
    webhook_policy = {
        "webhook_allowed_private_hosts": ["127.0.0.1/32"],
        "webhook_allowed_ports": [receiver.port],
    }
    settings = make_settings(database_url, tmp_path, **webhook_policy)
    ctx: Container = build_container(settings, Database(make_engine(settings.effective_database_url, settings)))
    try:
        with ctx.db.write() as s:
            agency = seed_agency(s, "AGC-A")
            s.add(
                WebhookEndpoint(
                    agency_id=agency.id, url=f"http://127.0.0.1:{receiver.port}/events", secret=new_secret()
                )
            )
        with ctx.db.write() as s:
            for n in range(EVENTS):
                emit(s, agency.id, "payment.succeeded", {"n": n})
        env = _env(
            tmp_path,
            database_url,
            LEPHI_WORKER_THREADS="4",
            LEPHI_WORKER_SHUTDOWN_SECONDS=str(SHUTDOWN_SECONDS),
            LEPHI_WEBHOOK_ALLOWED_PRIVATE_HOSTS=json.dumps(webhook_policy["webhook_allowed_private_hosts"]),
            LEPHI_WEBHOOK_ALLOWED_PORTS=json.dumps(webhook_policy["webhook_allowed_ports"]),
            LEPHI_TAX_TRANSMISSION="false",
        )
        proc = subprocess.Popen([LEPHI, "worker"], env=env, cwd=tmp_path, stderr=subprocess.PIPE, text=True)
        try:
            # Four threads, each mid-delivery. The bound is wide: starting a process took over 30 s on a busy CI box.
            _wait(lambda: receiver.count() >= 4 or proc.poll() is not None, 180, "deliveries in flight")
            assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
            proc.send_signal(signal.SIGTERM)
            stopped = time.monotonic()
            code = proc.wait(SHUTDOWN_SECONDS + 30)
            took = time.monotonic() - stopped
        finally:
            if proc.poll() is None:
                proc.kill()
        stderr = proc.stderr.read() if proc.stderr else ""
        assert code == 0, stderr
        assert took < SHUTDOWN_SECONDS + 5, f"exit took {took:.1f} s"  # the bound, not a benchmark
        sent_before_exit = receiver.count()
        assert sent_before_exit < EVENTS, "the worker did not stop claiming"
        with ctx.db.read() as s:
            jobs = list(s.exec(select(OutboxJob)))
            deliveries = list(s.exec(select(WebhookDelivery)))
        # Nothing is left leased: whatever was not done goes to the next worker at once.
        assert [j for j in jobs if j.status is OutboxStatus.pending and j.locked_until is not None] == []
        # Every delivery that reached the receiver before the signal was finished and recorded by the process.
        assert sum(d.status is DeliveryStatus.delivered for d in deliveries) == sent_before_exit

        # Another worker takes the rest without waiting for any lease; each event reaches the client once.
        worker = Worker(ctx, HANDLERS, concurrent=NETWORK_KINDS)
        while worker.run_once():
            pass
        with ctx.db.read() as s:
            assert {j.status for j in s.exec(select(OutboxJob))} == {OutboxStatus.done}
            assert {d.status for d in s.exec(select(WebhookDelivery))} == {DeliveryStatus.delivered}
        assert len(receiver.ids) == EVENTS and Counter(receiver.ids).most_common(1)[0][1] == 1
    finally:
        ctx.close()


def _send_partial(port: int, key: str) -> tuple[socket.socket, bytes]:
    """A request whose headers and first body bytes have been sent: in flight at the server, waiting for the rest."""
    body = json.dumps(dossier_body()).encode()
    head = (
        f"POST /v1/dossiers HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nAuthorization: Bearer {key}\r\n"
        f"Idempotency-Key: {os.urandom(8).hex()}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode()
    sock = socket.create_connection(("127.0.0.1", port), timeout=60)
    sock.sendall(head + body[:10])
    return sock, body[10:]


def _status(sock: socket.socket) -> int:
    data = b""
    while b"\r\n" not in data:
        chunk = sock.recv(4096)
        if not chunk:
            break
        data += chunk
    sock.close()
    return int(data.split(b" ", 2)[1]) if data.startswith(b"HTTP/1.1 ") else 0


def _refused(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    except ConnectionRefusedError:
        return True
    return False


def test_sigterm_to_serve_with_requests_in_flight(tmp_path: Path) -> None:
    database_url = f"sqlite:///{tmp_path / 'lephi.db'}"
    upgrade(database_url)
    settings = make_settings(database_url, tmp_path)
    ctx = build_container(settings, Database(make_engine(database_url, settings)))
    with ctx.db.write() as s:
        seed_agency(s, "AGC-A")
        _, key = create_key(s, "AGC-A", "test", ["dossiers:write"])
    ctx.close()
    port = _free_port()
    env = _env(tmp_path, database_url, LEPHI_SHUTDOWN_SECONDS=str(SHUTDOWN_SECONDS))
    proc = subprocess.Popen(
        [LEPHI, "serve", "--no-worker", "--port", str(port)], env=env, cwd=tmp_path, stderr=subprocess.PIPE, text=True
    )
    try:

        def ready() -> bool:
            try:
                return httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200
            except httpx.HTTPError:
                assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
                return False

        _wait(ready, 180, "the server")
        in_flight = [_send_partial(port, key) for _ in range(8)]
        time.sleep(0.5)  # let the server read the headers: from then on each request is in flight
        proc.send_signal(signal.SIGTERM)
        _wait(lambda: _refused(port), 10, "new connections to be refused")
        assert proc.poll() is None, "the server exited with requests in flight"
        for sock, rest in in_flight:
            sock.sendall(rest)
        assert [_status(sock) for sock, _ in in_flight] == [201] * len(in_flight)
        code = proc.wait(SHUTDOWN_SECONDS + 30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert code == 0, proc.stderr.read() if proc.stderr else ""
