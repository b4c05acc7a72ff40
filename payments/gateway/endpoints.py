"""Gateway callbacks (server to server) and the sandbox gateway's payer pages."""

from __future__ import annotations

import inspect
from typing import Annotated

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from sqlmodel import select

from adapters.base import (
    CallbackOutcome,
    CallbackReply,
    CallbackRequest,
    IgnoredEvent,
    InvalidCallback,
    PaymentGateway,
)
from adapters.sandbox import OUTCOMES, SandboxGateway
from payments.agency.models import Agency
from payments.auth.deps import CtxDep
from payments.core.context import AppContext
from payments.core.errors import NotFound, UnknownGateway, ValidationFailed
from payments.core.logging import get_logger
from payments.core.observe import observer
from payments.pages import forms
from payments.pages.render import check_form, render
from payments.payment.callbacks import handle_callback
from payments.payment.models import Payment

log = get_logger(__name__)
router = APIRouter(tags=["gateways"])
pages = APIRouter(include_in_schema=False)
AGENCY_CODE_MAX = 40  # the agency table's code column


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
    # An agency already seen needs no query: the adapter is found without leaving the event loop.
    if agency_code is None or agency_code in ctx.callback_agencies:
        adapter = _account(ctx, gateway, agency_code)
    else:
        adapter = await ctx.db.offload(_account, ctx, gateway, agency_code)
    if adapter is None:
        observer().callback(gateway, CallbackOutcome.invalid_signature.value)  # nothing here could verify it
        return _without_account(ctx, gateway)
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
    except (ValueError, TypeError, KeyError, AttributeError, UnicodeError) as exc:
        # An adapter (a third-party one, say) that let a parsing error escape: whatever the message was, it was not
        # verified and parsed, so it is refused like a bad signature, and someone should look at the adapter.
        log.error("gateway.callback.adapter_error", gateway=gateway, agency=agency_code, exc_info=exc)
        outcome = CallbackOutcome.invalid_signature
    else:
        outcome = await ctx.db.offload(handle_callback, ctx, adapter, event, agency_code)
        log.info("gateway.callback", gateway=gateway, event_id=event.event_id, outcome=outcome.value)
    observer().callback(gateway, outcome.value)
    return _response(adapter.callback_reply(outcome))


def _account(ctx: AppContext, gateway: str, agency_code: str | None) -> PaymentGateway | None:
    """The adapter holding the account this callback address names, or None when there is none: an unknown agency,
    or a gateway without settings for it. Unknown agencies never reach the registry, which keeps one adapter per
    (gateway, agency) for the life of the process."""
    if agency_code is not None and not _agency_exists(ctx, agency_code):
        log.warning("gateway.callback.unknown_agency", gateway=gateway, agency=agency_code[:AGENCY_CODE_MAX])
        return None
    try:
        return ctx.gateways.get(gateway, agency_code)
    except ValueError as exc:  # the adapter refused its settings: nothing here can verify the message
        log.warning("gateway.callback.not_configured", gateway=gateway, agency=agency_code, error=str(exc))
        return None


def _agency_exists(ctx: AppContext, code: str) -> bool:
    # Anything that cannot be a stored code is not looked up (PostgreSQL refuses NUL characters in a query).
    if not 0 < len(code) <= AGENCY_CODE_MAX or not code.isascii() or not code.isprintable():
        return False
    # Agencies are never deleted, so only codes found are remembered: a new agency is seen at once.
    known = ctx.callback_agencies
    if code not in known:
        with ctx.db.read() as s:
            if s.exec(select(Agency.id).where(Agency.code == code)).first() is None:
                return False
        known.add(code)
    return True


def _without_account(ctx: AppContext, gateway: str) -> Response:
    """What the gateway's protocol answers to a message that cannot be verified (VNPay RspCode 97, Stripe 400, ...),
    when its adapter gives that answer without an account (a static ``callback_reply``); otherwise 404."""
    reply = inspect.getattr_static(ctx.gateways.factory(gateway), "callback_reply", None)
    if isinstance(reply, staticmethod):
        return _response(reply.__func__(CallbackOutcome.invalid_signature))
    raise NotFound("no account of this gateway at this callback address")


def _response(reply: CallbackReply) -> Response:
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
    csrf = forms.form_token(request, ctx.settings, f"sandbox:{txn_id}")
    with ctx.db.read() as s:
        payment = s.get(Payment, record.merchant_reference)
        agency = s.get(Agency, payment.agency_id) if payment is not None else None
    return render(request, "sandbox_pay.html", record=record, csrf=csrf, agency=agency)


@pages.post("/sandbox/pay/{txn_id}", response_class=RedirectResponse)
def sandbox_submit(
    txn_id: str,
    request: Request,
    outcome: Annotated[str, Form(max_length=20)],
    ctx: CtxDep,
    csrf: Annotated[str | None, Form(max_length=128)] = None,
) -> Response:
    refused = check_form(request, ctx.settings, f"sandbox:{txn_id}", csrf, back=request.url.path)
    if refused is not None:
        return refused
    gateway = _sandbox(ctx)
    record = gateway.get(txn_id)
    if record is None:
        raise NotFound("no such sandbox transaction")
    if outcome not in (*OUTCOMES, "pending"):
        raise ValidationFailed("outcome must be success, decline, cancel or pending")
    if outcome != "pending":
        gateway.complete(txn_id, outcome)
    return RedirectResponse(record.return_url, status_code=303)
