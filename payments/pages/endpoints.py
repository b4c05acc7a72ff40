"""The payer's page for a dossier: what is owed and why, how to pay, the attempt in progress, and the outcome.

The page polls ``/pay/{token}/status`` (a few bytes of JSON) while something is still to come (a pending attempt, a
receipt not yet issued), and swaps in its fresh content when the state moves; without JavaScript it refreshes."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import Annotated
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from pydantic import ValidationError
from sqlmodel import Session, col, select

from payments.agency.models import Agency, Procedure
from payments.auth.deps import CtxDep
from payments.auth.service import Principal
from payments.core.context import AppContext
from payments.core.errors import AgencyDeactivated, DossierNotPayable, NotFound, PaymentInProgress, ValidationFailed
from payments.dossier.models import Dossier, DossierFeeLine, DossierStatus
from payments.dossier.secret import pay_secret
from payments.idempotency.deps import request_fingerprint
from payments.pages import forms
from payments.pages.errors import error_page
from payments.pages.render import check_form, language, render
from payments.payment.create import PaymentCreation
from payments.payment.lifecycle import cancel_payment
from payments.payment.models import Payment
from payments.payment.schemas import PaymentIn
from payments.payment.states import LIVE, PAID

router = APIRouter(include_in_schema=False)
TOKEN_MAX = 64  # the dossier table's pay_token column


def _dossier(s: Session, token: str) -> Dossier:
    dossier = None
    if 0 < len(token) <= TOKEN_MAX and token.isascii() and token.isprintable():
        dossier = s.exec(select(Dossier).where(Dossier.pay_token == token)).first()
    if dossier is None:
        raise NotFound("no dossier behind this link")
    return dossier


def _latest(s: Session, dossier: Dossier) -> Payment | None:
    return s.exec(
        select(Payment).where(Payment.dossier_id == dossier.id).order_by(col(Payment.created_at).desc())
    ).first()


@dataclass(frozen=True)
class PageState:
    """Where the dossier's payment stands, as the page shows it and as its status address reports it."""

    state: str  # unpaid, pending, paid, failed, cancelled or expired
    receipt_code: str | None

    @property
    def key(self) -> str:
        # What the page compares: a change of either part means new content.
        return f"{self.state}:{self.receipt_code or ''}"

    @property
    def poll(self) -> bool:
        return self.state == "pending" or (self.state == "paid" and self.receipt_code is None)


def _state(ctx: AppContext, payment: Payment | None) -> PageState:
    if payment is None:
        return PageState("unpaid", None)
    if payment.status in LIVE:
        return PageState("pending", None)
    if payment.status in PAID:
        return PageState("paid", ctx.receipt_code(payment.id))
    return PageState(payment.status.value, None)


def with_lang(url: str, public_url: str, lang: str) -> str:
    """``url`` with the page language added when it is one of this service's own pages (a gateway's page elsewhere
    chooses its own language)."""
    parts = urlsplit(url)
    own = urlsplit(public_url)
    if parts.netloc and (parts.scheme, parts.netloc) != (own.scheme, own.netloc):
        return url
    query = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if k != "lang"]
    return urlunsplit(parts._replace(query=urlencode([*query, ("lang", lang)])))


@router.get("/pay/{token}", response_class=HTMLResponse)
def pay_page(token: str, request: Request, ctx: CtxDep) -> HTMLResponse:
    with ctx.db.read() as s:
        dossier = _dossier(s, token)
        agency = s.get(Agency, dossier.agency_id)
        assert agency is not None
        lines = s.exec(
            select(DossierFeeLine).where(DossierFeeLine.dossier_id == dossier.id).order_by(col(DossierFeeLine.position))
        ).all()
        payment = _latest(s, dossier)
        procedure = s.get(Procedure, dossier.procedure_id)
    # A deactivated agency's dossiers stay readable (and their receipts), but nothing can be paid to it.
    methods = [m for m in agency.payment_methods if m in ctx.gateways] if agency.deactivated_at is None else []
    page = _state(ctx, payment)
    lang = language(request)
    continue_url = None
    if payment is not None and page.state == "pending" and payment.next_url:
        continue_url = with_lang(payment.next_url, ctx.settings.public_url, lang)
    return render(
        request,
        "dossier_pay.html",
        dossier=dossier,
        agency=agency,
        lines=lines,
        payment=payment,
        procedure=procedure,
        methods=methods,
        token=token,
        form_key=secrets.token_urlsafe(16),
        csrf=forms.form_token(request, ctx.settings, f"pay:{token}"),
        cancel_csrf=forms.form_token(request, ctx.settings, f"cancel:{token}"),
        state=page.state,
        state_key=page.key,
        poll=page.poll,
        paid=page.state == "paid",
        status_url=f"/pay/{token}/status",
        receipt_code=page.receipt_code,
        continue_url=continue_url,
        pay_secret=pay_secret(token),
    )


