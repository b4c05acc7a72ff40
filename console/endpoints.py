"""The console's pages: sign-in, sign-out, setting a password through a one-time link, and the home page.

Forms are protected against cross-site requests twice over: the browser must not say the post comes from another
site, and the form must carry a token. Before a session exists (sign-in, set-password) that token is the signed
double-submit token of the payer pages (``payments.pages.forms``); once signed in it is the session's own CSRF token.
A refused form changes nothing and answers 403."""

from __future__ import annotations

import hmac
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from typing import TypeVar

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from starlette.concurrency import run_in_threadpool

from console.context import ConsoleContext, console_settings
from console.dashboard import page as dashboard
from console.guard import (
    ALL_ROLES,
    COOKIE,
    MAX_TOKEN,
    BadForm,
    Staff,
    client_ip,
    ctx_of,
    form_text,
    staff_page,
    to_login,
)
from console.i18n import MESSAGES
from console.render import BadLanguage, language, message, render
from console.staff import service
from payments.core.logging import get_logger
from payments.pages import forms

log = get_logger(__name__)
router = APIRouter(prefix="/console", include_in_schema=False)

COOKIE_PATH = "/console"
LOGIN_FORM = "console:login"
VIETNAM = timezone(timedelta(hours=7))
T = TypeVar("T")


async def _form(request: Request, *names: str) -> dict[str, str]:
    """The named text fields of a urlencoded or multipart form. Anything else, a file, an over-long value, NUL or
    other control characters, or bytes that were not UTF-8, is a bad request."""
    try:
        form = await request.form(max_files=0, max_fields=20, max_part_size=16 * 1024)
    except Exception as exc:  # the form parsers' errors have no common base class
        raise BadForm from exc
    return {name: form_text(form.get(name, "")) for name in names}


async def _posted(request: Request, *names: str) -> tuple[dict[str, str], str] | HTMLResponse:
    """The form's fields and the language to answer in, or the 400 page for a form that is not ours."""
    try:
        form = await _form(request, *names, "csrf", "lang")
    except BadForm:
        return _bad_request(request)
    lang = _lang_or_none(request, form["lang"])
    if lang is None:
        return _bad_request(request)
    return form, lang


async def _db(fn: Callable[[], T]) -> T:
    # Password hashing is CPU work of tens of milliseconds: kept off the event loop and off the database's threads.
    return await run_in_threadpool(fn)


def _bad_request(request: Request, lang: str = "vi") -> HTMLResponse:
    ctx = ctx_of(request)
    return message(request, ctx.settings, lang, 400, "bad_request_title", "bad_request")


def _refused(request: Request, lang: str, reason: str, back: str = "/console/login") -> HTMLResponse:
    log.warning("console.form_refused", reason=reason, path=request.url.path)
    ctx = ctx_of(request)
    return message(request, ctx.settings, lang, 403, "form_refused_title", "form_refused", back=back)


def _lang_or_none(request: Request, form_lang: str | None = None) -> str | None:
    try:
        return language(request, form_lang or None)
    except BadLanguage:
        return None


def _cookie_secure(ctx: ConsoleContext) -> bool:
    return ctx.settings.public_url.lower().startswith("https:")


@router.get("", include_in_schema=False)
def console_root(request: Request) -> Response:
    lang = _lang_or_none(request) or "vi"
    return RedirectResponse(f"/console/?lang={lang}", status_code=303)


@router.get("/", response_class=HTMLResponse)
async def home(request: Request) -> Response:
    staff = await staff_page(request, ALL_ROLES)
    if not isinstance(staff, Staff):
        return staff
    return await dashboard.home(request, staff)


@router.get("/login", response_class=HTMLResponse)
def login_page(request: Request) -> Response:
    lang = _lang_or_none(request)
    if lang is None:
        return _bad_request(request)
    ctx = ctx_of(request)
    t = MESSAGES[lang]
    notes = {"signed_out": t["signed_out"], "password_done": t["password_done"]}
    return render(
        request,
        ctx.settings,
        "login.html",
        lang,
        csrf=forms.form_token(request, ctx.settings, LOGIN_FORM),
        email="",
        notice=notes.get(request.query_params.get("note", "")),
        error=None,
    )


def _vietnam_time(moment: datetime, lang: str) -> str:
    local = moment.astimezone(VIETNAM)
    return local.strftime("%H:%M %d/%m/%Y") if lang == "vi" else local.strftime("%H:%M on %d/%m/%Y")


