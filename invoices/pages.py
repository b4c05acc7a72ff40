"""The public receipt lookup (tra cứu biên lai): a payer without an API key types the lookup code printed on the
receipt, or scans its QR code, and gets that one document (HTML view, PDF copy, signed XML), nothing else.

Lookup codes are 12 characters from a 31-letter alphabet (about 59 bits), and every lookup request counts against a
per-address limit, so codes cannot be enumerated. Unknown and malformed codes get the same answer."""

from __future__ import annotations

import re
from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from sqlmodel import select

from invoices.context import ReceiptContext, ReceiptCtxDep
from invoices.service import lookup_url
from invoices.tables import Document
from payments.core.security import nonce
from payments.pages.render import language, render

router = APIRouter(include_in_schema=False)
_CODE = re.compile(r"[23456789ABCDEFGHJKMNPQRSTUVWXYZ]{12}")
PRIVATE = {"Cache-Control": "no-store", "X-Robots-Tag": "noindex", "Referrer-Policy": "no-referrer"}


def _normalise(code: str) -> str:
    # Printed as groups ("ABCD-EFGH-JKMN") and typed in any case.
    return re.sub(r"[\s-]", "", code).upper()


def _find(ctx: ReceiptContext, request: Request, code: str) -> Document | HTMLResponse:
    """The document, or the page to answer instead: too many lookups (429) or no such code (404, the same for a
    malformed one)."""
    wait = ctx.lookup_limiter.check(request.client.host if request.client else "unknown")
    if wait is not None:
        return _too_many(request, wait)
    normal = _normalise(code)
    doc = None
    if _CODE.fullmatch(normal):
        with ctx.db.read() as s:
            doc = s.exec(select(Document).where(Document.lookup_code == normal)).first()
    return doc if doc is not None else _not_found(request, code)


def _too_many(request: Request, wait: float) -> HTMLResponse:
    response = render(request, "lookup.html", status_code=429, code="", error="rate_limited")
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
    from invoices.render import render_pdf  # WeasyPrint takes a second to import: only when a PDF is asked for

    doc = _find(ctx, request, code)
    if not isinstance(doc, Document):
        return doc
    pdf = render_pdf(doc.xml, lookup_url=lookup_url(ctx, doc.lookup_code), lookup_code=doc.lookup_code)
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
    from invoices.render import render_html

    doc = _find(ctx, request, code)
    if not isinstance(doc, Document):
        return doc
    html = render_html(
        doc.xml,
        lookup_url=lookup_url(ctx, doc.lookup_code),
        lookup_code=doc.lookup_code,
        lang=language(request),
        nonce=nonce(request),
    )
    # The document's own page, with its downloads added just before the end of the body.
    links = (
        f'<nav class="downloads"><a href="/r/{doc.lookup_code}.pdf">PDF</a> · '
        f'<a href="/r/{doc.lookup_code}.xml">XML</a></nav>'
    )
    html = html.replace("</body>", links + "</body>", 1)
    return HTMLResponse(html, headers=PRIVATE)
