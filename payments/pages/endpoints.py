"""The payer's page for a dossier: what is owed and why, how to pay, and the outcome."""

from __future__ import annotations

import secrets
from typing import Annotated

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from sqlmodel import Session, col, select

from payments.agency.models import Agency, Procedure
from payments.auth.deps import CtxDep
from payments.auth.service import Principal
from payments.core.errors import AgencyDeactivated, NotFound, PaymentInProgress
from payments.dossier.models import Dossier, DossierFeeLine
from payments.idempotency.deps import request_fingerprint
from payments.pages import forms
from payments.pages.render import check_form, language, render
from payments.payment.create import PaymentCreation
from payments.payment.models import Payment
from payments.payment.schemas import PaymentIn
from payments.payment.states import PAID

router = APIRouter(include_in_schema=False)


def _dossier(s: Session, token: str) -> Dossier:
    dossier = s.exec(select(Dossier).where(Dossier.pay_token == token)).first()
    if dossier is None:
        raise NotFound("no dossier behind this link")
    return dossier


@router.get("/pay/{token}", response_class=HTMLResponse)
def pay_page(token: str, request: Request, ctx: CtxDep) -> HTMLResponse:
    with ctx.db.read() as s:
        dossier = _dossier(s, token)
        agency = s.get(Agency, dossier.agency_id)
        assert agency is not None
        lines = s.exec(
            select(DossierFeeLine).where(DossierFeeLine.dossier_id == dossier.id).order_by(col(DossierFeeLine.position))
        ).all()
        payment = s.exec(
            select(Payment).where(Payment.dossier_id == dossier.id).order_by(col(Payment.created_at).desc())
        ).first()
        # A deactivated agency's dossiers stay readable (and their receipts), but nothing can be paid to it.
        methods = [m for m in agency.payment_methods if m in ctx.gateways] if agency.deactivated_at is None else []
        receipt_code = ctx.receipt_code(payment.id) if payment is not None and payment.status in PAID else None
        return render(
            request,
            "dossier_pay.html",
            dossier=dossier,
            agency=agency,
            lines=lines,
            payment=payment,
            procedure=s.get(Procedure, dossier.procedure_id),
            methods=methods,
            token=token,
            form_key=secrets.token_urlsafe(16),
            csrf=forms.form_token(request, ctx.settings, f"pay:{token}"),
            receipt_code=receipt_code,
        )


@router.post("/pay/{token}", response_class=RedirectResponse)
def pay_submit(
    token: str,
    request: Request,
    ctx: CtxDep,
    method: Annotated[str, Form(max_length=40)],
    form_key: Annotated[str, Form(min_length=8, max_length=64)],
    csrf: Annotated[str | None, Form(max_length=128)] = None,
) -> Response:
    here = f"/pay/{token}?lang={language(request)}"
    refused = check_form(request, ctx.settings, f"pay:{token}", csrf, back=here)
    if refused is not None:
        return refused
    with ctx.db.read() as s:
        dossier = _dossier(s, token)
    principal = Principal(key_id=f"payer:{dossier.id}", agency_id=dossier.agency_id, scopes=frozenset())
    data = PaymentIn(
        dossier_code=dossier.code, method=method, return_url=f"{ctx.settings.public_url.rstrip('/')}{here}"
    )
    creation = PaymentCreation(ctx, principal, data, "payer")
    try:
        # The form carries its own key, so a double click or a browser resubmit never starts a second payment.
        outcome = creation.outcome(principal.key_id, form_key, request_fingerprint(request, data))
    except AgencyDeactivated:
        return RedirectResponse(here, status_code=303)  # the page says why nothing can be paid
    except PaymentInProgress as exc:
        with ctx.db.read() as s:
            live = s.get(Payment, str(exc.extra.get("payment_id", "")))
        return RedirectResponse(live.next_url if live and live.next_url else here, status_code=303)
    next_url = outcome.body.get("next_url") if outcome.status == 201 else None
    return RedirectResponse(str(next_url) if next_url else here, status_code=303)
