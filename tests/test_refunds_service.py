"""Refunds called directly (payments/payment/refunds.py) on a real database: the reservation's bounds and races, the
gateway's answers, and what each outcome writes (refund row, payment, events, outbox jobs, dossier). The API tests
(tests/console/test_refunds.py, tests/test_callbacks.py) cover the same rules over HTTP; these pin each branch
cheaply, so that the mutation run of the module takes minutes.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterator
from contextlib import AbstractContextManager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, cast

import pytest
from sqlalchemy import text
from sqlmodel import select

from adapters.base import GatewayDeclinedError, GatewayTechnicalError, RefundOutcome, RefundRequest, RefundResult
from payments.auth.service import Principal
from payments.core.context import AppContext
from payments.core.db import Database, make_engine
from payments.core.errors import InvalidTransition, NotFound, RefundExceedsAvailable
from payments.core.types import clock_at
from payments.dossier.models import Dossier, DossierStatus
from payments.idempotency.models import IdempotencyRecord
from payments.idempotency.service import Idempotency
from payments.outbox.models import OutboxJob
from payments.payment import kinds
from payments.payment import refunds as refunds_module
from payments.payment.models import Payment, PaymentEvent, Refund, RefundStatus
from payments.payment.refunds import (
    RefundCreation,
    list_refunds,
    process_refund,
    reserve_refund,
    retry_refund,
)
from payments.payment.schemas import RefundIn
from payments.payment.states import PaymentStatus
from tests.conftest import make_settings
from tests.factories import seed_agency
from tests.logrecord import module_logs


def capture_logs() -> AbstractContextManager[list[dict[str, Any]]]:
    return module_logs(refunds_module)


T0 = datetime(2026, 12, 3, 3, 0, tzinfo=UTC)
T1 = T0 + timedelta(minutes=7)
AMOUNT = 110_000


@pytest.fixture
def db(database_url: str, tmp_path: Path) -> Iterator[Database]:
    settings = make_settings(database_url, tmp_path)
    database = Database(make_engine(settings.effective_database_url, settings))
    yield database
    database.dispose()


class Gateway:
    """The gateway's side of a refund: records each request and gives the answer (or raises the error) it was set."""

    def __init__(self, answer: RefundResult | BaseException) -> None:
        self.answer = answer
        self.requests: list[RefundRequest] = []

    def refund(self, request: RefundRequest) -> RefundResult:
        self.requests.append(request)
        if isinstance(self.answer, BaseException):
            raise self.answer
        return self.answer


class Ctx:
    """What ``process_refund`` uses of the application context: the database and the agency's gateway."""

    def __init__(self, db: Database, gateway: Gateway) -> None:
        self.db = db
        self._gateway = gateway
        self.asked: list[tuple[str, str]] = []

    def gateway(self, name: str, agency_id: str) -> Gateway:
        self.asked.append((name, agency_id))
        return self._gateway


def ctx_of(db: Database, answer: RefundResult | BaseException) -> tuple[AppContext, Ctx]:
    fake = Ctx(db, Gateway(answer))
    return cast(AppContext, fake), fake


def ok(reference: str = "GW-R1") -> RefundResult:
    return RefundResult(RefundOutcome.succeeded, gateway_reference=reference)


def seed(
    db: Database,
    status: PaymentStatus = PaymentStatus.succeeded,
    amount: int = AMOUNT,
    reference: str | None = "GW-P1",
    code: str = "AGC-A",
    reserved: int = 0,
    refunded: int = 0,
) -> Payment:
    with db.write() as s:
        agency = seed_agency(s, code)
        procedure_id = s.exec(text("SELECT id FROM procedure WHERE agency_id = :a").bindparams(a=agency.id)).one()[0]  # type: ignore[call-overload]
        dossier = Dossier(
            agency_id=agency.id,
            code=f"HS-{secrets.token_hex(3)}",
            procedure_id=procedure_id,
            payer_name="Nguyễn Văn An",
            total_amount=amount,
            status=DossierStatus.paid if status is not PaymentStatus.pending else DossierStatus.unpaid,
            pay_token=secrets.token_hex(8),
        )
        s.add(dossier)
        s.flush()
        payment = Payment(
            agency_id=agency.id,
            dossier_id=dossier.id,
            gateway="sandbox",
            amount=amount,
            status=status,
            gateway_token=secrets.token_hex(8),
            gateway_reference=reference,
            return_url="https://portal.example.gov.vn/done",
            description="Lệ phí",
            expires_at=T0 + timedelta(hours=1),
            refund_reserved=reserved,
            refunded_amount=refunded,
        )
        s.add(payment)
        s.flush()
    return payment


