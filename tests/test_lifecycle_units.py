"""The payment state machine's moves called directly (payments/payment/lifecycle.py) on a real database: what a move
writes (the row, its event, the announcement and jobs, the dossier marked paid), what a gateway's reported status
does to a payment, notes, review flags and cancelling. The API tests (tests/test_callbacks.py, test_state_machine.py)
cover the same rules over HTTP; these pin each branch cheaply, so that the mutation run of the module takes minutes.
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

from adapters.base import (
    CallbackOutcome,
    GatewayStatus,
    GatewayTechnicalError,
    StatusQuery,
    StatusResult,
)
from payments.auth.service import Principal
from payments.core import observe
from payments.core.context import AppContext
from payments.core.db import Database, make_engine
from payments.core.errors import GatewayUnavailable, InvalidTransition, NotFound
from payments.core.types import clock_at
from payments.dossier.models import Dossier, DossierStatus
from payments.outbox.models import OutboxJob
from payments.payment import kinds
from payments.payment import lifecycle as lifecycle_module
from payments.payment.lifecycle import (
    apply_gateway_status,
    cancel_payment,
    flag_for_review,
    note,
    status_query,
    transition,
)
from payments.payment.models import Payment, PaymentEvent
from payments.payment.states import PaymentStatus
from payments.webhooks.models import WebhookMessage
from tests.conftest import make_settings
from tests.factories import seed_agency
from tests.logrecord import module_logs


def capture_logs() -> AbstractContextManager[list[dict[str, Any]]]:
    return module_logs(lifecycle_module)


S = PaymentStatus
T0 = datetime(2026, 12, 3, 3, 0, tzinfo=UTC)
T1 = T0 + timedelta(minutes=7)
AMOUNT = 110_000


@pytest.fixture
def db(database_url: str, tmp_path: Path) -> Iterator[Database]:
    settings = make_settings(database_url, tmp_path)
    database = Database(make_engine(settings.effective_database_url, settings))
    yield database
    database.dispose()


class Counting:
    """An observer that keeps what it is told."""

    enabled = True

    def __init__(self) -> None:
        self.statuses: list[tuple[str, str]] = []

    def payment_created(self, method: str) -> None:
        pass

    def payment_status(self, method: str, status: str) -> None:
        self.statuses.append((method, status))

    def callback(self, gateway: str, outcome: str) -> None:
        pass

    def receipt_issued(self, purpose: str) -> None:
        pass

    def webhook_failed(self, reason: str, final: bool) -> None:
        pass


@pytest.fixture
def counting() -> Iterator[Counting]:
    seen = Counting()
    previous = observe.install(seen)
    yield seen
    observe.install(previous)


def seed(
    db: Database,
    status: PaymentStatus = S.pending,
    reference: str | None = "GW-P1",
    code: str = "AGC-A",
    dossier_status: DossierStatus = DossierStatus.unpaid,
) -> Payment:
    with db.write() as s:
        agency = seed_agency(s, code)
        procedure_id = s.exec(text("SELECT id FROM procedure WHERE agency_id = :a").bindparams(a=agency.id)).one()[0]  # type: ignore[call-overload]
        dossier = Dossier(
            agency_id=agency.id,
            code=f"HS-{secrets.token_hex(3)}",
            procedure_id=procedure_id,
            payer_name="Nguyễn Văn An",
            total_amount=AMOUNT,
            status=dossier_status,
            pay_token=secrets.token_hex(8),
            created_at=T0,
            updated_at=T0,
        )
        s.add(dossier)
        s.flush()
        payment = Payment(
            agency_id=agency.id,
            dossier_id=dossier.id,
            gateway="sandbox",
            amount=AMOUNT,
            status=status,
            gateway_token=secrets.token_hex(8),
            gateway_reference=reference,
            return_url="https://portal.example.gov.vn/done",
            description="Lệ phí",
            expires_at=T0 + timedelta(hours=1),
            created_at=T0,
            updated_at=T0,
        )
        s.add(payment)
        s.flush()
    return payment


def reload(db: Database, payment: Payment) -> Payment:
    with db.read() as s:
        found = s.get(Payment, payment.id)
        assert found is not None
        return found


def events(db: Database, payment: Payment) -> list[PaymentEvent]:
    with db.read() as s:
        rows = s.exec(select(PaymentEvent).where(PaymentEvent.payment_id == payment.id).order_by(PaymentEvent.id))  # type: ignore[arg-type]
        return list(rows)


def jobs(db: Database, kind: str) -> list[OutboxJob]:
    with db.read() as s:
        rows = list(s.exec(select(OutboxJob).order_by(OutboxJob.id)))  # type: ignore[arg-type]
    return [j for j in rows if j.kind == kind]


def messages(db: Database) -> list[WebhookMessage]:
    with db.read() as s:
        return list(s.exec(select(WebhookMessage)))


def dossier_of(db: Database, payment: Payment) -> Dossier:
    with db.read() as s:
        found = s.get(Dossier, payment.dossier_id)
        assert found is not None
        return found


def move(db: Database, payment: Payment, to: PaymentStatus, **kw: Any) -> bool:
    with db.write() as s:
        current = s.get(Payment, payment.id)
        assert current is not None
        kw.setdefault("actor", "gateway:sandbox")
        kw.setdefault("kind", "gateway.callback")
        return transition(s, current, to, **kw)


# --- transition --------------------------------------------------------------------------------------------------
def test_a_move_updates_the_row_and_the_object_and_writes_its_event(db: Database, counting: Counting) -> None:
    payment = seed(db, status=S.created)
    with db.write() as s:
        current = s.get(Payment, payment.id)
        assert current is not None
        with clock_at(T1), capture_logs() as logs:
            assert transition(s, current, S.pending, actor="system", kind="payment.started") is True
        assert logs == [
            {
                "event": "payment.transition",
                "log_level": "info",
                "payment_id": payment.id,
                "from_status": "created",
                "to_status": "pending",
                "actor": "system",
            }
        ]
        assert (current.status, current.updated_at, current.succeeded_at) == (S.pending, T1, None)
        assert not s.dirty
        assert counting.statuses == []  # counted once committed
    assert counting.statuses == [("sandbox", "pending")]
    after = reload(db, payment)
    assert (after.status, after.updated_at, after.succeeded_at) == (S.pending, T1, None)
    [event] = events(db, payment)
    assert (event.kind, event.from_status, event.to_status, event.actor) == (
        "payment.started",
        "created",
        "pending",
        "system",
    )
    assert (event.gateway_reference, event.amount, event.detail, event.created_at) == ("GW-P1", AMOUNT, {}, T1)
    # Pending is not announced, and nothing is queued for it.
    assert messages(db) == []
    with db.read() as s:
        assert list(s.exec(select(OutboxJob))) == []
    assert dossier_of(db, payment).status is DossierStatus.unpaid


def test_a_move_the_table_forbids_writes_nothing(db: Database, counting: Counting) -> None:
    payment = seed(db, status=S.failed)
    assert move(db, payment, S.succeeded) is False
    assert reload(db, payment).status is S.failed
    assert (events(db, payment), messages(db), counting.statuses) == ([], [], [])


def test_a_move_from_a_status_the_row_no_longer_has_writes_nothing(db: Database, counting: Counting) -> None:
    payment = seed(db, status=S.pending)
    with db.write() as s:
        stale = s.get(Payment, payment.id)
        assert stale is not None
        s.execute(text("UPDATE payment SET status = 'expired' WHERE id = :i"), {"i": payment.id})
        assert transition(s, stale, S.succeeded, actor="a", kind="k") is False
        assert stale.status is S.pending
    assert reload(db, payment).status is S.expired
    assert (events(db, payment), messages(db), jobs(db, kinds.SUCCEEDED), counting.statuses) == ([], [], [], [])
    assert dossier_of(db, payment).status is DossierStatus.unpaid


def test_a_success_is_stamped_announced_queued_for_its_receipt_and_pays_the_dossier(db: Database) -> None:
    payment = seed(db)
    other = seed(db, code="AGC-B", reference="GW-P2")
    with clock_at(T1):
        assert move(db, payment, S.succeeded, gateway_reference="GW-X", detail={"raw_code": "00"}) is True
    after = reload(db, payment)
    assert (after.status, after.succeeded_at, after.updated_at) == (S.succeeded, T1, T1)
    [event] = events(db, payment)
    assert (event.gateway_reference, event.detail) == ("GW-X", {"raw_code": "00"})
    [job] = jobs(db, kinds.SUCCEEDED)
    assert job.payload == {"payment_id": payment.id}
    [message] = messages(db)
    body = json.loads(message.body)
    assert (message.agency_id, message.event_type, body["type"]) == (
        payment.agency_id,
        "payment.succeeded",
        "payment.succeeded",
    )
    assert body["data"] == {
        "payment_id": payment.id,
        "dossier_id": payment.dossier_id,
        "status": "succeeded",
        "gateway": "sandbox",
        "amount": AMOUNT,
        "currency": "VND",
        "refunded_amount": 0,
        "reason": "gateway.callback",
        "refund_id": None,
    }
    dossier = dossier_of(db, payment)
    assert (dossier.status, dossier.paid_at, dossier.updated_at) == (DossierStatus.paid, T1, T1)
    untouched = dossier_of(db, other)
    assert (untouched.status, untouched.paid_at) == (DossierStatus.unpaid, None)


def test_a_dossier_no_longer_unpaid_is_not_marked_paid(db: Database) -> None:
    payment = seed(db, dossier_status=DossierStatus.refunded)
    assert move(db, payment, S.succeeded) is True
    dossier = dossier_of(db, payment)
    assert (dossier.status, dossier.paid_at) == (DossierStatus.refunded, None)


@pytest.mark.parametrize(
    ("start", "to"),
    [
        (S.pending, S.failed),
        (S.pending, S.cancelled),
        (S.created, S.expired),
        (S.succeeded, S.partially_refunded),
        (S.succeeded, S.refunded),
    ],
)
def test_other_final_moves_are_announced_without_a_receipt_job(db: Database, start: S, to: S) -> None:
    payment = seed(db, status=start)
    with clock_at(T1):
        assert move(db, payment, to, detail={"refund_id": "rfd_1"}, values={"refunded_amount": 7}) is True
    after = reload(db, payment)
    assert (after.status, after.succeeded_at, after.refunded_amount) == (to, None, 7)
    [message] = messages(db)
    data = json.loads(message.body)["data"]
    assert (message.event_type, data["status"], data["refund_id"], data["refunded_amount"]) == (
        f"payment.{to.value}",
        to.value,
        "rfd_1",
        7,
    )
    assert jobs(db, kinds.SUCCEEDED) == []
    assert dossier_of(db, payment).paid_at is None


def test_the_values_given_are_written_with_the_move(db: Database) -> None:
    payment = seed(db, reference=None)
    assert move(db, payment, S.failed, values={"gateway_reference": "GW-9"}) is True
    assert reload(db, payment).gateway_reference == "GW-9"
    assert events(db, payment)[0].gateway_reference == "GW-9"


# --- notes and review flags --------------------------------------------------------------------------------------
def test_a_note_records_a_fact_without_a_status(db: Database) -> None:
    payment = seed(db)
    with db.write() as s, clock_at(T1):
        current = s.get(Payment, payment.id)
        assert current is not None
        note(s, current, "gateway.amount_mismatch", "gateway:sandbox", expected=1, got=2)
    [event] = events(db, payment)
    assert (event.kind, event.actor, event.from_status, event.to_status) == (
        "gateway.amount_mismatch",
        "gateway:sandbox",
        None,
        None,
    )
    assert (event.gateway_reference, event.amount, event.detail, event.created_at) == (
        "GW-P1",
        None,
        {"expected": 1, "got": 2},
        T1,
    )
    assert reload(db, payment).status is S.pending


def test_a_flag_for_review_marks_that_payment_only(db: Database) -> None:
    payment = seed(db)
    other = seed(db, code="AGC-B", reference="GW-P2")
    with db.write() as s:
        current = s.get(Payment, payment.id)
        assert current is not None
        flag_for_review(s, current)
        assert current.requires_review is True
        assert not s.dirty
    assert reload(db, payment).requires_review is True
    assert reload(db, other).requires_review is False


# --- what the gateway reports ------------------------------------------------------------------------------------
def apply(db: Database, payment: Payment, status: GatewayStatus, **kw: Any) -> CallbackOutcome:
    with db.write() as s:
        current = s.get(Payment, payment.id)
        assert current is not None
        return apply_gateway_status(s, current, status, actor="gateway:sandbox", kind="gateway.callback", **kw)


def test_another_reference_is_an_unknown_order_and_is_noted(db: Database) -> None:
    payment = seed(db)
    with capture_logs() as logs:
        outcome = apply(db, payment, GatewayStatus.succeeded, gateway_reference="GW-OTHER")
    assert outcome is CallbackOutcome.unknown_order
    assert logs == [
        {"event": "gateway.reference_mismatch", "log_level": "warning", "payment_id": payment.id, "got": "GW-OTHER"}
    ]
    assert reload(db, payment).status is S.pending
    [event] = events(db, payment)
    assert (event.kind, event.actor, event.detail) == (
        "gateway.reference_mismatch",
        "gateway:sandbox",
        {"got": "GW-OTHER"},
    )


def test_the_same_reference_is_accepted_and_kept(db: Database) -> None:
    payment = seed(db)
    assert apply(db, payment, GatewayStatus.succeeded, gateway_reference="GW-P1") is CallbackOutcome.accepted
    after = reload(db, payment)
    assert (after.status, after.gateway_reference) == (S.succeeded, "GW-P1")


def test_a_first_reference_is_recorded_on_the_payment(db: Database) -> None:
    payment = seed(db, reference=None)
    assert apply(db, payment, GatewayStatus.failed, gateway_reference="GW-NEW") is CallbackOutcome.accepted
    after = reload(db, payment)
    assert (after.status, after.gateway_reference) == (S.failed, "GW-NEW")
    assert events(db, payment)[0].gateway_reference == "GW-NEW"


def test_another_amount_is_a_mismatch_and_is_noted(db: Database) -> None:
    payment = seed(db)
    with capture_logs() as logs:
        outcome = apply(db, payment, GatewayStatus.succeeded, amount=AMOUNT - 1, raw_code="00")
    assert outcome is CallbackOutcome.amount_mismatch
    assert logs == [
        {
            "event": "gateway.amount_mismatch",
            "log_level": "error",
            "payment_id": payment.id,
            "expected": AMOUNT,
            "got": AMOUNT - 1,
        }
    ]
    assert reload(db, payment).status is S.pending
    [event] = events(db, payment)
    assert (event.kind, event.actor, event.detail) == (
        "gateway.amount_mismatch",
        "gateway:sandbox",
        {"expected": AMOUNT, "got": AMOUNT - 1, "raw_code": "00"},
    )


def test_the_right_amount_with_a_code_moves_and_keeps_the_code(db: Database) -> None:
    payment = seed(db)
    assert apply(db, payment, GatewayStatus.succeeded, amount=AMOUNT, raw_code="00") is CallbackOutcome.accepted
    [event] = events(db, payment)
    assert (event.kind, event.actor, event.to_status, event.detail) == (
        "gateway.callback",
        "gateway:sandbox",
        "succeeded",
        {"raw_code": "00"},
    )


def test_a_move_without_a_code_has_no_detail(db: Database) -> None:
    payment = seed(db)
    assert apply(db, payment, GatewayStatus.cancelled) is CallbackOutcome.accepted
    [event] = events(db, payment)
    assert (event.to_status, event.detail) == ("cancelled", {})
    # A report without a reference keeps the one the payment has.
    assert reload(db, payment).gateway_reference == "GW-P1"


def test_unknown_is_accepted_and_changes_nothing(db: Database) -> None:
    payment = seed(db)
    assert apply(db, payment, GatewayStatus.unknown) is CallbackOutcome.accepted
    assert (reload(db, payment).status, events(db, payment)) == (S.pending, [])


@pytest.mark.parametrize(
    ("start", "status"),
    [(S.pending, GatewayStatus.pending), (S.succeeded, GatewayStatus.succeeded), (S.failed, GatewayStatus.failed)],
)
def test_the_status_the_payment_has_is_a_duplicate(db: Database, start: S, status: GatewayStatus) -> None:
    payment = seed(db, status=start)
    assert apply(db, payment, status) is CallbackOutcome.duplicate
    assert events(db, payment) == []


@pytest.mark.parametrize(
    ("start", "status"),
    [
        (S.succeeded, GatewayStatus.failed),
        (S.refunded, GatewayStatus.succeeded),
        (S.partially_refunded, GatewayStatus.pending),
        (S.failed, GatewayStatus.cancelled),
        (S.expired, GatewayStatus.pending),
        (S.cancelled, GatewayStatus.failed),
    ],
)
def test_a_paid_or_finished_payment_is_not_moved_back(db: Database, start: S, status: GatewayStatus) -> None:
    payment = seed(db, status=start)
    with capture_logs() as logs:
        assert apply(db, payment, status, raw_code="24") is CallbackOutcome.already_final
    assert logs == [
        {
            "event": "gateway.out_of_order",
            "log_level": "warning",
            "payment_id": payment.id,
            "current": start.value,
            "got": status.value,
        }
    ]
    after = reload(db, payment)
    assert (after.status, after.requires_review) == (start, False)
    [event] = events(db, payment)
    assert (event.kind, event.actor, event.detail) == (
        "gateway.status_ignored",
        "gateway:sandbox",
        {"reported": status.value, "raw_code": "24"},
    )


@pytest.mark.parametrize("start", [S.failed, S.cancelled, S.expired])
def test_money_taken_after_the_attempt_ended_is_flagged_for_review(db: Database, start: S) -> None:
    payment = seed(db, status=start)
    with capture_logs() as logs:
        assert apply(db, payment, GatewayStatus.succeeded, raw_code="00") is CallbackOutcome.already_final
    assert logs == [
        {"event": "gateway.late_success", "log_level": "error", "payment_id": payment.id, "status": start.value}
    ]
    after = reload(db, payment)
    assert (after.status, after.requires_review) == (start, True)
    [event] = events(db, payment)
    assert (event.kind, event.actor, event.detail) == ("gateway.late_success", "gateway:sandbox", {"raw_code": "00"})


@pytest.mark.parametrize("start", [S.created, S.pending])
def test_a_live_payment_follows_the_gateway(db: Database, start: S) -> None:
    payment = seed(db, status=start)
    assert apply(db, payment, GatewayStatus.failed) is CallbackOutcome.accepted
    assert reload(db, payment).status is S.failed


def test_a_live_payment_moved_meanwhile_is_already_final(db: Database) -> None:
    payment = seed(db)
    with db.write() as s:
        stale = s.get(Payment, payment.id)
        assert stale is not None
        s.execute(text("UPDATE payment SET status = 'expired' WHERE id = :i"), {"i": payment.id})
        outcome = apply_gateway_status(s, stale, GatewayStatus.failed, actor="a", kind="k")
    assert outcome is CallbackOutcome.already_final
    assert reload(db, payment).status is S.expired


def test_the_status_query_carries_the_payments_references() -> None:
    payment = Payment(
        id="pay_1",
        agency_id="agc_1",
        dossier_id="dos_1",
        gateway="sandbox",
        amount=AMOUNT,
        gateway_token="tok_1",
        gateway_reference="GW-1",
        return_url="https://x",
        description="d",
        expires_at=T1,
        created_at=T0,
    )
    assert status_query(payment) == StatusQuery(
        merchant_reference="pay_1", gateway_reference="GW-1", idempotency_key="tok_1", amount=AMOUNT, created_at=T0
    )


# --- cancelling --------------------------------------------------------------------------------------------------
class Gateway:
    def __init__(self, answer: StatusResult | BaseException) -> None:
        self.answer = answer
        self.queries: list[StatusQuery] = []

    def cancel(self, query: StatusQuery) -> StatusResult:
        self.queries.append(query)
        if isinstance(self.answer, BaseException):
            raise self.answer
        return self.answer


class Ctx:
    def __init__(self, db: Database, gateway: Gateway) -> None:
        self.db = db
        self.gw = gateway
        self.asked: list[tuple[str, str]] = []

    def gateway(self, name: str, agency_id: str) -> Gateway:
        self.asked.append((name, agency_id))
        return self.gw


def cancel(db: Database, payment: Payment, answer: StatusResult | BaseException, agency_id: str | None = None) -> Any:
    fake = Ctx(db, Gateway(answer))
    principal = Principal(key_id="key_1", agency_id=agency_id or payment.agency_id, scopes=frozenset())
    return cancel_payment(cast(AppContext, fake), principal, payment.id, "client:key_1"), fake


@pytest.mark.parametrize("answer", [GatewayStatus.cancelled, GatewayStatus.unknown])
def test_a_cancel_the_gateway_confirms_or_cannot_tell_cancels(db: Database, answer: GatewayStatus) -> None:
    payment = seed(db)
    with clock_at(T1):
        out, fake = cancel(db, payment, StatusResult(answer))
    assert fake.asked == [("sandbox", payment.agency_id)]
    assert fake.gw.queries == [status_query(reload(db, payment))]
    assert (out.id, out.status) == (payment.id, S.cancelled)
    [event] = events(db, payment)
    assert (event.kind, event.actor, event.to_status) == ("payment.cancelled", "client:key_1", "cancelled")


@pytest.mark.parametrize("start", [S.succeeded, S.failed, S.expired, S.cancelled])
def test_only_a_live_payment_can_be_cancelled(db: Database, start: S) -> None:
    payment = seed(db, status=start)
    with pytest.raises(InvalidTransition) as raised:
        cancel(db, payment, StatusResult(GatewayStatus.cancelled))
    assert raised.value.detail == f"payment {payment.id} is {start.value} and cannot be cancelled"
    assert events(db, payment) == []


def test_a_created_payment_can_be_cancelled(db: Database) -> None:
    payment = seed(db, status=S.created)
    out, _ = cancel(db, payment, StatusResult(GatewayStatus.cancelled))
    assert out.status is S.cancelled


def test_another_agencys_payment_cannot_be_cancelled(db: Database) -> None:
    payment = seed(db)
    other = seed(db, code="AGC-B", reference="GW-P2")
    with pytest.raises(NotFound):
        cancel(db, payment, StatusResult(GatewayStatus.cancelled), agency_id=other.agency_id)
    assert reload(db, payment).status is S.pending


def test_a_gateway_that_does_not_answer_leaves_the_payment_live(db: Database) -> None:
    payment = seed(db)
    with pytest.raises(GatewayUnavailable) as raised:
        cancel(db, payment, GatewayTechnicalError("timeout"))
    assert raised.value.detail == "the gateway did not confirm the cancellation; retry later"
    assert isinstance(raised.value.__cause__, GatewayTechnicalError)
    assert (reload(db, payment).status, events(db, payment)) == (S.pending, [])


def test_a_payment_the_gateway_already_settled_is_kept_and_the_cancel_refused(db: Database) -> None:
    payment = seed(db)
    with pytest.raises(InvalidTransition) as raised:
        cancel(db, payment, StatusResult(GatewayStatus.succeeded, amount=AMOUNT, raw_code="00"))
    assert raised.value.detail == f"payment {payment.id} is succeeded at the gateway and cannot be cancelled"
    assert reload(db, payment).status is S.succeeded
    [event] = events(db, payment)
    assert (event.kind, event.actor, event.detail) == ("gateway.status_query", "gateway:sandbox", {"raw_code": "00"})


def test_a_settlement_for_another_amount_is_noted_and_the_cancel_refused(db: Database) -> None:
    payment = seed(db)
    with pytest.raises(InvalidTransition) as raised:
        cancel(db, payment, StatusResult(GatewayStatus.succeeded, amount=1, raw_code="00"))
    assert raised.value.detail == f"payment {payment.id} is pending at the gateway and cannot be cancelled"
    assert reload(db, payment).status is S.pending
    [event] = events(db, payment)
    assert (event.kind, event.detail) == ("gateway.amount_mismatch", {"expected": AMOUNT, "got": 1, "raw_code": "00"})
