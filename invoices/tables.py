"""Issued documents and the per-series counters that number them without gaps."""

from __future__ import annotations

from datetime import date, datetime
from enum import StrEnum

from sqlalchemy import Index, LargeBinary, UniqueConstraint, text
from sqlmodel import Field, SQLModel

from payments.core.types import UTCDateTime, new_id, str_enum, utcnow


class DocumentPurpose(StrEnum):
    original = "original"
    adjustment = "adjustment"  # TCHDon 2: signed amounts, referencing the original
    replacement = "replacement"  # TCHDon 1


class SeriesStatus(StrEnum):
    open = "open"
    closed = "closed"


class SeriesOrigin(StrEnum):
    # Registered by the deployment's default (LEPHI_RECEIPT_SERIES) for an agency that never registered its own:
    # how series were chosen before they were data. Such an agency keeps getting the default each new year.
    default = "default"
    registered = "registered"


class ReceiptSeries(SQLModel, table=True):
    """A template and series an agency issues receipts from, for one calendar year (the series' characters 2-3 are
    the year's last two digits). Issuance takes the agency's one open series of the template for the issue year and
    refuses when there is none; numbers are counted in ``series_counter``."""

    __tablename__ = "receipt_series"
    __table_args__ = (
        UniqueConstraint("agency_id", "template", "series"),
        # One series in use per agency, template and year: issuance never has to choose.
        Index(
            "ux_receipt_series_open",
            "agency_id",
            "template",
            "year",
            unique=True,
            sqlite_where=text("status = 'open'"),
            postgresql_where=text("status = 'open'"),
        ),
    )

    id: str = Field(default_factory=lambda: new_id("ser"), primary_key=True, max_length=40)
    agency_id: str = Field(foreign_key="agency.id", index=True, max_length=40)
    template: str = Field(max_length=1)
    series: str = Field(max_length=6)
    year: int
    status: SeriesStatus = Field(default=SeriesStatus.open, sa_type=str_enum(SeriesStatus))
    origin: SeriesOrigin = Field(default=SeriesOrigin.registered, sa_type=str_enum(SeriesOrigin))
    registered_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    registered_by: str | None = Field(default=None, max_length=200)
    closed_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    closed_by: str | None = Field(default=None, max_length=200)


class SeriesCounter(SQLModel, table=True):
    """The last number used per (agency, template, series, year). Incremented in the transaction that inserts the
    document, so a rollback gives the number back: a sequence would leave a gap."""

    __tablename__ = "series_counter"
    __table_args__ = (UniqueConstraint("agency_id", "template", "series", "year"),)

    id: int | None = Field(default=None, primary_key=True)
    agency_id: str = Field(foreign_key="agency.id", max_length=40)
    template: str = Field(max_length=1)
    series: str = Field(max_length=6)
    year: int
    last_number: int = 0


class Document(SQLModel, table=True):
    __tablename__ = "document"
    __table_args__ = (
        UniqueConstraint("agency_id", "template", "series", "year", "number"),
        # Exactly one original document per payment, whatever retries, crashes or workers do.
        Index(
            "ux_document_original_per_payment",
            "payment_id",
            unique=True,
            sqlite_where=text("purpose = 'original'"),
            postgresql_where=text("purpose = 'original'"),
        ),
        # Reconciliation reads one agency's receipts of one day.
        Index("ix_document_agency_issue_date", "agency_id", "issue_date"),
        # A document is replaced at most once; the replacement is then the one to correct.
        Index(
            "ux_document_one_replacement",
            "related_document_id",
            unique=True,
            sqlite_where=text("purpose = 'replacement'"),
            postgresql_where=text("purpose = 'replacement'"),
        ),
    )

    id: str = Field(default_factory=lambda: new_id("doc"), primary_key=True, max_length=40)
    agency_id: str = Field(foreign_key="agency.id", index=True, max_length=40)
    payment_id: str = Field(foreign_key="payment.id", index=True, max_length=40)
    purpose: DocumentPurpose = Field(sa_type=str_enum(DocumentPurpose))
    template: str = Field(max_length=1)
    series: str = Field(max_length=6)
    year: int
    number: int
    issue_date: date
    total: int
    lookup_code: str = Field(unique=True, max_length=40)
    # The signed XML exactly as issued: the legal original, served byte for byte.
    xml: bytes = Field(sa_type=LargeBinary)
    related_document_id: str | None = Field(default=None, foreign_key="document.id", max_length=40)
    # The refund an adjustment document records: one adjustment per refund, whatever retries do.
    refund_id: str | None = Field(default=None, foreign_key="refund.id", unique=True, max_length=40)
    # Why a correction was issued (TTHDLQuan/GChu) and who asked for it.
    reason: str | None = Field(default=None, max_length=255)
    created_by: str | None = Field(default=None, max_length=200)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    # The payer as a replacement corrected them (NMua/Ten, NMua/MST), so that staff find the receipt in force by the
    # name it carries; NULL on every other document, whose payer is the dossier's.
    buyer_name: str | None = Field(default=None, max_length=400)
    buyer_tax_code: str | None = Field(default=None, max_length=14)

    def file_name(self, extension: str) -> str:
        """``5K26TLP-00000042.pdf``: the printed symbol and the number, as people file receipts."""
        return f"{self.template}{self.series}-{self.number:08d}.{extension}"