def reserve(db: Database, payment: Payment, amount: int, actor: str = "staff:lan") -> Refund:
    with db.write() as s:
        return reserve_refund(s, payment.agency_id, payment.id, amount, "Hồ sơ không đủ điều kiện", actor)


def reload(db: Database, payment: Payment) -> Payment:
    with db.read() as s:
        found = s.get(Payment, payment.id)
        assert found is not None
        return found


def refund_row(db: Database, refund_id: str) -> Refund:
    with db.read() as s:
        found = s.get(Refund, refund_id)
        assert found is not None
        return found


def events(db: Database, payment: Payment) -> list[PaymentEvent]:
    with db.read() as s:
        rows = s.exec(select(PaymentEvent).where(PaymentEvent.payment_id == payment.id).order_by(PaymentEvent.id))  # type: ignore[arg-type]
        return list(rows)


def jobs(db: Database, kind: str | None = None) -> list[OutboxJob]:
    with db.read() as s:
        rows = list(s.exec(select(OutboxJob).order_by(OutboxJob.id)))  # type: ignore[arg-type]
    return [j for j in rows if kind is None or j.kind == kind]


def dossier_of(db: Database, payment: Payment) -> Dossier:
    with db.read() as s:
        found = s.get(Dossier, payment.dossier_id)
        assert found is not None
        return found


def refunds_count(db: Database) -> int:
    with db.read() as s:
        return len(list(s.exec(select(Refund))))


# --- reserving ---------------------------------------------------------------------------------------------------
def test_a_partial_refund_reserves_its_amount_and_writes_the_refund_event_and_retry_job(db: Database) -> None:
    payment = seed(db)
    with clock_at(T0):
        refund = reserve(db, payment, 40_000, actor="staff:lan")
    row = refund_row(db, refund.id)
    assert (row.payment_id, row.amount, row.reason, row.created_by) == (
        payment.id,
        40_000,
        "Hồ sơ không đủ điều kiện",
        "staff:lan",
    )
    assert (row.status, row.gateway_reference, row.failure_reason, row.completed_at) == (
        RefundStatus.pending,
        None,
        None,
        None,
    )
    assert row.gateway_token.startswith("rtk")
    after = reload(db, payment)
    assert (after.refund_reserved, after.refunded_amount, after.status) == (40_000, 0, PaymentStatus.succeeded)
    [event] = events(db, payment)
    assert (event.kind, event.actor, event.amount, event.detail) == (
        "refund.requested",
        "staff:lan",
        40_000,
        {"refund_id": refund.id},
    )
    assert (event.from_status, event.to_status) == (None, None)
    [job] = jobs(db)
    assert (job.kind, job.payload, job.run_after) == (
        kinds.REFUND_RETRY,
        {"refund_id": refund.id},
        T0 + timedelta(minutes=2),
    )


def test_each_refund_has_its_own_gateway_token(db: Database) -> None:
    payment = seed(db)
    first, second = reserve(db, payment, 1), reserve(db, payment, 1)
    assert first.gateway_token != second.gateway_token
    assert reload(db, payment).refund_reserved == 2


def test_the_whole_amount_can_be_reserved_and_then_nothing_more(db: Database) -> None:
    payment = seed(db)
    reserve(db, payment, AMOUNT)
    assert reload(db, payment).refund_reserved == AMOUNT
    with pytest.raises(RefundExceedsAvailable) as raised:
        reserve(db, payment, 1)
    assert raised.value.detail == f"at most 0 VND can be refunded on payment {payment.id}"
    assert raised.value.extra == {"refundable_amount": 0}


def test_what_is_already_reserved_bounds_the_next_refund(db: Database) -> None:
    payment = seed(db, status=PaymentStatus.partially_refunded, reserved=30_000, refunded=30_000)
    reserve(db, payment, AMOUNT - 30_000)
    assert reload(db, payment).refund_reserved == AMOUNT


