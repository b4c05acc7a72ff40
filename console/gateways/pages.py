"""``/console/gateways``: the agency's payment methods and its gateways' merchant settings (set or missing, never a
value), turning a method on or off for the agency, and a connection test per gateway.

Everyone but approvers sees the page; only admins change the methods or run a test (it sends a request out). A change
of methods bumps ``agency.version`` (every process's agency cache notices it) and writes its audit row in the same
transaction."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, cast
from urllib.parse import urlencode

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from sqlmodel import select
from starlette.concurrency import run_in_threadpool

from adapters.base import PaymentGateway
from adapters.registry import Factory, GatewayRegistry
from console import roles
from console.audit.service import record
from console.gateways import probe as probes
from console.gateways.settings import REQUIRED, Setting, Unreadable, read_raw, ready, settings_of
from console.guard import (
    ADMINS,
    FormData,
    OutOfScope,
    Staff,
    agency_for,
    agency_or_choice,
    bad_request,
    client_ip,
    not_found,
    read_form,
    scoped_read,
    staff_form,
    staff_page,
)
from console.i18n import MESSAGES
from console.render import render
from payments.agency.models import Agency
from payments.core.config import PaymentSettings
from payments.core.db import Database
from payments.core.logging import get_logger

log = get_logger(__name__)
router = APIRouter(prefix="/console", include_in_schema=False)

ACTIONS = ("enable", "disable")
MAX_NAME = 40


class GatewaysContext(Protocol):
    @property
    def settings(self) -> PaymentSettings: ...
    @property
    def db(self) -> Database: ...
    @property
    def gateways(self) -> GatewayRegistry: ...


def _ctx(request: Request) -> GatewaysContext:
    ctx: GatewaysContext = request.app.state.ctx
    return ctx


@dataclass(frozen=True)
class Gateway:
    name: str
    enabled: bool
    settings: list[Setting]
    ready: bool
    known: bool  # whether this page knows which settings the adapter requires (a built-in one)


@dataclass(frozen=True)
class View:
    gateways: list[Gateway]
    unknown: list[str]  # methods the agency lists that this service has no adapter for
    unreadable: bool


def _view_of(ctx: GatewaysContext, agency: Agency) -> View:
    try:
        raw = read_raw(ctx.settings.gateways_file)
        unreadable = False
    except Unreadable as exc:
        log.error("console.gateways_file_unreadable", error_type=str(exc))
        raw, unreadable = {}, True
    names = ctx.gateways.names()
    rows = []
    for name in names:
        found = settings_of(raw, name, agency.code)
        rows.append(Gateway(name, name in agency.payment_methods, found, ready(found, name), name in REQUIRED))
    unknown = [m for m in agency.payment_methods if m not in names]
    return View(rows, unknown, unreadable)


def _page(
    request: Request,
    staff: Staff,
    agency: Agency | None,
    agencies: list[Agency],
    *,
    result: tuple[str, probes.Probe] | None = None,
    error: str | None = None,
    notice: str | None = None,
    status: int = 200,
) -> HTMLResponse:
    ctx = _ctx(request)
    view = _view_of(ctx, agency) if agency is not None else View([], [], False)
    return render(
        request,
        ctx.settings,
        "gateways.html",
        staff.lang,
        status_code=status,
        agency=agency,
        agencies=agencies,
        view=view,
        may_change=staff.user.role in ADMINS,
        csrf=staff.session.csrf_token,
        result=result,
        error=error,
        notice=notice,
        timeout=int(probes.TIMEOUT_SECONDS),
    )


@router.get("/gateways", response_class=HTMLResponse)
async def gateways_page(request: Request) -> Response:
    staff = await staff_page(request, roles.GATEWAYS)
    if not isinstance(staff, Staff):
        return staff
    code = request.query_params.get("agency")
    choice = await scoped_read(request, staff, lambda s: agency_or_choice(s, staff.user, code))
    if isinstance(choice, Response):
        return choice
    done = request.query_params.get("done")
    notice = MESSAGES[staff.lang]["gw_methods_saved"] if done == "saved" else None
    return _page(request, staff, choice.agency, choice.agencies, notice=notice)


async def _posted(request: Request, *names: str) -> FormData | Response:
    return await read_form(request, (*names, "agency"))


def _ready(ctx: GatewaysContext, method: str, code: str) -> bool:
    try:
        return ready(settings_of(read_raw(ctx.settings.gateways_file), method, code), method)
    except Unreadable:
        return False


def _url(lang: str, agency: Agency, **extra: str) -> str:
    return "/console/gateways?" + urlencode({"lang": lang, "agency": agency.code, **extra})


@router.post("/gateways/methods", response_class=HTMLResponse)
async def methods_submit(request: Request) -> Response:
    posted = await _posted(request, "method", "action")
    if not isinstance(posted, FormData):
        return posted
    staff = await staff_form(request, ADMINS, posted.lang, posted.fields["csrf"])
    if not isinstance(staff, Staff):
        return staff
    ctx = _ctx(request)
    method, action = posted.fields["method"], posted.fields["action"]
    if action not in ACTIONS or method not in ctx.gateways.names():
        return bad_request(request, staff.lang)
    code = posted.fields["agency"] or None
    ip = client_ip(request)

    def change() -> tuple[Agency, str | None]:
        with ctx.db.write() as s:
            agency = agency_for(s, staff.user, code)
            if agency is None:
                raise OutOfScope
            # Two admins changing one agency's methods at once: the second works from the first's result.
            locked = s.exec(select(Agency).where(Agency.id == agency.id).with_for_update()).one()
            before = list(locked.payment_methods)
            if action == "enable":
                if method in before:
                    return locked, None
                if not _ready(ctx, method, locked.code):
                    return locked, "gw_refused_not_ready"
                after = [*before, method]
            else:
                if method not in before:
                    return locked, None
                after = [m for m in before if m != method]
                if not [m for m in after if m in ctx.gateways.names()]:
                    return locked, "gw_refused_last"
            locked.payment_methods = after
            locked.version += 1
            s.add(locked)
            record(
                s,
                agency_id=locked.id,
                actor=staff.user.id,
                ip=ip,
                action="agency.payment_methods_changed",
                target=locked.code,
                before={"payment_methods": before},
                after={"payment_methods": after},
            )
            return locked, None

    try:
        agency, refused = await run_in_threadpool(change)
    except OutOfScope:
        return not_found(request, staff.lang)
    if refused is not None:
        error = MESSAGES[staff.lang][refused].format(method=method)
        return await run_in_threadpool(lambda: _page(request, staff, agency, [], error=error, status=400))
    return RedirectResponse(_url(staff.lang, agency, done="saved"), status_code=303)


@router.post("/gateways/test", response_class=HTMLResponse)
async def test_submit(request: Request) -> Response:
    posted = await _posted(request, "gateway")
    if not isinstance(posted, FormData):
        return posted
    staff = await staff_form(request, ADMINS, posted.lang, posted.fields["csrf"])
    if not isinstance(staff, Staff):
        return staff
    ctx = _ctx(request)
    name = posted.fields["gateway"]
    if name not in ctx.gateways.names():
        return bad_request(request, staff.lang)
    code = posted.fields["agency"] or None

    def run() -> HTMLResponse:
        with ctx.db.read() as s:
            agency = agency_for(s, staff.user, code)
            if agency is None:
                raise OutOfScope
        try:
            context = ctx.gateways.context(name, agency.code)
        except Exception:  # a gateway whose settings cannot even be gathered is not configured
            result = probes.Probe("not_configured")
        else:
            result = probes.probe(name, _factory(ctx.gateways, name), context)
        log.info("console.gateway_tested", gateway=name, agency=agency.code, outcome=result.outcome)
        return _page(request, staff, agency, [], result=(name, result))

    try:
        return await run_in_threadpool(run)
    except OutOfScope:
        return not_found(request, staff.lang)


def _factory(registry: GatewayRegistry, name: str) -> Factory:
    made = registry.factory(name)
    if isinstance(made, PaymentGateway) and not isinstance(made, type):
        # A test's replacement adapter stands for every agency: use it as it is.
        return lambda _context: made
    return cast(Factory, made)
