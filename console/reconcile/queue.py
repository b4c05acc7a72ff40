"""The exceptions queue: filters, each exception with the statement line it came from, resolving and reopening one or
many with one note, and the bank credits held for finance staff.

Resolving or reopening an exception above ``approval_threshold`` (its expected or actual amount, whichever is larger)
needs the approver role; finance staff work the rest. A change of several exceptions is one transaction: one that
may not be changed (above the threshold, or no longer open) and none is, each changed one has its audit row."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from typing import Any

from fastapi import Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from sqlmodel import Session, col, or_, select
from starlette.concurrency import run_in_threadpool

from console.audit.service import record
from console.context import console_settings
from console.guard import (
    BadForm,
    OutOfScope,
    Staff,
    agency_for,
    bad_request,
    client_ip,
    ctx_of,
    may_see,
    not_found,
    scoped_read,
    staff_form,
    staff_page,
)
from console.i18n import MESSAGES
from console.reconcile.common import (
    MAX_ID,
    MAX_NOTE,
    PAGE_SIZE,
    RESOLVERS,
    VIEWERS,
    BadQuery,
    actor_of,
    agencies,
    agency_code,
    exceptions_url,
    note_of,
    page_url,
    people,
    posted,
    query_choice,
    query_day,
    query_page,
    result_page,
    router,
)
from console.render import render
from console.staff.models import Role
from payments.agency.models import Agency
from payments.core.errors import Conflict
from payments.pages import fmt
from payments.payment.models import Payment
from payments.reconcile.exceptions import (
    Provenance,
    exception_events,
    provenance,
    reopen_exception,
    resolve_exception,
)
from payments.reconcile.importer import GATEWAY_OF_SOURCE
from payments.reconcile.models import (
    EXCEPTIONS,
    ExceptionStatus,
    ReconException,
    ReconExceptionEvent,
    StatementEntry,
)
from payments.transfer.models import HELD, BankCredit

SOURCES = list(GATEWAY_OF_SOURCE)
CATEGORIES = [c.value for c in EXCEPTIONS]
STATUSES = [s.value for s in ExceptionStatus]


@dataclass(frozen=True)
class Filters:
    since: date | None
    until: date | None
    category: str | None
    source: str | None
    status: str | None
    page: int


def _filters(request: Request) -> Filters:
    return Filters(
        query_day(request, "from"),
        query_day(request, "to"),
        query_choice(request, "category", CATEGORIES),
        query_choice(request, "source", SOURCES),
        query_choice(request, "status", STATUSES),
        query_page(request),
    )


def amount_of(row: ReconException) -> int:
    """The amount the threshold is compared with: the larger of what was expected and what came."""
    return max(abs(row.expected_amount or 0), abs(row.actual_amount or 0))


@dataclass(frozen=True)
class QueueView:
    agency: Agency | None
    rows: list[ReconException]
    more: bool
    lines: dict[int, Provenance]
    agencies: list[Agency]


def _queue(s: Session, agency: Agency, flt: Filters) -> tuple[list[ReconException], bool, dict[int, Provenance]]:
    query = select(ReconException).where(ReconException.agency_id == agency.id)
    if flt.since is not None:
        query = query.where(col(ReconException.business_day) >= flt.since)
    if flt.until is not None:
        query = query.where(col(ReconException.business_day) <= flt.until)
    if flt.category is not None:
        query = query.where(col(ReconException.category) == flt.category)
    if flt.status is not None:
        query = query.where(col(ReconException.status) == flt.status)
    if flt.source is not None:
        # The source of the line the exception is about, or the gateway of its payment (a payment no line settled).
        lines = select(StatementEntry.id).where(
            StatementEntry.agency_id == agency.id, StatementEntry.source == flt.source
        )
        payments = select(Payment.id).where(
            Payment.agency_id == agency.id, Payment.gateway == GATEWAY_OF_SOURCE[flt.source]
        )
        query = query.where(or_(col(ReconException.entry_id).in_(lines), col(ReconException.payment_id).in_(payments)))
    query = (
        query.order_by(
            col(ReconException.business_day).desc(), col(ReconException.created_at).desc(), col(ReconException.id)
        )
        .offset((flt.page - 1) * PAGE_SIZE)
        .limit(PAGE_SIZE + 1)
    )
    rows = list(s.exec(query).all())
    shown = rows[:PAGE_SIZE]
    return shown, len(rows) > PAGE_SIZE, provenance(s, agency.id, [r.entry_id for r in shown])


def _notice(request: Request, lang: str) -> str | None:
    t = MESSAGES[lang]
    done = request.query_params.get("done")
    count = request.query_params.get("count", "")
    if done == "resolved" and count.isdigit() and len(count) <= 3:
        return t["recon_resolved_done"].format(count=int(count))
    if done == "reopened":
        return t["recon_reopened_done"]
    return None


@router.get("/exceptions", response_class=HTMLResponse)
async def exceptions_page(request: Request) -> Response:
    staff = await staff_page(request, VIEWERS)
    if not isinstance(staff, Staff):
        return staff
    try:
        flt = _filters(request)
    except BadQuery:
        return bad_request(request, staff.lang)
    ctx = ctx_of(request)

    def load(s: Session) -> QueueView:
        agency = agency_for(s, staff.user, agency_code(request))
        if agency is None:
            return QueueView(None, [], False, {}, agencies(s))
        rows, more, lines = _queue(s, agency, flt)
        return QueueView(agency, rows, more, lines, [])

    view = await scoped_read(request, staff, load)
    if isinstance(view, Response):
        return view
    threshold = console_settings(ctx.settings).approval_threshold
    return render(
        request,
        ctx.settings,
        "reconcile_exceptions.html",
        staff.lang,
        province=staff.user.role == Role.province_admin,
        view=view,
        filters=flt,
        categories=CATEGORIES,
        sources=SOURCES,
        statuses=STATUSES,
        page_url=lambda n: page_url(request, n),
        can_resolve=staff.user.role in RESOLVERS,
        approver=staff.user.role == Role.approver,
        threshold=threshold,
        amount_of=amount_of,
        notice=_notice(request, staff.lang),
        csrf=staff.session.csrf_token,
        max_note=MAX_NOTE,
    )


def _exception_in_scope(s: Session, staff: Staff, exception_id: str) -> ReconException:
    row = s.get(ReconException, exception_id) if 0 < len(exception_id) <= MAX_ID else None
    if row is None or not may_see(staff.user, row.agency_id):
        raise OutOfScope
    return row


@router.get("/exceptions/{exception_id}", response_class=HTMLResponse)
async def exception_page(exception_id: str, request: Request) -> Response:
    staff = await staff_page(request, VIEWERS)
    if not isinstance(staff, Staff):
        return staff
    ctx = ctx_of(request)

    def load(s: Session) -> tuple[ReconException, Provenance | None, list[ReconExceptionEvent], dict[str, str]]:
        row = _exception_in_scope(s, staff, exception_id)
        line = provenance(s, row.agency_id, [row.entry_id]).get(row.entry_id) if row.entry_id else None
        events = exception_events(s, row.id)
        return row, line, events, people(s, {e.actor for e in events})

    loaded = await scoped_read(request, staff, load)
    if isinstance(loaded, Response):
        return loaded
    row, line, events, actors = loaded
    threshold = console_settings(ctx.settings).approval_threshold
    return render(
        request,
        ctx.settings,
        "reconcile_exception.html",
        staff.lang,
        row=row,
        line=line,
        events=events,
        actors=actors,
        can_change=staff.user.role in RESOLVERS,
        over=amount_of(row) > threshold,
        approver=staff.user.role == Role.approver,
        threshold=threshold,
        notice=_notice(request, staff.lang),
        csrf=staff.session.csrf_token,
        max_note=MAX_NOTE,
    )


class Refused(Exception):
    """Exceptions that may not be changed: the ids, and whether it is the threshold (else their status)."""

    def __init__(self, ids: list[str], threshold: bool) -> None:
        super().__init__(ids)
        self.ids = ids
        self.threshold = threshold


def _state(row: ReconException) -> dict[str, Any]:
    return {"status": row.status.value, "note": row.note, "amount": amount_of(row), "category": row.category.value}


@dataclass(frozen=True)
class Change:
    staff: Staff
    ids: list[str]
    note: str


async def _change_form(request: Request, ids: list[str] | None) -> Change | Response:
    form = await posted(request, "note")
    if isinstance(form, HTMLResponse):
        return form
    staff = await staff_form(request, RESOLVERS, form.lang, form.fields["csrf"])
    if not isinstance(staff, Staff):
        return staff
    chosen = form.ids if ids is None else ids
    try:
        note = note_of(form.fields["note"])
    except BadForm:
        chosen, note = [], ""
    if not chosen:
        lines = [MESSAGES[staff.lang]["recon_note_needed"]]
        return result_page(request, staff.lang, 400, "recon_bulk_title", lines, exceptions_url(staff.lang))
    return Change(staff, chosen, note)


async def _change(request: Request, ids: list[str] | None, action: str, exception_id: str = "") -> Response:
    """Resolve (or reopen) the exceptions ``ids`` (or the one of the path) with the form's note, all or none."""
    form = await _change_form(request, ids)
    if not isinstance(form, Change):
        return form
    staff, chosen, note = form.staff, form.ids, form.note
    ctx = ctx_of(request)
    ip = client_ip(request)
    threshold = console_settings(ctx.settings).approval_threshold
    change = resolve_exception if action == "resolve" else reopen_exception
    needed = ExceptionStatus.open if action == "resolve" else ExceptionStatus.resolved
    audit_action = "exception.resolved" if action == "resolve" else "exception.reopened"

    def work() -> None:
        with ctx.db.write() as s:
            agency = agency_for(s, staff.user, None)
            if agency is None:
                raise OutOfScope
            rows = [_exception_in_scope(s, staff, i) for i in chosen]
            over = [r.id for r in rows if amount_of(r) > threshold]
            if over and staff.user.role != Role.approver:
                raise Refused(over, threshold=True)
            wrong = [r.id for r in rows if r.status != needed]
            if wrong:
                raise Refused(wrong, threshold=False)
            for row in rows:
                before = _state(row)
                after = change(s, agency.id, row.id, actor_of(staff), note)
                record(
                    s,
                    agency_id=agency.id,
                    actor=staff.user.id,
                    ip=ip,
                    action=audit_action,
                    target=row.id,
                    before=before,
                    after=_state(after),
                )

    try:
        await run_in_threadpool(work)
    except (OutOfScope, Refused, Conflict) as exc:
        return _refused(request, staff.lang, action, chosen, exc)
    if exception_id:
        done = "resolved" if action == "resolve" else "reopened"
        url = f"/console/reconcile/exceptions/{exception_id}?lang={staff.lang}&done={done}&count=1"
        return RedirectResponse(url, status_code=303)
    return RedirectResponse(exceptions_url(staff.lang, done="resolved", count=str(len(chosen))), status_code=303)