def test_one_more_than_available_is_refused_and_nothing_is_written(db: Database) -> None:
    payment = seed(db, reserved=10_000)
    with pytest.raises(RefundExceedsAvailable) as raised:
        reserve(db, payment, AMOUNT - 10_000 + 1)
    assert raised.value.detail == f"at most 100000 VND can be refunded on payment {payment.id}"
    assert raised.value.extra == {"refundable_amount": 100_000}
    assert raised.value.status == 422
    assert reload(db, payment).refund_reserved == 10_000
    assert (refunds_count(db), events(db, payment), jobs(db)) == (0, [], [])


@pytest.mark.parametrize(
    "status",
    [
        PaymentStatus.created,
        PaymentStatus.pending,
        PaymentStatus.failed,
        PaymentStatus.cancelled,
        PaymentStatus.expired,
        PaymentStatus.refunded,
    ],
)
def test_a_payment_that_is_not_paid_or_is_fully_refunded_cannot_be_refunded(
    db: Database, status: PaymentStatus
) -> None:
    payment = seed(db, status=status)
    with pytest.raises(InvalidTransition) as raised:
        reserve(db, payment, 1)
    assert raised.value.detail == f"payment {payment.id} is {status.value} and cannot be refunded"
    assert reload(db, payment).refund_reserved == 0
    assert refunds_count(db) == 0


def test_a_partially_refunded_payment_can_be_refunded_again(db: Database) -> None:
    payment = seed(db, status=PaymentStatus.partially_refunded, reserved=10_000, refunded=10_000)
    reserve(db, payment, 5_000)
    assert reload(db, payment).refund_reserved == 15_000


def test_another_agencys_payment_is_not_found(db: Database) -> None:
    payment = seed(db)
    other = seed(db, code="AGC-B", reference="GW-P2")
    with db.write() as s, pytest.raises(NotFound):
        reserve_refund(s, other.agency_id, payment.id, 1, "r", "staff:lan")
    assert reload(db, payment).refund_reserved == 0


def test_a_reservation_made_since_the_payment_was_read_wins(db: Database) -> None:
    """The check on the row read and the compare-and-set disagree: another refund reserved the money in between."""
    payment = seed(db)
    with db.write() as s:
        seen = s.get(Payment, payment.id)  # what this request read first (held: the identity map is weak)
        s.execute(text("UPDATE payment SET refund_reserved = :r WHERE id = :i"), {"r": 100_000, "i": payment.id})
        with pytest.raises(RefundExceedsAvailable) as raised:
            reserve_refund(s, payment.agency_id, payment.id, 20_000, "r", "staff:lan")
        assert seen is not None
    # The figure is the one this request saw: the reservation it lost to is not yet visible to the caller.
    assert raised.value.extra == {"refundable_amount": AMOUNT}
    assert (refunds_count(db), jobs(db)) == (0, [])


def test_a_payment_refunded_since_it_was_read_is_not_reserved_on(db: Database) -> None:
    payment = seed(db)
    with db.write() as s:
        seen = s.get(Payment, payment.id)
        s.execute(text("UPDATE payment SET status = 'refunded' WHERE id = :i"), {"i": payment.id})
        with pytest.raises(RefundExceedsAvailable):
            reserve_refund(s, payment.agency_id, payment.id, 1, "r", "staff:lan")
        assert seen is not None and seen.status is PaymentStatus.succeeded
    assert reload(db, payment).refund_reserved == 0


# --- the gateway's answers ---------------------------------------------------------------------------------------
def test_the_gateway_is_asked_with_the_refund_and_payment_and_a_success_is_recorded(db: Database) -> None:
    payment = seed(db)
    refund = reserve(db, payment, 40_000)
    ctx, fake = ctx_of(db, ok("GW-R1"))
    with clock_at(T1):
        out = process_refund(ctx, refund.id)
    assert fake.asked == [("sandbox", payment.agency_id)]
    assert fake._gateway.requests == [
        RefundRequest(
            merchant_reference=payment.id,
            gateway_reference="GW-P1",
            idempotency_key=refund.gateway_token,
            amount=40_000,
            payment_amount=AMOUNT,
            reason="Hồ sơ không đủ điều kiện",
        )
    ]
    assert (out.id, out.status, out.gateway_reference, out.completed_at) == (
        refund.id,
        RefundStatus.succeeded,
        "GW-R1",
        T1,
    )
    row = refund_row(db, refund.id)
    assert (row.status, row.gateway_reference, row.completed_at, row.failure_reason) == (
        RefundStatus.succeeded,
        "GW-R1",
        T1,
        None,
    )
    after = reload(db, payment)
    assert (after.status, after.refunded_amount, after.refund_reserved) == (
        PaymentStatus.partially_refunded,
        40_000,
        40_000,
    )
    last = events(db, payment)[-1]
    assert (last.kind, last.from_status, last.to_status, last.actor, last.gateway_reference, last.detail) == (
        "refund.succeeded",
        "succeeded",
        "partially_refunded",
        "gateway:sandbox",
        "GW-R1",
        {"refund_id": refund.id, "refund_amount": 40_000},
    )
    [adjustment] = jobs(db, kinds.REFUND_SUCCEEDED)
    assert adjustment.payload == {"refund_id": refund.id}
    assert dossier_of(db, payment).status is DossierStatus.paid


