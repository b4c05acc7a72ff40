"""Money written straight into the tables, at chosen times: payments, refunds, statement fees, exceptions and the
other things the dashboard and the reports count."""

from __future__ import annotations

import secrets
from datetime import UTC, date, datetime, time, timedelta

from sqlmodel import Session, select

from invoices.tax.tables import TaxMessage, TaxMessageKind, TaxMessageStatus
from payments.agency.models import Procedure
from payments.dossier.models import Dossier, DossierStatus
from payments.pages.fmt import VIETNAM
from payments.payment.models import Payment, Refund, RefundStatus
from payments.payment.states import PaymentStatus
from payments.reconcile.models import Category, ExceptionStatus, ReconException, StatementEntry, StatementImport
from payments.transfer.models import BankCredit, CreditStatus
from payments.webhooks.models import DeliveryStatus, WebhookDelivery, WebhookEndpoint, WebhookMessage


def at(day: date, hour: int = 10, minute: int = 0) -> datetime:
    """A moment of a Vietnam day, in UTC as the tables keep it."""
    return datetime.combine(day, time(hour, minute), VIETNAM).astimezone(UTC)


def procedure_of(s: Session, agency_id: str) -> Procedure:
    found = s.exec(select(Procedure).where(Procedure.agency_id == agency_id)).first()
    assert found is not None
    return found


def pay(
    s: Session,
    agency_id: str,
    amount: int,
    paid: datetime,
    method: str = "sandbox",
    created: datetime | None = None,
    procedure: Procedure | None = None,
    review: bool = False,
) -> Payment:
    procedure = procedure or procedure_of(s, agency_id)
    created = created or paid - timedelta(minutes=30)
    dossier = Dossier(
        agency_id=agency_id,
        code=secrets.token_hex(6),
        procedure_id=procedure.id,
        payer_name="Nguyễn Văn A",
        total_amount=amount,
        status=DossierStatus.paid,
        pay_token=secrets.token_hex(16),
        created_at=created,
        paid_at=paid,
    )
    s.add(dossier)
    s.flush()
    payment = Payment(
        agency_id=agency_id,
        dossier_id=dossier.id,
        gateway=method,
        amount=amount,
        status=PaymentStatus.succeeded,
        gateway_token=secrets.token_hex(16),
        gateway_reference=secrets.token_hex(8),
        return_url="https://example.gov.vn/",
        description="Lệ phí",
        requires_review=review,
        expires_at=paid + timedelta(hours=1),
        created_at=paid - timedelta(minutes=5),
        succeeded_at=paid,
    )
    s.add(payment)
    s.flush()
    return payment


def unpaid_dossier(s: Session, agency_id: str, amount: int, created: datetime) -> Dossier:
    dossier = Dossier(
        agency_id=agency_id,
        code=secrets.token_hex(6),
        procedure_id=procedure_of(s, agency_id).id,
        payer_name="Trần Thị B",
        total_amount=amount,
        pay_token=secrets.token_hex(16),
        created_at=created,
    )
    s.add(dossier)
    s.flush()
    return dossier


def failed_payment(s: Session, agency_id: str, amount: int, when: datetime) -> Payment:
    dossier = unpaid_dossier(s, agency_id, amount, when - timedelta(minutes=10))
    payment = Payment(
        agency_id=agency_id,
        dossier_id=dossier.id,
        gateway="sandbox",
        amount=amount,
        status=PaymentStatus.failed,
        gateway_token=secrets.token_hex(16),
        return_url="https://example.gov.vn/",
        description="Lệ phí",
        expires_at=when + timedelta(hours=1),
        created_at=when,
    )
    s.add(payment)
    s.flush()
    return payment


def refund(s: Session, payment: Payment, amount: int, completed: datetime) -> Refund:
    row = Refund(
        payment_id=payment.id,
        amount=amount,
        reason="Hồ sơ không đủ điều kiện",
        status=RefundStatus.succeeded,
        gateway_token=secrets.token_hex(16),
        created_by="test",
        created_at=completed - timedelta(minutes=1),
        completed_at=completed,
    )
    payment.status = PaymentStatus.partially_refunded
    payment.refunded_amount += amount
    s.add(row)
    s.flush()
    return row


def fee(s: Session, agency_id: str, source: str, amount: int, fee_amount: int, booked: date) -> StatementEntry:
    imported = StatementImport(
        agency_id=agency_id, source=source, format="csv", file_name="sao-ke.csv", sha256=secrets.token_hex(32)
    )
    s.add(imported)
    s.flush()
    entry = StatementEntry(
        agency_id=agency_id,
        import_id=imported.id,
        source=source,
        line_no=1,
        external_id=secrets.token_hex(8),
        kind="credit",
        amount=amount,
        fee=fee_amount,
        booked_on=booked,
    )
    s.add(entry)
    s.flush()
    return entry


def exception(s: Session, agency_id: str, day: date, status: ExceptionStatus = ExceptionStatus.open) -> None:
    s.add(
        ReconException(
            agency_id=agency_id,
            key=secrets.token_hex(8),
            category=Category.paid_not_settled,
            business_day=day,
            status=status,
            first_run_id="rcn_test",
            last_run_id="rcn_test",
        )
    )
    s.flush()


def held_credit(s: Session, agency_id: str | None, status: CreditStatus = CreditStatus.unmatched) -> None:
    s.add(
        BankCredit(
            gateway="vietqr",
            bank_transaction_id=secrets.token_hex(8),
            source="notification",
            agency_id=agency_id,
            amount=50_000,
            status=status,
            reason="no reference",
        )
    )
    s.flush()


def failed_delivery(s: Session, agency_id: str, endpoint: WebhookEndpoint | None = None) -> WebhookEndpoint:
    if endpoint is None:
        endpoint = WebhookEndpoint(agency_id=agency_id, url="https://client.example/hook", secret="whsec_x")
        s.add(endpoint)
        s.flush()
    message = WebhookMessage(agency_id=agency_id, event_type="payment.succeeded", body="{}")
    s.add(message)
    s.flush()
    s.add(
        WebhookDelivery(
            agency_id=agency_id,
            message_id=message.id,
            endpoint_id=endpoint.id,
            event_type="payment.succeeded",
            status=DeliveryStatus.failed,
            attempts=8,
        )
    )
    s.flush()
    return endpoint


def tax_message(s: Session, agency_id: str, status: TaxMessageStatus) -> None:
    s.add(
        TaxMessage(
            agency_id=agency_id,
            kind=TaxMessageKind.notice,
            message_type=300,
            mtdiep=secrets.token_hex(20),
            status=status,
            xml=b"<TDiep/>",
        )
    )
    s.flush()
