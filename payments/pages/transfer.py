"""The VietQR page: the code to scan, the account, the amount and the memo to keep."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response

from adapters.vietqr import VietQRGateway, render_png, render_svg
from payments.auth.deps import CtxDep
from payments.core.errors import NotFound
from payments.pages.render import render
from payments.payment.models import Payment
from payments.payment.queries import payment_by_reference
from payments.payment.states import LIVE, PAID

router = APIRouter(include_in_schema=False)


def _qr(ctx: CtxDep, reference: str) -> tuple[Payment, VietQRGateway, str]:
    with ctx.db.read() as s:
        payment = payment_by_reference(s, "vietqr", reference)
    if payment is None:
        raise NotFound("no transfer request with this reference")
    gateway = ctx.gateway("vietqr", payment.agency_id)
    assert isinstance(gateway, VietQRGateway)
    return payment, gateway, gateway.qr_for(reference, payment.amount)


@router.get("/pay/qr/{reference}.svg")
def qr_svg(reference: str, ctx: CtxDep) -> Response:
    return Response(render_svg(_qr(ctx, reference)[2]), media_type="image/svg+xml")


@router.get("/pay/qr/{reference}.png")
def qr_png(reference: str, ctx: CtxDep) -> Response:
    return Response(render_png(_qr(ctx, reference)[2]), media_type="image/png")


@router.get("/pay/qr/{reference}", response_class=HTMLResponse)
def qr_page(reference: str, request: Request, ctx: CtxDep) -> HTMLResponse:
    payment, gateway, _payload = _qr(ctx, reference)
    status = "pending" if payment.status in LIVE else "paid" if payment.status in PAID else "closed"
    return render(
        request,
        "qr_pay.html",
        reference=reference,
        amount=payment.amount,
        account_name=gateway.account_name,
        account_number=gateway.account_number,
        status=status,
    )
