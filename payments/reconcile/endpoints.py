"""/v1/reconciliation: the finance staff's API. The exceptions queue with its trail, the matching runs and the
imported files behind them, running a day, and the daily close and the day's exceptions as JSON, CSV or XLSX.

Everything is the calling key's agency's: another agency's exception answers exactly like a missing one.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, Field, field_validator
from sqlmodel import Session

from payments.auth.deps import CtxDep, actor_of, require
from payments.auth.models import Scope
from payments.auth.service import Principal
from payments.core.context import AppContext
from payments.core.pagination import Page
from payments.core.responses import problems, respond
from payments.core.schemas import StrictModel
from payments.core.types import BusinessDay
from payments.idempotency.deps import Idempotent, IdempotentRequest
from payments.idempotency.service import Claim
from payments.reconcile.exceptions import (
    ExceptionFilter,
    Provenance,
    exception_events,
    get_exception,
    list_exceptions,
    list_imports,
    list_runs,
    provenance,
    reopen_exception,
    resolve_exception,
)
from payments.reconcile.matching import GMT7, run_day
from payments.reconcile.models import (
    Category,
    ExceptionAction,
    ExceptionStatus,
    ReconException,
    ReconRun,
    StatementImport,
)
from payments.reconcile.reports import (
    CSV_MEDIA_TYPE,
    XLSX_MEDIA_TYPE,
    close_file_name,
    daily_close,
    day_exceptions,
    exceptions_file_name,
    exceptions_to_csv,
    exceptions_to_xlsx,
    to_csv,
    to_xlsx,
)

PREFIX = "/v1/reconciliation"
router = APIRouter(prefix=PREFIX, tags=["reconciliation"])
Reader = Annotated[Principal, Depends(require(Scope.reconciliation_read))]
Writer = Annotated[Principal, Depends(require(Scope.reconciliation_write))]
Limit = Annotated[int, Query(ge=1, le=100)]
Cursor = Annotated[str | None, Query(max_length=200)]
Format = Annotated[Literal["json", "csv", "xlsx"], Query(alias="format", description="json, csv or xlsx")]
# Before this no agency collected through Lephi: a run for such a day is a typo, not a request.
FIRST_DAY = date(2020, 1, 1)
FILES: dict[int | str, dict[str, Any]] = {200: {"content": {CSV_MEDIA_TYPE.split(";")[0]: {}, XLSX_MEDIA_TYPE: {}}}}


# --- shapes -------------------------------------------------------------------------------------------------------
class NoteIn(StrictModel):
    note: str = Field(min_length=1, max_length=2000, examples=["Tiền đã về tài khoản ngày 21/11, sao kê VCB số 1234"])


class RunIn(StrictModel):
    business_day: BusinessDay = Field(description="The business day (GMT+7) to match.", examples=["2026-11-20"])

    @field_validator("business_day")
    @classmethod
    def _past(cls, value: date) -> date:
        if value < FIRST_DAY:
            raise ValueError(f"the business day is before {FIRST_DAY.isoformat()}")
        if value > datetime.now(GMT7).date():
            raise ValueError("the business day is in the future (GMT+7)")
        return value


class ExceptionOut(BaseModel):
    id: str = Field(examples=["exc_5f0c2d9a8b7e6f5a4b3c2d1e"])
    category: Category
    business_day: date
    status: ExceptionStatus
    payment_id: str | None
    dossier_id: str | None
    document_id: str | None
    refund_id: str | None
    entry_id: int | None = Field(description="The statement line the finding is about.")
    expected_amount: int | None = Field(description="Whole VND; negative for money going out (a refund).")
    actual_amount: int | None
    detail: str
    note: str | None = Field(description="The latest staff note: why it was resolved or reopened.")
    resolved_by: str | None
    resolved_at: datetime | None
    created_at: datetime
    updated_at: datetime
    source_file: str | None = Field(default=None, description="The imported file the statement line came from.")
    source_line: int | None = Field(default=None, description="The line's number in that file (1-based).")
    external_id: str | None = Field(default=None, description="The bank's or gateway's transaction id of the line.")
    reference: str | None = Field(default=None, description="The payment reference the line names.")
    memo: str | None = Field(default=None, description="The line's description (a transfer's memo).")
    line_amount: int | None = Field(default=None, description="The line's amount, whole VND.")


class ExceptionEventOut(BaseModel):
    action: ExceptionAction
    actor: str
    note: str | None
    run_id: str | None
    created_at: datetime


class ExceptionDetailOut(ExceptionOut):
    events: list[ExceptionEventOut] = Field(description="The trail, oldest first.")


class RunOut(BaseModel):
    id: str = Field(examples=["rcn_5f0c2d9a8b7e6f5a4b3c2d1e"])
    business_day: date
    counts: dict[str, int] = Field(description="Findings per category, ``matched`` included.")
    inputs: list[dict[str, Any]] = Field(description="The imports whose lines the run read.")
    created_by: str
    started_at: datetime
    finished_at: datetime | None


class RunCreatedOut(RunOut):
    opened: int = Field(description="Exceptions this run opened, or found again after they had been cleared.")
    cleared: int = Field(description="Open exceptions of the day this run no longer found.")


class ImportOut(BaseModel):
    id: str = Field(examples=["imp_5f0c2d9a8b7e6f5a4b3c2d1e"])
    source: str
    format: str
    file_name: str
    sha256: str
    line_count: int
    new_lines: int
    total_amount: int
    first_day: date | None
    last_day: date | None
    imported_by: str
    created_at: datetime


class CloseRowOut(BaseModel):
    procedure_code: str
    procedure_name: str
    method: str
    payments: int = Field(description="Payments that succeeded on the day.")
    gross: int = Field(description="Their amounts, whole VND.")
    refund_count: int
    refunds: int = Field(description="Refunds completed on the day, whatever day their payment was made.")
    net: int


class CloseTotalsOut(BaseModel):
    payments: int
    gross: int
    refund_count: int
    refunds: int
    net: int


class DailyCloseOut(BaseModel):
    agency_code: str
    business_day: date
    rows: list[CloseRowOut]
    totals: CloseTotalsOut
    open_exceptions: int


class ExceptionLineOut(BaseModel):
    id: str
    category: str
    status: str
    business_day: date
    payment_id: str | None
    dossier_id: str | None
    dossier_code: str | None
    document_id: str | None
    refund_id: str | None
    entry_id: int | None
    expected_amount: int | None
    actual_amount: int | None
    detail: str
    note: str | None
    resolved_by: str | None
    resolved_at: datetime | None
    created_at: datetime
    updated_at: datetime
    source_file: str | None = Field(default=None, description="The imported file the statement line came from.")
    source_line: int | None = Field(default=None, description="The line's number in that file (1-based).")
    external_id: str | None = Field(default=None, description="The bank's or gateway's transaction id of the line.")
    reference: str | None = Field(default=None, description="The payment reference the line names.")
    memo: str | None = Field(default=None, description="The line's description (a transfer's memo).")
    line_amount: int | None = Field(default=None, description="The line's amount, whole VND.")


class ExceptionsReportOut(BaseModel):
    agency_code: str
    business_day: date
    rows: list[ExceptionLineOut]


def _exception_out(row: ReconException, found: dict[int, Provenance]) -> ExceptionOut:
    out = ExceptionOut.model_validate(row, from_attributes=True)
    line = found.get(row.entry_id) if row.entry_id is not None else None
    if line is None:
        return out
    return out.model_copy(
        update={
            "source_file": line.file_name,
            "source_line": line.line_no,
            "external_id": line.external_id,
            "reference": line.reference,
            "memo": line.memo,
            "line_amount": line.amount,
        }
    )


def _detail_out(s: Session, row: ReconException) -> ExceptionDetailOut:
    events = [ExceptionEventOut.model_validate(e, from_attributes=True) for e in exception_events(s, row.id)]
    found = provenance(s, row.agency_id, [row.entry_id])
    return ExceptionDetailOut(**_exception_out(row, found).model_dump(), events=events)


def _file(content: bytes, media_type: str, name: str) -> Response:
    return Response(content, media_type=media_type, headers={"Content-Disposition": f'attachment; filename="{name}"'})


# --- the exceptions queue -----------------------------------------------------------------------------------------
@router.get("/exceptions", response_model=Page[ExceptionOut], responses=problems(401, 403, 422))
def get_exceptions(
    ctx: CtxDep,
    principal: Reader,
    status: ExceptionStatus | None = None,
    category: Category | None = None,
    business_day_from: BusinessDay | None = None,
    business_day_to: BusinessDay | None = None,
    payment_id: Annotated[str | None, Query(max_length=40)] = None,
    dossier_id: Annotated[str | None, Query(max_length=40)] = None,
    dossier_code: Annotated[str | None, Query(max_length=20)] = None,
    limit: Limit = 20,
    cursor: Cursor = None,
) -> Page[ExceptionOut]:
    """The agency's reconciliation exceptions, newest first, with filters (business days inclusive) and cursor
    pagination. ``status=open`` is the work queue. An exception about a statement line says where the line came
    from: file, line number, transaction id, reference, memo and amount."""
    flt = ExceptionFilter(status, category, business_day_from, business_day_to, payment_id, dossier_id, dossier_code)
    with ctx.db.read() as s:
        rows, next_cursor = list_exceptions(s, principal.agency_id, flt, limit, cursor)
        found = provenance(s, principal.agency_id, [r.entry_id for r in rows])
        return Page[ExceptionOut](data=[_exception_out(r, found) for r in rows], next_cursor=next_cursor)


@router.get("/exceptions/{exception_id}", response_model=ExceptionDetailOut, responses=problems(401, 403, 404))
def get_exception_detail(exception_id: str, ctx: CtxDep, principal: Reader) -> ExceptionDetailOut:
    """One exception with its trail: opened, found again, cleared by runs; resolved and reopened by staff."""
    with ctx.db.read() as s:
        return _detail_out(s, get_exception(s, principal.agency_id, exception_id))


def _staff_change(
    ctx: AppContext, principal: Principal, exception_id: str, action: str, data: NoteIn, idem: IdempotentRequest
) -> JSONResponse:
    change = {"resolve": resolve_exception, "reopen": reopen_exception}[action]

    def staff_change(s: Session) -> tuple[int, dict[str, object]]:
        row = change(s, principal.agency_id, exception_id, actor_of(principal), data.note)
        return 200, _detail_out(s, row).model_dump(mode="json")

    return respond(ctx.idempotency.run_in_transaction(principal.key_id, idem.key, idem.fingerprint(data), staff_change))


@router.post(
    "/exceptions/{exception_id}/resolve",
    response_model=ExceptionDetailOut,
    responses=problems(400, 401, 403, 404, 409, 413, 422),
)
def post_resolve(exception_id: str, data: NoteIn, ctx: CtxDep, principal: Writer, idem: Idempotent) -> JSONResponse:
    """Resolve an open exception, saying why. Only an open exception can be resolved (409 ``exception_not_open``);
    of two staff resolving it at once, one succeeds. Later runs keep the resolution."""
    return _staff_change(ctx, principal, exception_id, "resolve", data, idem)


@router.post(
    "/exceptions/{exception_id}/reopen",
    response_model=ExceptionDetailOut,
    responses=problems(400, 401, 403, 404, 409, 413, 422),
)
def post_reopen(exception_id: str, data: NoteIn, ctx: CtxDep, principal: Writer, idem: Idempotent) -> JSONResponse:
    """Put a resolved exception back in the queue, saying why (409 ``exception_not_resolved`` otherwise). Who
    resolved it, and when, stays in the trail."""
    return _staff_change(ctx, principal, exception_id, "reopen", data, idem)


# --- runs and imports ---------------------------------------------------------------------------------------------
@router.get("/runs", response_model=Page[RunOut], responses=problems(401, 403, 422))
def get_runs(
    ctx: CtxDep, principal: Reader, business_day: BusinessDay | None = None, limit: Limit = 20, cursor: Cursor = None
) -> Page[RunOut]:
    """The agency's matching runs, the latest first, each with its counts and the imports it read."""
    with ctx.db.read() as s:
        rows, next_cursor = list_runs(s, principal.agency_id, business_day, limit, cursor)
        return Page[RunOut](
            data=[RunOut.model_validate(r, from_attributes=True) for r in rows], next_cursor=next_cursor
        )


