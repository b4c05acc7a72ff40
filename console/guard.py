"""Who may open a console page: the signed-in staff user, their role, and the one agency a page may show them.

Every page but sign-in and set-password goes through ``staff_page`` (GET) or ``staff_form`` (POST). A page that is not
the user's to open answers the 403 page; an agency, or an object of an agency, that is not the user's answers the
same 404 page as an unknown one, so that ids and codes of other agencies cannot be probed."""

from __future__ import annotations

import hmac
from collections.abc import Callable, Collection
from dataclasses import dataclass
from typing import TypeVar

from fastapi import Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from sqlmodel import Session, col, select
from starlette.concurrency import run_in_threadpool

from console import roles as role_sets
from console.context import ConsoleContext, console_settings
from console.render import BadLanguage, language, message
from console.staff import service
from console.staff.models import Role, StaffSession, StaffUser
from payments.agency.models import Agency
from payments.core.logging import get_logger
from payments.pages import forms

log = get_logger(__name__)
T = TypeVar("T")

COOKIE = "lephi_staff"
MAX_TOKEN = 128
MAX_CODE = 40
# The sets of console.roles under the names pages have long imported from here.
ALL_ROLES = role_sets.ALL_ROLES
ADMINS = role_sets.ADMINS


@dataclass(frozen=True)
class Staff:
    """The signed-in user of a request and the language of its answer."""

    user: StaffUser
    session: StaffSession
    lang: str


class OutOfScope(Exception):
    """An agency the user may not see, or one that does not exist: both answer 404."""


MAX_FIELD = 1024


class BadForm(Exception):
    """A form that cannot have come from our page: too big, binary, or missing a field."""


def form_text(value: object) -> str:
    """A text field as our pages send it; a file, an over-long value, NUL or other control characters, or bytes that
    were not UTF-8 raise ``BadForm``."""
    if not isinstance(value, str) or len(value) > MAX_FIELD or "\ufffd" in value:
        raise BadForm
    if any(ord(c) < 32 or ord(c) == 127 for c in value):
        raise BadForm
    return value


@dataclass(frozen=True)
class FormData:
    """A console form as posted: its named text fields (a missing one is empty), its repeated fields (ticked boxes)
    and the language to answer in."""

    fields: dict[str, str]
    lists: dict[str, list[str]]
    lang: str


async def read_form(
    request: Request, names: Collection[str], lists: Collection[str] = (), max_fields: int = 20
) -> FormData | HTMLResponse:
    """The form, or the 400 page for one that is not ours: a file, too many fields, an over-long value, control
    characters, bytes that were not UTF-8, an unknown ``lang``. ``csrf`` and ``lang`` are always read."""
    try:
        form = await request.form(max_files=0, max_fields=max_fields, max_part_size=16 * 1024)
        fields = {name: form_text(form.get(name, "")) for name in (*names, "csrf", "lang")}
        many = {name: [form_text(v) for v in form.getlist(name)] for name in lists}
    except Exception:  # the form parsers' errors have no common base class
        return bad_request(request)
    try:
        lang = language(request, fields["lang"] or None)
    except BadLanguage:
        return bad_request(request)
    return FormData(fields, many, lang)


def client_ip(request: Request) -> str:
    # The trusted-proxy middleware has already put the real client address here.
    return request.client.host if request.client else ""


def ctx_of(request: Request) -> ConsoleContext:
    ctx: ConsoleContext = request.app.state.ctx
    return ctx


def session_of(request: Request) -> tuple[StaffSession, StaffUser] | None:
    raw = request.cookies.get(COOKIE)
    if not raw or len(raw) > MAX_TOKEN:
        return None
    ctx = ctx_of(request)
    config = console_settings(ctx.settings)
    with ctx.db.write() as s:
        return service.current_session(s, raw, config.staff_idle_minutes, config.staff_session_hours)


def to_login(lang: str, note: str | None = None) -> RedirectResponse:
    query = f"?lang={lang}" + (f"&note={note}" if note else "")
    return RedirectResponse(f"/console/login{query}", status_code=303)


def bad_request(request: Request, lang: str = "vi") -> HTMLResponse:
    return message(request, ctx_of(request).settings, lang, 400, "bad_request_title", "bad_request")


def forbidden(request: Request, lang: str) -> HTMLResponse:
    back, label = "/console/", "back_home"
    return message(request, ctx_of(request).settings, lang, 403, "forbidden_title", "forbidden", back, label)