def test_refunds_adding_up_to_the_whole_payment_refund_it_and_its_dossier(db: Database) -> None:
    payment = seed(db)
    first, second = reserve(db, payment, 60_000), reserve(db, payment, 50_000)
    ctx, _ = ctx_of(db, ok())
    process_refund(ctx, first.id)
    assert reload(db, payment).status is PaymentStatus.partially_refunded
    assert dossier_of(db, payment).status is DossierStatus.paid
    with clock_at(T1):
        process_refund(ctx, second.id)
    after = reload(db, payment)
    assert (after.status, after.refunded_amount) == (PaymentStatus.refunded, AMOUNT)
    dossier = dossier_of(db, payment)
    assert (dossier.status, dossier.updated_at) == (DossierStatus.refunded, T1)
    last = events(db, payment)[-1]
    assert (last.from_status, last.to_status) == ("partially_refunded", "refunded")
    assert len(jobs(db, kinds.REFUND_SUCCEEDED)) == 2


def test_a_full_refund_at_once_refunds_the_payment(db: Database) -> None:
    payment = seed(db)
    other = seed(db, code="AGC-B", reference="GW-P2")
    refund = reserve(db, payment, AMOUNT)
    ctx, _ = ctx_of(db, ok())
    process_refund(ctx, refund.id)
    assert reload(db, payment).status is PaymentStatus.refunded
    assert dossier_of(db, payment).status is DossierStatus.refunded
    # Only the refunded payment's dossier changes.
    assert dossier_of(db, other).status is DossierStatus.paid


def test_a_success_without_a_gateway_reference_keeps_the_payments(db: Database) -> None:
    payment = seed(db)
    refund = reserve(db, payment, 1_000)
    ctx, _ = ctx_of(db, RefundResult(RefundOutcome.succeeded))
    out = process_refund(ctx, refund.id)
    assert (out.status, out.gateway_reference) == (RefundStatus.succeeded, None)
    assert events(db, payment)[-1].gateway_reference == "GW-P1"


def test_a_declined_refund_fails_and_releases_its_reservation(db: Database) -> None:
    payment = seed(db)
    kept = reserve(db, payment, 10_000)
    refund = reserve(db, payment, 40_000)
    ctx, _ = ctx_of(db, GatewayDeclinedError("refund not allowed: " + "x" * 600))
    with clock_at(T1):
        out = process_refund(ctx, refund.id)
    reason = ("refund not allowed: " + "x" * 600)[:500]
    assert (out.status, out.failure_reason, out.completed_at) == (RefundStatus.failed, reason, T1)
    row = refund_row(db, refund.id)
    assert (row.status, row.failure_reason, row.gateway_reference) == (RefundStatus.failed, reason, None)
    after = reload(db, payment)
    assert (after.status, after.refund_reserved, after.refunded_amount) == (PaymentStatus.succeeded, 10_000, 0)
    last = events(db, payment)[-1]
    assert (last.kind, last.actor, last.amount, last.detail, last.to_status) == (
        "refund.failed",
        "gateway",
        40_000,
        {"refund_id": refund.id, "reason": reason},
        None,
    )
    assert jobs(db, kinds.REFUND_SUCCEEDED) == []
    assert refund_row(db, kept.id).status is RefundStatus.pending


