"""Reconciliation: imported statement and settlement lines, matching runs, and the exceptions finance staff work.

An entry is linked to the payment it settles (``payment_id``) when it is imported, or by a later matching run;
each run stores which imports it read; every exception keeps its history (opened, found again, resolved, reopened,
cleared) in an append-only trail.
"""

from __future__ import annotations

from datetime import date, datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import JSON, BigInteger, Index, Text, UniqueConstraint
from sqlmodel import Field, SQLModel

from payments.core.types import UTCDateTime, new_id, str_enum, utcnow


class Category(StrEnum):
    matched = "matched"
    paid_not_settled = "paid_not_settled"
    settled_unknown = "settled_unknown"
    amount_mismatch = "amount_mismatch"
    duplicate_payment = "duplicate_payment"  # two payments for one dossier
    paid_without_receipt = "paid_without_receipt"
    receipt_without_payment = "receipt_without_payment"
    refund_not_settled = "refund_not_settled"
    transfer_underpaid = "transfer_underpaid"
    transfer_overpaid = "transfer_overpaid"
    transfer_unmatched = "transfer_unmatched"


EXCEPTIONS = tuple(c for c in Category if c is not Category.matched)


class ExceptionStatus(StrEnum):
    open = "open"
    resolved = "resolved"
    # A later run no longer finds it (e.g. the settlement arrived): closed by the system, kept with its trail.
    cleared = "cleared"


class StatementImport(SQLModel, table=True):
    __tablename__ = "statement_import"
    # The same file twice adds nothing: its hash is recorded per agency.
    __table_args__ = (UniqueConstraint("agency_id", "sha256"),)

    id: str = Field(default_factory=lambda: new_id("imp"), primary_key=True, max_length=40)
    agency_id: str = Field(foreign_key="agency.id", index=True, max_length=40)
    # The gateway whose settlement this is ("vnpay", "momo", "stripe") or "bank" for a bank statement.
    source: str = Field(max_length=40)
    format: str = Field(max_length=20)
    file_name: str = Field(max_length=300)
    sha256: str = Field(max_length=64)
    line_count: int = 0
    new_lines: int = 0
    total_amount: int = Field(default=0, sa_type=BigInteger)
    first_day: date | None = None
    last_day: date | None = None
    imported_by: str = Field(default="", max_length=200)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)


class StatementEntry(SQLModel, table=True):
    __tablename__ = "statement_entry"
    __table_args__ = (
        # The same bank or gateway transaction in two overlapping files counts once.
        UniqueConstraint("agency_id", "source", "external_id"),
        Index("ix_statement_entry_day", "agency_id", "booked_on"),
        Index("ix_statement_entry_payment", "payment_id"),
    )

    id: int | None = Field(default=None, primary_key=True)
    # Not declared as foreign keys: PostgreSQL checks a foreign key with one query per inserted row, a third of a
    # million-line import. Migrations 0019 and 0021 enforce the same integrity with triggers instead: the line's
    # import exists, of the line's agency (checked once for a bulk import's lines, which declare their import, and
    # per row for any other), and an import that has lines is neither deleted nor moved to another agency (so
    # neither is the agency, through the import's own foreign key).
    agency_id: str = Field(max_length=40)
    import_id: str = Field(max_length=40)
    source: str = Field(max_length=40)
    line_no: int
    external_id: str = Field(max_length=100)
    kind: str = Field(max_length=10)
    amount: int = Field(sa_type=BigInteger)
    fee: int = Field(default=0, sa_type=BigInteger)
    currency: str = Field(default="VND", max_length=3)
    booked_on: date
    value_on: date | None = None
    # The payment reference the line names: the gateway's merchant reference, or the VietQR reference found in a
    # bank transfer's memo (None when the memo has none).
    reference: str | None = Field(default=None, max_length=100)
    counterparty: str | None = Field(default=None, max_length=200)
    description: str = Field(default="", max_length=500)
    # The payment this line settles or refunds: linked on import, or by a later run if the payment came after.
    payment_id: str | None = Field(default=None, max_length=40)


class ReconRun(SQLModel, table=True):
    __tablename__ = "recon_run"
    __table_args__ = (Index("ix_recon_run_day", "agency_id", "business_day"),)

    id: str = Field(default_factory=lambda: new_id("rcn"), primary_key=True, max_length=40)
    agency_id: str = Field(foreign_key="agency.id", max_length=40)
    business_day: date
    # The imports (id and sha256) whose lines existed when the run read them: the inputs of its results.
    inputs: list[dict[str, Any]] = Field(default_factory=list, sa_type=JSON)
    counts: dict[str, int] = Field(default_factory=dict, sa_type=JSON)
    created_by: str = Field(default="", max_length=200)
    started_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    finished_at: datetime | None = Field(default=None, sa_type=UTCDateTime)


class ReconException(SQLModel, table=True):
    __tablename__ = "recon_exception"
    # One exception per finding, however often the day is run again: resolutions survive re-runs.
    __table_args__ = (
        UniqueConstraint("agency_id", "key"),
        Index("ix_recon_exception_list", "agency_id", "status", "business_day"),
    )

    id: str = Field(default_factory=lambda: new_id("exc"), primary_key=True, max_length=40)
    agency_id: str = Field(foreign_key="agency.id", max_length=40)
    key: str = Field(max_length=120)
    category: Category = Field(sa_type=str_enum(Category, 30))
    business_day: date
    status: ExceptionStatus = Field(default=ExceptionStatus.open, sa_type=str_enum(ExceptionStatus))
    payment_id: str | None = Field(default=None, max_length=40)
    dossier_id: str | None = Field(default=None, max_length=40)
    document_id: str | None = Field(default=None, max_length=40)
    refund_id: str | None = Field(default=None, max_length=40)
    entry_id: int | None = Field(default=None)
    expected_amount: int | None = Field(default=None, sa_type=BigInteger)
    actual_amount: int | None = Field(default=None, sa_type=BigInteger)
    detail: str = Field(default="", max_length=500)
    first_run_id: str = Field(max_length=40)
    last_run_id: str = Field(max_length=40)
    note: str | None = Field(default=None, sa_type=Text)
    resolved_by: str | None = Field(default=None, max_length=200)
    resolved_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    updated_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)


class ExceptionAction(StrEnum):
    opened = "opened"
    resolved = "resolved"
    reopened = "reopened"
    cleared = "cleared"
    found_again = "found_again"  # a cleared exception that a later run finds again


class ReconExceptionEvent(SQLModel, table=True):
    """Append-only: who did what to an exception, when and why."""

    __tablename__ = "recon_exception_event"

    id: int | None = Field(default=None, primary_key=True)
    exception_id: str = Field(foreign_key="recon_exception.id", index=True, max_length=40)
    action: ExceptionAction = Field(sa_type=str_enum(ExceptionAction))
    actor: str = Field(max_length=200)
    note: str | None = Field(default=None, sa_type=Text)
    run_id: str | None = Field(default=None, max_length=40)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