@router.post("/runs", response_model=RunCreatedOut, status_code=201, responses=problems(400, 401, 403, 409, 413, 422))
def post_run(data: RunIn, ctx: CtxDep, principal: Writer, idem: Idempotent) -> JSONResponse:
    """Match a business day (GMT+7) with the statements imported so far and bring the exceptions queue up to date.
    Safe to run again at any time: resolutions are kept, and what is no longer found is cleared."""

    def operation(_claim: Claim) -> tuple[int, dict[str, object]]:
        result = run_day(ctx, principal.agency_id, data.business_day, actor_of(principal))
        with ctx.db.read() as s:
            run = s.get(ReconRun, result.run_id)
            assert run is not None
            out = RunCreatedOut(
                **RunOut.model_validate(run, from_attributes=True).model_dump(),
                opened=result.opened,
                cleared=result.cleared,
            )
        return 201, out.model_dump(mode="json")

    return respond(ctx.idempotency.run(principal.key_id, idem.key, idem.fingerprint(data), operation))


@router.get("/imports", response_model=Page[ImportOut], responses=problems(401, 403, 422))
def get_imports(
    ctx: CtxDep,
    principal: Reader,
    source: Annotated[str | None, Query(max_length=40, description="vnpay, momo, zalopay, stripe or bank")] = None,
    limit: Limit = 20,
    cursor: Cursor = None,
) -> Page[ImportOut]:
    """The settlement files and bank statements imported for the agency, newest first."""
    with ctx.db.read() as s:
        rows, next_cursor = list_imports(s, principal.agency_id, source, limit, cursor)
        return Page[ImportOut](data=[_import_out(r) for r in rows], next_cursor=next_cursor)


