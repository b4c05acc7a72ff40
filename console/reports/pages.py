"""The report pages: the daily close and the period report of an agency (a province admin: of every agency, or of
one), with their charts, XLSX and PDF; and the province's monthly page.

Every filter is a GET parameter, checked before anything is read: a value that is not a date, a month, a known grain,
or a period longer than ``MAX_DAYS`` answers the 400 page; an agency that is not the user's answers 404."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any
from urllib.parse import urlencode

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response
from starlette.concurrency import run_in_threadpool

from console.guard import ALL_ROLES, OutOfScope, Staff, agency_for, bad_request, ctx_of, not_found, staff_page
from console.i18n import MESSAGES
from console.render import render
from console.reports import charts, export
from console.reports.figures import (
    MAX_DAYS,
    Grain,
    ProvinceMonth,
    Report,
    all_agencies,
    month_bounds,
    province_month,
    repeatable,
    report,
    today,
)
from console.staff.models import Role
from invoices.render import FONTS_DIR
from payments.agency.models import Agency
from payments.core.security import nonce
from payments.pages import fmt

router = APIRouter(prefix="/console", include_in_schema=False)

PROVINCE_ONLY = frozenset({Role.province_admin})
MIN_YEAR, MAX_YEAR = 2000, 2200
PDF_FONTS = {
    "regular": (FONTS_DIR / "DejaVuSans.ttf").as_uri(),
    "bold": (FONTS_DIR / "DejaVuSans-Bold.ttf").as_uri(),
}


class BadQuery(Exception):
    """A filter that is not one our pages send."""


@dataclass(frozen=True)
class Query:
    agency: str | None
    start: date
    end: date
    grain: Grain


def _text(request: Request, name: str, limit: int) -> str | None:
    values = request.query_params.getlist(name)
    if not values:
        return None
    if len(values) > 1:
        raise BadQuery
    value = values[0]
    if len(value) > limit or any(ord(c) < 32 or ord(c) == 127 for c in value):
        raise BadQuery
    return value.strip()


def _day(value: str | None, default: date) -> date:
    if not value:
        return default
    if len(value) != 10:
        raise BadQuery
    try:
        day = date.fromisoformat(value)
    except ValueError as exc:
        raise BadQuery from exc
    if not MIN_YEAR <= day.year <= MAX_YEAR:
        raise BadQuery
    return day


def month_of(value: str | None, default: date) -> date:
    """The first day of the month ``YYYY-MM`` names; BadQuery for anything else."""
    if not value:
        return default.replace(day=1)
    if len(value) != 7 or value[4] != "-" or not (value[:4] + value[5:]).isdigit():
        raise BadQuery
    year, month = int(value[:4]), int(value[5:])
    if not MIN_YEAR <= year <= MAX_YEAR or not 1 <= month <= 12:
        raise BadQuery
    return date(year, month, 1)


def parse(request: Request) -> Query:
    code = _text(request, "agency", 40)
    since, until = _text(request, "from", 10), _text(request, "to", 10)
    # One end alone is one day: the daily close of that day.
    start = _day(since, _day(until, today()))
    end = _day(until, start)
    grain_text = _text(request, "by", 10) or "day"
    if grain_text not in Grain.__members__:
        raise BadQuery
    if end < start or (end - start).days >= MAX_DAYS:
        raise BadQuery
    return Query(code or None, start, end, Grain(grain_text))


def _load(request: Request, staff: Staff, query: Query) -> tuple[Report, Agency | None, list[Agency]]:
    ctx = ctx_of(request)
    with ctx.db.read() as s:
        repeatable(s)
        agency = agency_for(s, staff.user, query.agency)
        everyone = all_agencies(s) if staff.user.role == Role.province_admin else []
        covered = [agency] if agency is not None else everyone
        return report(s, covered, query.start, query.end, query.grain), agency, everyone


def _charts(report_: Report, lang: str, page_nonce: str) -> dict[str, str]:
    t = MESSAGES[lang]
    drawn = charts.series(report_)
    trend = charts.trend(
        t["reports_trend_chart"].format(end=fmt.day(report_.end, lang)),
        [d.strftime("%d/%m") for d in drawn.days],
        [(t["reports_gross"], drawn.gross), (t["reports_net"], drawn.net)],
        page_nonce,
    )
    methods = charts.breakdown(t["reports_method_chart"], drawn.methods, page_nonce, t["reports_none"])
    return {"trend": trend, "methods": methods}


def _context(
    request: Request, staff: Staff, query: Query, loaded: tuple[Report, Agency | None, list[Agency]]
) -> dict[str, Any]:
    report_, agency, everyone = loaded
    params = {"lang": staff.lang, "from": query.start.isoformat(), "to": query.end.isoformat(), "by": query.grain.value}
    if agency is not None and staff.user.role == Role.province_admin:
        params["agency"] = agency.code
    return {
        "report": report_,
        "agency": agency,
        "agencies": everyone,
        "query": query,
        "province": staff.user.role == Role.province_admin,
        "export_query": urlencode(params),
        "today": today(),
        "generated": datetime.now(UTC),
        "max_days": MAX_DAYS,
    }


@router.get("/reports", response_class=HTMLResponse)
async def reports_page(request: Request) -> Response:
    staff = await staff_page(request, ALL_ROLES)
    if not isinstance(staff, Staff):
        return staff
    try:
        query = parse(request)
    except BadQuery:
        return bad_request(request, staff.lang)
    try:
        loaded = await run_in_threadpool(_load, request, staff, query)
    except OutOfScope:
        return not_found(request, staff.lang)
    context = _context(request, staff, query, loaded)
    context["charts"] = _charts(loaded[0], staff.lang, nonce(request))
    return render(request, ctx_of(request).settings, "reports/report.html", staff.lang, **context)


def _agency_label(agency: Agency | None) -> str:
    return f"{agency.code} · {agency.name}" if agency is not None else "Tất cả cơ quan trong tỉnh"


@router.get("/reports/export.xlsx")
async def reports_xlsx(request: Request) -> Response:
    staff = await staff_page(request, ALL_ROLES)
    if not isinstance(staff, Staff):
        return staff
    try:
        query = parse(request)
    except BadQuery:
        return bad_request(request, staff.lang)
    try:
        report_, agency, _ = await run_in_threadpool(_load, request, staff, query)
    except OutOfScope:
        return not_found(request, staff.lang)
    generated = datetime.now(UTC).astimezone(fmt.VIETNAM)
    content = await run_in_threadpool(export.to_xlsx, report_, _agency_label(agency), generated)
    name = export.file_name(agency.code if agency else "province", query.start, query.end, "xlsx")
    return _download(content, export.XLSX_MEDIA_TYPE, name)


@router.get("/reports/export.pdf")
async def reports_pdf(request: Request) -> Response:
    staff = await staff_page(request, ALL_ROLES)
    if not isinstance(staff, Staff):
        return staff
    try:
        query = parse(request)
    except BadQuery:
        return bad_request(request, staff.lang)
    try:
        loaded = await run_in_threadpool(_load, request, staff, query)
    except OutOfScope:
        return not_found(request, staff.lang)
    context = _context(request, staff, query, loaded)
    # The PDF is not a page under the CSP: its charts' styles need no nonce.
    context["charts"] = _charts(loaded[0], staff.lang, "")
    page = render(request, ctx_of(request).settings, "reports/print.html", staff.lang, fonts=PDF_FONTS, **context)
    content = await run_in_threadpool(export.to_pdf, bytes(page.body).decode())
    agency = loaded[1]
    name = export.file_name(agency.code if agency else "province", query.start, query.end, "pdf")
    return _download(content, export.PDF_MEDIA_TYPE, name)


def _download(content: bytes, media_type: str, name: str) -> Response:
    return Response(
        content,
        media_type=media_type,
        headers={"Content-Disposition": f'attachment; filename="{name}"', "Cache-Control": "no-store"},
    )


@router.get("/province", response_class=HTMLResponse)
async def province_page(request: Request) -> Response:
    staff = await staff_page(request, PROVINCE_ONLY)
    if not isinstance(staff, Staff):
        return staff
    try:
        month = month_of(_text(request, "month", 7), today())
    except BadQuery:
        return bad_request(request, staff.lang)
    ctx = ctx_of(request)

    def load() -> tuple[ProvinceMonth, Report]:
        with ctx.db.read() as s:
            repeatable(s)
            everyone = all_agencies(s)
            first, last = month_bounds(month)
            trend_end = min(last, max(today(), first))
            return province_month(s, everyone, month), report(s, everyone, first, trend_end, Grain.day)

    stats, month_report = await run_in_threadpool(load)
    t = MESSAGES[staff.lang]
    page_nonce = nonce(request)
    labels = [d.strftime("%d/%m") for d in month_report.trend]
    trend = charts.trend(
        t["reports_trend_chart"].format(end=fmt.day(month_report.end, staff.lang)),
        labels,
        [
            (t["reports_gross"], [s.gross for s in month_report.trend.values()]),
            (t["reports_net"], [s.net for s in month_report.trend.values()]),
        ],
        page_nonce,
    )
    methods = charts.breakdown(
        t["province_method_chart"],
        [(m, stats.total.by_method.get(m, 0)) for m in stats.methods],
        page_nonce,
        t["reports_none"],
    )
    previous = (stats.month - timedelta(days=1)).replace(day=1)
    following = (stats.month + timedelta(days=32)).replace(day=1)
    return render(
        request,
        ctx.settings,
        "reports/province.html",
        staff.lang,
        stats=stats,
        charts={"trend": trend, "methods": methods},
        previous=previous,
        following=following if following <= today() else None,
    )
