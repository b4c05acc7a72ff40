"""The refund pages: the queue, a finance user's request form, and the request's page where an approver (never the
requester) approves or rejects it and the requester may cancel it while it is pending.

Only the agency's own staff see its requests (a province admin has no agency and is not an approver); another
agency's request or payment id answers the same 404 page as an unknown one. An approval creates the refund in its
own transaction (``console.refunds.service``), then asks the gateway straight away, as the API's refund route does;
if the gateway cannot answer, the refund's retry job asks again later."""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import urlencode

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from sqlmodel import Session, col, select
from starlette.concurrency import run_in_threadpool

from console import roles
from console.guard import (
    FormData,
    Staff,
    bad_request,
    client_ip,
    ctx_of,
    forbidden,
    not_found,
    read_form,
    staff_form,
    staff_page,
)
from console.i18n import MESSAGES
from console.refunds import service
from console.refunds.models import RefundRequest, RequestStatus
from console.refunds.service import AlreadyDecided, Figures, NotAllowed, NotHere, Refused
from console.render import message, render
from console.staff.models import Role, StaffUser
from payments.core.context import AppContext
from payments.core.logging import get_logger
from payments.pages import fmt
from payments.payment.models import Refund
from payments.payment.refunds import process_refund

log = get_logger(__name__)
router = APIRouter(prefix="/console/refunds", include_in_schema=False)

MAKERS = roles.REFUND_MAKERS
CHECKERS = roles.REFUND_CHECKERS
MAX_ID = 40
MAX_PAGE = 1_000_000
# Whole VND; staff may type the thousands separators either language uses.
AMOUNT = re.compile(r"[0-9]{1,3}(?:[., ]?[0-9]{3})*|[0-9]{1,12}")
DONE = {"requested", "approved", "rejected", "cancelled"}


async def _posted(request: Request, *names: str) -> FormData | HTMLResponse:
    return await read_form(request, names)


def _amount(text: str) -> int | None:
    text = text.strip()
    if len(text) > 20 or not AMOUNT.fullmatch(text):
        return None
    return int(re.sub(r"[., ]", "", text))


def _id_ok(value: str) -> bool:
    return 0 < len(value) <= MAX_ID and all(c.isascii() and (c.isalnum() or c == "_") for c in value)


def _emails(s: Session, ids: set[str | None]) -> dict[str, str]:
    wanted = {i for i in ids if i}
    if not wanted:
        return {}
    return dict(s.exec(select(StaffUser.id, StaffUser.email).where(col(StaffUser.id).in_(wanted))).all())


def _detail_url(request_id: str, lang: str, **extra: str) -> str:
    return f"/console/refunds/{request_id}?" + urlencode({"lang": lang, **extra})


@router.get("", response_class=HTMLResponse)
async def queue_page(request: Request) -> Response:
    staff = await staff_page(request, roles.REFUNDS)
    if not isinstance(staff, Staff):
        return staff
    q = request.query_params
    status_text = q.get("status", "")
    page_text = q.get("page", "1") or "1"
    if status_text and status_text not in RequestStatus.__members__:
        return bad_request(request, staff.lang)
    if len(page_text) > 7 or not page_text.isdigit() or not 1 <= int(page_text) <= MAX_PAGE:
        return bad_request(request, staff.lang)
    status = RequestStatus(status_text) if status_text else None
    page = int(page_text)
    ctx = ctx_of(request)
    agency_id = staff.user.agency_id
    assert agency_id is not None  # every reader role belongs to one agency

    def load() -> tuple[list[RefundRequest], bool, dict[str, str]]:
        with ctx.db.read() as s:
            rows, more = service.queue(s, agency_id, status, page)
            return rows, more, _emails(s, {r.requested_by for r in rows})

    rows, more, emails = await run_in_threadpool(load)

    def page_url(number: int) -> str:
        params = {"lang": staff.lang, **({"status": status.value} if status else {}), "page": str(number)}
        return "/console/refunds?" + urlencode(params)

    return render(
        request,
        ctx.settings,
        "refunds/queue.html",
        staff.lang,
        rows=rows,
        more=more,
        emails=emails,
        status=status,
        statuses=list(RequestStatus),
        page=page,
        page_url=page_url,
        maker=staff.user.role in MAKERS,
    )


