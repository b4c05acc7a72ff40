"""/v1/receipt-series: the agency's receipt templates and series (register, close, list), for its administrator."""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Query
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, Field
from sqlmodel import Session

from invoices.context import ReceiptCtxDep
from invoices.series import close_series, last_numbers, list_series, receipt_template, register_series, today
from invoices.tables import ReceiptSeries, SeriesOrigin, SeriesStatus
from invoices.usage import usage_report, usage_xlsx, usage_xml
from payments.agency.models import Agency
from payments.auth.deps import actor_of, require
from payments.auth.models import Scope
from payments.auth.service import Principal
from payments.core.responses import problems, respond
from payments.core.schemas import StrictModel
from payments.idempotency.deps import Idempotent
from payments.reconcile.reports import XLSX_MEDIA_TYPE

router = APIRouter(prefix="/v1/receipt-series", tags=["receipts"])
Admin = Annotated[Principal, Depends(require(Scope.receipts_admin))]
SERIES_PATTERN = r"^[CK][0-9]{2}[TDLMNBGH][A-Z]{2}$"


class SeriesIn(StrictModel):
    template: str = Field(default_factory=receipt_template, pattern=r"^[1-9]$", description="KHMSHDon")
    series: str = Field(pattern=SERIES_PATTERN, examples=["K27TLP"], description="KHHDon; characters 2-3: the year")


class SeriesOut(BaseModel):
    template: str
    series: str
    symbol: str
    year: int
    status: SeriesStatus
    origin: SeriesOrigin
    last_number: int = Field(description="The last number issued in the series (0: none yet).")
    registered_at: datetime
    registered_by: str | None
    closed_at: datetime | None
    closed_by: str | None


def _out(row: ReceiptSeries, last: int) -> SeriesOut:
    return SeriesOut(
        template=row.template,
        series=row.series,
        symbol=f"{row.template}{row.series}",
        year=row.year,
        status=row.status,
        origin=row.origin,
        last_number=last,
        registered_at=row.registered_at,
        registered_by=row.registered_by,
        closed_at=row.closed_at,
        closed_by=row.closed_by,
    )


def _last(s: Session, row: ReceiptSeries) -> int:
    return last_numbers(s, row.agency_id).get((row.template, row.series, row.year), 0)


@router.get("", response_model=list[SeriesOut], responses=problems(401, 403))
def get_series(ctx: ReceiptCtxDep, principal: Admin) -> list[SeriesOut]:
    """The agency's receipt series, the latest year first, with the last number used in each."""
    with ctx.db.read() as s:
        last = last_numbers(s, principal.agency_id)
        return [_out(r, last.get((r.template, r.series, r.year), 0)) for r in list_series(s, principal.agency_id)]


@router.get(
    "/usage",
    response_class=Response,
    responses={
        200: {"content": {"application/xml": {}, XLSX_MEDIA_TYPE: {}}},
        **problems(401, 403, 422),
    },
)
def get_usage(
    ctx: ReceiptCtxDep,
    principal: Admin,
    start: Annotated[date, Query(description="First day of the period.")],
    end: Annotated[date, Query(description="Last day of the period (at most 366 days).")],
    format: Annotated[Literal["xml", "xlsx"], Query()] = "xml",
) -> Response:
    """The report on the use of receipts (BC26/BLĐT) for a period: per template and series, the numbers used,
    cancelled and remaining, as XML or as a spreadsheet."""
    with ctx.db.read() as s:
        agency = s.get(Agency, principal.agency_id)
        assert agency is not None  # the key's agency
        report = usage_report(s, agency, start, end, today())
    name = f"BC26-BLDT_{agency.code}_{start.isoformat()}_{end.isoformat()}.{format}"
    headers = {"Content-Disposition": f'attachment; filename="{name}"'}
    if format == "xlsx":
        return Response(usage_xlsx(report), media_type=XLSX_MEDIA_TYPE, headers=headers)
    return Response(usage_xml(report), media_type="application/xml", headers=headers)


@router.post("", response_model=SeriesOut, status_code=201, responses=problems(400, 401, 403, 409, 422))
def post_series(data: SeriesIn, ctx: ReceiptCtxDep, principal: Admin, idem: Idempotent) -> JSONResponse:
    """Register a series for the year it names (one open series per template and year): receipts of that year are
    numbered in it from 1."""

    def register(s: Session) -> tuple[int, dict[str, object]]:
        row = register_series(s, principal.agency_id, data.template, data.series, actor_of(principal))
        return 201, _out(row, 0).model_dump(mode="json")

    return respond(ctx.idempotency.run_in_transaction(principal.key_id, idem.key, idem.fingerprint(data), register))


@router.post("/close", response_model=SeriesOut, responses=problems(400, 401, 403, 404, 409, 422))
def post_close(data: SeriesIn, ctx: ReceiptCtxDep, principal: Admin, idem: Idempotent) -> JSONResponse:
    """Close a series (at the end of its year, or to stop using it): nothing more is issued from it, and receipts
    wait, as failed jobs with the reason, until an open series is registered."""

    def close(s: Session) -> tuple[int, dict[str, object]]:
        row = close_series(s, principal.agency_id, data.template, data.series, actor_of(principal))
        return 200, _out(row, _last(s, row)).model_dump(mode="json")

    return respond(ctx.idempotency.run_in_transaction(principal.key_id, idem.key, idem.fingerprint(data), close))


__all__ = ["router"]
