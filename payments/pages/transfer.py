"""The VietQR page: the code to scan, and for a payer who types instead (or pays from the same phone) the bank, the
account, the holder, the amount, the memo and the dossier code, each with a copy button, the deadline, links that
open a banking app with the transfer filled in, and the transfer's own status, kept up to date like the dossier's."""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import quote

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response
from sqlmodel import Session

from adapters.vietqr import VietQRGateway, render_png, render_svg
from payments.agency.models import Agency
from payments.auth.deps import CtxDep
from payments.core.errors import NotFound
from payments.dossier.models import Dossier
from payments.pages.render import language, render
from payments.payment.models import Payment
from payments.payment.queries import payment_by_reference
from payments.payment.states import LIVE, PAID

router = APIRouter(include_in_schema=False)
REFERENCE_MAX = 64


@dataclass(frozen=True)
class Bank:
    name: str
    code: str  # VietQR's short code of the bank, as the deep link's ``ba`` wants it


# NAPAS BINs of the banks an agency is likely to hold its account at; an agency's own ``bank_name`` wins, and a BIN
# not listed here is shown as its number.
BANKS = {
    "970436": Bank("Vietcombank", "vcb"),
    "970415": Bank("VietinBank", "icb"),
    "970418": Bank("BIDV", "bidv"),
    "970405": Bank("Agribank", "vba"),
    "970422": Bank("MB Bank", "mb"),
    "970407": Bank("Techcombank", "tcb"),
    "970416": Bank("ACB", "acb"),
    "970432": Bank("VPBank", "vpb"),
    "970423": Bank("TPBank", "tpb"),
    "970448": Bank("OCB", "ocb"),
    "970403": Bank("Sacombank", "stb"),
    "970443": Bank("SHB", "shb"),
}

# DEEP LINK FORMAT (VietQR.io's "Deeplink App ngân hàng", https://www.vietqr.io/deeplink): one address that opens
# the named banking app on a phone with the transfer filled in. ``app`` is the payer's app, ``ba`` the receiving
# account as ``{number}@{bank code}`` (the "@" kept as is), ``am`` the amount in digits, ``tn`` the memo, ``bn`` the
# holder. The apps listed are those VietQR.io says fill the transfer in (OCB, ACB, BIDV, VietinBank, MB); NAPAS
# publishes no deep link of its own. Change the format or the list here only.
DEEP_LINK = "https://dl.vietqr.io/pay?app={app}&ba={account}@{bank}&am={amount}&tn={memo}&bn={holder}"
DEEP_LINK_APPS = (
    ("bidv", "BIDV SmartBanking"),
    ("icb", "VietinBank iPay"),
    ("mb", "MB Bank"),
    ("acb", "ACB ONE"),
    ("ocb", "OCB OMNI"),
)


def deep_links(bank_bin: str, account: str, amount: int, memo: str, holder: str) -> list[tuple[str, str]]:
    """(app name, address) for each app, or none when the receiving bank's code is not known."""
    bank = BANKS.get(bank_bin)
    if bank is None:
        return []
    values = {
        "account": quote(account, safe=""),
        "bank": bank.code,
        "amount": str(amount),
        "memo": quote(memo, safe=""),
        "holder": quote(holder, safe=""),
    }
    return [(name, DEEP_LINK.format(app=app, **values)) for app, name in DEEP_LINK_APPS]


def _qr(ctx: CtxDep, reference: str) -> tuple[Payment, VietQRGateway, str]:
    payment = None
    if 0 < len(reference) <= REFERENCE_MAX and reference.isascii() and reference.isprintable():
        with ctx.db.read() as s:
            payment = payment_by_reference(s, "vietqr", reference)
    if payment is None:
        raise NotFound("no transfer request with this reference")
    gateway = ctx.gateway("vietqr", payment.agency_id)
    assert isinstance(gateway, VietQRGateway)
    return payment, gateway, gateway.qr_for(reference, payment.amount)


def _status(payment: Payment) -> str:
    return "pending" if payment.status in LIVE else "paid" if payment.status in PAID else "closed"


@router.get("/pay/qr/{reference}.svg")
def qr_svg(reference: str, ctx: CtxDep) -> Response:
    return Response(render_svg(_qr(ctx, reference)[2]), media_type="image/svg+xml")


@router.get("/pay/qr/{reference}.png")
def qr_png(reference: str, ctx: CtxDep) -> Response:
    return Response(render_png(_qr(ctx, reference)[2]), media_type="image/png")


@router.get("/pay/qr/{reference}/status")
def qr_status(reference: str, ctx: CtxDep) -> JSONResponse:
    """What the page polls (the reference is the page's own secret)."""
    status = _status(_qr(ctx, reference)[0])
    return JSONResponse({"state": status, "status": status}, headers={"Cache-Control": "no-store"})


def _context(s: Session, payment: Payment) -> tuple[Agency, Dossier]:
    agency, dossier = s.get(Agency, payment.agency_id), s.get(Dossier, payment.dossier_id)
    assert agency is not None and dossier is not None
    return agency, dossier


@router.get("/pay/qr/{reference}", response_class=HTMLResponse)
def qr_page(reference: str, request: Request, ctx: CtxDep) -> HTMLResponse:
    payment, gateway, _payload = _qr(ctx, reference)
    with ctx.db.read() as s:
        agency, dossier = _context(s, payment)
    status = _status(payment)
    known = BANKS.get(gateway.bank_bin)
    bank_name = agency.bank_name or (known.name if known else gateway.bank_bin)
    links = deep_links(gateway.bank_bin, gateway.account_number, payment.amount, reference, gateway.account_name)
    return render(
        request,
        "qr_pay.html",
        reference=reference,
        amount=payment.amount,
        bank_name=bank_name,
        account_name=gateway.account_name,
        account_number=gateway.account_number,
        dossier=dossier,
        agency=agency,
        deadline=payment.expires_at,
        status=status,
        poll=status == "pending",
        status_url=f"/pay/qr/{reference}/status",
        deep_links=links if status == "pending" else [],
        back=f"/pay/{dossier.pay_token}?lang={language(request)}",
    )
