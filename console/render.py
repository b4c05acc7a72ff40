"""The console's pages: its own templates, Vietnamese unless ``?lang=en`` (or the form's ``lang``) asks for English.

Every answer of the console is a page, errors included: a browser user never sees problem+json."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from fastapi import Request
from fastapi.responses import HTMLResponse
from jinja2 import Environment, FileSystemLoader, select_autoescape

from console.i18n import MESSAGES
from console.nav import nav_for
from console.roles import PERSONAL_DATA
from console.staff.models import Role
from payments.core.config import PaymentSettings
from payments.core.pii import mask
from payments.core.security import nonce
from payments.pages import fmt, forms

DEFAULT = "vi"

_env = Environment(
    loader=FileSystemLoader(Path(__file__).parent / "templates"),
    autoescape=select_autoescape(["html"]),
)


class BadLanguage(Exception):
    """A ``lang`` that is not one of the console's languages."""


def language(request: Request, form_lang: str | None = None) -> str:
    """The page's language. An unknown ``lang`` is refused (400) rather than guessed, so a mistyped or hostile
    value never reaches a template or a file name."""
    asked = form_lang if form_lang is not None else request.query_params.get("lang")
    if asked is not None:
        if asked not in MESSAGES:
            raise BadLanguage
        return asked
    accept = request.headers.get("accept-language", "")
    return "en" if accept.lower().startswith("en") else DEFAULT


def _switch_url(request: Request, other: str) -> str:
    """This page in the other language, its filters kept (a GET's query; a POST's answer goes back to the bare page)."""
    query = [(k, v) for k, v in request.query_params.multi_items() if k != "lang"] if request.method == "GET" else []
    return f"{request.url.path}?{urlencode([*query, ('lang', other)])}"


def personal_data_for(role: Role | None) -> Callable[[str | None], str | None]:
    """How a payer's contact or identity number is shown to this role: in full, or masked (console.roles)."""
    if role in PERSONAL_DATA:
        return lambda value: value
    return mask


def render(
    request: Request, settings: PaymentSettings, template: str, lang: str, status_code: int = 200, **context: Any
) -> HTMLResponse:
    # The signed-in user, when the guard found one for this request: the header shows their menu.
    user = getattr(request.state, "staff_user", None)
    html = _env.get_template(template).render(
        t=MESSAGES[lang],
        lang=lang,
        path=request.url.path,
        switch_url=_switch_url(request, "en" if lang == "vi" else "vi"),
        nonce=nonce(request),
        nav=nav_for(user.role) if user is not None else [],
        staff_csrf=getattr(request.state, "staff_csrf", None),
        money=lambda amount: fmt.money(amount, lang),
        when=lambda moment: fmt.when(moment, lang) if moment is not None else "",
        day=lambda value: fmt.day(value, lang),
        pii=personal_data_for(user.role if user is not None else None),
        **context,
    )
    response = HTMLResponse(html, status_code=status_code)
    # The pre-session forms' double-submit cookie (payments.pages.forms), made when a form token was.
    forms.set_cookie(request, settings, response)
    return response


def message(
    request: Request,
    settings: PaymentSettings,
    lang: str,
    status_code: int,
    title: str,
    text: str,
    back: str = "/console/login",
    back_label: str = "back_to_login",
) -> HTMLResponse:
    t = MESSAGES[lang]
    return render(
        request,
        settings,
        "message.html",
        lang,
        status_code=status_code,
        title=t[title],
        message=t[text],
        back=f"{back}?lang={lang}",
        back_label=t[back_label],
    )
