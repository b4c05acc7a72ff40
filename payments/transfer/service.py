"""Matching bank credits to payments. The same function serves the bank's credit notifications and, later,
statement imports: exact amount -> the payment succeeds; anything else is held for finance staff with the reason."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from adapters.base import CallbackOutcome
from payments.agency.models import Agency
from payments.core.logging import get_logger
from payments.payment.lifecycle import flag_for_review, note, transition
from payments.payment.models import Payment
from payments.payment.states import LIVE, PaymentStatus
from payments.transfer.models import BankCredit, CreditStatus

log = get_logger(__name__)


@dataclass(frozen=True)
class Credit:
    gateway: str
    bank_transaction_id: str
    amount: int
    reference: str
    memo: str
    source: str  # "notification" or "statement"


def apply_credit(s: Session, credit: Credit, agency_code: str | None) -> tuple[CreditStatus | None, CallbackOutcome]:
    """Record the credit once and match it; (None, duplicate) if this bank transaction was already counted."""
    row = BankCredit(
        gateway=credit.gateway,
        bank_transaction_id=credit.bank_transaction_id,
        source=credit.source,
        reference=credit.reference or None,
        amount=credit.amount,
        memo=_printable(credit.memo)[:500],
        status=CreditStatus.unmatched,
        reason="",
    )
    try:
        with s.begin_nested():
            s.add(row)
    except IntegrityError:
        return None, CallbackOutcome.duplicate
    if agency_code is not None:  # the account the money went to, even when nothing else is known
        row.agency_id = s.exec(select(Agency.id).where(Agency.code == agency_code)).first()
    payment = _payment_for(s, credit, agency_code)
    row.status, row.reason = _match(s, row, payment)
    s.add(row)
    log.info("transfer.credit", credit_id=row.id, status=row.status.value, payment_id=row.payment_id)
    return row.status, CallbackOutcome.accepted


def _printable(memo: str) -> str:
    # The payer wrote it: control characters (NUL is refused by PostgreSQL) become spaces, the rest is kept.
    return "".join(c if c.isprintable() else " " for c in memo)


def _payment_for(s: Session, credit: Credit, agency_code: str | None) -> Payment | None:
    if not credit.reference:
        return None
    query = select(Payment).where(Payment.gateway == credit.gateway, Payment.gateway_reference == credit.reference)
    if agency_code is not None:
        query = query.join(Agency, col(Agency.id) == Payment.agency_id).where(Agency.code == agency_code)
    return s.exec(query).first()


def _match(s: Session, row: BankCredit, payment: Payment | None) -> tuple[CreditStatus, str]:
    if payment is None:
        why = "no payment reference in the memo" if not row.reference else f"no payment with reference {row.reference}"
        return CreditStatus.unmatched, why
    row.payment_id, row.agency_id, row.expected_amount = payment.id, payment.agency_id, payment.amount
    actor = f"gateway:{row.gateway}"
    if payment.status not in LIVE:
        return _hold(s, payment, row, CreditStatus.late, f"payment is {payment.status.value}")
    if row.amount < payment.amount:
        return _hold(s, payment, row, CreditStatus.underpaid, f"received {row.amount} of {payment.amount} VND")
    if row.amount > payment.amount:
        return _hold(s, payment, row, CreditStatus.overpaid, f"received {row.amount} for {payment.amount} VND")
    moved = transition(
        s, payment, PaymentStatus.succeeded, actor=actor, kind="gateway.bank_credit", detail={"credit_id": row.id}
    )
    if not moved:  # changed under us between read and write: hold rather than guess
        return _hold(s, payment, row, CreditStatus.late, "payment changed while the credit was applied")
    return CreditStatus.matched, "exact amount"


def _hold(s: Session, payment: Payment, row: BankCredit, status: CreditStatus, reason: str) -> tuple[CreditStatus, str]:
    note(
        s,
        payment,
        "gateway.bank_credit_held",
        f"gateway:{row.gateway}",
        credit_id=row.id,
        status=status.value,
        amount=row.amount,
        reason=reason,
    )
    flag_for_review(s, payment)
    log.warning("transfer.credit_held", credit_id=row.id, payment_id=payment.id, status=status.value, reason=reason)
    return status, reason
