"""Messages to the tax authority and every reply to them, kept unchanged (domain.md 3.5: at least 10 years)."""

from __future__ import annotations

from datetime import date, datetime
from enum import StrEnum

from sqlalchemy import Index, LargeBinary, Text, UniqueConstraint
from sqlmodel import Field, SQLModel

from payments.core.types import UTCDateTime, new_id, str_enum, utcnow


class TaxMessageKind(StrEnum):
    document = "document"  # an issued document: MLTDiep 200 (coded series) or 203 (uncoded)
    notice = "notice"  # a 04/SS-HĐĐT notice: MLTDiep 300
    summary = "summary"  # the daily summary of e-receipts, 01/TH-BLĐT: MLTDiep 400


class TaxMessageStatus(StrEnum):
    """queued -> sending -> sent -> acknowledged -> coded, or rejected by a refusal at any point before coded.

    ``sending`` is a claim: a sender crashed in it is taken over once ``updated_at`` is older than the worker
    lease (the file drop is idempotent, so a second hand-over of the same bytes is harmless). The transitions a
    reply causes are in ``invoices.tax.service``.
    """

    queued = "queued"
    sending = "sending"
    sent = "sent"
    acknowledged = "acknowledged"  # 999 received, or a 204 without error
    rejected = "rejected"  # 999 refused, or a 204 listing errors: a corrected message is a new message
    coded = "coded"  # 202: the tax authority's code (MCCQT) is stored


class TaxMessage(SQLModel, table=True):
    __tablename__ = "tax_message"
    __table_args__ = (Index("ix_tax_message_status_created", "status", "created_at"),)

    id: str = Field(default_factory=lambda: new_id("txm"), primary_key=True, max_length=40)
    agency_id: str = Field(foreign_key="agency.id", index=True, max_length=40)
    document_id: str | None = Field(default=None, foreign_key="document.id", index=True, max_length=40)
    kind: TaxMessageKind = Field(sa_type=str_enum(TaxMessageKind))
    message_type: int  # MLTDiep
    mtdiep: str = Field(unique=True, max_length=46)
    status: TaxMessageStatus = Field(default=TaxMessageStatus.queued, sa_type=str_enum(TaxMessageStatus))
    # The TDiep exactly as handed to the T-VAN provider; a re-send sends these bytes again.
    xml: bytes = Field(sa_type=LargeBinary)
    mccqt: str | None = Field(default=None, max_length=34)
    error: str | None = Field(default=None, sa_type=Text)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    sent_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    updated_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)


class TaxReply(SQLModel, table=True):
    """One reply of the tax authority to one of our messages, as received. Its own MTDiep is unique, so a reply
    relayed twice, or read by two workers at once, is stored and applied once."""

    __tablename__ = "tax_reply"

    id: int | None = Field(default=None, primary_key=True)
    tax_message_id: str = Field(foreign_key="tax_message.id", index=True, max_length=40)
    mtdiep: str = Field(unique=True, max_length=64)
    message_type: int  # MLTDiep
    xml: bytes = Field(sa_type=LargeBinary)
    received_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)


class ReceiptSummary(SQLModel, table=True):
    """One daily summary of an agency's e-receipts (01/TH-BLĐT) as sent: the first of the day (sequence 1) or a
    supplementary one restating the day after more documents were issued, or after a rejection. What became of it
    is its tax message's status."""

    __tablename__ = "receipt_summary"
    __table_args__ = (UniqueConstraint("agency_id", "day", "sequence"),)

    id: str = Field(default_factory=lambda: new_id("sum"), primary_key=True, max_length=40)
    agency_id: str = Field(foreign_key="agency.id", index=True, max_length=40)
    day: date
    sequence: int
    tax_message_id: str = Field(foreign_key="tax_message.id", max_length=40)
    # The documents and the total the summary states, to tell whether the day has changed since.
    documents: int
    total: int
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
