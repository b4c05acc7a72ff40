"""The card page: Stripe.js collects the card in the payer's browser and gives us only a PaymentMethod id, which
the server confirms; 3-D Secure goes back to Stripe.js. The outcome still comes from Stripe (status query here,
webhook later), never from the browser."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, Request
from fastapi.responses import HTMLResponse

from adapters.base import GatewayDeclinedError, GatewayTechnicalError
from adapters.stripe import StripeGateway
from payments.agency.models import Agency
from payments.auth.deps import CtxDep
from payments.core.errors import ForeignOrigin, GatewayUnavailable, NotFound, ValidationFailed
from payments.core.security import allow_sources, origin_of
from payments.dossier.models import Dossier
from payments.pages.forms import foreign_origin
from payments.pages.render import language, render
from payments.payment.expiry import settle_by_query
from payments.payment.models import Payment
from payments.payment.queries import payment_by_reference
from payments.payment.states import LIVE

router = APIRouter(include_in_schema=False)
STRIPE_JS = "https://js.stripe.com"
# What Stripe.js itself loads, frames and calls, by Stripe's published CSP list.
STRIPE_SOURCES = {
    "script-src": ("https://*.js.stripe.com",),
    "frame-src": ("https://*.js.stripe.com", "https://hooks.stripe.com"),
    "connect-src": ("https://api.stripe.com",),
}


def _card(ctx: CtxDep, reference: str) -> tuple[Payment, StripeGateway]:
    with ctx.db.read() as s:
        payment = payment_by_reference(s, "stripe", reference)
    if payment is None:
        raise NotFound("no card payment with this reference")
    gateway = ctx.gateway("stripe", payment.agency_id)
    assert isinstance(gateway, StripeGateway)
    return payment, gateway


@router.get("/pay/card/{reference}", response_class=HTMLResponse)
def card_page(reference: str, request: Request, ctx: CtxDep) -> HTMLResponse:
    payment, gateway = _card(ctx, reference)
    try:
        page = gateway.card_page(reference)
    except (GatewayTechnicalError, GatewayDeclinedError) as exc:
        raise GatewayUnavailable("the card gateway cannot be reached; try again shortly") from exc
    _allow_stripe(request, page["js_url"])
    with ctx.db.read() as s:
        agency = s.get(Agency, payment.agency_id)
        dossier = s.get(Dossier, payment.dossier_id)
    return render(
        request,
        "card_pay.html",
        payment=payment,
        reference=reference,
        live=payment.status in LIVE,
        publishable_key=page["publishable_key"],
        js_url=page["js_url"],
        amount=payment.amount,
        agency=agency,
        back=f"/pay/{dossier.pay_token}?lang={language(request)}" if dossier is not None else None,
    )


def _allow_stripe(request: Request, js_url: str) -> None:
    """Only this page may run Stripe.js: from the configured origin, plus the hosts Stripe's own script uses when
    that origin is Stripe's (a stand-in such as localstripe serves everything from its one origin)."""
    js = origin_of(js_url)
    for directive in ("script-src", "frame-src", "connect-src"):
        allow_sources(request, directive, js, *(STRIPE_SOURCES[directive] if js == STRIPE_JS else ()))


@router.post("/pay/card/{reference}/confirm")
def card_confirm(
    reference: str,
    request: Request,
    ctx: CtxDep,
    payment_method: Annotated[str, Body(embed=True, max_length=100)],
) -> dict[str, Any]:
    if foreign_origin(request, ctx.settings):
        raise ForeignOrigin("the card is confirmed only from the service's own card page")
    payment, gateway = _card(ctx, reference)
    if payment.status not in LIVE:
        raise ValidationFailed("this payment is finished", status=payment.status.value)
    try:
        result = gateway.confirm_card(reference, payment_method)
        status = settle_by_query(ctx, payment.id, actor="payer:card-page")  # Stripe's word, not the browser's
    except GatewayDeclinedError as exc:
        raise ValidationFailed(str(exc)) from exc
    except GatewayTechnicalError as exc:
        raise GatewayUnavailable("the card gateway did not answer; try again") from exc
    return {**result, "payment_status": status.value, "return_url": payment.return_url}
