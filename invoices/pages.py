"""The public receipt lookup (tra cứu biên lai): a payer without an API key types the lookup code printed on the
receipt, or scans its QR code, and gets that one document (HTML view, PDF copy, signed XML), nothing else. And the
dossier search (``/tra-cuu``): a payer without the pay link types the dossier code and the secret printed on the
one-stop receipt (payments/dossier/secret.py) and is sent to the dossier's pay page.

Lookup codes are 12 characters from a 31-letter alphabet (about 59 bits), and every lookup request counts against a
per-address limit, so codes cannot be enumerated. Unknown and malformed codes get the same answer."""

from __future__ import annotations

import re
from typing import Annotated

from anyio import from_thread
from fastapi import APIRouter, Form, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from sqlmodel import select

from invoices.context import ReceiptContext, ReceiptCtxDep
from invoices.service import lookup_url
from invoices.tables import Document
from payments.core.ratelimit import LimiterUnavailable
from payments.core.security import nonce
from payments.dossier.secret import find_by_secret
from payments.pages import forms
from payments.pages.render import check_form, language, render

router = APIRouter(include_in_schema=False)
_CODE = re.compile(r"[23456789ABCDEFGHJKMNPQRSTUVWXYZ]{12}")
PRIVATE = {"Cache-Control": "no-store", "X-Robots-Tag": "noindex", "Referrer-Policy": "no-referrer"}


def _normalise(code: str) -> str:
    # Printed as groups ("ABCD-EFGH-JKMN") and typed in any case.
    return re.sub(r"[\s-]", "", code).upper()


def _find(ctx: ReceiptContext, request: Request, code: str) -> Document | HTMLResponse:
    """The document, or the page to answer instead: too many lookups (429), no count possible (503) or no such code
    (404, the same for a malformed one)."""
    try:
        wait = _count(ctx, request)
    except LimiterUnavailable as exc:
        return _refused(request, "lookup.html", 503, "unavailable", exc.retry_after, code="")
    if wait is not None:
        return _refused(request, "lookup.html", 429, "rate_limited", wait, code="")
    normal = _normalise(code)
    doc = None
    if _CODE.fullmatch(normal):
        with ctx.db.read() as s:
            doc = s.exec(select(Document).where(Document.lookup_code == normal)).first()
    return doc if doc is not None else _not_found(request, code)


def _count(ctx: ReceiptContext, request: Request) -> float | None:
    """This lookup counted against the address's limit (the handlers run in a worker thread; the count runs on the
    event loop, where a shared limiter's connection lives). Raises ``LimiterUnavailable`` when the count cannot be
    made: lookups are then refused rather than left unlimited."""
    return from_thread.run(ctx.lookup_limiter.check, request.client.host if request.client else "unknown")


def _refused(request: Request, template: str, status: int, error: str, wait: float, **values: str) -> HTMLResponse:
    response = render(request, template, status_code=status, error=error, **values)
    response.headers["Retry-After"] = str(max(1, round(wait)))
    response.headers.update(PRIVATE)
    return response


def _not_found(request: Request, code: str) -> HTMLResponse:
    response = render(request, "lookup.html", status_code=404, code=code[:40], error="not_found")
    response.headers.update(PRIVATE)
    return response


@router.get("/r", response_class=HTMLResponse)
async def lookup_form(request: Request, code: Annotated[str | None, Query(max_length=40)] = None) -> Response:
    if code:
        lang = language(request)
        return RedirectResponse(f"/r/{_normalise(code)[:40]}?lang={lang}", status_code=303)
    return render(request, "lookup.html", code="", error=None)


@router.get("/r/{code}.pdf")
def lookup_pdf(code: str, request: Request, ctx: ReceiptCtxDep) -> Response:
    from invoices.render import agency_logo, render_pdf  # WeasyPrint takes a second to import: only for a PDF

    doc = _find(ctx, request, code)
    if not isinstance(doc, Document):
        return doc
    with ctx.db.read() as s:
        logo = agency_logo(s, doc.agency_id)
    pdf = render_pdf(doc.xml, lookup_url=lookup_url(ctx, doc.lookup_code), lookup_code=doc.lookup_code, logo=logo)
    disposition = f'inline; filename="{doc.file_name("pdf")}"'
    return Response(pdf, media_type="application/pdf", headers={**PRIVATE, "Content-Disposition": disposition})


@router.get("/r/{code}.xml")
def lookup_xml(code: str, request: Request, ctx: ReceiptCtxDep) -> Response:
    doc = _find(ctx, request, code)
    if not isinstance(doc, Document):
        return doc
    disposition = f'attachment; filename="{doc.file_name("xml")}"'
    return Response(doc.xml, media_type="application/xml", headers={**PRIVATE, "Content-Disposition": disposition})


@router.get("/r/{code}", response_class=HTMLResponse)
def lookup_page(code: str, request: Request, ctx: ReceiptCtxDep) -> Response:
    from invoices.render import agency_logo, render_html

    doc = _find(ctx, request, code)
    if not isinstance(doc, Document):
        return doc
    with ctx.db.read() as s:
        logo = agency_logo(s, doc.agency_id)
    html = render_html(
        doc.xml,
        lookup_url=lookup_url(ctx, doc.lookup_code),
        lookup_code=doc.lookup_code,
        lang=language(request),
        nonce=nonce(request),
        logo=logo,
    )
    # The document's own page, with its downloads added just before the end of the body.
    links = (
        f'<nav class="downloads"><a href="/r/{doc.lookup_code}.pdf">PDF</a> · '
        f'<a href="/r/{doc.lookup_code}.xml">XML</a></nav>'
    )
    html = html.replace("</body>", links + "</body>", 1)
    return HTMLResponse(html, headers=PRIVATE)


def _find_page(
    request: Request, ctx: ReceiptContext, status: int = 200, code: str = "", error: str | None = None
) -> Response:
    csrf = forms.form_token(request, ctx.settings, "find")
    response = render(request, "find.html", status_code=status, code=code, error=error, csrf=csrf)
    response.headers.update(PRIVATE)
    return response


@router.get("/tra-cuu", response_class=HTMLResponse)
def find_form(request: Request, ctx: ReceiptCtxDep) -> Response:
    return _find_page(request, ctx)


@router.post("/tra-cuu", response_class=HTMLResponse)
def find_dossier(
    request: Request,
    ctx: ReceiptCtxDep,
    code: Annotated[str, Form(max_length=40)] = "",
    secret: Annotated[str, Form(max_length=40)] = "",
    csrf: Annotated[str | None, Form(max_length=128)] = None,
) -> Response:
    """A POST, so that the secret stays out of addresses and logs. Every try counts against the same per-address
    limit as the receipt lookup; an unknown code, a wrong secret and a malformed one get the same answer."""
    lang = language(request)
    refused = check_form(request, ctx.settings, "find", csrf, back=f"/tra-cuu?lang={lang}")
    if refused is not None:
        return refused
    try:
        wait = _count(ctx, request)
    except LimiterUnavailable as exc:
        status, error, wait = 503, "unavailable", exc.retry_after
    else:
        status, error = 429, "rate_limited"
    if wait is not None:
        response = _find_page(request, ctx, status, code[:40], error)
        response.headers["Retry-After"] = str(max(1, round(wait)))
        return response
    with ctx.db.read() as s:
        dossier = find_by_secret(s, code, secret)
    if dossier is None:
        return _find_page(request, ctx, 404, code[:40], "not_found")
    return RedirectResponse(f"/pay/{dossier.pay_token}?lang={lang}", status_code=303)
