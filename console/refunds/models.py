"""Refund requests: what a finance user asks for and an approver decides on before any money moves."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from sqlalchemy import BigInteger, CheckConstraint, Index
from sqlmodel import Field, SQLModel

from payments.core.types import UTCDateTime, new_id, str_enum, utcnow


class RequestStatus(StrEnum):
    pending = "pending"
    approved = "approved"
    rejected = "rejected"
    cancelled = "cancelled"


class RefundRequest(SQLModel, table=True):
    """One request to refund part of a payment. It leaves ``pending`` once, by a status-guarded UPDATE, so two
    approvers deciding at the same moment cannot both succeed; the refund exists only once it is ``approved``."""

    __tablename__ = "refund_request"
    __table_args__ = (
        # The queue: one agency's requests by status, newest first.
        Index("ix_refund_request_agency_status", "agency_id", "status", "requested_at"),
        CheckConstraint("amount > 0", name="ck_refund_request_amount_positive"),
        # The maker is never the checker, whatever wrote the row (a requester may only cancel their own).
        CheckConstraint("status <> 'approved' OR decided_by <> requested_by", name="ck_refund_request_four_eyes"),
    )

    id: str = Field(default_factory=lambda: new_id("rrq"), primary_key=True, max_length=40)
    agency_id: str = Field(foreign_key="agency.id", max_length=40)
    payment_id: str = Field(foreign_key="payment.id", index=True, max_length=40)
    amount: int = Field(sa_type=BigInteger)
    reason: str = Field(max_length=500)
    status: RequestStatus = Field(default=RequestStatus.pending, sa_type=str_enum(RequestStatus))
    requested_by: str = Field(foreign_key="staff_user.id", max_length=40)
    requested_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    decided_by: str | None = Field(default=None, foreign_key="staff_user.id", max_length=40)
    decided_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    decision_note: str | None = Field(default=None, max_length=500)
    refund_id: str | None = Field(default=None, foreign_key="refund.id", max_length=40)
