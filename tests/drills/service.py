"""The service on a database of a drill's choosing, with the sandbox gateway's callbacks routed back to it, as the
suite's ``api`` fixture does for the shared test database."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient
from sqlmodel import col, select

from lephi.app import create_app
from lephi.container import build_container
from lephi.jobs import HANDLERS
from payments.auth.service import create_key
from payments.core.db import Database, make_engine
from payments.core.types import utcnow
from payments.outbox.models import OutboxJob, OutboxStatus
from payments.outbox.worker import Worker
from tests.conftest import ALL_SCOPES, Api, LateApp, make_settings
from tests.factories import dossier_body, payment_body, sandbox_outcome, seed_agency


@contextmanager
def service(url: str, data_dir: Path, seed: bool = True, **overrides: Any) -> Iterator[Api]:
    settings = make_settings(url, data_dir, **overrides)
    late = LateApp()
    http = TestClient(late, raise_server_exceptions=False)
    ctx = build_container(settings, Database(make_engine(settings.effective_database_url, settings)), http=http)
    with ctx.db.write() as s:
        if seed:
            seed_agency(s, "AGC-A")
        _, key = create_key(s, "AGC-A", "test", ALL_SCOPES)
    app = create_app(settings, ctx)
    late.app = app
    try:
        with TestClient(app, raise_server_exceptions=False) as client:
            yield Api(client, ctx, key, "", "AGC-A")
    finally:
        ctx.close()
        http.close()


def pay(api: Api, code: str) -> str:
    """A dossier paid through the sandbox gateway; returns the payment's id."""
    assert api.post("/v1/dossiers", dossier_body(code)).status_code == 201
    r = api.post("/v1/payments", payment_body(code))
    assert r.status_code == 201, r.text
    payment = r.json()
    r = sandbox_outcome(api.client, api.ctx.settings, payment["gateway_reference"], "success", follow_redirects=False)
    assert r.status_code < 400, r.text
    assert api.get(f"/v1/payments/{payment['id']}").json()["status"] == "succeeded"
    return str(payment["id"])


def run_due_jobs(api: Api, kinds: set[str] | None = None) -> None:
    """Runs the outbox until nothing of the given kinds is due (their follow-ups included)."""
    worker = Worker(api.ctx, HANDLERS)
    for _ in range(50):
        with api.ctx.db.read() as s:
            query = select(OutboxJob.id).where(
                OutboxJob.status == OutboxStatus.pending, col(OutboxJob.run_after) <= utcnow()
            )
            if kinds is not None:
                query = query.where(col(OutboxJob.kind).in_(kinds))
            if s.exec(query).first() is None:
                return
        worker.run_once()
    raise AssertionError("the outbox did not drain")