def test_a_failed_answer_fails_the_refund_with_its_detail(db: Database) -> None:
    payment = seed(db)
    refund = reserve(db, payment, 40_000)
    ctx, _ = ctx_of(db, RefundResult(RefundOutcome.failed, detail="insufficient merchant balance"))
    out = process_refund(ctx, refund.id)
    assert (out.status, out.failure_reason) == (RefundStatus.failed, "insufficient merchant balance")
    assert reload(db, payment).refund_reserved == 0
    assert events(db, payment)[-1].detail == {"refund_id": refund.id, "reason": "insufficient merchant balance"}


def test_a_failed_answer_without_detail_says_the_gateway_declined(db: Database) -> None:
    payment = seed(db)
    refund = reserve(db, payment, 40_000)
    ctx, _ = ctx_of(db, RefundResult(RefundOutcome.failed))
    out = process_refund(ctx, refund.id)
    assert out.failure_reason == "declined by the gateway"


def test_a_pending_answer_leaves_the_refund_pending_and_reserved(db: Database) -> None:
    payment = seed(db)
    refund = reserve(db, payment, 40_000)
    ctx, _ = ctx_of(db, RefundResult(RefundOutcome.pending))
    out = process_refund(ctx, refund.id)
    assert (out.status, out.completed_at) == (RefundStatus.pending, None)
    assert refund_row(db, refund.id).status is RefundStatus.pending
    assert reload(db, payment).refund_reserved == 40_000
    assert [e.kind for e in events(db, payment)] == ["refund.requested"]


def test_a_technical_error_leaves_the_refund_pending_for_the_retry(db: Database) -> None:
    payment = seed(db)
    refund = reserve(db, payment, 40_000)
    ctx, fake = ctx_of(db, GatewayTechnicalError("timeout " + "y" * 300))
    with capture_logs() as logs:
        out = process_refund(ctx, refund.id)
    assert logs == [
        {
            "event": "refund.gateway_unavailable",
            "log_level": "warning",
            "refund_id": refund.id,
            "error": ("timeout " + "y" * 300)[:200],
        }
    ]
    assert (out.id, out.status, out.amount) == (refund.id, RefundStatus.pending, 40_000)
    assert len(fake._gateway.requests) == 1
    assert refund_row(db, refund.id).status is RefundStatus.pending
    assert reload(db, payment).refund_reserved == 40_000
    with pytest.raises(GatewayTechnicalError) as raised:
        retry_refund(ctx, refund.id)
    assert str(raised.value) == f"refund {refund.id} is still pending at the gateway"


def test_a_retry_that_completes_raises_nothing(db: Database) -> None:
    payment = seed(db)
    refund = reserve(db, payment, 40_000)
    ctx, _ = ctx_of(db, RefundResult(RefundOutcome.failed))
    retry_refund(ctx, refund.id)
    assert refund_row(db, refund.id).status is RefundStatus.failed


@pytest.mark.parametrize("answer", [ok("GW-R2"), RefundResult(RefundOutcome.failed, detail="no")])
def test_a_finished_refund_is_not_sent_again_nor_changed(db: Database, answer: RefundResult) -> None:
    payment = seed(db)
    refund = reserve(db, payment, 40_000)
    ctx, _ = ctx_of(db, ok("GW-R1"))
    process_refund(ctx, refund.id)
    before = (reload(db, payment), events(db, payment), jobs(db))
    again, fake = ctx_of(db, answer)
    out = process_refund(again, refund.id)
    assert fake._gateway.requests == []
    assert (out.status, out.gateway_reference) == (RefundStatus.succeeded, "GW-R1")
    assert (reload(db, payment), events(db, payment), jobs(db)) == before


@pytest.mark.parametrize("answer", [ok("GW-R2"), RefundResult(RefundOutcome.failed, detail="no")])
def test_an_answer_for_a_refund_finished_meanwhile_changes_nothing(db: Database, answer: RefundResult) -> None:
    """Two workers asked the gateway for the same pending refund; the second answer to arrive is dropped."""
    payment = seed(db)
    refund = reserve(db, payment, 40_000)

    class Racing(Gateway):
        def refund(self, request: RefundRequest) -> RefundResult:
            process_refund(
                cast(AppContext, Ctx(db, Gateway(RefundResult(RefundOutcome.failed, detail="first")))), refund.id
            )
            return super().refund(request)

    fake = Ctx(db, Racing(answer))
    out = process_refund(cast(AppContext, fake), refund.id)
    assert (out.status, out.failure_reason) == (RefundStatus.failed, "first")
    after = reload(db, payment)
    assert (after.status, after.refund_reserved, after.refunded_amount) == (PaymentStatus.succeeded, 0, 0)
    assert [e.kind for e in events(db, payment)] == ["refund.requested", "refund.failed"]
    assert jobs(db, kinds.REFUND_SUCCEEDED) == []


