"""A month of demo history for a first run, so that the dashboard, the reports and the reconciliation queue of the demo
agency show something: paid dossiers with their signed e-receipts, a few declined and expired attempts, refunds
approved by the demo staff with their adjustment documents, and each past day's bank statement imported and matched,
leaving two exceptions open (a transfer short of its fee, a credit naming no payment).

Everything goes through the services the running product uses (payer form, gateway callbacks, bank notifications,
the issuance the worker runs, maker-checker refunds, the statement importer and the day run), with the service clock
set to moments of past days (``payments.core.types.clock_at``). Development only, like the rest of the demo.

Deterministic (a fixed random seed) and done once: the first history dossier is the marker, claimed in its own
transaction, so a second run, or a second process starting at the same moment, adds nothing."""

from __future__ import annotations

import csv
import json
import random
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path

from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, select

from adapters.base import CallbackRequest, GatewayStatus
from adapters.sandbox import SIGNATURE_HEADER as SANDBOX_SIGNATURE
from adapters.sandbox import sign
from adapters.statements.base import StatementFormat
from adapters.statements.csvfile import ColumnMapping
from adapters.vietqr import SIGNATURE_HEADER as BANK_SIGNATURE
from console.refunds.service import approve, request_refund
from console.staff.models import Role, StaffUser
from console.staff.service import find_by_email
from invoices.context import ReceiptContext
from invoices.keys import current_certificate, signing_dir, write_dev_certificate
from invoices.service import issue_adjustment, issue_receipt
from payments.agency.demo import DEMO_BANK_ACCOUNT, DEMO_BANK_BIN
from payments.agency.models import Agency
from payments.auth.service import Principal
from payments.core.errors import PaymentInProgress
from payments.core.types import clock_at, utcnow
from payments.dossier.models import Dossier
from payments.dossier.schemas import DossierIn, FeeItemIn, PayerIn
from payments.dossier.service import to_out, upsert_dossier
from payments.gateway.sandbox_store import DbSandboxStore
from payments.payment.callbacks import handle_callback
from payments.payment.create import PaymentCreation
from payments.payment.expiry import expire_payment
from payments.payment.models import Payment
from payments.payment.refunds import process_refund
from payments.payment.schemas import PaymentIn
from payments.reconcile.importer import import_file
from payments.reconcile.matching import GMT7, run_day
from payments.reconcile.models import ExceptionStatus, ReconException

DAYS = 30
SEED = 11
# Paid dossiers a day: enough for the charts to have a shape, few enough for a first start to take seconds.
PER_DAY_MIN, PER_DAY_MAX = 2, 5
CODE_PREFIX = "HS-LS-"
MARKER = f"{CODE_PREFIX}0001"
CLI_ACTOR = "cli"  # as `lephi reconcile import` and `lephi reconcile run`, from a morning job, record it
# Office hours of the payers, Vietnam time; the bank statement of a day is read the next morning, before them.
OPENS, CLOSES, STATEMENT_AT = time(7, 30), time(17, 30), time(6, 30)
# The two exceptions left open for finance, this many days ago (the queue shows the newest first).
SHORT_TRANSFER_DAYS_AGO, UNKNOWN_CREDIT_DAYS_AGO = 2, 1
SHORT_BY = 20_000

FAMILY = ["Nguyễn", "Trần", "Lê", "Phạm", "Hoàng", "Huỳnh", "Phan", "Vũ", "Võ", "Đặng", "Bùi", "Đỗ"]
MIDDLE = ["Văn", "Thị", "Minh", "Ngọc", "Thanh", "Hữu", "Quốc", "Thu"]
GIVEN = ["An", "Bình", "Chi", "Dũng", "Giang", "Hà", "Hải", "Hạnh", "Khoa", "Lan", "Long", "Mai", "Nam", "Phúc", "Tâm"]
REFUND_REASONS = [
    "Hồ sơ bị từ chối tiếp nhận, hoàn lại lệ phí",
    "Công dân rút hồ sơ trước khi xử lý",
    "Thu thừa số trang chứng thực",
]
STATEMENT_COLUMNS = ColumnMapping(external_id="ma_gd", date="ngay", amount="so_tien", reference="noi_dung")