def not_found(request: Request, lang: str) -> HTMLResponse:
    back, label = "/console/", "back_home"
    return message(request, ctx_of(request).settings, lang, 404, "not_found_title", "not_found", back, label)


def form_refused(request: Request, lang: str, reason: str) -> HTMLResponse:
    log.warning("console.form_refused", reason=reason, path=request.url.path)
    back, label = "/console/", "back_home"
    return message(request, ctx_of(request).settings, lang, 403, "form_refused_title", "form_refused", back, label)


async def staff_page(request: Request, roles: Collection[Role]) -> Staff | Response:
    """The signed-in user of a GET, or the answer to give instead: 400 for an unknown ``lang``, the sign-in page
    without a session, 403 for a role that may not open the page."""
    try:
        lang = language(request)
    except BadLanguage:
        return bad_request(request)
    found = await run_in_threadpool(session_of, request)
    if found is None:
        return to_login(lang)
    session, user = found
    if user.role not in roles:
        log.warning("console.role_refused", path=request.url.path, role=user.role.value, user=user.id)
        return forbidden(request, lang)
    _remember(request, user, session)
    return Staff(user, session, lang)


def _remember(request: Request, user: StaffUser, session: StaffSession) -> None:
    # For the page's header (menu, sign-out form); set only once the role check has passed.
    request.state.staff_user = user
    request.state.staff_csrf = session.csrf_token


async def staff_form(request: Request, roles: Collection[Role], lang: str, csrf: str) -> Staff | Response:
    """The signed-in user of a POST whose form carries the session's CSRF token, or the 403 page: a post without a
    session is not redirected (a form cannot be replayed through the sign-in page) but refused, like a post from
    another site, one without the right token, or one from a role that may not send it."""
    ctx = ctx_of(request)
    if forms.foreign_origin(request, ctx.settings):
        return form_refused(request, lang, "foreign_origin")
    found = await run_in_threadpool(session_of, request)
    if found is None:
        return form_refused(request, lang, "no_session")
    session, user = found
    if not csrf or not hmac.compare_digest(csrf.encode(), session.csrf_token.encode()):
        return form_refused(request, lang, "bad_token")
    if user.role not in roles:
        log.warning("console.role_refused", path=request.url.path, role=user.role.value, user=user.id)
        return forbidden(request, lang)
    _remember(request, user, session)
    return Staff(user, session, lang)


def may_see(user: StaffUser, agency_id: str) -> bool:
    return user.role == Role.province_admin or user.agency_id == agency_id


def agency_for(s: Session, user: StaffUser, code: str | None) -> Agency | None:
    """The agency a page shows: the user's own, or for a province admin the one ``code`` names (None when they named
    none). Raises OutOfScope for an unknown code or, for anyone else, a code that is not their agency's."""
    # Control characters name no agency; a NUL would even make PostgreSQL fail the query instead of finding nothing.
    if code is not None and (not code or len(code) > MAX_CODE or any(ord(c) < 32 or ord(c) == 127 for c in code)):
        raise OutOfScope
    if user.role == Role.province_admin:
        if code is None:
            return None
        agency = s.exec(select(Agency).where(Agency.code == code)).first()
        if agency is None:
            raise OutOfScope
        return agency
    own = s.get(Agency, user.agency_id) if user.agency_id else None
    if own is None or (code is not None and code != own.code):
        raise OutOfScope
    return own


@dataclass(frozen=True)
class AgencyChoice:
    """What a page about one agency shows: that agency, or (a province admin who named none) the list to choose from."""

    agency: Agency | None
    agencies: list[Agency]


def agency_or_choice(s: Session, user: StaffUser, code: str | None) -> AgencyChoice:
    """``agency_for``, with every agency (by code) when a province admin named none. Raises OutOfScope as it does."""
    agency = agency_for(s, user, code)
    if agency is not None:
        return AgencyChoice(agency, [])
    return AgencyChoice(None, list(s.exec(select(Agency).order_by(col(Agency.code))).all()))


async def scoped_read(request: Request, staff: Staff, load: Callable[[Session], T]) -> T | Response:
    """``load`` in one read transaction, off the event loop; when it meets an agency or an object that is not the
    user's (OutOfScope), the 404 page instead. The page has checked the user's role before (``staff_page``)."""

    def read() -> T:
        with ctx_of(request).db.read() as s:
            return load(s)

    try:
        return await run_in_threadpool(read)
    except OutOfScope:
        return not_found(request, staff.lang)