def test_a_payment_without_a_gateway_reference_is_not_sent(db: Database) -> None:
    payment = seed(db, reference=None)
    refund = reserve(db, payment, 40_000)
    ctx, fake = ctx_of(db, ok())
    out = process_refund(ctx, refund.id)
    assert out.status is RefundStatus.pending
    assert (fake.asked, fake._gateway.requests) == ([], [])


def test_a_success_on_a_payment_that_can_no_longer_take_it_is_an_error(db: Database) -> None:
    payment = seed(db)
    refund = reserve(db, payment, 40_000)
    with db.write() as s:
        s.execute(text("UPDATE payment SET status = 'refunded' WHERE id = :i"), {"i": payment.id})
    ctx, _ = ctx_of(db, ok())
    with pytest.raises(InvalidTransition) as raised:
        process_refund(ctx, refund.id)
    assert raised.value.detail == f"payment {payment.id} could not record refund {refund.id}"
    # Rolled back: the refund is still pending for a person to look at.
    assert refund_row(db, refund.id).status is RefundStatus.pending


# --- creation through the Idempotency-Key, and listing -----------------------------------------------------------
def test_a_creation_reserves_under_the_key_then_asks_the_gateway_and_keeps_the_answer(
    db: Database, database_url: str, tmp_path: Path
) -> None:
    payment = seed(db)
    ctx, fake = ctx_of(db, ok("GW-R1"))
    principal = Principal(key_id="key_1", agency_id=payment.agency_id, scopes=frozenset())
    creation = RefundCreation(ctx, principal, payment.id, RefundIn(amount=25_000, reason="Trả lại"), "client:key_1")
    idem = Idempotency(db, make_settings(database_url, tmp_path))

    def operation(claim: Any) -> tuple[int, dict[str, Any]]:
        return 201, creation.run(claim).model_dump(mode="json")

    outcome = idem.run("key_1", "k1", "fp", operation, creation.prepare)
    with db.read() as s:
        [refund] = list(s.exec(select(Refund)))
        [record] = list(s.exec(select(IdempotencyRecord)))
    assert (refund.amount, refund.reason, refund.created_by, refund.status) == (
        25_000,
        "Trả lại",
        "client:key_1",
        RefundStatus.succeeded,
    )
    assert (record.resource_id, record.response_status) == (refund.id, 201)
    assert json.loads(record.response_body or "") == outcome.body
    assert outcome.status == 201 and outcome.body["id"] == refund.id and outcome.body["status"] == "succeeded"
    assert len(fake._gateway.requests) == 1


def test_a_creation_above_the_available_amount_writes_no_refund(
    db: Database, database_url: str, tmp_path: Path
) -> None:
    payment = seed(db)
    ctx, fake = ctx_of(db, ok())
    principal = Principal(key_id="key_1", agency_id=payment.agency_id, scopes=frozenset())
    creation = RefundCreation(ctx, principal, payment.id, RefundIn(amount=AMOUNT + 1, reason="r"), "client:key_1")
    idem = Idempotency(db, make_settings(database_url, tmp_path))
    with pytest.raises(RefundExceedsAvailable):
        idem.run("key_1", "k1", "fp", lambda c: (201, creation.run(c).model_dump(mode="json")), creation.prepare)
    assert (refunds_count(db), fake._gateway.requests) == (0, [])


def test_a_payments_refunds_are_listed_oldest_first_to_its_agency_only(db: Database) -> None:
    payment = seed(db)
    other = seed(db, code="AGC-B", reference="GW-P2")
    with clock_at(T1):
        later = reserve(db, payment, 2)
    with clock_at(T0):
        earlier = reserve(db, payment, 1)
    reserve(db, other, 5)
    with db.read() as s:
        listed = list_refunds(s, payment.agency_id, payment.id)
        assert [(r.id, r.amount, r.status) for r in listed] == [
            (earlier.id, 1, RefundStatus.pending),
            (later.id, 2, RefundStatus.pending),
        ]
        with pytest.raises(NotFound):
            list_refunds(s, other.agency_id, payment.id)
