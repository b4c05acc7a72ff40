"""/v1/dossiers"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query
from fastapi.responses import JSONResponse
from sqlmodel import Session

from payments.auth.deps import CtxDep, require
from payments.auth.models import Scope
from payments.auth.service import Principal
from payments.core.pagination import Page
from payments.core.responses import problems, respond
from payments.core.types import UtcDatetime
from payments.dossier import service as dossiers
from payments.dossier.models import DossierStatus
from payments.dossier.schemas import ID_NUMBER_PATTERN, DossierIn, DossierOut
from payments.dossier.service import DossierFilter, find_dossier, list_dossiers, to_out
from payments.idempotency.deps import Idempotent

router = APIRouter(prefix="/v1/dossiers", tags=["dossiers"])
Writer = Annotated[Principal, Depends(require(Scope.dossiers_write))]
Reader = Annotated[Principal, Depends(require(Scope.dossiers_read))]


@router.post(
    "",
    response_model=DossierOut,
    status_code=201,
    responses={
        200: {"model": DossierOut, "description": "Updated"},
        **problems(400, 401, 403, 409, 413, 422),
    },
)
async def put_dossier(data: DossierIn, ctx: CtxDep, principal: Writer, idem: Idempotent) -> JSONResponse:
    """Create a dossier's fee order, or update it by code while nothing is paid; the fee comes from the schedule."""

    def upsert(s: Session) -> tuple[int, dict[str, object]]:
        out, created = dossiers.put_dossier(s, ctx.agencies, principal.agency_id, data, ctx.settings.public_url)
        return (201 if created else 200), out.model_dump(mode="json")

    # One hop off the event loop for the whole request: its commit waits on the disk (SQLite) or the server
    # (PostgreSQL), and on the event loop that wait would stall every other request.
    run = ctx.idempotency.run_in_transaction
    return respond(await ctx.db.offload(run, principal.key_id, idem.key, idem.fingerprint(data), upsert))


@router.get("/{code}", response_model=DossierOut, responses=problems(401, 403, 404))
def get_dossier(code: str, ctx: CtxDep, principal: Reader) -> DossierOut:
    """Read one dossier of the caller's agency by its code."""
    with ctx.db.read() as s:
        return to_out(s, find_dossier(s, principal.agency_id, code), ctx.settings.public_url)


@router.get("", response_model=Page[DossierOut], responses=problems(401, 403, 422))
def get_dossiers(
    ctx: CtxDep,
    principal: Reader,
    status: DossierStatus | None = None,
    procedure_code: Annotated[str | None, Query(max_length=40)] = None,
    created_from: UtcDatetime | None = None,
    created_to: UtcDatetime | None = None,
    payer_id_number: Annotated[
        str | None, Query(pattern=ID_NUMBER_PATTERN, description="Exact citizen ID (CCCD) of the payer.")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    cursor: Annotated[str | None, Query(max_length=200)] = None,
) -> Page[DossierOut]:
    """List the agency's dossiers, newest first, with filters and cursor pagination."""
    flt = DossierFilter(status, procedure_code, created_from, created_to, payer_id_number)
    with ctx.db.read() as s:
        rows, next_cursor = list_dossiers(s, principal.agency_id, flt, limit, cursor)
        return Page[DossierOut](data=[to_out(s, d, ctx.settings.public_url) for d in rows], next_cursor=next_cursor)