def _new_view(
    request: Request,
    staff: Staff,
    fig: Figures | None,
    payment_id: str = "",
    error: str | None = None,
    amount: str = "",
    reason: str = "",
    status: int = 200,
) -> HTMLResponse:
    return render(
        request,
        ctx_of(request).settings,
        "refunds/new.html",
        staff.lang,
        status_code=status,
        fig=fig,
        payment_id=payment_id,
        csrf=staff.session.csrf_token,
        error=error,
        amount=amount,
        reason=reason,
    )


def _payment_param(request: Request) -> str | None:
    """The ``payment`` query parameter; None when absent, "" when it cannot name a payment."""
    value = request.query_params.get("payment")
    if value is None:
        return None
    return value if _id_ok(value) else ""


@router.get("/new", response_class=HTMLResponse)
async def new_page(request: Request) -> Response:
    staff = await staff_page(request, MAKERS)
    if not isinstance(staff, Staff):
        return staff
    payment_id = _payment_param(request)
    if payment_id is None:
        return _new_view(request, staff, None)
    if not payment_id:
        return not_found(request, staff.lang)
    ctx = ctx_of(request)

    def load() -> Figures:
        with ctx.db.read() as s:
            return service.figures(s, staff.user.agency_id, payment_id)

    try:
        fig = await run_in_threadpool(load)
    except NotHere:
        return not_found(request, staff.lang)
    if not fig.refundable:
        error = MESSAGES[staff.lang]["refunds_not_refundable"]
        return _new_view(request, staff, fig, payment_id, error=error, status=409)
    return _new_view(request, staff, fig, payment_id)


@router.post("/new", response_class=HTMLResponse)
async def new_submit(request: Request) -> Response:
    posted = await _posted(request, "amount", "reason")
    if isinstance(posted, HTMLResponse):
        return posted
    staff = await staff_form(request, MAKERS, posted.lang, posted.fields["csrf"])
    if not isinstance(staff, Staff):
        return staff
    payment_id = _payment_param(request) or ""
    ctx = ctx_of(request)
    t = MESSAGES[staff.lang]
    amount_text, reason = posted.fields["amount"], posted.fields["reason"]
    amount = _amount(amount_text)
    ip = client_ip(request)

    def create() -> tuple[RefundRequest | None, Figures, str | None]:
        if not payment_id:
            raise NotHere
        with ctx.db.write() as s:
            fig = service.figures(s, staff.user.agency_id, payment_id)
            if amount is None:
                return None, fig, t["refunds_amount_bad"]
            try:
                return service.request_refund(s, staff.user, payment_id, amount, reason, ip), fig, None
            except Refused as exc:
                remaining = _money(staff.lang, exc.remaining)
                return None, fig, t[exc.key].format(remaining=remaining)

    try:
        req, fig, error = await run_in_threadpool(create)
    except NotHere:
        return not_found(request, staff.lang)
    except NotAllowed:
        return forbidden(request, staff.lang)
    if req is None:
        keep_reason = reason[: service.MAX_REASON]
        return _new_view(request, staff, fig, payment_id, error, amount_text[:20], keep_reason, status=400)
    return RedirectResponse(_detail_url(req.id, staff.lang, done="requested"), status_code=303)


def _money(lang: str, amount: int | None) -> str:
    return fmt.money(amount or 0, lang)


@dataclass(frozen=True)
class Detail:
    req: RefundRequest
    fig: Figures
    refund: Refund | None
    emails: dict[str, str]


def _load_detail(request: Request, user: StaffUser, request_id: str) -> Detail:
    with ctx_of(request).db.read() as s:
        req = service.get_request(s, user, request_id)
        fig = service.figures(s, req.agency_id, req.payment_id)
        refund = s.get(Refund, req.refund_id) if req.refund_id else None
        return Detail(req, fig, refund, _emails(s, {req.requested_by, req.decided_by}))


def _detail_view(
    request: Request, staff: Staff, detail: Detail, error: str | None = None, status: int = 200, note: str = ""
) -> HTMLResponse:
    t = MESSAGES[staff.lang]
    done = request.query_params.get("done", "")
    req, user = detail.req, staff.user
    pending = req.status is RequestStatus.pending
    return render(
        request,
        ctx_of(request).settings,
        "refunds/detail.html",
        staff.lang,
        status_code=status,
        d=detail,
        csrf=staff.session.csrf_token,
        notice=t[f"refunds_done_{done}"] if done in DONE and error is None else None,
        error=error,
        note=note,
        may_decide=pending and user.role in CHECKERS and user.id != req.requested_by,
        may_cancel=pending and user.id == req.requested_by,
        own=pending and user.role in CHECKERS and user.id == req.requested_by,
    )


