"""The outbox worker: expiry, status re-queries, claims under concurrency, leases, retries."""

from __future__ import annotations

import threading
from collections import Counter
from datetime import timedelta
from typing import Any
from unittest.mock import ANY

import pytest
from sqlalchemy import update
from sqlmodel import col, select

from adapters.momo import MoMoGateway
from adapters.sandbox import SandboxGateway
from adapters.stripe import StripeGateway
from adapters.vietqr import VietQRGateway
from adapters.vnpay import VNPayGateway
from lephi.jobs import HANDLERS
from payments.core.config import PaymentSettings
from payments.core.context import AppContext
from payments.core.types import utcnow
from payments.gateway.sandbox_store import DbSandboxStore
from payments.outbox.models import OutboxJob, OutboxStatus
from payments.outbox.service import enqueue
from payments.outbox.worker import Worker
from payments.payment.create import first_requery
from tests.conftest import Api
from tests.factories import dossier_body, payment_body


def _due(ctx: AppContext, kind: str | None = None) -> None:
    """Make jobs due now, as if their time had come."""
    with ctx.db.write() as s:
        stmt = update(OutboxJob).values(run_after=utcnow() - timedelta(seconds=1))
        if kind:
            stmt = stmt.where(col(OutboxJob.kind) == kind)
        s.execute(stmt)


def _pending(api: Api) -> dict[str, Any]:
    code = api.post("/v1/dossiers", dossier_body()).json()["code"]
    return dict(api.post("/v1/payments", payment_body(code)).json())


def test_creating_a_payment_schedules_expiry_and_requery(api: Api) -> None:
    before = utcnow()
    payment = _pending(api)
    after = utcnow()
    with api.ctx.db.read() as s:
        jobs = {j.kind: j for j in s.exec(select(OutboxJob))}
    assert set(jobs) == {"payment.expire", "payment.requery"}
    # The request that queued it comes along (tests/test_metrics.py follows it to the worker).
    assert jobs["payment.expire"].payload == {"payment_id": payment["id"], "request_id": ANY}
    assert jobs["payment.expire"].run_after > utcnow() + timedelta(minutes=89)
    # The sandbox answers status queries: its payment is first queried after 30 s, not after the schedule's 5 min.
    assert jobs["payment.requery"].payload == {"payment_id": payment["id"], "step": -1, "request_id": ANY}
    first = timedelta(seconds=api.ctx.settings.requery_first_seconds)
    assert first == timedelta(seconds=30)
    assert before + first <= jobs["payment.requery"].run_after <= after + first
    assert Worker(api.ctx, HANDLERS).run_once() == 0  # nothing is due yet


def test_the_first_requery_waits_for_the_schedule_without_a_status_query() -> None:
    settings = PaymentSettings()
    schedule = settings.requery_schedule_seconds
    assert first_requery(settings, queries_status=True) == (30, -1)
    assert first_requery(settings, queries_status=False) == (schedule[0], 0)
    assert first_requery(settings.model_copy(update={"requery_first_seconds": 0}), True) == (schedule[0], 0)
    none = settings.model_copy(update={"requery_first_seconds": 0, "requery_schedule_seconds": []})
    assert first_requery(none, True) is None
    # A bank transfer has nothing to look up at the bank; a card or wallet gateway has.
    assert VietQRGateway.queries_status is False
    assert all(g.queries_status for g in (SandboxGateway, VNPayGateway, MoMoGateway, StripeGateway))


def test_expiry_cancels_at_the_gateway_first(api: Api) -> None:
    payment = _pending(api)
    _due(api.ctx, "payment.expire")
    assert Worker(api.ctx, HANDLERS).run_once() == 1
    out = api.get(f"/v1/payments/{payment['id']}").json()
    assert out["status"] == "expired" and out["events"][-1]["actor"] == "worker:payment.expire"
    record = DbSandboxStore(api.ctx.db).get(payment["gateway_reference"])
    assert record is not None and record.status == "cancelled"


def test_expiry_finds_a_lost_success_instead_of_expiring(api: Api) -> None:
    payment = _pending(api)
    DbSandboxStore(api.ctx.db).set_status(payment["gateway_reference"], "pending", "succeeded")  # callback lost
    _due(api.ctx, "payment.expire")
    Worker(api.ctx, HANDLERS).run_once()
    assert api.get(f"/v1/payments/{payment['id']}").json()["status"] == "succeeded"


