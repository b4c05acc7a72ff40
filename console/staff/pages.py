"""The staff page (``/console/staff``): the accounts of an agency, or for a province admin those of any agency and
the province's own, and what an administrator does to them (console/staff/manage.py). Links are mailed; a change
and its audit row are committed together or not at all."""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlencode

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from sqlmodel import Session, col, select
from starlette.concurrency import run_in_threadpool

from console import roles
from console.guard import (
    ADMINS,
    OutOfScope,
    Staff,
    agency_for,
    bad_request,
    client_ip,
    ctx_of,
    not_found,
    read_form,
    staff_form,
    staff_page,
)
from console.i18n import MESSAGES
from console.mail import link_mail, mailer_of, send_quietly
from console.render import render
from console.staff import manage
from console.staff.manage import NotYours
from console.staff.models import StaffUser
from console.staff.service import (
    RESET_PASSWORD_HOURS,
    SET_PASSWORD_HOURS,
    StaffError,
    set_password_url,
)
from payments.agency.models import Agency

router = APIRouter(prefix="/console", include_in_schema=False)

PAGE_SIZE = 50
MAX_PAGE = 100_000
PROVINCE = "province"


async def _posted(request: Request, *names: str) -> tuple[dict[str, str], str] | HTMLResponse:
    form = await read_form(request, names)
    return form if isinstance(form, HTMLResponse) else (form.fields, form.lang)


def _scope(s: Session, admin: StaffUser, code: str | None) -> Agency | None:
    """The agency whose accounts are shown, None for the province's own (province admins only)."""
    if code == PROVINCE:
        if admin.agency_id is not None:
            raise OutOfScope
        return None
    agency = agency_for(s, admin, code)
    if agency is None and admin.agency_id is not None:
        raise OutOfScope
    return agency


def staff_url(lang: str, agency: Agency | None, **extra: str) -> str:
    return "/console/staff?" + urlencode({"lang": lang, "agency": agency.code if agency else PROVINCE, **extra})


@dataclass(frozen=True)
class ListView:
    agency: Agency | None
    users: list[StaffUser]
    more: bool
    agencies: list[Agency]
    totp_required: bool


@router.get("/staff", response_class=HTMLResponse)
async def staff_list(request: Request) -> Response:
    staff = await staff_page(request, roles.STAFF)
    if not isinstance(staff, Staff):
        return staff
    page_text = request.query_params.get("page", "1")
    if not page_text.isascii() or not page_text.isdigit() or not 1 <= int(page_text) <= MAX_PAGE:
        return bad_request(request, staff.lang)
    page = int(page_text)
    ctx = ctx_of(request)

    def load() -> ListView:
        with ctx.db.read() as s:
            agency = _scope(s, staff.user, request.query_params.get("agency"))
            query = select(StaffUser).where(StaffUser.agency_id == (agency.id if agency else None))
            query = query.order_by(col(StaffUser.created_at).desc(), col(StaffUser.id))
            users = list(s.exec(query.offset((page - 1) * PAGE_SIZE).limit(PAGE_SIZE + 1)).all())
            agencies = list(s.exec(select(Agency).order_by(col(Agency.code))).all()) if agency is None else []
            required = manage.policy(s, agency).totp_required
            return ListView(agency, users[:PAGE_SIZE], len(users) > PAGE_SIZE, agencies, required)

    try:
        view = await run_in_threadpool(load)
    except OutOfScope:
        return not_found(request, staff.lang)
    return _list_view(request, staff, view, page)


def _list_view(
    request: Request,
    staff: Staff,
    view: ListView,
    page: int,
    error: str | None = None,
    email: str = "",
    status: int = 200,
) -> HTMLResponse:
    t = MESSAGES[staff.lang]
    done = request.query_params.get("done", "")
    return render(
        request,
        ctx_of(request).settings,
        "staff.html",
        staff.lang,
        status_code=status,
        view=view,
        page=page,
        roles=manage.roles_for(view.agency),
        csrf=staff.session.csrf_token,
        province=staff.user.agency_id is None,
        scope_code=view.agency.code if view.agency else PROVINCE,
        staff_url=staff_url,
        error=error,
        email=email,
        notice=t.get(f"staff_done_{done}") if done.isidentifier() else None,
    )


@router.post("/staff", response_class=HTMLResponse)
async def staff_create(request: Request) -> Response:
    posted = await _posted(request, "email", "role", "agency")
    if isinstance(posted, HTMLResponse):
        return posted
    fields, lang = posted
    staff = await staff_form(request, ADMINS, lang, fields["csrf"])
    if not isinstance(staff, Staff):
        return staff
    ctx = ctx_of(request)
    ip = client_ip(request)

    def create() -> tuple[ListView, StaffUser | None, str]:
        with ctx.db.write() as s:
            agency = _scope(s, staff.user, fields["agency"] or None)
            try:
                user, raw = manage.create(s, staff.user, agency, fields["email"], fields["role"], ip)
                return ListView(agency, [], False, [], False), user, raw
            except StaffError as exc:
                # Refused before anything was written: the transaction commits nothing.
                message = str(exc)
        with ctx.db.read() as s:
            query = select(StaffUser).where(StaffUser.agency_id == (agency.id if agency else None))
            users = list(s.exec(query.order_by(col(StaffUser.created_at).desc()).limit(PAGE_SIZE)).all())
            view = ListView(agency, users, False, [], manage.policy(s, agency).totp_required)
        return view, None, message

    try:
        view, user, value = await run_in_threadpool(create)
    except (OutOfScope, NotYours):
        return not_found(request, staff.lang)
    t = MESSAGES[staff.lang]
    if user is None:
        error = t["staff_email_taken"] if "already exists" in value else t["staff_create_invalid"]
        return _list_view(request, staff, view, 1, error=error, email=fields["email"][:254], status=400)
    url = set_password_url(ctx.settings.public_url, value)
    sent = await run_in_threadpool(
        send_quietly, mailer_of(request), link_mail(user.email, url, SET_PASSWORD_HOURS, "set")
    )
    return RedirectResponse(staff_url(staff.lang, view.agency, done="created" if sent else "mail_failed"), 303)


