"""The agencies' pages: the province's list of agencies, creating one, editing its details, deactivating and
reactivating it; an agency admin opens their own agency's page and edits its contact details.

Every change bumps ``agency.version`` (the cached copies of every process re-read it) and writes its audit row, with
the agency's details before and after, in the transaction of the change."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import urlencode

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from pydantic import ValidationError
from sqlalchemy import or_
from sqlmodel import Session, col, func, select
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile

from console.audit.service import record
from console.guard import (
    ADMINS,
    OutOfScope,
    Staff,
    agency_for,
    bad_request,
    client_ip,
    ctx_of,
    forbidden,
    form_text,
    not_found,
    read_form,
    staff_form,
    staff_page,
)
from console.render import BadLanguage, language, render
from console.staff.models import Role
from payments.agency.logo import MAX_LOGO_BYTES, accepted_type
from payments.agency.models import Agency, AgencyLogo
from payments.agency.service import AgencyIn, create_agency, touch
from payments.core.errors import Conflict
from payments.core.types import utcnow

router = APIRouter(prefix="/console", include_in_schema=False)

PROVINCE = frozenset({Role.province_admin})
PAGE_SIZE = 50
MAX_PAGE = 100_000
MAX_QUERY = 100
STATES = ("", "active", "deactivated")
# What an agency admin may change of their own agency: how payers reach it. Its identity (code, name, tax code), its
# bank account and its payment methods are the province's to change.
CONTACT_FIELDS = ("address", "phone", "email")
DETAIL_FIELDS = ("name", "tax_code", "address", "phone", "email", "bank_account", "bank_name")


class Gateways(Protocol):
    def names(self) -> list[str]: ...


def gateway_names(request: Request) -> list[str]:
    # The service's container has the gateways; the console's own context protocol does not need them elsewhere.
    gateways: Gateways | None = getattr(ctx_of(request), "gateways", None)
    return sorted(gateways.names()) if gateways is not None else []


def agency_state(agency: Agency) -> dict[str, Any]:
    """What the audit row keeps of an agency."""
    return {
        "code": agency.code,
        **{name: getattr(agency, name) for name in DETAIL_FIELDS},
        "payment_methods": list(agency.payment_methods),
        "deactivated_at": agency.deactivated_at.isoformat() if agency.deactivated_at else None,
    }


@dataclass(frozen=True)
class Posted:
    fields: dict[str, str]
    methods: list[str]
    lang: str


async def _posted(request: Request, *names: str) -> Posted | HTMLResponse:
    """The form's text fields and ticked payment methods, or the 400 page for a form that is not ours."""
    form = await read_form(request, names, lists=("method",), max_fields=60)
    if isinstance(form, HTMLResponse):
        return form
    fields, methods, lang = form.fields, form.lists["method"], form.lang
    if len(methods) > 20 or any(m not in gateway_names(request) for m in methods):
        return bad_request(request, lang)
    return Posted(fields, methods, lang)


def _faults(exc: ValidationError) -> list[str]:
    # The names of the fields at fault, in form order: the page names them in the reader's language.
    wrong = {str(e["loc"][0]) for e in exc.errors() if e["loc"]}
    return [name for name in ("code", *DETAIL_FIELDS, "payment_methods") if name in wrong]


def _in_scope(s: Session, staff: Staff, code: str) -> Agency:
    agency = agency_for(s, staff.user, code)
    if agency is None:
        raise OutOfScope
    return agency


def _agency_url(lang: str, code: str, **extra: str) -> str:
    return f"/console/agencies/{code}?" + urlencode({"lang": lang, **extra})


@dataclass(frozen=True)
class Filters:
    q: str
    state: str
    page: int


def _filters(request: Request) -> Filters | None:
    q = request.query_params.get("q", "").strip()
    state = request.query_params.get("state", "")
    page = request.query_params.get("page", "1")
    if len(q) > MAX_QUERY or any(ord(c) < 32 or ord(c) == 127 for c in q) or state not in STATES:
        return None
    if not page.isdigit() or not 1 <= int(page) <= MAX_PAGE:
        return None
    return Filters(q, state, int(page))


