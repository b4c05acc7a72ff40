"""What the reconciliation pages share: who may do what, the query filters, the forms, and the result pages."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from urllib.parse import urlencode

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse
from sqlmodel import Session, col, select

from console import roles
from console.guard import BadForm, Staff, bad_request, ctx_of, read_form
from console.i18n import MESSAGES
from console.render import render
from console.staff.models import StaffUser
from payments.agency.models import Agency
from payments.core.context import AppContext

router = APIRouter(prefix="/console/reconcile", include_in_schema=False)

# Everyone of the agency reads the pages (a province admin picks an agency); finance and the agency admin bring the
# files in and run days; finance and approvers work the queue (above the threshold, approvers only).
VIEWERS = roles.RECONCILE
UPLOADERS = roles.RECONCILE_UPLOADERS
RESOLVERS = roles.RECONCILE_RESOLVERS

PAGE_SIZE = 50
MAX_PAGE = 1_000_000
MAX_ID = 40
MAX_NOTE = 1000
STAFF_ACTOR = "staff:"
# Before this no agency collected through Lephi (as the API's runs): a day before it is a typo.
FIRST_DAY = date(2020, 1, 1)
LAST_DAY = date(2100, 12, 31)


class BadQuery(Exception):
    """A filter or page number that our pages never send: the 400 page."""


def query_text(request: Request, name: str, limit: int) -> str:
    value = request.query_params.get(name, "").strip()
    if len(value) > limit or any(ord(c) < 32 or ord(c) == 127 for c in value):
        raise BadQuery
    return value


def parse_day(value: str) -> date | None:
    """A day written ``YYYY-MM-DD`` within the years the service can have data for; None when it is not one."""
    if len(value) != 10 or not value.isascii():
        return None
    try:
        day = date.fromisoformat(value)
    except ValueError:
        return None
    return day if FIRST_DAY <= day <= LAST_DAY else None


def query_day(request: Request, name: str) -> date | None:
    value = query_text(request, name, 10)
    if not value:
        return None
    day = parse_day(value)
    if day is None:
        raise BadQuery
    return day


def query_choice(request: Request, name: str, choices: list[str]) -> str | None:
    value = query_text(request, name, 40)
    if not value:
        return None
    if value not in choices:
        raise BadQuery
    return value


def query_page(request: Request) -> int:
    text = query_text(request, "page", 7) or "1"
    if not text.isdigit() or not 1 <= int(text) <= MAX_PAGE:
        raise BadQuery
    return int(text)


def page_url(request: Request, page: int) -> str:
    params = {k: v for k, v in request.query_params.items() if k not in ("page", "done", "count")}
    return request.url.path + "?" + urlencode({**params, "page": str(page)})


def agency_code(request: Request) -> str | None:
    return request.query_params.get("agency")


def app_ctx(request: Request) -> AppContext:
    # The composition root's container is both the console's context and the service's.
    ctx: AppContext = request.app.state.ctx
    return ctx


def actor_of(staff: Staff) -> str:
    # How the reconciliation tables name a person (imported_by, resolved_by, trails), next to "cli" and "api_key:".
    return STAFF_ACTOR + staff.user.id


def people(s: Session, actors: set[str]) -> dict[str, str]:
    """Staff actors (``staff:<id>``) and the email addresses to show for them."""
    ids = {a.removeprefix(STAFF_ACTOR) for a in actors if a.startswith(STAFF_ACTOR)}
    if not ids:
        return {}
    rows = s.exec(select(StaffUser.id, StaffUser.email).where(col(StaffUser.id).in_(ids))).all()
    return {STAFF_ACTOR + i: email for i, email in rows}


def agencies(s: Session) -> list[Agency]:
    return list(s.exec(select(Agency).order_by(col(Agency.code))).all())


@dataclass(frozen=True)
class Posted:
    fields: dict[str, str]
    ids: list[str]
    lang: str


async def posted(request: Request, *names: str) -> Posted | HTMLResponse:
    """A URL-encoded form's text fields and its ticked ``id`` boxes, or the 400 page for a form that is not ours."""
    form = await read_form(request, names, lists=("id",), max_fields=PAGE_SIZE + 20)
    if isinstance(form, HTMLResponse):
        return form
    fields, ids, lang = form.fields, form.lists["id"], form.lang
    if len(ids) > PAGE_SIZE or any(not i or len(i) > MAX_ID for i in ids):
        return bad_request(request, lang)
    return Posted(fields, list(dict.fromkeys(ids)), lang)


def note_of(value: str) -> str:
    note = value.strip()
    if not note or len(note) > MAX_NOTE:
        raise BadForm
    return note


def result_page(
    request: Request,
    lang: str,
    status: int,
    title: str,
    lines: list[str],
    back: str,
    counts: dict[str, int] | None = None,
) -> HTMLResponse:
    """A page that says what happened (or why nothing did), with a way back."""
    t = MESSAGES[lang]
    return render(
        request,
        ctx_of(request).settings,
        "reconcile_result.html",
        lang,
        status_code=status,
        title=t[title],
        lines=lines,
        counts=counts,
        back=back,
    )


def imports_url(lang: str) -> str:
    return f"/console/reconcile/imports?lang={lang}"


def exceptions_url(lang: str, **extra: str) -> str:
    return "/console/reconcile/exceptions?" + urlencode({"lang": lang, **extra})
