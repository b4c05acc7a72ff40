"""The service through PgBouncer in transaction mode (docs/deploy.md): each transaction may run on a different server
connection, so nothing may rely on session state. A real PgBouncer (Debian's, installed by scripts/bootstrap --dev)
with fewer server connections than the service has client connections, so that transactions do move between them.

PgBouncer 1.18 (Debian 12) does not carry psycopg's server-side prepared statements across server connections:
``LEPHI_DB_PGBOUNCER`` turns them off, and the payment path is repeated well past psycopg's prepare threshold (5)."""

from __future__ import annotations

import os
import secrets
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url
from sqlmodel import col, select

from invoices.tables import Document
from lephi.app import create_app
from lephi.container import Container, build_container
from lephi.jobs import HANDLERS
from lephi.migrate import current_revision, head_revision, upgrade
from payments.auth.service import create_key
from payments.core.db import Database, make_engine, normalise_url
from payments.outbox.worker import Worker
from tests.conftest import ALL_SCOPES, PG_URL, LateApp, make_settings
from tests.factories import dossier_body, payment_body, sandbox_outcome, seed_agency

pytestmark = pytest.mark.skipif(not PG_URL, reason="PgBouncer fronts PostgreSQL: needs LEPHI_TEST_POSTGRES_URL")

PAYMENTS = 20


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _pgbouncer() -> str:
    found = shutil.which("pgbouncer") or ("/usr/sbin/pgbouncer" if os.access("/usr/sbin/pgbouncer", os.X_OK) else None)
    assert found, "pgbouncer is not installed: run scripts/bootstrap --dev"
    return found


@pytest.fixture
def bouncer_url(tmp_path: Path) -> Iterator[str]:
    """A fresh database and a PgBouncer in transaction mode in front of it; the URL through PgBouncer."""
    assert PG_URL
    admin_url = make_url(normalise_url(PG_URL))
    name = f"lephi_bouncer_{os.getpid()}_{secrets.token_hex(3)}"
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    user = admin_url.username or "postgres"
    port = _free_port()
    # PgBouncer refuses to run as root: then it drops to "nobody", which must read its files (pytest's tmp_path is
    # private to root).
    home = Path(tempfile.mkdtemp(prefix="lephi-pgbouncer-"))
    (home / "userlist.txt").write_text(f'"{user}" ""\n')
    (home / "pgbouncer.ini").write_text(
        f"""[databases]
{name} = host={admin_url.host or "127.0.0.1"} port={admin_url.port or 5432} dbname={name}

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = {port}
unix_socket_dir =
auth_type = trust
auth_file = {home / "userlist.txt"}
pool_mode = transaction
; Fewer server connections than the service's pool: transactions move between them, as they do in production.
default_pool_size = 2
max_client_conn = 100
"""
    )
    command = [_pgbouncer(), str(home / "pgbouncer.ini")]
    if os.geteuid() == 0:
        home.chmod(0o755)
        command[1:1] = ["--user", "nobody"]
    log = tmp_path / "pgbouncer.log"
    with log.open("wb") as sink:
        proc = subprocess.Popen(command, stdout=sink, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                assert proc.poll() is None, log.read_text()
                assert time.monotonic() < deadline, "pgbouncer did not start listening"
                time.sleep(0.05)
        yield admin_url.set(port=port, database=name).render_as_string(hide_password=False)
    finally:
        proc.terminate()
        proc.wait(10)
        shutil.rmtree(home, ignore_errors=True)
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def _documents(ctx: Container) -> int:
    with ctx.db.read() as s:
        return len(s.exec(select(Document.id)).all())


def test_migrate_pay_issue_and_verify_through_pgbouncer(bouncer_url: str, tmp_path: Path) -> None:
    # The migration's advisory lock is transaction-scoped: it holds on whichever server connection PgBouncer gave.
    upgrade(bouncer_url)
    upgrade(bouncer_url)  # a second process finding the schema current
    settings = make_settings(bouncer_url, tmp_path, db_pgbouncer=True, db_pool_size=4, worker_poll_seconds=0.2)
    db = Database(make_engine(settings.effective_database_url, settings))
    assert current_revision(db.engine) == head_revision()
    late_app = LateApp()
    http = TestClient(late_app, raise_server_exceptions=False)
    ctx = build_container(settings, db, http=http)
    try:
        with ctx.db.write() as s:
            seed_agency(s, "AGC-A")
            _, key = create_key(s, "AGC-A", "test", ALL_SCOPES)
        app = create_app(settings, ctx)
        late_app.app = app
        auth = {"Authorization": f"Bearer {key}"}
        with TestClient(app, raise_server_exceptions=False) as client:
            for i in range(PAYMENTS):
                r = client.post(
                    "/v1/dossiers", json=dossier_body(), headers={**auth, "Idempotency-Key": secrets.token_hex(8)}
                )
                assert r.status_code == 201, r.text
                r = client.post(
                    "/v1/payments",
                    json=payment_body(r.json()["code"]),
                    headers={**auth, "Idempotency-Key": secrets.token_hex(8)},
                )
                assert r.status_code == 201, r.text
                payment = r.json()
                answer = sandbox_outcome(
                    client, settings, payment["gateway_reference"], "success", follow_redirects=False
                )
                assert answer.status_code == 303, answer.text
                assert client.get(f"/v1/payments/{payment['id']}", headers=auth).json()["status"] == "succeeded"
                if i < PAYMENTS - 1:
                    Worker(ctx, HANDLERS).run_once()
            # The last receipt by a running worker: through PgBouncer it polls, since LISTEN would hear nothing.
            worker = Worker(ctx, HANDLERS)
            thread = threading.Thread(target=worker.run_forever, daemon=True)
            thread.start()
            try:
                deadline = time.monotonic() + 30
                while _documents(ctx) < PAYMENTS:
                    assert time.monotonic() < deadline, "the running worker issued no receipt"
                    time.sleep(0.05)
                assert worker.listener is None
            finally:
                worker.stop()
                thread.join(30)
            with ctx.db.read() as s:
                documents = s.exec(select(Document).order_by(col(Document.number))).all()
            assert [d.number for d in documents] == list(range(1, PAYMENTS + 1))
            for document in documents:
                r = client.post(
                    "/v1/receipts/verify", content=document.xml, headers={**auth, "Content-Type": "application/xml"}
                )
                assert r.status_code == 200 and r.json()["valid"] is True, r.text
    finally:
        ctx.close()
        http.close()
