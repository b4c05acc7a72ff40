"""Gateway callbacks (server to server) and the sandbox gateway's payer pages."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Form, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from adapters.base import CallbackOutcome, CallbackRequest, IgnoredEvent, InvalidCallback
from adapters.sandbox import OUTCOMES, SandboxGateway
from payments.auth.deps import CtxDep
from payments.core.context import AppContext
from payments.core.errors import NotFound, UnknownGateway, ValidationFailed
from payments.core.logging import get_logger
from payments.pages.render import render
from payments.payment.service import handle_callback

log = get_logger(__name__)
router = APIRouter(tags=["gateways"])
pages = APIRouter(include_in_schema=False)


# Some gateways notify with GET (VNPay's IPN), others with POST: both are documented, as both are answered.
@router.get("/v1/gateways/{gateway}/callback", response_class=Response, operation_id="gateway_callback_get")
@router.post(
    "/v1/gateways/{gateway}/callback", response_class=Response, responses={404: {"description": "No such gateway"}}
)
async def gateway_callback(gateway: str, request: Request) -> Response:
    """Receive a gateway's server-to-server notification, for a gateway with one account for every agency."""
    return await _callback(request, gateway, None)


@router.get(
    "/v1/gateways/{gateway}/callback/{agency_code}", response_class=Response, operation_id="agency_gateway_callback_get"
)
@router.post(
    "/v1/gateways/{gateway}/callback/{agency_code}",
    response_class=Response,
    responses={404: {"description": "No such gateway or agency"}},
)
async def agency_gateway_callback(gateway: str, agency_code: str, request: Request) -> Response:
    """Receive a gateway's notification for one agency's merchant account; verified with that account's secret."""
    return await _callback(request, gateway, agency_code)


async def _callback(request: Request, gateway: str, agency_code: str | None) -> Response:
    ctx: AppContext = request.app.state.ctx
    if gateway not in ctx.gateways:
        raise UnknownGateway(f"no payment gateway named {gateway!r}")
    adapter = ctx.gateways.get(gateway, agency_code)
    raw = CallbackRequest(request.method, dict(request.headers), dict(request.query_params), await request.body())
    try:
        event = adapter.parse_callback(raw)
    except IgnoredEvent as exc:
        # Verified, but about nothing we track (e.g. a Stripe charge.* event): acknowledge so it is not resent.
        log.info("gateway.callback.ignored", gateway=gateway, reason=str(exc))
        outcome = CallbackOutcome.accepted
    except InvalidCallback as exc:
        log.warning("gateway.callback.rejected", gateway=gateway, agency=agency_code, reason=str(exc))
        outcome = CallbackOutcome.invalid_signature
    else:
        outcome = await run_in_threadpool(handle_callback, ctx, adapter, event, agency_code)
        log.info("gateway.callback", gateway=gateway, event_id=event.event_id, outcome=outcome.value)
    reply = adapter.callback_reply(outcome)
    return Response(reply.body, status_code=reply.status_code, media_type=reply.media_type)


def _sandbox(ctx: AppContext) -> SandboxGateway:
    """The sandbox's gateway side, kept apart from the merchant-side adapter in the registry."""
    if "sandbox" not in ctx.gateways:
        raise NotFound("the sandbox gateway is not enabled")
    return SandboxGateway(ctx.gateways.context("sandbox"))


@pages.get("/sandbox/pay/{txn_id}", response_class=HTMLResponse)
def sandbox_page(txn_id: str, request: Request, ctx: CtxDep) -> HTMLResponse:
    record = _sandbox(ctx).get(txn_id)
    if record is None:
        raise NotFound("no such sandbox transaction")
    return render(request, "sandbox_pay.html", record=record)


@pages.post("/sandbox/pay/{txn_id}", response_class=RedirectResponse)
def sandbox_submit(txn_id: str, outcome: Annotated[str, Form(max_length=20)], ctx: CtxDep) -> RedirectResponse:
    gateway = _sandbox(ctx)
    record = gateway.get(txn_id)
    if record is None:
        raise NotFound("no such sandbox transaction")
    if outcome not in (*OUTCOMES, "pending"):
        raise ValidationFailed("outcome must be success, decline, cancel or pending")
    if outcome != "pending":
        gateway.complete(txn_id, outcome)
    return RedirectResponse(record.return_url, status_code=303)
