"""The home page: who is signed in, and the figures of their agency (a province admin: of the province, and per
agency) that call for someone's attention."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from fastapi import Request
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool
from starlette.routing import Route

from console.dashboard.figures import CERTIFICATE_WARNING_DAYS, Dashboard, gather, unassigned_credits
from console.guard import ADMINS, Staff, ctx_of
from console.nav import NAV
from console.render import render
from console.reports.figures import all_agencies, repeatable
from console.staff.models import Role
from payments.agency.models import Agency

# Where each figure is worked on. Those pages come with their own packages: a figure links to its page only when the
# page is served, so that no link leads to the 404 page.
PAGES = {
    "payments_today": ("/console/payments", "/console/reports"),
    "reviews": ("/console/payments",),
    "held_credits": ("/console/reconcile/credits",),
    "refund_requests": ("/console/refunds",),
    "open_exceptions": ("/console/reconcile/exceptions",),
    "failed_deliveries": ("/console/webhooks",),
    "tax_waiting": ("/console/tax",),
    "certificate": ("/console/certificate",),
}


_SERVED = "console_served_paths"


def served_paths(routes: Iterable[object]) -> set[str]:
    """The path templates the app serves, through the routers it includes."""
    found: set[str] = set()
    for route in routes:
        included = getattr(route, "original_router", None)
        if included is not None:
            found |= served_paths(included.routes)
        elif isinstance(route, Route):
            found.add(route.path)
    return found


def app_paths(app: Any) -> frozenset[str]:
    """``served_paths`` of the app, walked on its first home page only: an app's routes do not change once it
    serves, and the walk visits every route of every included router."""
    found: frozenset[str] | None = getattr(app.state, _SERVED, None)
    if found is None:
        found = frozenset(served_paths(app.routes))
        setattr(app.state, _SERVED, found)
    return found


def links(request: Request, role: Role) -> dict[str, str]:
    served = app_paths(request.app)
    # A page in the menu is linked only for the roles the menu shows it to: no link leads to the 403 page either.
    refused = {item.href for item in NAV if role not in item.roles}
    found: dict[str, str] = {}
    for figure, paths in PAGES.items():
        for path in paths:
            if path in served and path not in refused:
                found[figure] = path
                break
    return found


async def home(request: Request, staff: Staff) -> Response:
    ctx = ctx_of(request)
    user = staff.user

    def load() -> tuple[Agency | None, Dashboard]:
        with ctx.db.read() as s:
            repeatable(s)
            if user.role == Role.province_admin:
                board = gather(s, all_agencies(s), ctx.settings)
                board.unassigned_credits = unassigned_credits(s)
                return None, board
            agency = s.get(Agency, user.agency_id) if user.agency_id else None
            return agency, gather(s, [agency] if agency else [], ctx.settings)

    agency, board = await run_in_threadpool(load)
    return render(
        request,
        ctx.settings,
        "home.html",
        staff.lang,
        user=user,
        agency=agency,
        board=board,
        province=user.role == Role.province_admin,
        links=links(request, user.role),
        warn_days=CERTIFICATE_WARNING_DAYS,
        csrf=staff.session.csrf_token,
        admin=user.role in ADMINS,
    )