def _refused(request: Request, lang: str, action: str, chosen: list[str], exc: Exception) -> HTMLResponse:
    """The page for a change that stored nothing: 404 for an id that is not the agency's, 403 above the threshold,
    409 for an exception not in the state the change needs (or changed by someone else meanwhile)."""
    if isinstance(exc, OutOfScope):
        return not_found(request, lang)
    if isinstance(exc, Refused) and exc.threshold:
        t = MESSAGES[lang]
        amount = fmt.money(console_settings(ctx_of(request).settings).approval_threshold, lang)
        lines = [t["recon_threshold"].format(amount=amount, ids=", ".join(exc.ids))]
        return result_page(request, lang, 403, "recon_threshold_title", lines, exceptions_url(lang))
    return _conflict(request, lang, action, exc.ids if isinstance(exc, Refused) else chosen)


def _conflict(request: Request, lang: str, action: str, ids: list[str]) -> HTMLResponse:
    text = MESSAGES[lang]["recon_not_open" if action == "resolve" else "recon_not_resolved"].format(ids=", ".join(ids))
    return result_page(request, lang, 409, "recon_conflict_title", [text], exceptions_url(lang))


@router.post("/exceptions/resolve", response_class=HTMLResponse)
async def resolve_many(request: Request) -> Response:
    return await _change(request, None, "resolve")