@router.post("/login", response_class=HTMLResponse)
async def login_submit(request: Request) -> Response:
    posted = await _posted(request, "email", "password")
    if isinstance(posted, HTMLResponse):
        return posted
    form, lang = posted
    ctx = ctx_of(request)
    reason = forms.refusal(request, ctx.settings, LOGIN_FORM, form["csrf"] or None)
    if reason is not None:
        return _refused(request, lang, reason)
    if len(form["password"]) > 256:
        return _bad_request(request, lang)
    ip = client_ip(request)
    user_agent = request.headers.get("user-agent", "")

    def attempt() -> service.SignedIn | service.Throttled | service.Refused:
        with ctx.db.write() as s:
            return service.sign_in(s, form["email"], form["password"], ip, user_agent)

    outcome = await _db(attempt)
    t = MESSAGES[lang]
    if isinstance(outcome, service.SignedIn):
        response = RedirectResponse(f"/console/?lang={lang}", status_code=303)
        response.set_cookie(
            COOKIE,
            outcome.session_token,
            httponly=True,
            samesite="lax",
            secure=_cookie_secure(ctx),
            path=COOKIE_PATH,
        )
        return response
    if isinstance(outcome, service.Throttled):
        error, status = t["throttled"].format(time=_vietnam_time(outcome.until, lang)), 429
    else:
        error, status = t["bad_credentials"], 401
    return render(
        request,
        ctx.settings,
        "login.html",
        lang,
        status_code=status,
        csrf=forms.form_token(request, ctx.settings, LOGIN_FORM),
        email=form["email"][: service.MAX_EMAIL_LENGTH],
        notice=None,
        error=error,
    )


@router.post("/logout", response_class=HTMLResponse)
async def logout(request: Request) -> Response:
    try:
        form = await _form(request, "csrf", "lang")
    except BadForm:
        return _bad_request(request)
    lang = _lang_or_none(request, form["lang"]) or "vi"
    ctx = ctx_of(request)
    if forms.foreign_origin(request, ctx.settings):
        return _refused(request, lang, "foreign_origin", back="/console/")
    raw = request.cookies.get(COOKIE)
    if not raw or len(raw) > MAX_TOKEN:
        return to_login(lang)
    ip = client_ip(request)
    config = console_settings(ctx.settings)

    def end() -> str:
        with ctx.db.write() as s:
            found = service.current_session(s, raw, config.staff_idle_minutes, config.staff_session_hours)
            if found is None:
                return "none"
            session, user = found
            if not form["csrf"] or not hmac.compare_digest(form["csrf"], session.csrf_token):
                return "bad_token"
            service.sign_out(s, session, user, ip)
            return "done"

    outcome = await _db(end)
    if outcome == "bad_token":
        return _refused(request, lang, outcome, back="/console/")
    response = to_login(lang, "signed_out" if outcome == "done" else None)
    response.delete_cookie(COOKIE, path=COOKIE_PATH, httponly=True, samesite="lax", secure=_cookie_secure(ctx))
    return response


def _link_subject(token: str) -> str:
    return f"console:set-password:{service.digest(token)}"


def _invalid_link(request: Request, lang: str) -> HTMLResponse:
    return message(request, ctx_of(request).settings, lang, 404, "link_invalid_title", "link_invalid")


@router.get("/set-password/{token}", response_class=HTMLResponse)
async def set_password_page(token: str, request: Request) -> Response:
    lang = _lang_or_none(request)
    if lang is None:
        return _bad_request(request)
    ctx = ctx_of(request)
    if len(token) > MAX_TOKEN:
        return _invalid_link(request, lang)

    def email() -> str | None:
        with ctx.db.read() as s:
            opened = service.open_token(s, token)
            return opened[1].email if opened else None

    address = await _db(email)
    if address is None:
        return _invalid_link(request, lang)
    return _set_password_form(request, token, lang, address, None, 200)


def _set_password_form(
    request: Request, token: str, lang: str, email: str, error: str | None, status: int
) -> HTMLResponse:
    ctx = ctx_of(request)
    csrf = forms.form_token(request, ctx.settings, _link_subject(token))
    return render(
        request, ctx.settings, "set_password.html", lang, status_code=status, csrf=csrf, email=email, error=error
    )


@router.post("/set-password/{token}", response_class=HTMLResponse)
async def set_password_submit(token: str, request: Request) -> Response:
    posted = await _posted(request, "password", "confirm")
    if isinstance(posted, HTMLResponse):
        return posted
    form, lang = posted
    ctx = ctx_of(request)
    if len(token) > MAX_TOKEN:
        return _invalid_link(request, lang)
    reason = forms.refusal(request, ctx.settings, _link_subject(token), form["csrf"] or None)
    if reason is not None:
        return _refused(request, lang, reason, back=request.url.path)
    ip = client_ip(request)
    t = MESSAGES[lang]

    def apply() -> tuple[str, str | None]:
        """("done", None), ("invalid", None) or (the error's message key, the account's email)."""
        with ctx.db.write() as s:
            opened = service.open_token(s, token)
            if opened is None:
                return "invalid", None
            email = opened[1].email
            if form["password"] != form["confirm"]:
                return "password_mismatch", email
            try:
                service.use_token(s, token, form["password"], ip)
            except service.StaffError as exc:
                return str(exc), email
            return "done", None

    outcome, email = await _db(apply)
    if outcome == "done":
        return to_login(lang, "password_done")
    if outcome in {"invalid", "link_invalid"} or email is None or outcome not in t:
        return _invalid_link(request, lang)
    return _set_password_form(request, token, lang, email, t[outcome], 400)


@router.api_route("/{rest:path}", methods=["GET", "POST"], response_class=HTMLResponse)
def not_found(rest: str, request: Request) -> HTMLResponse:
    # Unknown console addresses answer a page, not the API's problem+json.
    lang = _lang_or_none(request) or "vi"
    back, label = "/console/", "back_home"
    return message(request, ctx_of(request).settings, lang, 404, "not_found_title", "not_found", back, label)
