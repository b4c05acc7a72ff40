"""Drill: the PostgreSQL server restarts while clients create dossiers and payments.

Every answer is a success or a retryable problem (503 with Retry-After, or 409 in progress), never a 500; once the
server is back the pool reconnects by itself; retrying each failed request under its Idempotency-Key ends with one
dossier and one payment each, and every payment has its events and its expiry job."""

from __future__ import annotations

import threading
import time
from collections import Counter
from pathlib import Path

from fastapi.testclient import TestClient
from sqlalchemy import func
from sqlmodel import select

from lephi.app import create_app
from lephi.container import build_container
from lephi.migrate import upgrade
from payments.auth.service import create_key
from payments.core.db import Database, make_engine
from payments.dossier.models import Dossier
from payments.outbox.models import OutboxJob
from payments.payment import kinds
from payments.payment.models import Payment, PaymentEvent
from tests.conftest import ALL_SCOPES, make_settings
from tests.drills.pgcluster import cluster
from tests.factories import dossier_body, payment_body, seed_agency

CLIENTS = 3
PER_CLIENT = 12


def test_database_restart_mid_load(tmp_path: Path) -> None:
    with cluster() as pg:
        url = pg.create_database("lephi")
        upgrade(url)
        settings = make_settings(url, tmp_path, db_pool_size=4)
        ctx = build_container(settings, Database(make_engine(settings.effective_database_url, settings)))
        with ctx.db.write() as s:
            seed_agency(s, "AGC-A")
            _, key = create_key(s, "AGC-A", "test", ALL_SCOPES)
        auth = {"Authorization": f"Bearer {key}"}
        answers: Counter[int] = Counter()
        bad: list[str] = []
        lock = threading.Lock()
        done = [0]
        restarted = threading.Event()

        def send(client: TestClient, path: str, body: dict[str, object], idem: str) -> None:
            # A client as documented: the same request under the same key until it has a final answer.
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                r = client.post(path, json=body, headers={**auth, "Idempotency-Key": idem})
                with lock:
                    answers[r.status_code] += 1
                if r.status_code == 201:
                    return
                retryable = (r.status_code == 503 and r.json()["code"] == "database_unavailable") or (
                    r.status_code == 409 and r.json()["code"] == "idempotency_key_in_progress"
                )
                if not retryable or "Retry-After" not in r.headers:
                    with lock:
                        bad.append(f"{path} {r.status_code} {r.text[:300]}")
                    return
                time.sleep(0.2)
            bad.append(f"{path} {idem}: no final answer in 60 s")

        def run(client: TestClient, n: int) -> None:
            for i in range(PER_CLIENT):
                code = f"HS-{n}-{i}"
                send(client, "/v1/dossiers", dossier_body(code), f"d-{code}")
                send(client, "/v1/payments", payment_body(code), f"p-{code}")
                with lock:
                    done[0] += 1

        with TestClient(create_app(settings, ctx), raise_server_exceptions=False) as client:
            threads = [threading.Thread(target=run, args=(client, n)) for n in range(CLIENTS)]
            for t in threads:
                t.start()
            deadline = time.monotonic() + 60
            while done[0] < CLIENTS * 2 and time.monotonic() < deadline:
                time.sleep(0.02)
            pg.stop()
            time.sleep(0.5)  # requests meanwhile find no server
            pg.start()
            restarted.set()
            for t in threads:
                t.join(120)
            assert not any(t.is_alive() for t in threads)

        assert not bad, bad
        assert answers[500] == 0, answers
        assert answers[503] > 0, f"the restart was not seen by any request: {answers}"
        with ctx.db.read() as s:
            assert s.exec(select(func.count()).select_from(Dossier)).one() == CLIENTS * PER_CLIENT
            payments = s.exec(select(Payment)).all()
            assert len(payments) == CLIENTS * PER_CLIENT
            assert len({p.dossier_id for p in payments}) == len(payments)
            with_events = set(s.exec(select(PaymentEvent.payment_id).distinct()).all())
            assert {p.id for p in payments} <= with_events
            expiries = [
                j.payload["payment_id"] for j in s.exec(select(OutboxJob).where(OutboxJob.kind == kinds.EXPIRE))
            ]
            assert sorted(expiries) == sorted(p.id for p in payments)
        ctx.close()
