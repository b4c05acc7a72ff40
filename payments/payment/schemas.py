"""API shapes of payments and refunds. Clients never send an amount to charge, a status or a paid time."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import AnyHttpUrl, BaseModel, Field, StrictInt, field_validator

from payments.core.schemas import StrictModel
from payments.payment.models import RefundStatus
from payments.payment.states import PaymentStatus


class PaymentIn(StrictModel):
    dossier_code: str = Field(min_length=1, max_length=20, examples=["HS-2026-000123"])
    method: str = Field(min_length=1, max_length=40, examples=["sandbox"])
    return_url: AnyHttpUrl = Field(
        examples=["https://dichvucong.example.gov.vn/ho-so/HS-2026-000123"],
        description="Where the payer's browser returns. It carries no outcome: read the payment with GET.",
    )

    @field_validator("return_url")
    @classmethod
    def _length(cls, value: AnyHttpUrl) -> AnyHttpUrl:
        if len(str(value)) > 2000:
            raise ValueError("return_url is longer than 2000 characters")
        return value


class RefundIn(StrictModel):
    amount: StrictInt = Field(gt=0, le=999_999_999_999, examples=[50000], description="Whole VND.")
    reason: str = Field(min_length=1, max_length=500, examples=["Hồ sơ không đủ điều kiện giải quyết"])


class EventOut(BaseModel):
    kind: str
    from_status: str | None
    to_status: str | None
    actor: str
    gateway_reference: str | None
    amount: int | None
    detail: dict[str, Any]
    created_at: datetime


class PaymentOut(BaseModel):
    id: str = Field(examples=["pay_5f0c2d9a8b7e6f5a4b3c2d1e"])
    status: PaymentStatus
    amount: int = Field(description="Whole VND, the dossier's total when the payment was created.")
    currency: str = "VND"
    dossier_code: str
    method: str
    next_url: str | None = Field(description="Send the payer here to pay. Null once the payment is finished.")
    return_url: str
    gateway_reference: str | None
    refunded_amount: int
    refundable_amount: int
    requires_review: bool
    created_at: datetime
    updated_at: datetime
    expires_at: datetime
    succeeded_at: datetime | None
    events: list[EventOut] | None = None


class RefundOut(BaseModel):
    id: str
    payment_id: str
    amount: int
    reason: str
    status: RefundStatus
    gateway_reference: str | None
    failure_reason: str | None
    created_at: datetime
    completed_at: datetime | None