@router.get("/{request_id}", response_class=HTMLResponse)
async def detail_page(request_id: str, request: Request) -> Response:
    staff = await staff_page(request, roles.REFUNDS)
    if not isinstance(staff, Staff):
        return staff
    try:
        detail = await run_in_threadpool(_load_detail, request, staff.user, request_id)
    except NotHere:
        return not_found(request, staff.lang)
    return _detail_view(request, staff, detail)


def _decided(request: Request, lang: str, request_id: str) -> HTMLResponse:
    back = f"/console/refunds/{request_id}"
    settings = ctx_of(request).settings
    return message(
        request, settings, lang, 409, "refunds_decided_title", "refunds_decided", back, "refunds_back_detail"
    )


async def _decide(request: Request, request_id: str, action: str, allowed: frozenset[Role]) -> Response:
    """approve, reject or cancel: the same checks, answers and redirect for the three forms."""
    posted = await _posted(request, "note")
    if isinstance(posted, HTMLResponse):
        return posted
    staff = await staff_form(request, allowed, posted.lang, posted.fields["csrf"])
    if not isinstance(staff, Staff):
        return staff
    return await _decide_as(request, staff, posted, request_id, action)


async def _decide_as(request: Request, staff: Staff, posted: FormData, request_id: str, action: str) -> Response:
    ctx = ctx_of(request)
    t = MESSAGES[staff.lang]
    note = posted.fields["note"]
    ip = client_ip(request)

    def change() -> RefundRequest:
        with ctx.db.write() as s:
            if action == "approve":
                return service.approve(s, staff.user, request_id, note, ip)
            if action == "reject":
                return service.reject(s, staff.user, request_id, note, ip)
            return service.cancel(s, staff.user, request_id, ip)

    try:
        req = await run_in_threadpool(change)
    except NotHere:
        return not_found(request, staff.lang)
    except NotAllowed:
        return forbidden(request, staff.lang)
    except AlreadyDecided:
        return _decided(request, staff.lang, request_id)
    except Refused as exc:
        try:
            detail = await run_in_threadpool(_load_detail, request, staff.user, request_id)
        except NotHere:
            return not_found(request, staff.lang)
        error = t[exc.key].format(remaining=_money(staff.lang, exc.remaining))
        status = 409 if exc.key in {"refunds_approve_over", "refunds_not_refundable"} else 400
        # A rejection sent without a valid note gets its form back with what was typed.
        kept = note[: service.MAX_NOTE] if action == "reject" else ""
        return _detail_view(request, staff, detail, error=error, status=status, note=kept)
    if req.refund_id is not None:
        await run_in_threadpool(_ask_gateway, request, req.refund_id)
    done = {"approve": "approved", "reject": "rejected", "cancel": "cancelled"}[action]
    return RedirectResponse(_detail_url(req.id, staff.lang, done=done), status_code=303)


def _ask_gateway(request: Request, refund_id: str) -> None:
    # The service's container is also the payment core's context: the same gateways the API's refunds use.
    app_ctx: AppContext = request.app.state.ctx
    try:
        process_refund(app_ctx, refund_id)
    except Exception as exc:  # the refund is committed; its retry job asks the gateway again, the page must not fail
        log.warning("console.refund_gateway_failed", refund_id=refund_id, error=str(exc)[:200])


@router.post("/{request_id}/approve", response_class=HTMLResponse)
async def approve_submit(request_id: str, request: Request) -> Response:
    return await _decide(request, request_id, "approve", CHECKERS)


@router.post("/{request_id}/reject", response_class=HTMLResponse)
async def reject_submit(request_id: str, request: Request) -> Response:
    return await _decide(request, request_id, "reject", CHECKERS)


@router.post("/{request_id}/cancel", response_class=HTMLResponse)
async def cancel_submit(request_id: str, request: Request) -> Response:
    return await _decide(request, request_id, "cancel", MAKERS)
