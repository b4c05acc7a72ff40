"""The administrators' pages: the agency's API keys (list, create, revoke) and its audit log.

An agency admin sees their own agency only; a province admin any agency (``?agency=CODE``) and, in the audit log,
the province's own chain. Each key creation and revocation writes its audit row in the transaction of the change, so
that neither exists without the other."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta, timezone
from typing import Any
from urllib.parse import urlencode

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from sqlmodel import Session, col, func, select
from starlette.concurrency import run_in_threadpool

from console import roles
from console.audit.models import PROVINCE, AuditLog
from console.audit.service import Verified, record, scope_of, verify
from console.guard import (
    ADMINS,
    MAX_CODE,
    AgencyChoice,
    OutOfScope,
    Staff,
    agency_for,
    agency_or_choice,
    bad_request,
    client_ip,
    ctx_of,
    forbidden,
    may_see,
    not_found,
    read_form,
    scoped_read,
    staff_form,
    staff_page,
)
from console.i18n import MESSAGES
from console.render import render
from console.staff.models import Role, StaffUser
from payments.agency.models import Agency
from payments.auth.models import ApiKey, Scope
from payments.auth.service import create_key, revoke_key

router = APIRouter(prefix="/console", include_in_schema=False)

MAX_NAME = 200
MAX_ID = 40
PAGE_SIZE = 50
MAX_PAGE = 1_000_000
MIN_YEAR, MAX_YEAR = 1970, 9998
VIETNAM = timezone(timedelta(hours=7))
SCOPES = [s.value for s in Scope]
# Reads every agency's aggregate figures: only a province admin may hand it to a client system.
PROVINCE_SCOPES = frozenset({Scope.province_read.value})


def scopes_for(user: StaffUser) -> list[str]:
    return [s for s in SCOPES if user.role == Role.province_admin or s not in PROVINCE_SCOPES]


@dataclass(frozen=True)
class Posted:
    fields: dict[str, str]
    scopes: list[str]
    lang: str


async def _posted(request: Request, *names: str) -> Posted | HTMLResponse:
    """The form's text fields and checked scopes, or the 400 page for a form that is not ours (a file, an over-long
    value, control characters, bytes that were not UTF-8, an unknown ``lang`` or scope)."""
    form = await read_form(request, names, lists=("scope",), max_fields=40)
    if isinstance(form, HTMLResponse):
        return form
    fields, scopes, lang = form.fields, form.lists["scope"], form.lang
    if any(s not in SCOPES for s in scopes):
        return bad_request(request, lang)
    return Posted(fields, scopes, lang)


def _agency_param(request: Request) -> str | None:
    return request.query_params.get("agency")


def _keys_url(lang: str, agency: Agency, **extra: str) -> str:
    return "/console/keys?" + urlencode({"lang": lang, "agency": agency.code, **extra})


def _key_state(key: ApiKey) -> dict[str, Any]:
    # What the audit row keeps of a key: never its hash, and the secret is not known here after creation anyway.
    return {
        "name": key.name,
        "prefix": key.prefix,
        "scopes": list(key.scopes),
        "revoked_at": key.revoked_at.isoformat() if key.revoked_at else None,
    }


def _agency_keys(s: Session, agency: Agency) -> list[ApiKey]:
    query = select(ApiKey).where(ApiKey.agency_id == agency.id).order_by(col(ApiKey.created_at).desc())
    return list(s.exec(query).all())


@router.get("/keys", response_class=HTMLResponse)
async def keys_page(request: Request) -> Response:
    staff = await staff_page(request, roles.KEYS)
    if not isinstance(staff, Staff):
        return staff
    code = _agency_param(request)

    def load(s: Session) -> tuple[AgencyChoice, list[ApiKey]]:
        choice = agency_or_choice(s, staff.user, code)
        return choice, _agency_keys(s, choice.agency) if choice.agency else []

    found = await scoped_read(request, staff, load)
    if isinstance(found, Response):
        return found
    choice, keys = found
    notice = MESSAGES[staff.lang]["key_revoked_done"] if request.query_params.get("done") == "revoked" else None
    return _keys_view(request, staff, choice.agency, keys, choice.agencies, notice=notice)


def _keys_view(
    request: Request,
    staff: Staff,
    agency: Agency | None,
    keys: list[ApiKey],
    agencies: list[Agency],
    error: str | None = None,
    notice: str | None = None,
    name: str = "",
    status: int = 200,
) -> HTMLResponse:
    ctx = ctx_of(request)
    return render(
        request,
        ctx.settings,
        "keys.html",
        staff.lang,
        status_code=status,
        agency=agency,
        keys=keys,
        agencies=agencies,
        scopes=scopes_for(staff.user),
        csrf=staff.session.csrf_token,
        error=error,
        notice=notice,
        name=name,
    )


@router.post("/keys", response_class=HTMLResponse)
async def create_key_submit(request: Request) -> Response:
    posted = await _posted(request, "name", "agency")
    if isinstance(posted, HTMLResponse):
        return posted
    staff = await staff_form(request, ADMINS, posted.lang, posted.fields["csrf"])
    if not isinstance(staff, Staff):
        return staff
    if any(scope not in scopes_for(staff.user) for scope in posted.scopes):
        return forbidden(request, staff.lang)
    ctx = ctx_of(request)
    name = posted.fields["name"].strip()
    code = posted.fields["agency"] or None
    t = MESSAGES[staff.lang]
    ip = client_ip(request)

    def create() -> tuple[Agency, ApiKey | None, str, list[ApiKey]]:
        with ctx.db.write() as s:
            agency = agency_for(s, staff.user, code)
            if agency is None:
                raise OutOfScope
            if not name or len(name) > MAX_NAME or not posted.scopes:
                return agency, None, "", _agency_keys(s, agency)
            key, raw = create_key(s, agency.code, name, posted.scopes)
            record(
                s,
                agency_id=agency.id,
                actor=staff.user.id,
                ip=ip,
                action="api_key.created",
                target=key.id,
                after=_key_state(key),
            )
            return agency, key, raw, []

    try:
        agency, key, raw, keys = await run_in_threadpool(create)
    except OutOfScope:
        return not_found(request, staff.lang)
    if key is None:
        error = t["key_name_needed"] if not name or len(name) > MAX_NAME else t["key_scopes_needed"]
        return _keys_view(request, staff, agency, keys, [], error=error, name=name[:MAX_NAME], status=400)
    # The one page that ever shows the key: nothing on the way may keep a copy.
    ctx.api_keys.forget()
    response = render(
        request, ctx.settings, "key_created.html", staff.lang, key=key, raw=raw, agency=agency, back=_keys_url
    )
    response.headers["Cache-Control"] = "no-store"
    return response


def _key_in_scope(s: Session, user: StaffUser, key_id: str) -> tuple[ApiKey, Agency]:
    if not key_id or len(key_id) > MAX_ID:
        raise OutOfScope
    key = s.get(ApiKey, key_id)
    if key is None or not may_see(user, key.agency_id):
        raise OutOfScope
    agency = s.get(Agency, key.agency_id)
    if agency is None:
        raise OutOfScope
    return key, agency


@router.get("/keys/{key_id}/revoke", response_class=HTMLResponse)
async def revoke_page(key_id: str, request: Request) -> Response:
    staff = await staff_page(request, ADMINS)
    if not isinstance(staff, Staff):
        return staff
    found = await scoped_read(request, staff, lambda s: _key_in_scope(s, staff.user, key_id))
    if isinstance(found, Response):
        return found
    key, agency = found
    ctx = ctx_of(request)
    return render(
        request,
        ctx.settings,
        "key_revoke.html",
        staff.lang,
        key=key,
        agency=agency,
        csrf=staff.session.csrf_token,
        back=_keys_url,
    )


@router.post("/keys/{key_id}/revoke", response_class=HTMLResponse)
async def revoke_submit(key_id: str, request: Request) -> Response:
    posted = await _posted(request)
    if isinstance(posted, HTMLResponse):
        return posted
    staff = await staff_form(request, ADMINS, posted.lang, posted.fields["csrf"])
    if not isinstance(staff, Staff):
        return staff
    ctx = ctx_of(request)
    ip = client_ip(request)

    def revoke() -> Agency:
        with ctx.db.write() as s:
            key, agency = _key_in_scope(s, staff.user, key_id)
            if key.revoked_at is not None:
                return agency  # revoking twice changes nothing, so it records nothing
            before = _key_state(key)
            revoke_key(s, key.id)
            record(
                s,
                agency_id=agency.id,
                actor=staff.user.id,
                ip=ip,
                action="api_key.revoked",
                target=key.id,
                before=before,
                after=_key_state(key),
            )
            return agency

    try:
        agency = await run_in_threadpool(revoke)
    except OutOfScope:
        return not_found(request, staff.lang)
    # This process stops accepting the key at once; the others within the cache's check interval.
    ctx.api_keys.forget()
    return RedirectResponse(_keys_url(staff.lang, agency, done="revoked"), status_code=303)


@dataclass(frozen=True)
class Filters:
    action: str
    actor: str
    since: date | None
    until: date | None
    page: int


class BadFilter(Exception):
    pass


def _filters(request: Request) -> Filters:
    q = request.query_params

    def text(name: str, limit: int) -> str:
        value = q.get(name, "").strip()
        if len(value) > limit or any(ord(c) < 32 or ord(c) == 127 for c in value):
            raise BadFilter
        return value

    def day(name: str) -> date | None:
        value = text(name, 10)
        if not value:
            return None
        try:
            day = date.fromisoformat(value)
        except ValueError as exc:
            raise BadFilter from exc
        # Days at the ends of the calendar would overflow once moved to UTC or to the day after.
        if not MIN_YEAR <= day.year <= MAX_YEAR:
            raise BadFilter
        return day

    page_text = text("page", 7) or "1"
    if not page_text.isdigit() or not 1 <= int(page_text) <= MAX_PAGE:
        raise BadFilter
    return Filters(text("action", 60), text("actor", 254), day("from"), day("to"), int(page_text))


def _day_start(day: date) -> datetime:
    # Staff think in Vietnam's calendar days.
    return datetime(day.year, day.month, day.day, tzinfo=VIETNAM).astimezone(UTC)


@dataclass(frozen=True)
class AuditView:
    agency: Agency | None
    rows: list[AuditLog]
    more: bool
    verified: Verified
    actors: dict[str, str]
    agencies: list[Agency]


@router.get("/audit", response_class=HTMLResponse)
async def audit_page(request: Request) -> Response:
    staff = await staff_page(request, roles.AUDIT)
    if not isinstance(staff, Staff):
        return staff
    try:
        filters = _filters(request)
    except BadFilter:
        return bad_request(request, staff.lang)
    code = _agency_param(request)
    if code == PROVINCE:
        code = None  # the province's own chain: what a province admin sees without a code

    def load(s: Session) -> AuditView:
        agency = agency_for(s, staff.user, code)
        agency_id = agency.id if agency else None
        query = select(AuditLog).where(AuditLog.scope == scope_of(agency_id))
        if filters.action:
            query = query.where(AuditLog.action == filters.action)
        if filters.actor:
            actor = filters.actor
            if "@" in actor:
                found = s.exec(select(StaffUser.id).where(func.lower(StaffUser.email) == actor.lower())).first()
                actor = found or actor
            query = query.where(AuditLog.actor == actor[:MAX_CODE])
        if filters.since:
            query = query.where(col(AuditLog.at) >= _day_start(filters.since))
        if filters.until:
            query = query.where(col(AuditLog.at) < _day_start(filters.until + timedelta(days=1)))
        offset = (filters.page - 1) * PAGE_SIZE
        rows = list(s.exec(query.order_by(col(AuditLog.seq).desc()).offset(offset).limit(PAGE_SIZE + 1)).all())
        ids = {r.actor for r in rows}
        actors = dict(s.exec(select(StaffUser.id, StaffUser.email).where(col(StaffUser.id).in_(ids))).all())
        verified = verify(s, agency_id, only_scope=True)
        agencies = list(s.exec(select(Agency).order_by(col(Agency.code))).all()) if agency is None else []
        return AuditView(agency, rows[:PAGE_SIZE], len(rows) > PAGE_SIZE, verified, actors, agencies)

    view = await scoped_read(request, staff, load)
    if isinstance(view, Response):
        return view

    def page_url(page: int) -> str:
        params = {k: v for k, v in request.query_params.items() if k != "page"}
        return "/console/audit?" + urlencode({**params, "page": str(page)})

    return render(
        request,
        ctx_of(request).settings,
        "audit.html",
        staff.lang,
        view=view,
        filters=filters,
        province=staff.user.agency_id is None,
        page_url=page_url,
    )
