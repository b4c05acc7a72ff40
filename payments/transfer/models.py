"""Credits received by bank transfer, matched to payments by the reference in the transfer's memo."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from sqlalchemy import BigInteger, UniqueConstraint
from sqlmodel import Field, SQLModel

from payments.core.types import UTCDateTime, new_id, str_enum, utcnow


class CreditStatus(StrEnum):
    matched = "matched"  # the exact amount, applied to its payment
    underpaid = "underpaid"  # less than the fee: held for finance staff
    overpaid = "overpaid"  # more than the fee: held for finance staff
    unmatched = "unmatched"  # no readable reference, or one that names no payment: held
    late = "late"  # the payment was no longer waiting (expired, cancelled or already paid): held


HELD = frozenset({CreditStatus.underpaid, CreditStatus.overpaid, CreditStatus.unmatched, CreditStatus.late})


class BankCredit(SQLModel, table=True):
    __tablename__ = "bank_credit"
    # One row per bank transaction, whether it came by notification or by statement: counted once.
    __table_args__ = (UniqueConstraint("gateway", "bank_transaction_id"),)

    id: str = Field(default_factory=lambda: new_id("crd"), primary_key=True, max_length=40)
    gateway: str = Field(max_length=40)
    bank_transaction_id: str = Field(max_length=100)
    source: str = Field(max_length=20)
    agency_id: str | None = Field(default=None, foreign_key="agency.id", index=True, max_length=40)
    payment_id: str | None = Field(default=None, foreign_key="payment.id", index=True, max_length=40)
    reference: str | None = Field(default=None, max_length=40)
    amount: int = Field(sa_type=BigInteger)
    expected_amount: int | None = Field(default=None, sa_type=BigInteger)
    status: CreditStatus = Field(sa_type=str_enum(CreditStatus), index=True)
    reason: str = Field(max_length=300)
    memo: str = Field(default="", max_length=500)
    received_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime, index=True)