@router.post("/exceptions/{exception_id}/resolve", response_class=HTMLResponse)
async def resolve_one(exception_id: str, request: Request) -> Response:
    return await _change(request, [exception_id], "resolve", exception_id)


@router.post("/exceptions/{exception_id}/reopen", response_class=HTMLResponse)
async def reopen_one(exception_id: str, request: Request) -> Response:
    return await _change(request, [exception_id], "reopen", exception_id)


@dataclass(frozen=True)
class CreditsView:
    agency: Agency | None
    rows: list[BankCredit]
    more: bool
    agencies: list[Agency]


@router.get("/credits", response_class=HTMLResponse)
async def credits_page(request: Request) -> Response:
    staff = await staff_page(request, VIEWERS)
    if not isinstance(staff, Staff):
        return staff
    try:
        page = query_page(request)
    except BadQuery:
        return bad_request(request, staff.lang)
    ctx = ctx_of(request)

    def load(s: Session) -> CreditsView:
        agency = agency_for(s, staff.user, agency_code(request))
        if agency is None:
            return CreditsView(None, [], False, agencies(s))
        query = (
            select(BankCredit)
            .where(BankCredit.agency_id == agency.id, col(BankCredit.status).in_(sorted(HELD)))
            .order_by(col(BankCredit.received_at).desc(), col(BankCredit.id))
            .offset((page - 1) * PAGE_SIZE)
            .limit(PAGE_SIZE + 1)
        )
        rows = list(s.exec(query).all())
        return CreditsView(agency, rows[:PAGE_SIZE], len(rows) > PAGE_SIZE, [])

    view = await scoped_read(request, staff, load)
    if isinstance(view, Response):
        return view
    return render(
        request,
        ctx.settings,
        "reconcile_credits.html",
        staff.lang,
        province=staff.user.role == Role.province_admin,
        view=view,
        page=page,
        page_url=lambda n: page_url(request, n),
    )