@dataclass
class Summary:
    """What the history holds, for the banner and the tests."""

    seeded: bool  # False: it was there already (or another process is writing it)
    days: int = 0
    paid: int = 0
    failed: int = 0
    expired: int = 0
    refunds: int = 0
    imports: int = 0
    open_exceptions: list[str] = field(default_factory=list)


@dataclass
class _Day:
    day: date
    credits: list[tuple[str, int, str]] = field(default_factory=list)  # bank transaction id, amount, memo


class _History:
    def __init__(
        self, ctx: ReceiptContext, agency: Agency, finance: StaffUser, approver: StaffUser, end: datetime
    ) -> None:
        self.ctx, self.agency, self.finance, self.approver, self.end = ctx, agency, finance, approver, end
        self.rng = random.Random(SEED)  # noqa: S311 - the same demo on every machine, not a secret
        self.methods = [m for m in ("sandbox", "vietqr") if m in agency.payment_methods and m in ctx.gateways]
        self.summary = Summary(seeded=True)
        self.count = 1  # the marker dossier is number 1
        self.credit_count = 0
        self.today = _Day(end.astimezone(GMT7).date())
        self.credits_by_day: dict[date, list[tuple[str, int, str]]] = {}
        self.pay_urls: dict[str, str] = {}

    # --- one dossier, from its creation to its receipt ------------------------------------------------------
    def dossier(self, at: datetime) -> Dossier:
        self.count += 1
        return self._dossier(f"{CODE_PREFIX}{self.count:04d}", at)

    def _dossier(self, code: str, at: datetime) -> Dossier:
        rng = self.rng
        payer = PayerIn(name=f"{rng.choice(FAMILY)} {rng.choice(MIDDLE)} {rng.choice(GIVEN)}")
        if rng.random() < 0.5:
            data = DossierIn(
                code=code,
                procedure_code="2.000488",
                payer=payer,
                items=[FeeItemIn(fee_code="BAN_THEM", quantity=rng.choice([0, 0, 0, 1, 2]))],
            )
        else:
            items = [
                FeeItemIn(fee_code="TRANG", quantity=rng.randint(1, 12)),
                FeeItemIn(fee_code="GUI_KQ", quantity=rng.choice([0, 1])),
            ]
            data = DossierIn(code=code, procedure_code="2.000815", payer=payer, items=items)
        with clock_at(at), self.ctx.db.write() as s:
            dossier, _ = upsert_dossier(s, self.agency.id, data)
            self.pay_urls[dossier.id] = to_out(s, dossier, self.ctx.settings.public_url).pay_url
            return dossier

    def start(self, dossier: Dossier, method: str, at: datetime, attempt: int) -> Payment:
        """The payer's form on the payment page, as ``payments.pages.endpoints`` submits it."""
        principal = Principal(key_id=f"payer:{dossier.id}", agency_id=self.agency.id, scopes=frozenset())
        data = PaymentIn(dossier_code=dossier.code, method=method, return_url=self.pay_urls[dossier.id])
        with clock_at(at):
            outcome = PaymentCreation(self.ctx, principal, data, "payer").outcome(
                principal.key_id, f"demo-history-{dossier.code}-{attempt}", f"demo:{dossier.code}:{method}"
            )
        with self.ctx.db.read() as s:
            payment = s.get(Payment, str(outcome.body["id"]))
        assert payment is not None
        return payment

    def settle(self, payment: Payment, status: GatewayStatus, at: datetime, amount: int | None = None) -> None:
        """The gateway's word: the sandbox's signed callback, or the bank's credit notification for a transfer."""
        gateway = self.ctx.gateway(payment.gateway, payment.agency_id)
        if payment.gateway == "sandbox":
            assert payment.gateway_reference is not None
            DbSandboxStore(self.ctx.db).set_status(payment.gateway_reference, GatewayStatus.pending.value, status.value)
            body = json.dumps(
                {
                    "event_id": f"evt_demo_{payment.id}",
                    "transaction_id": payment.gateway_reference,
                    "merchant_reference": payment.id,
                    "status": status.value,
                    "amount": payment.amount,
                    "currency": "VND",
                }
            ).encode()
            secret = self.ctx.gateway_config.for_agency("sandbox", self.agency.code).get("secret")
            signature = sign(str(secret or self.ctx.settings.sandbox_secret), body, int(datetime.now(UTC).timestamp()))
            header = SANDBOX_SIGNATURE, signature
        else:
            paid = payment.amount if amount is None else amount
            transaction_id = self.credit(at, paid, f"CK {payment.gateway_reference} le phi ho so")
            body = self._notification(transaction_id, paid, f"CK {payment.gateway_reference} le phi ho so", at)
            header = BANK_SIGNATURE, self._bank_signature(body)
        request = CallbackRequest(method="POST", headers=dict([header]), query={}, body=body)
        with clock_at(at):
            handle_callback(self.ctx, gateway, gateway.parse_callback(request), self.agency.code)

    def unknown_credit(self, at: datetime, amount: int) -> None:
        """A transfer whose memo names no payment (the payer typed their own): held for finance to sort out."""
        memo = "NOP LE PHI CHUNG THUC"
        transaction_id = self.credit(at, amount, memo)
        body = self._notification(transaction_id, amount, memo, at)
        request = CallbackRequest(
            method="POST", headers={BANK_SIGNATURE: self._bank_signature(body)}, query={}, body=body
        )
        gateway = self.ctx.gateways.get("vietqr", self.agency.code)
        with clock_at(at):
            handle_callback(self.ctx, gateway, gateway.parse_callback(request), self.agency.code)

    def credit(self, at: datetime, amount: int, memo: str) -> str:
        self.credit_count += 1
        transaction_id = f"FT{at.astimezone(GMT7):%y%m%d}{self.credit_count:06d}"
        self.today.credits.append((transaction_id, amount, memo))
        return transaction_id

    def _notification(self, transaction_id: str, amount: int, memo: str, at: datetime) -> bytes:
        return json.dumps(
            {
                "transaction_id": transaction_id,
                "bank_bin": DEMO_BANK_BIN,
                "account_number": DEMO_BANK_ACCOUNT,
                "amount": amount,
                "currency": "VND",
                "description": memo,
                "booked_at": at.astimezone(GMT7).isoformat(),
            }
        ).encode()

    def _bank_signature(self, body: bytes) -> str:
        secret = self.ctx.gateway_config.for_agency("vietqr", self.agency.code)["notification_secret"]
        return sign(str(secret), body, int(datetime.now(UTC).timestamp()))

    def receipt(self, payment: Payment, at: datetime) -> None:
        """What the worker's issuance job does a few seconds after the payment succeeds."""
        with clock_at(at):
            issue_receipt(self.ctx, self.ctx.signers, payment.id, now=at)

    def refund(self, payment: Payment, amount: int, at: datetime) -> None:
        """Finance asks, an approver agrees, the gateway pays back, the adjustment document follows."""
        with clock_at(at), self.ctx.db.write() as s:
            finance = s.get(StaffUser, self.finance.id)
            assert finance is not None
            req = request_refund(s, finance, payment.id, amount, self.rng.choice(REFUND_REASONS))
            request_id = req.id
        later = at + timedelta(minutes=self.rng.randint(10, 90))
        with clock_at(later), self.ctx.db.write() as s:
            approver = s.get(StaffUser, self.approver.id)
            assert approver is not None
            refund_id = approve(s, approver, request_id).refund_id
        assert refund_id is not None
        with clock_at(later + timedelta(seconds=2)):
            process_refund(self.ctx, refund_id)
        with clock_at(later + timedelta(seconds=10)):
            issue_adjustment(self.ctx, self.ctx.signers, refund_id, now=later + timedelta(seconds=10))
        self.summary.refunds += 1

    # --- a day ------------------------------------------------------------------------------------------------
    def moments(self, day: date, count: int) -> list[datetime]:
        opens = datetime.combine(day, OPENS, GMT7)
        closes = min(datetime.combine(day, CLOSES, GMT7), self.end - timedelta(minutes=30))
        if closes <= opens:
            return []
        span = int((closes - opens).total_seconds())
        return sorted(opens + timedelta(seconds=self.rng.randrange(span)) for _ in range(count))

    def run_day(self, day: date) -> None:
        self.today = _Day(day)
        days_ago = (self.end.astimezone(GMT7).date() - day).days
        paid: list[Payment] = []
        for n, at in enumerate(self.moments(day, self.rng.randint(PER_DAY_MIN, PER_DAY_MAX))):
            dossier = self._dossier(MARKER, at) if self.summary.paid == 0 and n == 0 else self.dossier(at)
            payment = self.pay(dossier, at, short=days_ago == SHORT_TRANSFER_DAYS_AGO and n == 0)
            if payment is not None:
                paid.append(payment)
        if days_ago == UNKNOWN_CREDIT_DAYS_AGO and "vietqr" in self.methods:
            at = datetime.combine(day, time(11, 5), GMT7)
            self.unknown_credit(at, 150_000)
        refundable = [p for p in paid if p.gateway == "sandbox"]
        if refundable and days_ago % 4 == 3:
            payment = self.rng.choice(refundable)
            partial = self.rng.random() < 0.5 and payment.amount >= 20_000
            amount = payment.amount // 2 // 1000 * 1000 if partial else payment.amount
            self.refund(payment, amount, datetime.combine(day, CLOSES, GMT7) + timedelta(minutes=5))
        self.summary.days += 1
        self.credits_by_day[day] = self.today.credits

    def pay(self, dossier: Dossier, at: datetime, short: bool) -> Payment | None:
        rng = self.rng
        short = short and "vietqr" in self.methods
        method = "vietqr" if short else rng.choice(self.methods)
        attempt = 1
        roll = rng.random()
        if short:
            # The payer transfers less than the fee: the credit is held and the attempt runs out.
            payment = self.start(dossier, method, at, attempt)
            self.settle(
                payment,
                GatewayStatus.succeeded,
                at + timedelta(minutes=3),
                payment.amount - min(SHORT_BY, payment.amount // 2),
            )
            self.expire(payment)
            return None  # the dossier waits for finance: the payer is asked for the rest, or refunded
        if roll < 0.08 and "sandbox" in self.methods:
            payment = self.start(dossier, "sandbox", at, attempt)  # the card is declined; the payer tries again
            self.settle(payment, GatewayStatus.failed, at + timedelta(minutes=2))
            self.summary.failed += 1
            attempt, at = attempt + 1, at + timedelta(minutes=4)
        elif roll < 0.14 and "vietqr" in self.methods:
            payment = self.start(dossier, "vietqr", at, attempt)  # the QR was never paid; the attempt runs out
            self.expire(payment)
            if rng.random() < 0.5:
                return None  # the payer gave up
            attempt, at = attempt + 1, at + timedelta(seconds=self.ctx.settings.payment_expiry_seconds + 300)
        if at >= self.end - timedelta(minutes=5):
            return None
        try:
            payment = self.start(dossier, method, at, attempt)
        except PaymentInProgress:
            return None
        paid_at = at + timedelta(seconds=rng.randint(40, 240))
        self.settle(payment, GatewayStatus.succeeded, paid_at)
        self.receipt(payment, paid_at + timedelta(seconds=5))
        self.summary.paid += 1
        with self.ctx.db.read() as s:
            fresh = s.get(Payment, payment.id)
        assert fresh is not None
        return fresh

    def expire(self, payment: Payment) -> None:
        """The outbox's expiry job, at the time it comes due."""
        with clock_at(min(payment.expires_at, self.end)):
            expire_payment(self.ctx, payment.id)
        self.summary.expired += 1

    # --- reconciliation ---------------------------------------------------------------------------------------
    def reconcile(self, day: date, folder: Path) -> None:
        """The bank statement of ``day``, imported the next morning, and the day matched."""
        credits = self.credits_by_day.get(day, [])
        at = min(datetime.combine(day + timedelta(days=1), STATEMENT_AT, GMT7), self.end - timedelta(minutes=1))
        path = folder / f"sao-ke-{day:%Y%m%d}.csv"
        with path.open("w", newline="", encoding="utf-8") as out:
            writer = csv.writer(out)
            writer.writerow(["ma_gd", "ngay", "so_tien", "noi_dung"])
            for transaction_id, amount, memo in credits:
                writer.writerow([transaction_id, day.isoformat(), amount, memo])
        with clock_at(at):
            if credits:
                import_file(
                    self.ctx,
                    self.agency.code,
                    path,
                    StatementFormat.bank_csv,
                    mapping=STATEMENT_COLUMNS,
                    actor=CLI_ACTOR,
                )
                self.summary.imports += 1
            run_day(self.ctx, self.agency.id, day, actor=CLI_ACTOR)


def claim_marker(ctx: ReceiptContext, agency: Agency, at: datetime) -> bool:
    """Write the marker dossier, or find it there: True if this process is the one to write the history."""
    try:
        with clock_at(at), ctx.db.write() as s:
            if s.exec(select(Dossier.id).where(Dossier.agency_id == agency.id, Dossier.code == MARKER)).first():
                return False
            # Created, not merely found: on PostgreSQL the other process may commit the marker between the check
            # above and the upsert's own read, and then the upsert updates its row instead of failing.
            _dossier, created = upsert_dossier(
                s,
                agency.id,
                DossierIn(code=MARKER, procedure_code="2.000488", payer=PayerIn(name="Trần Văn Minh")),
            )
    except IntegrityError:  # another process wrote it a moment ago (PostgreSQL)
        return False
    return created


def _certificate_from(ctx: ReceiptContext, agency: Agency, start: datetime) -> datetime:
    """The agency's development certificate must be valid on the first day it signs; a data directory kept from an
    earlier run may hold a younger one, and then the history starts the day after it."""
    if current_certificate(ctx.settings, agency.code) is None:
        write_dev_certificate(
            signing_dir(ctx.settings), agency.code, agency.tax_code, agency.name, not_before=start - timedelta(days=1)
        )
        ctx.signers.forget(agency.code)
    cert = current_certificate(ctx.settings, agency.code)
    assert cert is not None
    return max(start, cert.not_valid_before_utc + timedelta(days=1))


def staff_since(end: datetime) -> datetime:
    """When the demo's staff accounts are made: before the first day of the history that ends at ``end``."""
    return end - timedelta(days=DAYS + 1)


def seed_demo_history(
    ctx: ReceiptContext, agency_code: str, progress: Callable[[str], None] | None = None, end: datetime | None = None
) -> Summary:
    """Seed about ``DAYS`` days of history for the demo agency, once; ``end`` is the history's "now"."""
    end = end or utcnow()
    with ctx.db.read() as s:
        agency = s.exec(select(Agency).where(Agency.code == agency_code)).first()
        finance = find_by_email(s, "ketoan@demo.gov.vn")
        approver = find_by_email(s, "pheduyet@demo.gov.vn")
    assert agency is not None and finance is not None and approver is not None
    assert finance.role is Role.finance and approver.role is Role.approver
    first_day = end.astimezone(GMT7).date() - timedelta(days=DAYS)
    start = _certificate_from(ctx, agency, datetime.combine(first_day, time(), GMT7))
    first_day = start.astimezone(GMT7).date()
    if start.astimezone(GMT7).timetz() != time(tzinfo=GMT7):
        first_day += timedelta(days=1)
    last = end.astimezone(GMT7).date()
    claim_at = min(datetime.combine(first_day, OPENS, GMT7), end - timedelta(minutes=1))
    if first_day > last or not claim_marker(ctx, agency, claim_at):
        return Summary(seeded=False)
    history = _History(ctx, agency, finance, approver, end)
    with tempfile.TemporaryDirectory(prefix="lephi-demo-") as folder:
        total = (last - first_day).days + 1
        for n in range(total):
            day = first_day + timedelta(days=n)
            if n:
                history.reconcile(day - timedelta(days=1), Path(folder))
            history.run_day(day)
            if progress is not None and (n + 1) % 10 == 0:
                progress(f"  writing the demo history: {n + 1} of {total} days")
    with ctx.db.read() as s:
        history.summary.open_exceptions = _open_exceptions(s, agency.id)
    return history.summary


def _open_exceptions(s: Session, agency_id: str) -> list[str]:
    rows = s.exec(
        select(ReconException.category).where(
            ReconException.agency_id == agency_id, ReconException.status == ExceptionStatus.open
        )
    ).all()
    return sorted(str(getattr(c, "value", c)) for c in rows)
