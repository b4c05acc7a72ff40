"""A Hypothesis state machine of payments and refunds, driven through the public HTTP API.

Each example builds a fresh app and database (a copy of the migrated SQLite template, or the run's PostgreSQL
database truncated), a few dossiers, and then interleaves: payment attempts (after editing the dossier, sometimes),
the payer's choice on the sandbox page (whose signed callback is delivered, or lost and kept for later), replays of
captured callbacks, forged and tampered callbacks, cancels, refunds and single runs of the outbox worker (with jobs
made due first). After every step the database is read directly and the money invariants are checked; each step
also checks the answer the specification implies, and that the API shows what the database holds.
"""

from __future__ import annotations

import json
import secrets
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from itertools import pairwise
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)
from sqlalchemy import create_engine, text, update
from sqlmodel import col, select

from adapters.sandbox import SIGNATURE_HEADER, sign
from lephi.app import create_app
from lephi.container import build_container
from lephi.jobs import HANDLERS
from lephi.tables import metadata
from payments.auth.service import create_key
from payments.core.db import Database, make_engine
from payments.core.types import utcnow
from payments.dossier.models import Dossier, DossierStatus
from payments.gateway.models import SandboxTransaction
from payments.outbox.models import OutboxJob, OutboxStatus
from payments.outbox.worker import Worker
from payments.payment.models import Payment, PaymentEvent, Refund, RefundStatus
from payments.payment.states import LIVE, PAID, TRANSITIONS, PaymentStatus
from tests.conftest import ALL_SCOPES, BACKENDS, make_settings
from tests.factories import dossier_body, payment_body, sandbox_outcome, seed_agency

S = PaymentStatus
REFUNDABLE = frozenset({S.succeeded, S.partially_refunded})
CALLBACK_PATH = "/v1/gateways/sandbox/callback"
# What a (valid, verified) gateway report does to a payment that is still live, per the specification.
REPORTED = {"succeeded": S.succeeded, "failed": S.failed, "cancelled": S.cancelled, "pending": S.pending}
SANDBOX_OUTCOME = {"success": "succeeded", "decline": "failed", "cancel": "cancelled"}
# Errors not kept under an Idempotency-Key: a retry runs the request again.
TRANSIENT = {"payment_in_progress", "idempotency_key_in_progress", "gateway_unavailable"}
PICK = st.integers(min_value=0, max_value=10)  # which payment: an index, modulo how many there are
FOCUS = st.sampled_from([True, True, False])  # pick among the payments where the step matters, most of the time


@dataclass
class Captured:
    """One server-to-server callback the sandbox sent (or tried to send): kept so it can be delivered again."""

    body: bytes
    headers: dict[str, str]
    payment_id: str
    delivered: bool


class CallbackRecorder:
    """Stands in for the sandbox's HTTP client: records every callback and delivers it, or loses it on request."""

    def __init__(self) -> None:
        self.client: TestClient | None = None
        self.lose = False
        self.captured: list[Captured] = []

    def post(self, url: str, content: bytes, headers: dict[str, str], **_: Any) -> Any:
        item = Captured(content, dict(headers), json.loads(content)["merchant_reference"], delivered=not self.lose)
        self.captured.append(item)
        if self.lose:
            raise httpx.ConnectError("callback lost by the test")
        assert self.client is not None
        response = self.client.post(url, content=content, headers=headers)
        assert response.status_code < 500, response.text
        return response


@dataclass(frozen=True)
class Sent:
    path: str
    body: Any
    key: str
    status: int
    answer: Any


@dataclass
class Seen:
    """What the test has observed of one payment, step after step."""

    status: PaymentStatus = S.created
    refunded: int = 0
    transitions: int = 1  # the creation event, to_status=created
    history: list[str] = field(default_factory=lambda: ["created"])


@dataclass
class Snapshot:
    status: PaymentStatus
    amount: int
    refunded: int
    reserved: int
    requires_review: bool
    events: int
    dossier_status: DossierStatus
    sandbox_status: str | None
    sandbox_refunded: int


