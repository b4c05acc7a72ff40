"""The payments pages: search (``/console/payments``), its CSV and XLSX exports, and one payment's detail page.

Every staff role opens them; each sees its own agency's payments, a province admin any one agency's
(``?agency=CODE``) or all of them. Nothing here changes anything, so nothing is audited: the refund request these
pages link to is its own page."""

from __future__ import annotations

import re
from dataclasses import replace
from typing import Any
from urllib.parse import urlencode

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response
from sqlmodel import Session, col, select
from starlette.concurrency import run_in_threadpool

from console import roles
from console.guard import Staff, agency_for, bad_request, ctx_of, not_found, scoped_read, staff_page
from console.i18n import MESSAGES
from console.payments import detail as details
from console.payments import export
from console.payments.search import (
    STATUSES,
    BadFilter,
    Cursor,
    Filters,
    Found,
    all_matches,
    count_matches,
    methods_of,
    parse_cursor,
    parse_filters,
    search,
)
from console.render import personal_data_for, render
from console.staff.models import Role
from payments.agency.models import Agency
from payments.core.types import utcnow
from payments.reconcile.reports import XLSX_MEDIA_TYPE

router = APIRouter(prefix="/console", include_in_schema=False)

REFUNDERS = frozenset({Role.finance})


def _agencies(s: Session) -> list[Agency]:
    return list(s.exec(select(Agency).order_by(col(Agency.code))).all())


def _agency_query(agency: Agency | None) -> dict[str, str]:
    return {"agency": agency.code} if agency else {}


def _parsed(request: Request, staff: Staff) -> tuple[Filters, Cursor] | Response:
    try:
        return parse_filters(request.query_params), parse_cursor(request.query_params)
    except BadFilter:
        return bad_request(request, staff.lang)


@router.get("/payments", response_class=HTMLResponse)
async def payments_page(request: Request) -> Response:
    staff = await staff_page(request, roles.PAYMENTS)
    if not isinstance(staff, Staff):
        return staff
    parsed = _parsed(request, staff)
    if not isinstance(parsed, tuple):
        return parsed
    filters, cursor = parsed
    ctx = ctx_of(request)
    code = request.query_params.get("agency")

    def load(s: Session) -> tuple[Agency | None, Found, list[str], list[Agency]]:
        agency = agency_for(s, staff.user, code)
        agency_id = agency.id if agency else None
        found = search(s, filters, agency_id, cursor)
        province = staff.user.role == Role.province_admin
        return agency, found, methods_of(s, agency_id), _agencies(s) if province else []

    loaded = await scoped_read(request, staff, load)
    if isinstance(loaded, Response):
        return loaded
    agency, found, methods, agencies = loaded
    base: dict[str, str] = {"lang": staff.lang, **_agency_query(agency), **filters.query()}

    def url(path: str, **extra: str) -> str:
        return f"/console/payments{path}?" + urlencode({**base, **extra})

    if filters.method and filters.method not in methods:
        methods = sorted([*methods, filters.method])
    return render(
        request,
        ctx.settings,
        "payments/list.html",
        staff.lang,
        agency=agency,
        found=found,
        filters=filters,
        methods=methods,
        statuses=STATUSES,
        agencies=agencies,
        province=staff.user.role == Role.province_admin,
        url=url,
        agency_url=lambda a: "/console/payments?" + urlencode({"lang": staff.lang, "agency": a.code}),
    )


def _statuses_vi() -> dict[str, str]:
    texts = MESSAGES["vi"]
    return {s: texts[f"payments_status_{s}"] for s in STATUSES}


async def _export(request: Request, kind: str) -> Response:
    staff = await staff_page(request, roles.PAYMENTS)
    if not isinstance(staff, Staff):
        return staff
    parsed = _parsed(request, staff)
    if not isinstance(parsed, tuple):
        return parsed
    filters, _ = parsed
    ctx = ctx_of(request)
    code = request.query_params.get("agency")

    def load(s: Session) -> tuple[Agency | None, list[Any] | None]:
        agency = agency_for(s, staff.user, code)
        agency_id = agency.id if agency else None
        # Counted first, so that an over-large export reads no rows at all.
        if count_matches(s, filters, agency_id) > export.MAX_ROWS:
            return agency, None
        return agency, all_matches(s, filters, agency_id, export.MAX_ROWS)

    loaded = await scoped_read(request, staff, load)
    if isinstance(loaded, Response):
        return loaded
    agency, rows = loaded
    if rows is not None and staff.user.role not in roles.PERSONAL_DATA:
        shown = personal_data_for(staff.user.role)
        rows = [replace(r, payer_email=shown(r.payer_email), payer_phone=shown(r.payer_phone)) for r in rows]
    if rows is None:
        t = MESSAGES[staff.lang]
        return render(
            request,
            ctx.settings,
            "message.html",
            staff.lang,
            status_code=400,
            title=t["payments_too_many_title"],
            message=t["payments_too_many"],
            back="/console/payments?" + urlencode({"lang": staff.lang, **_agency_query(agency), **filters.query()}),
            back_label=t["payments_back"],
        )
    now = utcnow()
    stamp = now.strftime("%Y%m%d-%H%M%S")
    # Only letters, digits and dashes reach the header, whatever an agency code holds.
    owner_code = re.sub(r"[^A-Za-z0-9_-]", "-", agency.code) if agency else "tat-ca"
    name = f"thanh-toan-{owner_code}-{stamp}"
    statuses = _statuses_vi()
    if kind == "csv":
        body = await run_in_threadpool(export.to_csv, rows, statuses)
        media = "text/csv; charset=utf-8"
    else:
        owner = f"{agency.code} · {agency.name}" if agency else "Tất cả cơ quan"
        title = export.Title(owner, filters, now, statuses)
        body = await run_in_threadpool(export.to_xlsx, rows, title)
        media = XLSX_MEDIA_TYPE
    headers = {"Content-Disposition": f'attachment; filename="{name}.{kind}"', "Cache-Control": "no-store"}
    return Response(body, media_type=media, headers=headers)


@router.get("/payments/export.csv")
async def export_csv(request: Request) -> Response:
    return await _export(request, "csv")


@router.get("/payments/export.xlsx")
async def export_xlsx(request: Request) -> Response:
    return await _export(request, "xlsx")


@router.get("/payments/{payment_id}", response_class=HTMLResponse)
async def payment_page(payment_id: str, request: Request) -> Response:
    staff = await staff_page(request, roles.PAYMENTS)
    if not isinstance(staff, Staff):
        return staff
    ctx = ctx_of(request)

    def load() -> details.Detail:
        # A province admin sees any agency's payment; everyone else only their own agency's, in the query itself.
        agency_id = None if staff.user.role == Role.province_admin else (staff.user.agency_id or "")
        with ctx.db.read() as s:
            return details.load(s, payment_id, agency_id)

    try:
        view = await run_in_threadpool(load)
    except details.NoSuchPayment:
        return not_found(request, staff.lang)
    refund_url = None
    if staff.user.role in REFUNDERS and view.refundable:
        refund_url = "/console/refunds/new?" + urlencode({"payment": view.payment.id, "lang": staff.lang})
    province = staff.user.role == Role.province_admin
    back = {"lang": staff.lang, **({"agency": view.agency.code} if province else {})}
    return render(
        request,
        ctx.settings,
        "payments/detail.html",
        staff.lang,
        view=view,
        refund_url=refund_url,
        back_url="/console/payments?" + urlencode(back),
        event_note=details.shown_detail,
        province=province,
    )