def _target(s: Session, admin: StaffUser, user_id: str) -> tuple[StaffUser, Agency | None]:
    user = manage.target_of(s, admin, user_id)
    agency = s.get(Agency, user.agency_id) if user.agency_id else None
    return user, agency


@router.get("/staff/{user_id}", response_class=HTMLResponse)
async def staff_user_page(user_id: str, request: Request) -> Response:
    staff = await staff_page(request, ADMINS)
    if not isinstance(staff, Staff):
        return staff
    ctx = ctx_of(request)

    def load() -> tuple[StaffUser, Agency | None]:
        with ctx.db.read() as s:
            return _target(s, staff.user, user_id)

    try:
        user, agency = await run_in_threadpool(load)
    except NotYours:
        return not_found(request, staff.lang)
    return _user_view(request, staff, user, agency)


def _user_view(
    request: Request, staff: Staff, user: StaffUser, agency: Agency | None, error: str | None = None, status: int = 200
) -> HTMLResponse:
    t = MESSAGES[staff.lang]
    done = request.query_params.get("done", "")
    return render(
        request,
        ctx_of(request).settings,
        "staff_user.html",
        staff.lang,
        status_code=status,
        target=user,
        agency=agency,
        roles=manage.roles_for(agency),
        own=user.id == staff.user.id,
        csrf=staff.session.csrf_token,
        staff_url=staff_url,
        error=error,
        notice=t.get(f"staff_done_{done}") if done.isidentifier() else None,
    )


ACTIONS = {"role", "deactivate", "reactivate", "send_link", "reset_totp"}


@router.post("/staff/{user_id}", response_class=HTMLResponse)
async def staff_user_action(user_id: str, request: Request) -> Response:
    posted = await _posted(request, "action", "role")
    if isinstance(posted, HTMLResponse):
        return posted
    fields, lang = posted
    staff = await staff_form(request, ADMINS, lang, fields["csrf"])
    if not isinstance(staff, Staff):
        return staff
    action = fields["action"]
    if action not in ACTIONS:
        return bad_request(request, staff.lang)
    ctx = ctx_of(request)
    ip = client_ip(request)

    def apply() -> tuple[StaffUser, Agency | None, str | None, str | None]:
        """The account, its agency, the new link's secret (send_link) and the refusal's text key."""
        with ctx.db.write() as s:
            user, agency = _target(s, staff.user, user_id)
            raw = None
            try:
                if action == "role":
                    manage.change_role(s, staff.user, user, fields["role"], ip)
                elif action in {"deactivate", "reactivate"}:
                    manage.set_active(s, staff.user, user, action == "reactivate", ip)
                elif action == "send_link":
                    raw = manage.send_link(s, staff.user, user, ip)
                else:
                    manage.reset_totp(s, staff.user, user, ip)
            except StaffError as exc:
                return user, agency, None, str(exc)
            s.flush()
            s.expunge(user)
            return user, agency, raw, None

    try:
        user, agency, raw, refusal = await run_in_threadpool(apply)
    except NotYours:
        return not_found(request, staff.lang)
    t = MESSAGES[staff.lang]
    if refusal is not None:
        return _user_view(request, staff, user, agency, error=t.get(refusal, t["staff_create_invalid"]), status=400)
    done = action
    if raw is not None:
        url = set_password_url(ctx.settings.public_url, raw)
        # A person who never set a password gets the set-password wording; either link is valid 24 hours.
        kind = "set" if user.password_hash is None else "reset"
        mail = link_mail(user.email, url, RESET_PASSWORD_HOURS, kind)
        if not await run_in_threadpool(send_quietly, mailer_of(request), mail):
            done = "mail_failed"
    query = urlencode({"lang": staff.lang, "done": done})
    return RedirectResponse(f"/console/staff/{user.id}?{query}", status_code=303)


@router.post("/staff-policy", response_class=HTMLResponse)
async def staff_policy(request: Request) -> Response:
    posted = await _posted(request, "agency", "totp_required")
    if isinstance(posted, HTMLResponse):
        return posted
    fields, lang = posted
    staff = await staff_form(request, ADMINS, lang, fields["csrf"])
    if not isinstance(staff, Staff):
        return staff
    if fields["totp_required"] not in {"yes", "no"}:
        return bad_request(request, staff.lang)
    ctx = ctx_of(request)
    ip = client_ip(request)

    def apply() -> Agency | None:
        with ctx.db.write() as s:
            agency = _scope(s, staff.user, fields["agency"] or None)
            manage.set_totp_required(s, staff.user, agency, fields["totp_required"] == "yes", ip)
            return agency

    try:
        agency = await run_in_threadpool(apply)
    except (OutOfScope, NotYours):
        return not_found(request, staff.lang)
    return RedirectResponse(staff_url(staff.lang, agency, done="policy"), status_code=303)