class PaymentMachine(RuleBasedStateMachine):
    """Set ``fresh_database`` (a function of a scratch directory returning an empty migrated database's URL)."""

    fresh_database: Callable[[Path], str]

    def __init__(self) -> None:
        super().__init__()
        self.tmp = Path(tempfile.mkdtemp(prefix="lephi-sm-"))
        url = self.fresh_database(self.tmp)
        # synchronous=NORMAL: no fsync per commit (WAL keeps it atomic); the test does not need durability.
        self.settings = make_settings(url, self.tmp, db_pool_size=5, sqlite_synchronous="NORMAL")
        # The sandbox adapter's HTTP client: its callbacks go to the app below, which needs the context first.
        self.recorder = CallbackRecorder()
        self.ctx = build_container(
            self.settings,
            Database(make_engine(self.settings.effective_database_url, self.settings)),
            http=self.recorder,  # type: ignore[arg-type]
        )
        self.client = TestClient(create_app(self.settings, self.ctx), raise_server_exceptions=False)
        self.client.__enter__()
        self.recorder.client = self.client
        with self.ctx.db.write() as s:
            seed_agency(s, "AGC-SM")
            _, raw = create_key(s, "AGC-SM", "state machine", ALL_SCOPES)
        self.auth = {"Authorization": f"Bearer {raw}"}
        self.dossiers: list[str] = []  # codes
        self.payments: list[str] = []  # ids, in creation order
        self.seen: dict[str, Seen] = {}
        self.last: Sent | None = None  # the last POST to /v1, for a retry with the same Idempotency-Key

    def teardown(self) -> None:
        self.client.__exit__(None, None, None)
        self.ctx.close()
        shutil.rmtree(self.tmp, ignore_errors=True)

    # --- helpers ---------------------------------------------------------------------------------------------
    def _post(self, path: str, body: Any, key: str | None = None) -> httpx.Response:
        key = key or secrets.token_hex(8)
        response = self.client.post(path, json=body, headers={**self.auth, "Idempotency-Key": key})
        assert response.status_code < 500, f"POST {path} -> {response.status_code}: {response.text}"
        self.last = Sent(path, body, key, response.status_code, response.json())
        return response

    def _counts(self) -> tuple[int, int, int, int]:
        """How many dossiers, payments, refunds and events there are."""
        with self.ctx.db.read() as s:
            return (
                len(s.exec(select(Dossier.id)).all()),
                len(s.exec(select(Payment.id)).all()),
                len(s.exec(select(Refund.id)).all()),
                len(s.exec(select(PaymentEvent.id)).all()),
            )

    def _callback(self, body: bytes, headers: dict[str, str]) -> httpx.Response:
        response = self.client.post(CALLBACK_PATH, content=body, headers=headers)
        assert response.status_code < 500, f"callback -> {response.status_code}: {response.text}"
        return response

    def _payment(self, index: int, focus: frozenset[PaymentStatus] | None = None, sandbox: str | None = None) -> str:
        """The payment at ``index``; with a focus, among those in one of these states (when there are any)."""
        candidates = self._matching(focus, sandbox) or self.payments
        return candidates[index % len(candidates)]

    def _matching(self, focus: frozenset[PaymentStatus] | None = None, sandbox: str | None = None) -> list[str]:
        """The payments in one of the ``focus`` states whose sandbox transaction is in state ``sandbox``."""
        candidates = self.payments
        if candidates and (focus is not None or sandbox is not None):
            with self.ctx.db.read() as s:
                rows = s.exec(select(Payment).where(col(Payment.id).in_(self.payments))).all()
                refs = [p.gateway_reference for p in rows if p.gateway_reference]
                txns = {
                    t.id: t.status
                    for t in s.exec(select(SandboxTransaction).where(col(SandboxTransaction.id).in_(refs)))
                }
            wanted = {
                p.id
                for p in rows
                if (focus is None or p.status in focus)
                and (sandbox is None or txns.get(p.gateway_reference or "") == sandbox)
            }
            candidates = [pid for pid in self.payments if pid in wanted]
        return candidates

    def _snapshot(self, payment_id: str) -> Snapshot:
        with self.ctx.db.read() as s:
            p = s.get(Payment, payment_id)
            assert p is not None
            d = s.get(Dossier, p.dossier_id)
            assert d is not None
            events = s.exec(select(PaymentEvent.id).where(PaymentEvent.payment_id == payment_id)).all()
            rec = s.get(SandboxTransaction, p.gateway_reference) if p.gateway_reference else None
            return Snapshot(
                status=p.status,
                amount=p.amount,
                refunded=p.refunded_amount,
                reserved=p.refund_reserved,
                requires_review=p.requires_review,
                events=len(events),
                dossier_status=d.status,
                sandbox_status=rec.status if rec else None,
                sandbox_refunded=rec.refunded_amount if rec else 0,
            )

    def _after(self, payment_id: str) -> Snapshot:
        """The payment's state after a step, checked against what the API shows of it."""
        snap = self._snapshot(payment_id)
        r = self.client.get(f"/v1/payments/{payment_id}", headers=self.auth)
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["status"] == snap.status.value and body["refunded_amount"] == snap.refunded, (body, snap)
        assert body["refundable_amount"] == (snap.amount - snap.reserved if snap.status in PAID else 0), (body, snap)
        assert body["requires_review"] == snap.requires_review and len(body["events"]) == snap.events, (body, snap)
        return snap

    def _dossier_state(self, code: str) -> tuple[DossierStatus, bool, int]:
        """(status, has a live payment, total) of a dossier."""
        with self.ctx.db.read() as s:
            d = s.exec(select(Dossier).where(Dossier.code == code)).one()
            live = s.exec(
                select(Payment.id).where(Payment.dossier_id == d.id, col(Payment.status).in_(list(LIVE)))
            ).first()
            return d.status, live is not None, d.total_amount

    def _gateway_reference(self, payment_id: str) -> str | None:
        with self.ctx.db.read() as s:
            p = s.get(Payment, payment_id)
            assert p is not None
            return p.gateway_reference

    # --- set-up -----------------------------------------------------------------------------------------------
    @initialize(copies=st.lists(st.integers(min_value=0, max_value=4), min_size=2, max_size=3))
    def create_dossiers_and_first_payment(self, copies: list[int]) -> None:
        for n in copies:
            r = self._post("/v1/dossiers", dossier_body(copies=n))
            assert r.status_code == 201, r.text
            assert r.json()["total_amount"] == 100_000 + 5_000 * n
            self.dossiers.append(r.json()["code"])
        self.create_payment(0, focus=False, edit=None)

    # --- rules ------------------------------------------------------------------------------------------------
    @rule(
        d=st.integers(min_value=0, max_value=2),
        focus=FOCUS,
        edit=st.one_of(st.none(), st.none(), st.integers(min_value=0, max_value=4)),
    )
    def create_payment(self, d: int, focus: bool, edit: int | None) -> None:
        """Start a payment for a dossier, after changing its fee lines first (``edit`` copies) if asked."""
        codes = self.dossiers
        if focus:  # among the dossiers that can be paid now, when there are any
            codes = [c for c in codes if self._dossier_state(c)[:2] == (DossierStatus.unpaid, False)] or codes
        code = codes[d % len(codes)]
        status, live, total = self._dossier_state(code)
        if edit is not None:  # a dossier can change until it is paid, but not while a payment is in progress
            r = self._post("/v1/dossiers", dossier_body(code, copies=edit))
            if status is DossierStatus.unpaid and not live:
                assert r.status_code == 200 and r.json()["total_amount"] == 100_000 + 5_000 * edit, r.text
                total = r.json()["total_amount"]
            else:
                assert r.status_code == 409 and r.json()["code"] == "dossier_locked", r.text
        r = self._post("/v1/payments", payment_body(code))
        if status is not DossierStatus.unpaid:
            assert r.status_code == 409 and r.json()["code"] == "dossier_not_payable", r.text
        elif live:
            assert r.status_code == 409 and r.json()["code"] == "payment_in_progress", r.text
        else:
            assert r.status_code == 201, r.text
            body = r.json()
            assert body["status"] == "pending" and body["amount"] == total, body
            self.payments.append(body["id"])

    def _sandbox_page(self, p: int, outcome: str, deliver: bool, focus: bool) -> None:
        """The payer picks an outcome on the sandbox page; its callback arrives now, or is lost (kept for later)."""
        payment_id = self._payment(p, sandbox="pending" if focus else None)
        ref = self._gateway_reference(payment_id)
        assert ref is not None
        before = self._snapshot(payment_id)
        self.recorder.lose = not deliver
        try:
            r = sandbox_outcome(self.client, self.settings, ref, outcome, follow_redirects=False)
        finally:
            self.recorder.lose = False
        assert r.status_code == 303, r.text
        after = self._after(payment_id)
        if outcome == "pending" or before.sandbox_status != "pending":
            assert after.sandbox_status == before.sandbox_status  # nothing to settle at the gateway
            assert after.status is before.status
            return
        assert after.sandbox_status == SANDBOX_OUTCOME[outcome]
        if deliver:
            self._check_reported(SANDBOX_OUTCOME[outcome], before, after)
        else:
            assert after.status is before.status

    @precondition(lambda self: self._matching(sandbox="pending"))
    @rule(p=PICK, deliver=st.sampled_from([True, True, False]))
    def payer_pays(self, p: int, deliver: bool) -> None:
        self._sandbox_page(p, "success", deliver, focus=True)

    @precondition(lambda self: self.payments)
    @rule(p=PICK, outcome=st.sampled_from(["decline", "cancel", "pending"]), deliver=st.booleans(), focus=FOCUS)
    def payer_does_not_pay(self, p: int, outcome: str, deliver: bool, focus: bool) -> None:
        self._sandbox_page(p, outcome, deliver, focus)

    @precondition(lambda self: self.recorder.captured)
    @rule(i=st.integers(min_value=0, max_value=20))
    def replay_captured_callback(self, i: int) -> None:
        """Deliver a captured callback again (a duplicate) or for the first time (a late, maybe out-of-order one)."""
        item = self.recorder.captured[i % len(self.recorder.captured)]
        before = self._snapshot(item.payment_id)
        r = self._callback(item.body, item.headers)
        after = self._after(item.payment_id)
        if item.delivered:
            assert r.status_code == 200 and r.json()["result"] == "duplicate", r.text
            assert after == before, "a duplicate callback changed something"
        else:
            item.delivered = True
            assert r.status_code == 200, r.text
            self._check_reported(json.loads(item.body)["status"], before, after)

    @staticmethod
    def _check_reported(reported: str, before: Snapshot, after: Snapshot) -> None:
        """What a verified gateway report must do: move a live payment, and nothing else (never backwards)."""
        expected = REPORTED[reported] if before.status in LIVE and reported in REPORTED else before.status
        assert after.status is expected, (reported, before, after)
        if reported == "succeeded" and before.status not in LIVE | PAID:
            assert after.requires_review, f"a success reported after the attempt was {before.status.value}: no flag"

    def _forged(self, payment_id: str, reported: str, tamper: str) -> tuple[httpx.Response, Snapshot, Snapshot]:
        before = self._snapshot(payment_id)
        event = {
            "event_id": "evt_forged_" + secrets.token_hex(8),
            "transaction_id": self._gateway_reference(payment_id),
            "merchant_reference": payment_id,
            "status": reported,
            "amount": before.amount,
            "currency": "VND",
        }
        if tamper == "reference":
            event["transaction_id"] = "sbx_" + secrets.token_hex(12)
        elif tamper == "order":
            event["merchant_reference"] = "pay_" + secrets.token_hex(12)
        elif tamper == "amount":
            event["amount"] = before.amount + 1_000
        elif tamper == "currency":
            event["currency"] = "USD"
        body = json.dumps(event, separators=(",", ":")).encode()
        secret = "not-the-secret" if tamper == "signature" else self.settings.sandbox_secret
        timestamp = int(time.time()) - (3_600 if tamper == "stale" else 0)
        headers = {SIGNATURE_HEADER: sign(secret, body, timestamp), "content-type": "application/json"}
        r = self._callback(body, headers)
        if tamper == "none":
            self.recorder.captured.append(Captured(body, headers, payment_id, delivered=True))
        return r, before, self._after(payment_id)

    @precondition(lambda self: self.payments)
    @rule(
        p=PICK,
        reported=st.sampled_from(["succeeded", "succeeded", "failed", "cancelled", "pending", "unknown"]),
        focus=st.booleans(),
    )
    def out_of_order_callback(self, p: int, reported: str, focus: bool) -> None:
        """A validly signed callback the sandbox never sent: whatever it says, a payment never moves backwards."""
        payment_id = self._payment(p, LIVE if focus else None)
        r, before, after = self._forged(payment_id, reported, "none")
        assert r.status_code == 200, r.text
        self._check_reported(reported, before, after)

    @precondition(lambda self: self.payments)
    @rule(
        p=PICK,
        reported=st.sampled_from(["succeeded", "failed", "cancelled"]),
        tamper=st.sampled_from(["amount", "reference", "order", "currency", "signature", "stale"]),
    )
    def tampered_callback(self, p: int, reported: str, tamper: str) -> None:
        """A callback with a bad signature, an old timestamp or a field that does not match: it changes nothing."""
        r, before, after = self._forged(self._payment(p, LIVE), reported, tamper)
        if tamper in ("signature", "stale"):
            assert r.status_code == 401, r.text
            assert after == before
        else:
            assert r.status_code == 422, r.text
            assert (after.status, after.refunded, after.requires_review) == (
                before.status,
                before.refunded,
                before.requires_review,
            )

    @precondition(lambda self: self.payments)
    @rule(p=PICK, focus=FOCUS)
    def cancel(self, p: int, focus: bool) -> None:
        payment_id = self._payment(p, LIVE if focus else None)
        before = self._snapshot(payment_id)
        r = self._post(f"/v1/payments/{payment_id}/cancel", None)
        after = self._after(payment_id)
        if before.status not in LIVE:
            assert r.status_code == 409 and r.json()["code"] == "invalid_transition", r.text
            assert after.status is before.status
        elif before.sandbox_status in ("pending", "cancelled", None):
            assert r.status_code == 200 and r.json()["status"] == "cancelled", r.text
            assert after.status is S.cancelled
        else:
            # The payer already finished at the gateway (its callback is late or lost): the cancel is refused, and
            # what the gateway reported is recorded, as the answer says ("is <status> at the gateway").
            assert before.sandbox_status is not None
            assert r.status_code == 409 and r.json()["code"] == "invalid_transition", r.text
            assert after.status is REPORTED[before.sandbox_status], (r.json()["detail"], before, after)

    def _refund(self, p: int, focus: bool, amount: Callable[[int], int]) -> None:
        """Ask for a refund of ``amount(available)`` VND, where available is what is not yet refunded or promised."""
        payment_id = self._payment(p, REFUNDABLE if focus else None)
        before = self._snapshot(payment_id)
        available = before.amount - before.reserved
        value = max(amount(available), 1)
        r = self._post(f"/v1/payments/{payment_id}/refunds", {"amount": value, "reason": "Hồ sơ bị từ chối"})
        after = self._after(payment_id)
        if before.status not in REFUNDABLE:
            assert r.status_code == 409 and r.json()["code"] == "invalid_transition", r.text
            assert after == before
            return
        if value > available:
            assert r.status_code == 422 and r.json()["code"] == "refund_exceeds_available", r.text
            assert r.json()["refundable_amount"] == available
            assert after == before
            return
        assert r.status_code == 201, r.text
        gateway_can = before.sandbox_status == "succeeded" and before.sandbox_refunded + value <= before.amount
        if gateway_can:
            assert r.json()["status"] == "succeeded", r.text
            assert after.refunded == before.refunded + value and after.reserved == before.reserved + value
            assert after.status is (S.refunded if after.refunded == after.amount else S.partially_refunded)
            assert after.sandbox_refunded == before.sandbox_refunded + value
        else:  # e.g. the success came from a forged callback: the sandbox has nothing to refund
            assert r.json()["status"] == "failed", r.text
            assert after.refunded == before.refunded and after.status is before.status
            assert after.reserved == before.reserved

    @precondition(lambda self: self.payments)
    @rule(p=PICK, amount=st.one_of(st.just("half"), st.integers(min_value=1, max_value=125_000)), focus=FOCUS)
    def refund_part(self, p: int, amount: int | str, focus: bool) -> None:
        self._refund(p, focus, lambda available: available // 2 if amount == "half" else int(amount))

    @precondition(lambda self: self._matching(REFUNDABLE))
    @rule(p=PICK, extra=st.sampled_from([0, 0, 1, 5_000]))
    def refund_the_rest(self, p: int, extra: int) -> None:
        """Refund all that is left, or a little more than that (which must be refused and change nothing)."""
        self._refund(p, True, lambda available: available + extra)

    @precondition(lambda self: self.last is not None)
    @rule()
    def retry_last_request(self) -> None:
        """The client retries its last POST with the same Idempotency-Key: it gets the first answer, and nothing
        happens twice (a refund is not paid out again). Only errors marked transient are not kept, and run again."""
        sent = self.last
        assert sent is not None
        before = self._counts()
        r = self._post(sent.path, sent.body, key=sent.key)
        if sent.status < 400 or sent.answer.get("code") not in TRANSIENT:
            assert (r.status_code, r.json()) == (sent.status, sent.answer), (sent, r.text)
            assert r.headers.get("Idempotent-Replayed") == "true", r.headers
            assert self._counts() == before, "a replayed request changed the database"
        elif r.status_code == 201 and sent.path == "/v1/payments":  # the dossier's live attempt ended meanwhile
            self.payments.append(r.json()["id"])

    @rule(
        due=st.sampled_from([None, None, "payment.requery", "payment.requery", "refund.retry", "payment.expire", "all"])
    )
    def run_worker(self, due: str | None) -> None:
        """Run one batch of outbox jobs, after making some of them due (their time moved into the past)."""
        if due is not None:
            with self.ctx.db.write() as s:
                query = update(OutboxJob).where(col(OutboxJob.status) == OutboxStatus.pending)
                if due != "all":
                    query = query.where(col(OutboxJob.kind) == due)
                s.execute(query.values(run_after=utcnow() - timedelta(seconds=1)))
        Worker(self.ctx, HANDLERS, name="state-machine").run_once()
        with self.ctx.db.read() as s:
            for job in s.exec(select(OutboxJob).where(col(OutboxJob.last_error).is_not(None))):
                # The only acceptable failure is "the gateway still says pending"; anything else is a crash.
                assert (job.last_error or "").startswith("GatewayTechnicalError"), (job.kind, job.last_error)

    # --- invariants -------------------------------------------------------------------------------------------
    @invariant()
    def money_and_history_are_consistent(self) -> None:
        with self.ctx.db.read() as s:
            payments = list(s.exec(select(Payment)))
            dossiers = list(s.exec(select(Dossier)))
            events = list(s.exec(select(PaymentEvent).order_by(col(PaymentEvent.id))))
            refunds = list(s.exec(select(Refund)))
        by_dossier: dict[str, list[Payment]] = {d.id: [] for d in dossiers}
        for p in payments:
            by_dossier[p.dossier_id].append(p)

        for p in payments:
            # Amounts: never refund more than was paid, and the refunds that succeeded add up exactly.
            mine = [r for r in refunds if r.payment_id == p.id]
            assert 0 <= p.refunded_amount <= p.amount, p
            assert p.refunded_amount == sum(r.amount for r in mine if r.status is RefundStatus.succeeded), p
            held = sum(r.amount for r in mine if r.status in (RefundStatus.pending, RefundStatus.succeeded))
            assert p.refund_reserved == held and p.refund_reserved <= p.amount, (p, mine)
            if p.status is S.refunded:
                assert p.refunded_amount == p.amount, p
            elif p.status is S.partially_refunded:
                assert 0 < p.refunded_amount < p.amount, p
            else:
                assert p.refunded_amount == 0, p

            # Never backwards: every change seen between two steps is allowed by the transition table.
            seen = self.seen.setdefault(p.id, Seen())
            if (p.status, p.refunded_amount) != (seen.status, seen.refunded):
                assert p.status in TRANSITIONS[seen.status], f"{p.id}: {seen.history} -> {p.status.value}"
                assert p.refunded_amount >= seen.refunded, p
                seen.transitions += 1
                seen.status, seen.refunded = p.status, p.refunded_amount
                seen.history.append(p.status.value)

            # Every change has its event, and the events chain from 'created' to the current status.
            moves = [e for e in events if e.payment_id == p.id and e.to_status is not None]
            chain = [(e.from_status, e.to_status) for e in moves]
            assert len(moves) == seen.transitions, f"{p.id}: seen {seen.history}, events {chain}"
            assert chain[0] == (None, S.created.value), chain
            for (_, prev_to), (frm, to) in pairwise(chain):
                assert frm == prev_to and to is not None and S(to) in TRANSITIONS[S(prev_to)], chain
            assert moves[-1].to_status == p.status.value, chain
            assert (p.succeeded_at is not None) == (p.status in PAID), p

            # Each refund leaves its request and its outcome in the history.
            kinds = [e.kind for e in events if e.payment_id == p.id]
            assert kinds.count("refund.requested") == len(mine), (kinds, mine)
            assert kinds.count("refund.succeeded") == sum(r.status is RefundStatus.succeeded for r in mine), kinds
            assert kinds.count("refund.failed") == sum(r.status is RefundStatus.failed for r in mine), kinds

        for d in dossiers:
            attempts = by_dossier[d.id]
            paid = [p for p in attempts if p.status in PAID]
            live = [p for p in attempts if p.status in LIVE]
            assert len(paid) <= 1, (d.code, paid)
            assert len(live) <= 1, (d.code, live)
            assert not (paid and live), f"dossier {d.code} has a live attempt although it is paid"
            assert (d.paid_at is not None) == bool(paid), (d.code, d.paid_at, paid)
            if not paid:
                assert d.status is DossierStatus.unpaid, (d.code, d.status, attempts)
            elif paid[0].status is S.refunded:
                assert d.status is DossierStatus.refunded, (d.code, d.status, paid)
            else:
                assert d.status is DossierStatus.paid, (d.code, d.status, paid)


# --- running it on each backend -------------------------------------------------------------------------------
# About 0.5 s per example on SQLite. A failure is shrunk for up to Hypothesis's five minutes before it is reported,
# hence the timeout above the suite's default.
COMMON = {
    "stateful_step_count": 20,
    "deadline": None,
    "suppress_health_check": [HealthCheck.too_slow, HealthCheck.data_too_large],
}
RUN = {"sqlite": settings(max_examples=40, **COMMON), "postgres": settings(max_examples=15, **COMMON)}


@pytest.mark.timeout(900)
@pytest.mark.parametrize(
    "backend", [pytest.param(b, marks=[pytest.mark.postgres] if b == "postgres" else []) for b in BACKENDS]
)
def test_payments_and_refunds_state_machine(
    backend: str, request: pytest.FixtureRequest, sqlite_template: Path
) -> None:
    if backend == "sqlite":

        def fresh(tmp: Path) -> str:
            path = tmp / "lephi.db"
            shutil.copy(sqlite_template, path)
            return f"sqlite:///{path}"

    else:
        url: str = request.getfixturevalue("pg_database")
        tables = ", ".join(f'"{t.name}"' for t in metadata.sorted_tables)

        def fresh(tmp: Path) -> str:
            engine = create_engine(url)
            with engine.begin() as conn:
                conn.execute(text(f"TRUNCATE {tables} RESTART IDENTITY CASCADE"))
            engine.dispose()
            return url

    machine = type(f"PaymentMachine_{backend}", (PaymentMachine,), {"fresh_database": staticmethod(fresh)})
    run_state_machine_as_test(machine, settings=RUN[backend])