@router.get("/agencies", response_class=HTMLResponse)
async def agencies_page(request: Request) -> Response:
    staff = await staff_page(request, ADMINS)
    if not isinstance(staff, Staff):
        return staff
    ctx = ctx_of(request)
    if staff.user.role == Role.agency_admin:

        def own() -> str:
            with ctx.db.read() as s:
                agency = agency_for(s, staff.user, None)
                if agency is None:
                    raise OutOfScope
                return agency.code

        try:
            code = await run_in_threadpool(own)
        except OutOfScope:
            return not_found(request, staff.lang)
        return RedirectResponse(_agency_url(staff.lang, code), status_code=303)
    filters = _filters(request)
    if filters is None:
        return bad_request(request, staff.lang)

    def load() -> tuple[list[Agency], bool]:
        with ctx.db.read() as s:
            query = select(Agency)
            if filters.q:
                pattern = "%" + filters.q.lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
                query = query.where(
                    or_(
                        func.lower(Agency.code).like(pattern, escape="\\"),
                        func.lower(Agency.name).like(pattern, escape="\\"),
                    )
                )
            if filters.state == "active":
                query = query.where(col(Agency.deactivated_at).is_(None))
            elif filters.state == "deactivated":
                query = query.where(col(Agency.deactivated_at).is_not(None))
            offset = (filters.page - 1) * PAGE_SIZE
            rows = list(s.exec(query.order_by(col(Agency.code)).offset(offset).limit(PAGE_SIZE + 1)).all())
            return rows[:PAGE_SIZE], len(rows) > PAGE_SIZE

    rows, more = await run_in_threadpool(load)

    def page_url(page: int) -> str:
        params = {"lang": staff.lang, "q": filters.q, "state": filters.state, "page": str(page)}
        return "/console/agencies?" + urlencode(params)

    return render(
        request,
        ctx.settings,
        "agencies/list.html",
        staff.lang,
        rows=rows,
        more=more,
        filters=filters,
        page_url=page_url,
    )


def _form_view(
    request: Request,
    staff: Staff,
    agency: Agency | dict[str, Any] | None,
    values: dict[str, Any],
    faults: list[str] | None = None,
    conflict: bool = False,
    status: int = 200,
) -> HTMLResponse:
    return render(
        request,
        ctx_of(request).settings,
        "agencies/form.html",
        staff.lang,
        status_code=status,
        agency=agency,
        values=values,
        faults=faults or [],
        conflict=conflict,
        gateways=gateway_names(request),
        province=staff.user.role == Role.province_admin,
        csrf=staff.session.csrf_token,
    )


@router.get("/agencies/new", response_class=HTMLResponse)
async def new_agency_page(request: Request) -> Response:
    staff = await staff_page(request, PROVINCE)
    if not isinstance(staff, Staff):
        return staff
    return _form_view(request, staff, None, {"payment_methods": []})


@router.post("/agencies", response_class=HTMLResponse)
async def create_agency_submit(request: Request) -> Response:
    posted = await _posted(request, "code", *DETAIL_FIELDS)
    if isinstance(posted, HTMLResponse):
        return posted
    staff = await staff_form(request, PROVINCE, posted.lang, posted.fields["csrf"])
    if not isinstance(staff, Staff):
        return staff
    values: dict[str, Any] = {name: posted.fields[name].strip() for name in ("code", *DETAIL_FIELDS)}
    values["payment_methods"] = list(dict.fromkeys(posted.methods))
    try:
        data = AgencyIn.model_validate(values)
    except ValidationError as exc:
        return _form_view(request, staff, None, values, faults=_faults(exc), status=400)
    ctx = ctx_of(request)
    ip = client_ip(request)
    known = gateway_names(request)

    def create() -> Agency:
        with ctx.db.write() as s:
            agency = create_agency(s, data, None, known)
            record(
                s,
                agency_id=agency.id,
                actor=staff.user.id,
                ip=ip,
                action="agency.created",
                target=agency.id,
                after=agency_state(agency),
            )
            return agency

    try:
        agency = await run_in_threadpool(create)
    except Conflict:
        return _form_view(request, staff, None, values, conflict=True, status=409)
    return RedirectResponse(_agency_url(staff.lang, agency.code, done="created"), status_code=303)


@router.get("/agencies/{code}", response_class=HTMLResponse)
async def agency_page(code: str, request: Request) -> Response:
    staff = await staff_page(request, ADMINS)
    if not isinstance(staff, Staff):
        return staff
    ctx = ctx_of(request)

    def load() -> tuple[Agency, bool]:
        with ctx.db.read() as s:
            agency = _in_scope(s, staff, code)
            return agency, s.get(AgencyLogo, agency.id) is not None

    try:
        agency, has_logo = await run_in_threadpool(load)
    except OutOfScope:
        return not_found(request, staff.lang)
    return _agency_view(request, staff, agency, has_logo)