@router.get("/pay/{token}/status")
def pay_status(token: str, ctx: CtxDep) -> JSONResponse:
    """What the page polls: as secret as the page (the same token), and saying less."""
    with ctx.db.read() as s:
        payment = _latest(s, _dossier(s, token))
    page = _state(ctx, payment)
    body = {"state": page.key, "status": page.state, "receipt_code": page.receipt_code}
    return JSONResponse(body, headers={"Cache-Control": "no-store"})


@router.post("/pay/{token}", response_class=RedirectResponse)
def pay_submit(
    token: str,
    request: Request,
    ctx: CtxDep,
    method: Annotated[str, Form(max_length=40)],
    form_key: Annotated[str, Form(min_length=8, max_length=64)],
    csrf: Annotated[str | None, Form(max_length=128)] = None,
) -> Response:
    lang = language(request)
    here = f"/pay/{token}?lang={lang}"
    refused = check_form(request, ctx.settings, f"pay:{token}", csrf, back=here)
    if refused is not None:
        return refused
    with ctx.db.read() as s:
        dossier = _dossier(s, token)
    if dossier.status is not DossierStatus.unpaid:
        # Paid from another tab, or a form the browser kept: nothing is started, and the page says so.
        raise DossierNotPayable(f"dossier {dossier.code!r} is {dossier.status.value}")
    principal = Principal(key_id=f"payer:{dossier.id}", agency_id=dossier.agency_id, scopes=frozenset())
    try:
        data = PaymentIn(
            dossier_code=dossier.code, method=method, return_url=f"{ctx.settings.public_url.rstrip('/')}{here}"
        )
    except ValidationError as exc:  # a method with control characters, say: the form was not ours
        raise ValidationFailed("the payment method is not valid") from exc
    creation = PaymentCreation(ctx, principal, data, "payer")
    try:
        # The form carries its own key, so a double click or a browser resubmit never starts a second payment.
        outcome = creation.outcome(principal.key_id, form_key, request_fingerprint(request, data))
    except AgencyDeactivated:
        return RedirectResponse(here, status_code=303)  # the page says why nothing can be paid
    except PaymentInProgress as exc:
        with ctx.db.read() as s:
            live = s.get(Payment, str(exc.extra.get("payment_id", "")))
        target = with_lang(live.next_url, ctx.settings.public_url, lang) if live and live.next_url else here
        return RedirectResponse(target, status_code=303)
    if outcome.status >= 400:
        # A form sent again whose first answer was a refusal: the same refusal, as a page.
        code = str(outcome.body.get("code", "bad_request"))
        page = error_page(request, outcome.status, code)
        return page if page is not None else RedirectResponse(here, status_code=303)
    if outcome.replayed:
        # A form the browser kept and sent again: its attempt may be over (declined, cancelled); the dossier's page
        # shows where things stand rather than a finished gateway page.
        with ctx.db.read() as s:
            earlier = s.get(Payment, str(outcome.body.get("id", "")))
        if earlier is None or earlier.status not in LIVE:
            return RedirectResponse(here, status_code=303)
    next_url = outcome.body.get("next_url") if outcome.status == 201 else None
    target = with_lang(str(next_url), ctx.settings.public_url, lang) if next_url else here
    return RedirectResponse(target, status_code=303)


@router.post("/pay/{token}/cancel", response_class=RedirectResponse)
def pay_cancel(
    token: str,
    request: Request,
    ctx: CtxDep,
    payment_id: Annotated[str, Form(min_length=1, max_length=40)],
    csrf: Annotated[str | None, Form(max_length=128)] = None,
) -> Response:
    """ "Pay another way": the attempt in progress is cancelled by the same rules as the API's cancel (at the gateway
    first; one that already took the money is kept, and the page then shows it paid)."""
    here = f"/pay/{token}?lang={language(request)}"
    refused = check_form(request, ctx.settings, f"cancel:{token}", csrf, back=here)
    if refused is not None:
        return refused
    with ctx.db.read() as s:
        dossier = _dossier(s, token)
        payment = s.get(Payment, payment_id) if payment_id.isascii() and payment_id.isprintable() else None
    if payment is None or payment.dossier_id != dossier.id:
        raise NotFound("no such payment for this dossier")
    principal = Principal(key_id=f"payer:{dossier.id}", agency_id=dossier.agency_id, scopes=frozenset())
    cancel_payment(ctx, principal, payment.id, actor=f"payer:{dossier.id}")
    return RedirectResponse(here, status_code=303)
