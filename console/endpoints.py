"""The console's pages: sign-in (password, then the second factor's code when the account has one), sign-out,
forgotten passwords, setting a password through a one-time link, the user's own security page (enrolling a TOTP
second factor), and the home page.

Forms are protected against cross-site requests twice over: the browser must not say the post comes from another
site, and the form must carry a token. Before a session exists (sign-in, set-password) that token is the signed
double-submit token of the payer pages (``payments.pages.forms``); once signed in it is the session's own CSRF token.
A refused form changes nothing and answers 403.

A right password alone makes a session of stage ``totp`` (a code is still owed) or ``enrol`` (the agency requires a
second factor the user has not set up): such a session opens only ``/console/login/code`` or ``/console/account``,
for ``PENDING_MINUTES``, and completing the step replaces it with a new, full session (a new cookie)."""

from __future__ import annotations

import hmac
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from typing import TypeVar

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from sqlmodel import Session
from starlette.background import BackgroundTask
from starlette.concurrency import run_in_threadpool

from console import roles
from console.audit.service import record
from console.context import ConsoleContext, console_settings
from console.dashboard import page as dashboard
from console.guard import (
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
from console.mail import link_mail, mailer_of, send_quietly
from console.render import BadLanguage, language, message, render
from console.staff import service, totp
from console.staff.models import SessionStage, StaffSession, StaffUser
from payments.core.logging import get_logger
from payments.pages import forms

log = get_logger(__name__)
router = APIRouter(prefix="/console", include_in_schema=False)

COOKIE_PATH = "/console"
LOGIN_FORM = "console:login"
FORGOT_FORM = "console:forgot"
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
    staff = await staff_page(request, roles.HOME)
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
    notes = {
        "signed_out": t["signed_out"],
        "password_done": t["password_done"],
        "forgot_sent": t["staff_forgot_sent"],
        "code_expired": t["staff_code_expired"],
    }
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


def _with_session(ctx: ConsoleContext, response: Response, token: str) -> Response:
    secure = _cookie_secure(ctx)
    response.set_cookie(COOKIE, token, httponly=True, samesite="lax", secure=secure, path=COOKIE_PATH)
    return response


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
        after = {
            SessionStage.full: "/console/",
            SessionStage.totp: "/console/login/code",
            SessionStage.enrol: "/console/account",
        }[outcome.stage]
        return _with_session(ctx, RedirectResponse(f"{after}?lang={lang}", status_code=303), outcome.session_token)
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


def _raw_session(request: Request) -> str | None:
    raw = request.cookies.get(COOKIE)
    return raw if raw and len(raw) <= MAX_TOKEN else None


def _pending(request: Request, stage: SessionStage) -> tuple[StaffSession, StaffUser] | None:
    raw = _raw_session(request)
    if raw is None:
        return None
    ctx = ctx_of(request)
    with ctx.db.write() as s:
        return service.pending_session(s, raw, stage)


def _code_form(
    request: Request, lang: str, session: StaffSession, error: str | None = None, status: int = 200
) -> HTMLResponse:
    ctx = ctx_of(request)
    return render(
        request, ctx.settings, "login_code.html", lang, status_code=status, csrf=session.csrf_token, error=error
    )


@router.get("/login/code", response_class=HTMLResponse)
async def code_page(request: Request) -> Response:
    lang = _lang_or_none(request)
    if lang is None:
        return _bad_request(request)
    found = await _db(lambda: _pending(request, SessionStage.totp))
    if found is None:
        return to_login(lang, "code_expired")
    return _code_form(request, lang, found[0])


@router.post("/login/code", response_class=HTMLResponse)
async def code_submit(request: Request) -> Response:
    posted = await _posted(request, "code")
    if isinstance(posted, HTMLResponse):
        return posted
    form, lang = posted
    ctx = ctx_of(request)
    raw = _raw_session(request)
    if forms.foreign_origin(request, ctx.settings) or raw is None:
        return _refused(request, lang, "no_session" if raw is None else "foreign_origin")
    ip = client_ip(request)
    user_agent = request.headers.get("user-agent", "")
    code = form["code"].replace(" ", "")

    def attempt() -> tuple[str, str | datetime | StaffSession | None]:
        with ctx.db.write() as s:
            found = service.pending_session(s, raw, SessionStage.totp)
            if found is None:
                return "expired", None
            session, user = found
            if not form["csrf"] or not hmac.compare_digest(form["csrf"].encode(), session.csrf_token.encode()):
                return "bad_token", None
            until = service.throttled_until(s, user.email, ip)
            if until is not None:
                record_refusal(s, user, ip)
                return "throttled", until
            if not totp.check(s, user, code):
                service.count_failure(s, user.email, ip)
                record(s, agency_id=user.agency_id, actor=user.id, ip=ip, action="staff.totp_failed", target=user.id)
                return "wrong", session
            s.delete(session)
            return "done", service.full_sign_in(s, user, ip, user_agent, after={"second_factor": True})

    outcome, value = await _db(attempt)
    t = MESSAGES[lang]
    if outcome == "bad_token":
        return _refused(request, lang, outcome)
    if outcome == "done" and isinstance(value, str):
        return _with_session(ctx, RedirectResponse(f"/console/?lang={lang}", status_code=303), value)
    found = None if outcome == "expired" else await _db(lambda: _pending(request, SessionStage.totp))
    if found is None:
        return to_login(lang, "code_expired")
    if outcome == "throttled" and isinstance(value, datetime):
        error, status = t["throttled"].format(time=_vietnam_time(value, lang)), 429
    else:
        error, status = t["staff_code_wrong"], 401
    return _code_form(request, lang, found[0], error, status)


def record_refusal(s: Session, user: StaffUser, ip: str) -> None:
    record(
        s, agency_id=user.agency_id, actor=user.id, ip=ip, action="staff.sign_in_refused", after={"reason": "throttled"}
    )


@router.get("/forgot", response_class=HTMLResponse)
def forgot_page(request: Request) -> Response:
    lang = _lang_or_none(request)
    if lang is None:
        return _bad_request(request)
    return _forgot_form(request, lang)


def _forgot_form(request: Request, lang: str, status: int = 200) -> HTMLResponse:
    ctx = ctx_of(request)
    csrf = forms.form_token(request, ctx.settings, FORGOT_FORM)
    return render(request, ctx.settings, "forgot.html", lang, status_code=status, csrf=csrf)


@router.post("/forgot", response_class=HTMLResponse)
async def forgot_submit(request: Request) -> Response:
    posted = await _posted(request, "email")
    if isinstance(posted, HTMLResponse):
        return posted
    form, lang = posted
    ctx = ctx_of(request)
    reason = forms.refusal(request, ctx.settings, FORGOT_FORM, form["csrf"] or None)
    if reason is not None:
        return _refused(request, lang, reason, back="/console/forgot")
    if len(form["email"]) > service.MAX_EMAIL_LENGTH:
        return _bad_request(request, lang)
    ip = client_ip(request)

    def issue() -> tuple[StaffUser, str] | None:
        with ctx.db.write() as s:
            return service.request_reset(s, form["email"], ip)

    issued = await _db(issue)
    response = to_login(lang, "forgot_sent")
    if issued is not None:
        user, token = issued
        url = service.set_password_url(ctx.settings.public_url, token)
        # Sent after the answer: how long a mail server takes must not tell whether the address has an account.
        mail = link_mail(user.email, url, service.RESET_PASSWORD_HOURS, "reset")
        response.background = BackgroundTask(send_quietly, mailer_of(request), mail)
    return response


async def _account_user(
    request: Request,
) -> tuple[Staff | None, StaffSession | None, StaffUser | None, Response | None]:
    """(the full session's Staff, None, its user, None), (None, the enrol-stage session, its user, None) or the
    answer to give instead."""
    staff = await staff_page(request, roles.ACCOUNT)
    if isinstance(staff, Staff):
        return staff, None, staff.user, None
    if staff.status_code != 303:
        return None, None, None, staff
    found = await _db(lambda: _pending(request, SessionStage.enrol))
    if found is None:
        return None, None, None, staff
    return None, found[0], found[1], None


@router.get("/account", response_class=HTMLResponse)
async def account_page(request: Request) -> Response:
    staff, pending, user, answer = await _account_user(request)
    if answer is not None or user is None:
        return answer or to_login("vi")
    lang = staff.lang if staff else (_lang_or_none(request) or "vi")
    csrf = staff.session.csrf_token if staff else pending.csrf_token if pending else ""
    return await _account_view(request, lang, user, csrf, enrolling=pending is not None)


async def _account_view(
    request: Request,
    lang: str,
    user: StaffUser,
    csrf: str,
    enrolling: bool,
    error: str | None = None,
    status: int = 200,
) -> HTMLResponse:
    ctx = ctx_of(request)
    t = MESSAGES[lang]

    def secret() -> StaffUser:
        with ctx.db.write() as s:
            fresh = s.get(StaffUser, user.id)
            assert fresh is not None
            if fresh.totp_enabled_at is None:
                totp.start_enrolment(s, fresh)
            s.flush()
            s.expunge(fresh)
            return fresh

    fresh = await _db(secret)
    qr = uri = None
    if fresh.totp_enabled_at is None and fresh.totp_secret:
        uri = totp.uri(fresh.totp_secret, fresh.email)
        qr = totp.qr_svg(uri, t["staff_totp_qr"])
    response = render(
        request,
        ctx.settings,
        "account.html",
        lang,
        status_code=status,
        user=fresh,
        csrf=csrf,
        enrolling=enrolling,
        qr=qr,
        secret=" ".join(fresh.totp_secret[i : i + 4] for i in range(0, len(fresh.totp_secret), 4))
        if fresh.totp_secret and fresh.totp_enabled_at is None
        else None,
        error=error,
        notice=t["staff_totp_on"] if request.query_params.get("done") == "totp" else None,
    )
    # The page shows a secret: nothing on the way may keep a copy.
    response.headers["Cache-Control"] = "no-store"
    return response


@router.post("/account/totp", response_class=HTMLResponse)
async def account_totp_submit(request: Request) -> Response:
    posted = await _posted(request, "code")
    if isinstance(posted, HTMLResponse):
        return posted
    form, lang = posted
    ctx = ctx_of(request)
    raw = _raw_session(request)
    if forms.foreign_origin(request, ctx.settings) or raw is None:
        reason = "no_session" if raw is None else "foreign_origin"
        return _refused(request, lang, reason, back="/console/account")
    config = console_settings(ctx.settings)
    ip = client_ip(request)
    user_agent = request.headers.get("user-agent", "")
    code = form["code"].replace(" ", "")

    def confirm() -> tuple[str, StaffUser | None, str]:
        """(outcome, user, csrf or the new full session's token)."""
        with ctx.db.write() as s:
            found = service.current_session(s, raw, config.staff_idle_minutes, config.staff_session_hours)
            enrolling = found is None
            if found is None:
                found = service.pending_session(s, raw, SessionStage.enrol)
            if found is None:
                return "no_session", None, ""
            session, user = found
            if not form["csrf"] or not hmac.compare_digest(form["csrf"].encode(), session.csrf_token.encode()):
                return "bad_token", None, ""
            if not totp.confirm_enrolment(s, user, code, ip):
                return ("wrong_enrolling" if enrolling else "wrong"), user, session.csrf_token
            if not enrolling:
                return "done", user, ""
            s.delete(session)
            return "signed_in", user, service.full_sign_in(s, user, ip, user_agent, after={"second_factor": True})

    outcome, user, value = await _db(confirm)
    if outcome in {"no_session", "bad_token"} or user is None:
        return _refused(request, lang, outcome, back="/console/account")
    if outcome == "signed_in":
        return _with_session(ctx, RedirectResponse(f"/console/?lang={lang}", status_code=303), value)
    if outcome == "done":
        return RedirectResponse(f"/console/account?lang={lang}&done=totp", status_code=303)
    if outcome == "wrong":
        # The header (menu, sign-out) of a signed-in page.
        request.state.staff_user = user
        request.state.staff_csrf = value
    error = MESSAGES[lang]["staff_code_wrong"]
    return await _account_view(request, lang, user, value, outcome == "wrong_enrolling", error, 400)


@router.api_route("/{rest:path}", methods=["GET", "POST"], response_class=HTMLResponse)
def not_found(rest: str, request: Request) -> HTMLResponse:
    # Unknown console addresses answer a page, not the API's problem+json.
    lang = _lang_or_none(request) or "vi"
    back, label = "/console/", "back_home"
    return message(request, ctx_of(request).settings, lang, 404, "not_found_title", "not_found", back, label)