def _import_out(row: StatementImport) -> ImportOut:
    return ImportOut.model_validate(row, from_attributes=True)


# --- reports ------------------------------------------------------------------------------------------------------
@router.get("/reports/daily", response_model=DailyCloseOut, responses={**FILES, **problems(401, 403, 422)})
def get_daily_close(ctx: CtxDep, principal: Reader, business_day: BusinessDay, fmt: Format = "json") -> Response:
    """The daily close: per procedure and payment method, the payments that succeeded on the business day (GMT+7),
    their gross, the refunds completed that day and the net, with totals and the day's open exceptions. CSV is
    UTF-8 with a BOM; text that a spreadsheet would take for a formula is written as text."""
    with ctx.db.read() as s:
        close = daily_close(s, principal.agency_id, business_day)
    if fmt == "csv":
        return _file(to_csv(close), CSV_MEDIA_TYPE, close_file_name(close, "csv"))
    if fmt == "xlsx":
        return _file(to_xlsx(close), XLSX_MEDIA_TYPE, close_file_name(close, "xlsx"))
    return JSONResponse(DailyCloseOut.model_validate(close, from_attributes=True).model_dump(mode="json"))


@router.get("/reports/exceptions", response_model=ExceptionsReportOut, responses={**FILES, **problems(401, 403, 422)})
def get_exceptions_report(ctx: CtxDep, principal: Reader, business_day: BusinessDay, fmt: Format = "json") -> Response:
    """Every exception of a business day, whatever its status, for working offline or filing. Details and notes
    are free text: in CSV and XLSX, text that a spreadsheet would take for a formula is written as text."""
    with ctx.db.read() as s:
        report = day_exceptions(s, principal.agency_id, business_day)
    if fmt == "csv":
        return _file(exceptions_to_csv(report), CSV_MEDIA_TYPE, exceptions_file_name(report, "csv"))
    if fmt == "xlsx":
        return _file(exceptions_to_xlsx(report), XLSX_MEDIA_TYPE, exceptions_file_name(report, "xlsx"))
    return JSONResponse(ExceptionsReportOut.model_validate(report, from_attributes=True).model_dump(mode="json"))
