"""Audit rows and the per-scope head row that serialises the writers of one chain."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, UniqueConstraint
from sqlmodel import Field, SQLModel

from payments.core.types import UTCDateTime, new_id, utcnow

PROVINCE = "province"


class AuditLog(SQLModel, table=True):
    __tablename__ = "audit_log"
    __table_args__ = (UniqueConstraint("scope", "seq"),)

    id: str = Field(default_factory=lambda: new_id("aud"), primary_key=True, max_length=40)
    # NULL: the province's own chain (province admins, the CLI, sign-ins of unknown accounts).
    agency_id: str | None = Field(default=None, foreign_key="agency.id", max_length=40)
    # The agency id, or "province": a chain's key that a unique index can hold (NULLs are all distinct).
    scope: str = Field(max_length=40)
    seq: int
    at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    actor: str = Field(max_length=40)
    ip: str = Field(default="", max_length=64)
    action: str = Field(max_length=60)
    target: str | None = Field(default=None, max_length=254)
    before: dict[str, Any] | None = Field(default=None, sa_type=JSON)
    after: dict[str, Any] | None = Field(default=None, sa_type=JSON)
    prev_hash: str = Field(max_length=64)
    hash: str = Field(max_length=64)


class AuditHead(SQLModel, table=True):
    """The last sequence number of one chain. Every writer updates it first, so writers of one scope queue on its
    row lock and each reads the previous row only once the one before it has committed."""

    __tablename__ = "audit_head"
    scope: str = Field(primary_key=True, max_length=40)
    seq: int = 0