def _agency_view(
    request: Request, staff: Staff, agency: Agency, has_logo: bool, logo_fault: bool = False
) -> HTMLResponse:
    done = request.query_params.get("done", "")
    return render(
        request,
        ctx_of(request).settings,
        "agencies/view.html",
        staff.lang,
        status_code=400 if logo_fault else 200,
        agency=agency,
        has_logo=has_logo,
        logo_fault=logo_fault,
        max_logo_kb=MAX_LOGO_BYTES // 1024,
        done=done if done in ("created", "updated", "deactivated", "reactivated", "logo") else "",
        province=staff.user.role == Role.province_admin,
        csrf=staff.session.csrf_token,
    )


@router.get("/agencies/{code}/edit", response_class=HTMLResponse)
async def edit_agency_page(code: str, request: Request) -> Response:
    staff = await staff_page(request, ADMINS)
    if not isinstance(staff, Staff):
        return staff
    ctx = ctx_of(request)

    def load() -> Agency:
        with ctx.db.read() as s:
            return _in_scope(s, staff, code)

    try:
        agency = await run_in_threadpool(load)
    except OutOfScope:
        return not_found(request, staff.lang)
    return _form_view(request, staff, agency, agency_state(agency))


@router.post("/agencies/{code}/edit", response_class=HTMLResponse)
async def edit_agency_submit(code: str, request: Request) -> Response:
    posted = await _posted(request, *DETAIL_FIELDS)
    if isinstance(posted, HTMLResponse):
        return posted
    staff = await staff_form(request, ADMINS, posted.lang, posted.fields["csrf"])
    if not isinstance(staff, Staff):
        return staff
    ctx = ctx_of(request)
    ip = client_ip(request)
    province = staff.user.role == Role.province_admin
    editable = DETAIL_FIELDS if province else CONTACT_FIELDS

    class Invalid(Exception):
        # Plain values: the rolled-back transaction leaves the agency's row unreadable.
        def __init__(self, values: dict[str, Any], faults: list[str]) -> None:
            self.values, self.faults = values, faults

    def update() -> Agency:
        with ctx.db.write() as s:
            agency = _in_scope(s, staff, code)
            before = agency_state(agency)
            values = dict(before)
            values.update({name: posted.fields[name].strip() for name in editable})
            if province:
                values["payment_methods"] = list(dict.fromkeys(posted.methods))
            try:
                data = AgencyIn.model_validate({k: v for k, v in values.items() if k != "deactivated_at"})
            except ValidationError as exc:
                raise Invalid(values, _faults(exc)) from exc
            if data.tax_code != agency.tax_code:
                other = s.exec(select(Agency.id).where(Agency.tax_code == data.tax_code, Agency.id != agency.id))
                if other.first() is not None:
                    raise Conflict("tax code taken")
            for name in editable:
                setattr(agency, name, getattr(data, name))
            if province:
                agency.payment_methods = list(data.payment_methods)
            after = agency_state(agency)
            if after == before:
                return agency  # nothing changed, so nothing to record
            s.add(agency)
            s.flush()
            touch(s, agency.id)
            record(
                s,
                agency_id=agency.id,
                actor=staff.user.id,
                ip=ip,
                action="agency.updated",
                target=agency.id,
                before=before,
                after=after,
            )
            return agency

    try:
        agency = await run_in_threadpool(update)
    except OutOfScope:
        return not_found(request, staff.lang)
    except Invalid as bad:
        shown = {"code": bad.values["code"]}
        return _form_view(request, staff, shown, bad.values, faults=bad.faults, status=400)
    except Conflict:
        return await _conflict_page(request, staff, code, posted)
    return RedirectResponse(_agency_url(staff.lang, agency.code, done="updated"), status_code=303)


async def _conflict_page(request: Request, staff: Staff, code: str, posted: Posted) -> Response:
    ctx = ctx_of(request)

    def load() -> Agency:
        with ctx.db.read() as s:
            return _in_scope(s, staff, code)

    agency = await run_in_threadpool(load)
    values = agency_state(agency) | {name: posted.fields[name] for name in DETAIL_FIELDS}
    values["payment_methods"] = posted.methods
    return _form_view(request, staff, agency, values, conflict=True, status=409)


