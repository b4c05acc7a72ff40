"""Errors on the payer's pages as pages: a payer who follows a stale link or re-sends an old form reads what happened
and what to do next, in their language, with the same status code an API client would get as problem+json.

Which requests get a page: those to a payer page (``/pay/...``, ``/sandbox/pay/...``, ``/r...``, ``/tra-cuu``; not
the images, downloads and JSON that live under the same prefixes), and any other request whose ``Accept`` prefers
``text/html`` to JSON (a browser that opened an API address). API clients keep problem+json. The console answers its
own errors with its own pages."""

from __future__ import annotations

import re
from collections.abc import Mapping

from fastapi import Request
from fastapi.responses import HTMLResponse
from sqlalchemy.exc import SQLAlchemyError
from sqlmodel import select

from payments.agency.models import Agency
from payments.dossier.models import Dossier
from payments.pages.render import language, render

_PAGE_PREFIXES = ("/pay/", "/sandbox/pay/", "/r/", "/tra-cuu")
_PAGE_EXACT = ("/r", "/tra-cuu")
# Under the page prefixes, addresses that answer an image, a download or JSON to a script.
_NOT_PAGES = re.compile(r"(\.(svg|png|pdf|xml)|/confirm|/status)$")
_PAY_PAGE = re.compile(r"^/pay/([A-Za-z0-9_-]{8,64})(?:/[a-z]+)?$")
_OWN_PREFIXES = ("/console",)

# The error codes whose page says something of its own; any other code gets its status's page.
_CODES = frozenset(
    {
        "not_found",
        "validation_error",
        "method_not_enabled",
        "dossier_not_payable",
        "idempotency_key_reused",
        "idempotency_key_in_progress",
        "payment_in_progress",
        "invalid_transition",
        "gateway_unavailable",
        "rate_limited",
        "payload_too_large",
        "method_not_allowed",
    }
)


def _quality(accept: str, wanted: tuple[str, ...]) -> float:
    best = 0.0
    for part in accept.split(","):
        media, *params = (p.strip() for p in part.split(";"))
        if media.lower() not in wanted:
            continue
        q = 1.0
        for param in params:
            name, _, value = param.partition("=")
            if name.strip().lower() == "q":
                try:
                    q = float(value)
                except ValueError:
                    q = 0.0
        best = max(best, q)
    return best


def prefers_html(accept: str) -> bool:
    """``Accept`` ranks text/html above JSON (a browser's ``text/html,...,*/*;q=0.8``; not ``*/*`` alone)."""
    html = _quality(accept, ("text/html", "application/xhtml+xml"))
    json = _quality(accept, ("application/json", "application/problem+json"))
    return html > 0 and html > json


def is_payer_page(path: str) -> bool:
    if path in _PAGE_EXACT or path.startswith(_PAGE_PREFIXES):
        return _NOT_PAGES.search(path) is None
    return False


def wants_page(request: Request) -> bool:
    path = request.url.path
    if path.startswith(_OWN_PREFIXES):
        return False
    return is_payer_page(path) or prefers_html(request.headers.get("accept", ""))


def _agency(request: Request, token: str) -> Agency | None:
    """The agency whose dossier this pay link names, for its contacts; None when there is none (or the database
    itself is what failed: the error page must still go out)."""
    ctx = request.app.state.ctx
    try:
        with ctx.db.read() as s:
            dossier = s.exec(select(Dossier).where(Dossier.pay_token == token)).first()
            return s.get(Agency, dossier.agency_id) if dossier is not None else None
    except SQLAlchemyError:
        return None


def error_page(
    request: Request, status: int, code: str, headers: Mapping[str, str] | None = None
) -> HTMLResponse | None:
    """The page for this error, or None when the request should get problem+json."""
    if not wants_page(request):
        return None
    lang = language(request)
    pay = _PAY_PAGE.match(request.url.path)
    # Back to the dossier's own page when the address names one; otherwise to the dossier search.
    key = code if code in _CODES else ("server_error" if status >= 500 else "bad_request")
    dossier = pay is not None and key != "not_found"
    back = f"/pay/{pay.group(1)}?lang={lang}" if pay and dossier else f"/tra-cuu?lang={lang}"
    response = render(
        request,
        "error.html",
        agency=_agency(request, pay.group(1)) if pay else None,
        status_code=status,
        error=key,
        back=back,
        back_is_dossier=dossier,
    )
    if headers:
        for name, value in headers.items():
            if name.lower() in ("retry-after", "allow"):
                response.headers[name] = value
    return response