def test_requery_settles_a_lost_callback(api: Api) -> None:
    payment = _pending(api)
    DbSandboxStore(api.ctx.db).set_status(payment["gateway_reference"], "pending", "failed")
    _due(api.ctx, "payment.requery")
    Worker(api.ctx, HANDLERS).run_once()
    out = api.get(f"/v1/payments/{payment['id']}").json()
    assert out["status"] == "failed" and out["events"][-1]["kind"] == "gateway.status_query"


def test_requery_reschedules_while_pending(api: Api) -> None:
    payment = _pending(api)

    def requeries() -> list[OutboxJob]:
        _due(api.ctx, "payment.requery")
        Worker(api.ctx, HANDLERS).run_once()
        with api.ctx.db.read() as s:
            query = select(OutboxJob).where(OutboxJob.kind == "payment.requery").order_by(col(OutboxJob.id))
            return list(s.exec(query).all())

    # After the early query, the schedule from its start: 5 minutes, then an hour.
    jobs = requeries()
    assert [j.status for j in jobs] == [OutboxStatus.done, OutboxStatus.pending]
    assert jobs[1].payload == {"payment_id": payment["id"], "step": 0, "request_id": jobs[0].payload["request_id"]}
    assert utcnow() + timedelta(minutes=4) < jobs[1].run_after < utcnow() + timedelta(minutes=6)
    jobs = requeries()
    assert [j.status for j in jobs] == [OutboxStatus.done, OutboxStatus.done, OutboxStatus.pending]
    assert jobs[2].payload == {"payment_id": payment["id"], "step": 1, "request_id": jobs[0].payload["request_id"]}
    assert jobs[2].run_after > utcnow() + timedelta(minutes=59)


def test_two_workers_run_each_job_exactly_once(ctx: AppContext) -> None:
    ran: Counter[int] = Counter()
    lock = threading.Lock()

    def handler(_ctx: AppContext, payload: dict[str, Any]) -> None:
        with lock:
            ran[int(payload["n"])] += 1

    with ctx.db.write() as s:
        for n in range(60):
            enqueue(s, "test.count", {"n": n})
    workers = [Worker(ctx, {"test.count": handler}, name=f"w{i}") for i in range(2)]

    def drain(w: Worker) -> None:
        while w.run_once(limit=3):
            pass

    threads = [threading.Thread(target=drain, args=(w,)) for w in workers]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert ran == Counter(range(60))
    with ctx.db.read() as s:
        assert {j.status for j in s.exec(select(OutboxJob))} == {OutboxStatus.done}


def test_a_dead_workers_job_is_taken_again_after_its_lease(ctx: AppContext) -> None:
    seen: list[str] = []
    with ctx.db.write() as s:
        enqueue(s, "test.once", {})
    dead = Worker(ctx, {}, name="dead")
    assert len(dead.claim(10)) == 1  # claimed, then the worker "dies"
    alive = Worker(ctx, {"test.once": lambda _c, _p: seen.append("ran")}, name="alive")
    assert alive.run_once() == 0  # still leased
    with ctx.db.write() as s:
        s.execute(update(OutboxJob).values(locked_until=utcnow() - timedelta(seconds=1)))
    assert alive.run_once() == 1 and seen == ["ran"]


def test_failing_job_backs_off_then_goes_dead(ctx: AppContext) -> None:
    def boom(_ctx: AppContext, _payload: dict[str, Any]) -> None:
        raise RuntimeError("gateway said no")

    with ctx.db.write() as s:
        enqueue(s, "test.boom", {})
        s.execute(update(OutboxJob).values(max_attempts=2))
    worker = Worker(ctx, {"test.boom": boom})
    worker.run_once()
    with ctx.db.read() as s:
        job = s.exec(select(OutboxJob)).one()
    assert job.status is OutboxStatus.pending and job.attempts == 1 and "gateway said no" in (job.last_error or "")
    _due(ctx)
    worker.run_once()
    with ctx.db.read() as s:
        assert s.exec(select(OutboxJob)).one().status is OutboxStatus.dead


def test_unknown_job_kind_is_not_lost(ctx: AppContext) -> None:
    with ctx.db.write() as s:
        enqueue(s, "no.such.kind", {})
    Worker(ctx, {}).run_once()
    with ctx.db.read() as s:
        job = s.exec(select(OutboxJob)).one()
    assert job.status is OutboxStatus.pending and "no handler" in (job.last_error or "")


def test_a_job_kind_with_two_handlers_stops_the_start() -> None:
    from lephi.jobs import merged

    def one(_ctx: AppContext, _payload: dict[str, Any]) -> None: ...

    assert set(merged({"a.x": one}, {"b.y": one})) == {"a.x", "b.y"}
    with pytest.raises(ValueError, match=r"'a\.x' has two handlers"):
        merged({"a.x": one}, {"a.x": one})
