"""Payments, their append-only event history, refunds, and the inbox of gateway callbacks."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import JSON, BigInteger, Index, UniqueConstraint, text
from sqlmodel import Field, SQLModel

from payments.core.types import UTCDateTime, new_id, str_enum, utcnow
from payments.payment.states import LIVE, PAID, PaymentStatus


def _in(statuses: frozenset[PaymentStatus]) -> Any:
    return text("status IN (" + ", ".join(f"'{s.value}'" for s in sorted(statuses)) + ")")


class Payment(SQLModel, table=True):
    __table_args__ = (
        # At most one live attempt per dossier, and at most one that took money: the database enforces both,
        # so no interleaving of requests, callbacks and workers can break them.
        Index(
            "ux_payment_live_per_dossier",
            "dossier_id",
            unique=True,
            sqlite_where=_in(LIVE),
            postgresql_where=_in(LIVE),
        ),
        Index(
            "ux_payment_paid_per_dossier",
            "dossier_id",
            unique=True,
            sqlite_where=_in(PAID),
            postgresql_where=_in(PAID),
        ),
        UniqueConstraint("gateway", "gateway_reference"),
        Index("ix_payment_agency_created", "agency_id", "created_at", "id"),
        # Reconciliation reads a day's payments by when they succeeded.
        Index("ix_payment_agency_succeeded", "agency_id", "succeeded_at"),
    )

    id: str = Field(default_factory=lambda: new_id("pay"), primary_key=True, max_length=40)
    agency_id: str = Field(foreign_key="agency.id", max_length=40)
    dossier_id: str = Field(foreign_key="dossier.id", index=True, max_length=40)
    gateway: str = Field(max_length=40)
    amount: int = Field(sa_type=BigInteger)
    currency: str = Field(default="VND", max_length=3)
    status: PaymentStatus = Field(default=PaymentStatus.created, sa_type=str_enum(PaymentStatus), index=True)
    # Sent to the gateway as its idempotency token; stored before the first gateway call so a retry reuses it.
    gateway_token: str = Field(unique=True, max_length=64)
    gateway_reference: str | None = Field(default=None, max_length=100)
    next_url: str | None = Field(default=None, max_length=2000)
    return_url: str = Field(max_length=2000)
    description: str = Field(max_length=255)
    refunded_amount: int = Field(default=0, sa_type=BigInteger)
    # Money promised to refunds not yet confirmed by the gateway, so two refunds cannot both pass the check.
    refund_reserved: int = Field(default=0, sa_type=BigInteger)
    requires_review: bool = False
    expires_at: datetime = Field(sa_type=UTCDateTime)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    updated_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    succeeded_at: datetime | None = Field(default=None, sa_type=UTCDateTime)


class PaymentEvent(SQLModel, table=True):
    """Append-only: one row per transition or notable fact; never updated or deleted."""

    __tablename__ = "payment_event"

    id: int | None = Field(default=None, primary_key=True)
    payment_id: str = Field(foreign_key="payment.id", index=True, max_length=40)
    kind: str = Field(max_length=60)
    from_status: str | None = Field(default=None, max_length=20)
    to_status: str | None = Field(default=None, max_length=20)
    actor: str = Field(max_length=100)
    gateway_reference: str | None = Field(default=None, max_length=100)
    amount: int | None = Field(default=None, sa_type=BigInteger)
    detail: dict[str, Any] = Field(default_factory=dict, sa_type=JSON)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)


class RefundStatus(StrEnum):
    pending = "pending"
    succeeded = "succeeded"
    failed = "failed"


class Refund(SQLModel, table=True):
    id: str = Field(default_factory=lambda: new_id("rfd"), primary_key=True, max_length=40)
    payment_id: str = Field(foreign_key="payment.id", index=True, max_length=40)
    amount: int = Field(sa_type=BigInteger)
    reason: str = Field(max_length=500)
    status: RefundStatus = Field(default=RefundStatus.pending, sa_type=str_enum(RefundStatus))
    gateway_token: str = Field(unique=True, max_length=64)
    gateway_reference: str | None = Field(default=None, max_length=100)
    failure_reason: str | None = Field(default=None, max_length=500)
    created_by: str = Field(max_length=100)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    completed_at: datetime | None = Field(default=None, sa_type=UTCDateTime)


class GatewayInbox(SQLModel, table=True):
    """Every verified callback by the gateway's own event id: a duplicate delivery is recognised and not re-applied."""

    __tablename__ = "gateway_inbox"
    __table_args__ = (UniqueConstraint("gateway", "event_id"),)

    id: int | None = Field(default=None, primary_key=True)
    gateway: str = Field(max_length=40)
    event_id: str = Field(max_length=200)
    payment_id: str | None = Field(default=None, max_length=40)
    outcome: str = Field(max_length=60)
    received_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
