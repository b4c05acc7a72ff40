"""/v1/payments and their refunds"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse

from payments.auth.deps import CtxDep, actor_of, require
from payments.auth.models import Scope
from payments.auth.service import Principal
from payments.core.pagination import Page
from payments.core.responses import problems, respond
from payments.core.types import UtcDatetime
from payments.idempotency.deps import Idempotent
from payments.idempotency.service import Claim
from payments.payment.create import PaymentCreation
from payments.payment.lifecycle import cancel_payment
from payments.payment.queries import PaymentFilter, get_for_agency, list_payments, to_out
from payments.payment.refunds import RefundCreation, list_refunds
from payments.payment.schemas import PaymentIn, PaymentOut, RefundIn, RefundOut
from payments.payment.states import PaymentStatus

router = APIRouter(prefix="/v1/payments", tags=["payments"])
Writer = Annotated[Principal, Depends(require(Scope.payments_write))]
Reader = Annotated[Principal, Depends(require(Scope.payments_read))]
Refunder = Annotated[Principal, Depends(require(Scope.refunds_write))]


@router.post("", response_model=PaymentOut, status_code=201, responses=problems(400, 401, 403, 404, 409, 413, 422, 503))
async def post_payment(data: PaymentIn, ctx: CtxDep, principal: Writer, idem: Idempotent) -> JSONResponse:
    """Start paying a dossier's fee; send the payer to ``next_url``. One live attempt per dossier."""
    creation = PaymentCreation(ctx, principal, data, actor_of(principal))
    # One hop off the event loop for the whole request: its commit waits on the disk (SQLite) or the server
    # (PostgreSQL). A gateway reached over the network waits in the general thread pool, never on the database's.
    offload = ctx.db.offload if creation.offline else run_in_threadpool
    return respond(await offload(creation.outcome, principal.key_id, idem.key, idem.fingerprint(data)))


@router.get("/{payment_id}", response_model=PaymentOut, responses=problems(401, 403, 404))
def get_payment(payment_id: str, ctx: CtxDep, principal: Reader) -> PaymentOut:
    """Read one payment with its full event history."""
    with ctx.db.read() as s:
        return to_out(s, get_for_agency(s, principal.agency_id, payment_id), with_events=True)


@router.get("", response_model=Page[PaymentOut], responses=problems(401, 403, 422))
def get_payments(
    ctx: CtxDep,
    principal: Reader,
    status: PaymentStatus | None = None,
    dossier_code: Annotated[str | None, Query(max_length=20)] = None,
    method: Annotated[str | None, Query(max_length=40)] = None,
    created_from: UtcDatetime | None = None,
    created_to: UtcDatetime | None = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    cursor: Annotated[str | None, Query(max_length=200)] = None,
) -> Page[PaymentOut]:
    """List the agency's payments, newest first, with filters and cursor pagination."""
    flt = PaymentFilter(status, dossier_code, method, created_from, created_to)
    with ctx.db.read() as s:
        rows, next_cursor = list_payments(s, principal.agency_id, flt, limit, cursor)
    return Page[PaymentOut](data=rows, next_cursor=next_cursor)


@router.post("/{payment_id}/cancel", response_model=PaymentOut, responses=problems(400, 401, 403, 404, 409, 503))
def post_cancel(payment_id: str, ctx: CtxDep, principal: Writer, idem: Idempotent) -> JSONResponse:
    """Cancel a payment that has not finished; it is cancelled at the gateway first."""

    def operation(_claim: Claim) -> tuple[int, dict[str, object]]:
        return 200, cancel_payment(ctx, principal, payment_id, actor_of(principal)).model_dump(mode="json")

    return respond(ctx.idempotency.run(principal.key_id, idem.key, idem.fingerprint(), operation))


@router.post(
    "/{payment_id}/refunds",
    response_model=RefundOut,
    status_code=201,
    responses=problems(400, 401, 403, 404, 409, 413, 422),
)
def post_refund(payment_id: str, data: RefundIn, ctx: CtxDep, principal: Refunder, idem: Idempotent) -> JSONResponse:
    """Refund part or all of a succeeded payment, never more than is still refundable."""

    creation = RefundCreation(ctx, principal, payment_id, data, actor_of(principal))

    def operation(claim: Claim) -> tuple[int, dict[str, object]]:
        return 201, creation.run(claim).model_dump(mode="json")

    fp = idem.fingerprint(data)
    return respond(ctx.idempotency.run(principal.key_id, idem.key, fp, operation, creation.prepare))


@router.get("/{payment_id}/refunds", response_model=list[RefundOut], responses=problems(401, 403, 404))
def get_refunds(payment_id: str, ctx: CtxDep, principal: Reader) -> list[RefundOut]:
    """List a payment's refunds, oldest first."""
    with ctx.db.read() as s:
        return list_refunds(s, principal.agency_id, payment_id)
