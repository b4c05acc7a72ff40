"""API shapes of bank credits."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel

from payments.transfer.models import CreditStatus


class BankCreditOut(BaseModel):
    id: str
    gateway: str
    bank_transaction_id: str
    source: str
    payment_id: str | None
    reference: str | None
    amount: int
    expected_amount: int | None
    status: CreditStatus
    reason: str
    memo: str
    received_at: datetime