async def _set_active(request: Request, code: str, active: bool) -> Response:
    posted = await _posted(request)
    if isinstance(posted, HTMLResponse):
        return posted
    staff = await staff_form(request, PROVINCE, posted.lang, posted.fields["csrf"])
    if not isinstance(staff, Staff):
        return staff
    if staff.user.role != Role.province_admin:
        return forbidden(request, staff.lang)
    ctx = ctx_of(request)
    ip = client_ip(request)

    def change() -> Agency:
        with ctx.db.write() as s:
            agency = _in_scope(s, staff, code)
            if (agency.deactivated_at is None) == active:
                return agency  # already so: nothing changes, nothing is recorded
            before = agency_state(agency)
            agency.deactivated_at = None if active else utcnow()
            s.add(agency)
            s.flush()
            touch(s, agency.id)
            record(
                s,
                agency_id=agency.id,
                actor=staff.user.id,
                ip=ip,
                action="agency.reactivated" if active else "agency.deactivated",
                target=agency.id,
                before=before,
                after=agency_state(agency),
            )
            return agency

    try:
        agency = await run_in_threadpool(change)
    except OutOfScope:
        return not_found(request, staff.lang)
    done = "reactivated" if active else "deactivated"
    return RedirectResponse(_agency_url(staff.lang, agency.code, done=done), status_code=303)


@router.post("/agencies/{code}/deactivate", response_class=HTMLResponse)
async def deactivate_submit(code: str, request: Request) -> Response:
    return await _set_active(request, code, False)


@router.post("/agencies/{code}/reactivate", response_class=HTMLResponse)
async def reactivate_submit(code: str, request: Request) -> Response:
    return await _set_active(request, code, True)


@router.get("/agencies/{code}/logo")
async def logo_image(code: str, request: Request) -> Response:
    staff = await staff_page(request, ADMINS)
    if not isinstance(staff, Staff):
        return staff
    ctx = ctx_of(request)

    def load() -> AgencyLogo:
        with ctx.db.read() as s:
            logo = s.get(AgencyLogo, _in_scope(s, staff, code).id)
            if logo is None:
                raise OutOfScope
            return logo

    try:
        logo = await run_in_threadpool(load)
    except OutOfScope:
        return not_found(request, staff.lang)
    return Response(logo.data, media_type=logo.content_type, headers={"Cache-Control": "private, no-cache"})


@router.post("/agencies/logo", response_class=HTMLResponse)
async def logo_submit(request: Request) -> Response:
    """Set the agency's receipt logo: a PNG or JPEG of at most 200 KB that decodes; anything else is refused
    with the agency's page (400) and nothing stored."""
    try:
        form = await request.form(max_files=1, max_fields=10, max_part_size=16 * 1024)
        fields = {name: form_text(form.get(name, "")) for name in ("csrf", "lang", "agency")}
        upload = form.get("file")
    except Exception:  # the form parsers' errors have no common base class
        return bad_request(request)
    try:
        lang = language(request, fields["lang"] or None)
    except BadLanguage:
        return bad_request(request)
    staff = await staff_form(request, ADMINS, lang, fields["csrf"])
    if not isinstance(staff, Staff):
        return staff
    data = await upload.read(MAX_LOGO_BYTES + 1) if isinstance(upload, UploadFile) else b""
    kind = await run_in_threadpool(accepted_type, data)
    ctx = ctx_of(request)
    ip = client_ip(request)

    def store() -> tuple[Agency, bool]:
        with ctx.db.write() as s:
            agency = _in_scope(s, staff, fields["agency"])
            logo = s.get(AgencyLogo, agency.id)
            if kind is None:
                return agency, logo is not None
            before = {"content_type": logo.content_type, "sha256": logo.sha256} if logo else None
            if logo is None:
                logo = AgencyLogo(agency_id=agency.id, content_type=kind, data=data, sha256="")
            logo.content_type, logo.data = kind, data
            logo.sha256 = hashlib.sha256(data).hexdigest()
            logo.updated_at = utcnow()
            s.add(logo)
            s.flush()
            touch(s, agency.id)
            record(
                s,
                agency_id=agency.id,
                actor=staff.user.id,
                ip=ip,
                action="agency.logo_set",
                target=agency.id,
                before=before,
                after={"content_type": kind, "sha256": logo.sha256, "bytes": len(data)},
            )
            return agency, True

    try:
        agency, has_logo = await run_in_threadpool(store)
    except OutOfScope:
        return not_found(request, staff.lang)
    if kind is None:
        return _agency_view(request, staff, agency, has_logo, logo_fault=True)
    return RedirectResponse(_agency_url(staff.lang, agency.code, done="logo"), status_code=303)
