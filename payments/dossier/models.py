"""Dossiers (hồ sơ): the application records whose fees are paid, with the fee lines the server computed."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from sqlalchemy import BigInteger, UniqueConstraint
from sqlmodel import Field, SQLModel

from payments.core.pii import Sealed
from payments.core.types import UTCDateTime, new_id, str_enum, utcnow


class DossierStatus(StrEnum):
    unpaid = "unpaid"
    paid = "paid"
    refunded = "refunded"


class Dossier(SQLModel, table=True):
    __table_args__ = (UniqueConstraint("agency_id", "code"),)

    id: str = Field(default_factory=lambda: new_id("dos"), primary_key=True, max_length=40)
    agency_id: str = Field(foreign_key="agency.id", index=True, max_length=40)
    code: str = Field(max_length=20)
    procedure_id: str = Field(foreign_key="procedure.id", max_length=40)
    payer_name: str = Field(max_length=400)
    # Sealed at rest (payments.core.pii); the identity number is found through its blind index.
    payer_email: str | None = Field(default=None, sa_type=Sealed("dossier.payer_email", 254))
    payer_phone: str | None = Field(default=None, sa_type=Sealed("dossier.payer_phone", 20))
    payer_id_number: str | None = Field(default=None, sa_type=Sealed("dossier.payer_id_number", 12))
    payer_passport_number: str | None = Field(default=None, sa_type=Sealed("dossier.payer_passport_number", 20))
    payer_id_index: str | None = Field(default=None, max_length=80, index=True)
    payer_tax_code: str | None = Field(default=None, max_length=14)
    payer_address: str | None = Field(default=None, max_length=400)
    total_amount: int = Field(sa_type=BigInteger)
    status: DossierStatus = Field(default=DossierStatus.unpaid, sa_type=str_enum(DossierStatus), index=True)
    # The payer's link to the payment page: unguessable, so that a dossier code alone reveals nothing.
    pay_token: str = Field(unique=True, max_length=64)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime, index=True)
    updated_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    paid_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    # When the retention job erased the payer's contact data (docs/privacy.md).
    pii_redacted_at: datetime | None = Field(default=None, sa_type=UTCDateTime)


class DossierFeeLine(SQLModel, table=True):
    __tablename__ = "dossier_fee_line"
    id: int | None = Field(default=None, primary_key=True)
    dossier_id: str = Field(foreign_key="dossier.id", index=True, max_length=40)
    fee_code: str = Field(max_length=40)
    kind: str = Field(max_length=10)
    name: str = Field(max_length=500)
    unit_amount: int = Field(sa_type=BigInteger)
    quantity: int
    amount: int = Field(sa_type=BigInteger)
    position: int = 0
