"""/v1/province/stats: the province's monthly figures for its operations centre, read only.

An API key belongs to one agency; a key with the scope ``province:read`` reads the aggregate figures of every agency
of the province, and nothing else: counts, sums, shares and medians per agency, never a dossier, a payer or a
payment. The reasoning is in docs/api.md."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel, Field

from console.reports.figures import AgencyMonth, all_agencies, province_month, repeatable, today
from payments.auth.deps import CtxDep, require
from payments.auth.models import Scope
from payments.auth.service import Principal
from payments.core.responses import problems

router = APIRouter(prefix="/v1/province", tags=["province"])
Reader = Annotated[Principal, Depends(require(Scope.province_read))]
Month = Annotated[
    str | None,
    Query(
        pattern=r"^20[0-9]{2}-(0[1-9]|1[0-2])$",
        description="The month (YYYY-MM, Vietnam time); the current month when left out.",
        examples=["2026-11"],
    ),
]


class AgencyStats(BaseModel):
    agency_code: str = Field(description="Empty for the province's total.")
    agency_name: str
    dossiers_with_fees: int = Field(description="Dossiers with a fee to pay created in the month.")
    dossiers_paid_online: int = Field(description="Of those, the ones paid through the service.")
    cashless_share: float | None = Field(description="dossiers_paid_online / dossiers_with_fees; null without any.")
    payments: int = Field(description="Payments that succeeded in the month.")
    amount: int = Field(description="Their amount, whole VND.")
    amount_by_method: dict[str, int] = Field(description="The amount per payment method (gateway).")
    median_minutes_to_payment: float | None = Field(
        description="Median time from a dossier's creation to its payment, over the month's payments."
    )
    open_exceptions: int = Field(description="Open reconciliation exceptions of the month's business days.")


class ProvinceStatsOut(BaseModel):
    month: str = Field(examples=["2026-11"])
    total: AgencyStats
    agencies: list[AgencyStats]


def _out(row: AgencyMonth) -> AgencyStats:
    return AgencyStats(
        agency_code=row.code,
        agency_name=row.name,
        dossiers_with_fees=row.dossiers,
        dossiers_paid_online=row.dossiers_paid,
        cashless_share=row.cashless_share,
        payments=row.payments,
        amount=row.amount,
        amount_by_method=dict(sorted(row.by_method.items())),
        median_minutes_to_payment=row.median_minutes,
        open_exceptions=row.open_exceptions,
    )


@router.get("/stats", response_model=ProvinceStatsOut, responses=problems(401, 403, 422))
def get_province_stats(ctx: CtxDep, principal: Reader, month: Month = None) -> ProvinceStatsOut:
    """The province's figures for one month, per agency and in total: dossiers with fees and how many were paid
    online, the share paid without cash, payments and amounts by method, the median time from a dossier's creation
    to its payment, and open reconciliation exceptions. Aggregates only; needs the scope `province:read`."""
    first = today().replace(day=1)
    if month is not None:
        first = first.replace(year=int(month[:4]), month=int(month[5:]), day=1)
    with ctx.db.read() as s:
        repeatable(s)
        stats = province_month(s, all_agencies(s), first)
    total = _out(stats.total)
    total.agency_name = "Toàn tỉnh"
    return ProvinceStatsOut(month=first.strftime("%Y-%m"), total=total, agencies=[_out(r) for r in stats.agencies])
