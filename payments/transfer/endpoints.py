"""/v1/bank-credits: transfers received, and those held for finance staff."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query
from sqlmodel import select

from payments.auth.deps import CtxDep, require
from payments.auth.models import Scope
from payments.auth.service import Principal
from payments.core.pagination import Page, newest_first_page
from payments.core.responses import problems
from payments.transfer.models import HELD, BankCredit, CreditStatus
from payments.transfer.schemas import BankCreditOut

router = APIRouter(prefix="/v1/bank-credits", tags=["bank transfers"])
Reader = Annotated[Principal, Depends(require(Scope.payments_read))]


@router.get("", response_model=Page[BankCreditOut], responses=problems(401, 403, 422))
def get_bank_credits(
    ctx: CtxDep,
    principal: Reader,
    status: CreditStatus | None = None,
    held: Annotated[bool, Query(description="Only credits held for finance staff.")] = False,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    cursor: Annotated[str | None, Query(max_length=200)] = None,
) -> Page[BankCreditOut]:
    """List bank transfer credits received for the agency, newest first; underpaid, overpaid, unmatched and late
    ones are held for finance staff with the reason."""
    query = select(BankCredit).where(BankCredit.agency_id == principal.agency_id)
    if status:
        query = query.where(BankCredit.status == status)
    if held:
        query = query.where(BankCredit.status.in_(list(HELD)))  # type: ignore[attr-defined]
    with ctx.db.read() as s:
        rows, next_cursor = newest_first_page(s, query, BankCredit, limit, cursor, created_attr="received_at")
        return Page[BankCreditOut](
            data=[BankCreditOut.model_validate(r, from_attributes=True) for r in rows], next_cursor=next_cursor
        )
