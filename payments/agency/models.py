"""Agencies (the fee collectors) and their procedures' fee schedules."""

from __future__ import annotations

from datetime import date, datetime
from enum import StrEnum

from sqlalchemy import JSON, BigInteger, LargeBinary, UniqueConstraint
from sqlmodel import Field, SQLModel

from payments.core.types import UTCDateTime, new_id, str_enum, utcnow


class FeeKind(StrEnum):
    """Lệ phí (a charge, state-budget revenue), phí (a fee), or a service charge such as copying or posting."""

    le_phi = "le_phi"
    phi = "phi"
    service = "service"


class Agency(SQLModel, table=True):
    id: str = Field(default_factory=lambda: new_id("agc"), primary_key=True, max_length=40)
    code: str = Field(unique=True, max_length=40)
    name: str = Field(max_length=400)
    tax_code: str = Field(max_length=14)
    address: str = Field(max_length=400)
    bank_account: str = Field(default="", max_length=40)
    bank_name: str = Field(default="", max_length=200)
    payment_methods: list[str] = Field(default_factory=list, sa_type=JSON)
    # Where a payer with a question reaches the agency: shown on every payer page.
    phone: str = Field(default="", max_length=40, sa_column_kwargs={"server_default": ""})
    email: str = Field(default="", max_length=200, sa_column_kwargs={"server_default": ""})
    # Set when the province deactivates the agency; its records stay.
    deactivated_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    # Bumped in the same transaction as any change to the agency, its procedures or its fees, so that every process
    # can keep them in memory and notice a change with one cheap read (payments/agency/cache.py).
    version: int = Field(default=1, sa_column_kwargs={"server_default": "1"})


class Procedure(SQLModel, table=True):
    __table_args__ = (UniqueConstraint("agency_id", "code"),)

    id: str = Field(default_factory=lambda: new_id("prc"), primary_key=True, max_length=40)
    agency_id: str = Field(foreign_key="agency.id", index=True, max_length=40)
    code: str = Field(max_length=40)
    name: str = Field(max_length=500)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)


# The day from which the schedule an agency was created with applies: before any imported version.
BASE_DAY = date(1970, 1, 1)


class FeeScheduleVersion(SQLModel, table=True):
    """A fee schedule imported for an agency, in force from ``effective_from`` (a day in Vietnam time) until the
    next version's day. Its lines are the ``fee_schedule_line`` rows that name it; the schedule the agency was created
    with has no version row (its lines have ``version_id`` NULL and ``effective_from`` BASE_DAY)."""

    __tablename__ = "fee_schedule_version"
    __table_args__ = (UniqueConstraint("agency_id", "effective_from"),)

    id: int | None = Field(default=None, primary_key=True)
    agency_id: str = Field(foreign_key="agency.id", index=True, max_length=40)
    effective_from: date
    source_name: str = Field(max_length=200)
    created_by: str = Field(max_length=40)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)


class FeeScheduleLine(SQLModel, table=True):
    __tablename__ = "fee_schedule_line"
    __table_args__ = (UniqueConstraint("procedure_id", "code", "effective_from", name="uq_fee_schedule_line_day"),)

    id: int | None = Field(default=None, primary_key=True)
    procedure_id: str = Field(foreign_key="procedure.id", index=True, max_length=40)
    code: str = Field(max_length=40)
    kind: FeeKind = Field(sa_type=str_enum(FeeKind))
    name: str = Field(max_length=500)
    unit_amount: int = Field(sa_type=BigInteger)
    default_quantity: int = 1
    max_quantity: int = 1
    position: int = 0
    # As written in the imported spreadsheet, so that an export gives back what was imported.
    legal_basis: str = Field(default="", max_length=500, sa_column_kwargs={"server_default": ""})
    unit: str = Field(default="", max_length=100, sa_column_kwargs={"server_default": ""})
    # Which schedule the line belongs to: a dossier is priced by the lines of the latest day not after its own.
    effective_from: date = Field(default=BASE_DAY, sa_column_kwargs={"server_default": "1970-01-01"})
    version_id: int | None = Field(default=None, foreign_key="fee_schedule_version.id", index=True)


class AgencyLogo(SQLModel, table=True):
    """The agency's logo for its receipts (payments/agency/logo.py checks it): apart from the agency's row, so that
    the many reads of an agency never carry the image."""

    __tablename__ = "agency_logo"

    agency_id: str = Field(foreign_key="agency.id", primary_key=True, max_length=40)
    content_type: str = Field(max_length=20)
    data: bytes = Field(sa_type=LargeBinary)
    sha256: str = Field(max_length=64)
    updated_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
