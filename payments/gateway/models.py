"""State kept on behalf of the sandbox gateway, which plays a payment provider inside this service."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, BigInteger
from sqlmodel import Field, SQLModel

from payments.core.types import UTCDateTime, utcnow


class SandboxTransaction(SQLModel, table=True):
    __tablename__ = "sandbox_transaction"

    id: str = Field(primary_key=True, max_length=40)
    idempotency_key: str = Field(unique=True, max_length=64)
    merchant_reference: str = Field(max_length=64)
    amount: int = Field(sa_type=BigInteger)
    currency: str = Field(max_length=3)
    description: str = Field(max_length=255)
    status: str = Field(max_length=20)
    callback_url: str = Field(max_length=2000)
    return_url: str = Field(max_length=2000)
    refunded_amount: int = Field(default=0, sa_type=BigInteger)
    refund_keys: list[str] = Field(default_factory=list, sa_type=JSON)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    updated_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
