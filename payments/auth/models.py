"""API keys of client systems: stored as a hash, scoped, tied to one agency, revocable."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from sqlalchemy import JSON
from sqlmodel import Field, SQLModel

from payments.core.types import UTCDateTime, new_id, utcnow


class Scope(StrEnum):
    dossiers_write = "dossiers:write"
    dossiers_read = "dossiers:read"
    payments_write = "payments:write"
    payments_read = "payments:read"
    refunds_write = "refunds:write"
    # Staff actions on issued documents: replacements.
    receipts_write = "receipts:write"
    # The agency's administrator: receipt templates and series, the usage report.
    receipts_admin = "receipts:admin"
    webhooks_write = "webhooks:write"
    # Finance staff: the reconciliation runs, exceptions queue and reports.
    reconciliation_read = "reconciliation:read"
    reconciliation_write = "reconciliation:write"
    # The province's operations centre: the province's aggregate figures, every agency's (docs/api.md).
    province_read = "province:read"


class ApiKey(SQLModel, table=True):
    __tablename__ = "api_key"
    id: str = Field(default_factory=lambda: new_id("key"), primary_key=True, max_length=40)
    agency_id: str = Field(foreign_key="agency.id", index=True, max_length=40)
    name: str = Field(max_length=200)
    # The first characters of the key, kept to tell keys apart in listings; not enough to use it.
    prefix: str = Field(max_length=20)
    key_hash: str = Field(unique=True, max_length=64)
    scopes: list[str] = Field(default_factory=list, sa_type=JSON)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    revoked_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    # Written by each process's key cache at most once a minute (payments/auth/cache.py), never by a request: it may
    # lag the last use by that much, and only ever moves forward.
    last_used_at: datetime | None = Field(default=None, sa_type=UTCDateTime)


class ApiKeyVersion(SQLModel, table=True):
    """One row whose number goes up in the transaction of every key creation and revocation: processes that keep
    keys in memory compare it to the number they loaded under, and drop what they hold when it moved."""

    __tablename__ = "api_key_version"
    id: int = Field(default=1, primary_key=True)
    version: int = Field(default=0)
