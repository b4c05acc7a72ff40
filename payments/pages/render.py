"""Server-rendered pages (no JavaScript needed), in Vietnamese by default and English with ``?lang=en``.

Templates format amounts and times with ``money()``, ``when()`` and ``day()`` (payments/pages/fmt.py, in the page's
language and Vietnam time), and wrap Vietnamese names inside an English page with ``vi_attr``."""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

from fastapi import Request
from fastapi.responses import HTMLResponse
from jinja2 import Environment, FileSystemLoader, select_autoescape
from markupsafe import Markup

from payments.core.config import PaymentSettings
from payments.core.logging import get_logger
from payments.core.security import nonce
from payments.pages import fmt, forms
from payments.pages.i18n import MESSAGES

log = get_logger(__name__)

_env = Environment(
    loader=FileSystemLoader(Path(__file__).parent / "templates"),
    autoescape=select_autoescape(["html"]),
)


def language(request: Request) -> str:
    lang = request.query_params.get("lang")
    if lang in MESSAGES:
        return lang
    accept = request.headers.get("accept-language", "")
    return "en" if accept.lower().startswith("en") else "vi"


def render(request: Request, template: str, status_code: int = 200, **context: Any) -> HTMLResponse:
    """The page; its inline script and style carry this request's CSP nonce (payments.core.security)."""
    lang = language(request)

    def money(amount: int | Decimal) -> str:
        return fmt.money(amount, lang)

    def when(moment: datetime) -> str:
        return fmt.when(moment, lang)

    def day(value: date | datetime) -> str:
        return fmt.day(value, lang)

    # Agency, procedure and fee names are Vietnamese whatever the page's language: screen readers must know.
    vi_attr = Markup(' lang="vi"') if lang != "vi" else Markup("")
    html = _env.get_template(template).render(
        t=MESSAGES[lang],
        lang=lang,
        path=request.url.path,
        nonce=nonce(request),
        money=money,
        when=when,
        day=day,
        vi_attr=vi_attr,
        **context,
    )
    response = HTMLResponse(html, status_code=status_code)
    forms.set_cookie(request, request.app.state.ctx.settings, response)
    return response


def check_form(
    request: Request, settings: PaymentSettings, subject: str, token: str | None, back: str
) -> HTMLResponse | None:
    """None for a genuine submission; else the 403 page to answer (and nothing is done)."""
    reason = forms.refusal(request, settings, subject, token)
    if reason is None:
        return None
    # The subject's kind only: the rest is the dossier's pay token.
    log.warning("pages.form_refused", form=subject.split(":", 1)[0], reason=reason)
    return render(request, "refused.html", status_code=403, back=back)
