"""Client systems' webhook endpoints, the messages sent to them, and each delivery's state."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import JSON, Index, Text, UniqueConstraint
from sqlmodel import Field, SQLModel

from payments.core.types import UTCDateTime, new_id, str_enum, utcnow


class DeliveryStatus(StrEnum):
    pending = "pending"
    delivered = "delivered"
    failed = "failed"


class WebhookEndpoint(SQLModel, table=True):
    __tablename__ = "webhook_endpoint"

    id: str = Field(default_factory=lambda: new_id("whe"), primary_key=True, max_length=40)
    agency_id: str = Field(foreign_key="agency.id", index=True, max_length=40)
    url: str = Field(max_length=2000)
    # The HMAC key ("whsec_" + base64) is needed to sign each message, so it is kept, and shown once at creation.
    secret: str = Field(max_length=100)
    # Empty: every event type.
    event_types: list[str] = Field(default_factory=list, sa_type=JSON)
    description: str = Field(default="", max_length=200)
    enabled: bool = True
    created_by: str = Field(default="", max_length=200)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    disabled_at: datetime | None = Field(default=None, sa_type=UTCDateTime)


class WebhookMessage(SQLModel, table=True):
    """One event, written in the transaction of the change it reports; its id is the ``webhook-id`` receivers use
    to drop duplicates, the same on every retry."""

    __tablename__ = "webhook_message"
    __table_args__ = (Index("ix_webhook_message_agency_created", "agency_id", "created_at"),)

    id: str = Field(default_factory=lambda: new_id("msg"), primary_key=True, max_length=40)
    agency_id: str = Field(foreign_key="agency.id", max_length=40)
    event_type: str = Field(max_length=60)
    # The exact body sent, so that every attempt carries the same bytes and signature input.
    body: str = Field(sa_type=Text)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)


class WebhookDelivery(SQLModel, table=True):
    __tablename__ = "webhook_delivery"
    __table_args__ = (UniqueConstraint("message_id", "endpoint_id"),)

    id: str = Field(default_factory=lambda: new_id("whd"), primary_key=True, max_length=40)
    agency_id: str = Field(foreign_key="agency.id", index=True, max_length=40)
    message_id: str = Field(foreign_key="webhook_message.id", max_length=40)
    endpoint_id: str = Field(foreign_key="webhook_endpoint.id", index=True, max_length=40)
    event_type: str = Field(max_length=60)
    status: DeliveryStatus = Field(default=DeliveryStatus.pending, sa_type=str_enum(DeliveryStatus))
    attempts: int = 0
    last_status_code: int | None = None
    last_error: str | None = Field(default=None, max_length=500)
    last_attempt_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    delivered_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)


def event_body(message_id: str, event_type: str, created_at: datetime, data: dict[str, Any]) -> dict[str, Any]:
    return {"id": message_id, "type": event_type, "timestamp": created_at.isoformat(), "data": data}
