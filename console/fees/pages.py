"""The fee schedule pages: the schedule in force and the versions to come, the spreadsheet template and export, and
importing a new schedule (upload, preview with its differences, confirm; undo before it comes into force).

An agency admin works on their own agency's schedule, a province admin on any agency's (``?agency=CODE``); finance
and viewers read it and download it. Confirming applies the content stored at upload, named by the preview's hidden
token, never anything sent with the confirmation. Each step that changes something writes its audit row in the
transaction of the change (``import.uploaded``, ``fees.applied``, ``fees.undone``)."""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Any
from urllib.parse import urlencode

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from sqlalchemy import update
from sqlmodel import Session, col, select
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile

from console import roles
from console.audit.service import record
from console.fees.models import FeeImport
from console.fees.sheet import EXAMPLE, MAX_BYTES, Fault, SheetRefused, read_sheet, schedule_rows, to_csv, to_xlsx
from console.guard import (
    ADMINS,
    OutOfScope,
    Staff,
    agency_for,
    bad_request,
    client_ip,
    ctx_of,
    form_text,
    may_see,
    not_found,
    read_form,
    scoped_read,
    staff_form,
    staff_page,
)
from console.i18n import MESSAGES
from console.render import BadLanguage, language, render
from console.staff.models import StaffUser
from payments.agency.models import Agency, FeeScheduleVersion
from payments.agency.schedule import FeeLineIn, FeeSchedule, ProcedureIn
from payments.agency.versions import ScheduleInForce, add_version, remove_version, schedule_on, versions_of, vietnam_day
from payments.core.errors import Conflict
from payments.core.types import utcnow

router = APIRouter(prefix="/console", include_in_schema=False)

# A preview not confirmed within this time is no longer offered; the file can be uploaded again.
PREVIEW_HOURS = 24
MAX_TOKEN = 64
MAX_YEAR = 9998


def today() -> date:
    return vietnam_day(utcnow())


def _fees_url(lang: str, code: str, **extra: str) -> str:
    return "/console/fees?" + urlencode({"lang": lang, "agency": code, **extra})


def _in_force_schedule(current: ScheduleInForce) -> FeeSchedule | None:
    """The schedule in force in the import's terms, for the export and the comparison."""
    if not current.procedures:
        return None
    return FeeSchedule.model_construct(
        procedures=[
            ProcedureIn.model_construct(
                code=p.code,
                name=p.name,
                fees=[
                    FeeLineIn.model_construct(
                        code=line.code,
                        kind=line.kind,
                        name=line.name,
                        amount=line.unit_amount,
                        default_quantity=line.default_quantity,
                        max_quantity=line.max_quantity,
                        legal_basis=line.legal_basis,
                        unit=line.unit,
                    )
                    for line in lines
                ],
            )
            for p, lines in current.procedures
        ]
    )


@dataclass
class LineDiff:
    code: str
    name: str
    change: str  # added, removed, changed, same
    old_amount: int | None
    new_amount: int | None
    fields: list[str] = field(default_factory=list)


@dataclass
class ProcedureDiff:
    code: str
    name: str
    change: str
    lines: list[LineDiff]


LINE_FIELDS = ("kind", "name", "amount", "default_quantity", "max_quantity", "legal_basis", "unit")


def diff(old: FeeSchedule | None, new: FeeSchedule) -> list[ProcedureDiff]:
    """Per procedure (by code), the lines added, removed or changed by ``new`` against ``old``."""
    before = {p.code: p for p in (old.procedures if old else [])}
    after = {p.code: p for p in new.procedures}
    result = []
    for code in sorted(before.keys() | after.keys()):
        o, n = before.get(code), after.get(code)
        o_lines = {f.code: f for f in (o.fees if o else [])}
        n_lines = {f.code: f for f in (n.fees if n else [])}
        lines = []
        for fee in [*(n.fees if n else []), *[f for f in (o.fees if o else []) if f.code not in n_lines]]:
            was, now = o_lines.get(fee.code), n_lines.get(fee.code)
            if was is None:
                lines.append(LineDiff(fee.code, fee.name, "added", None, fee.amount))
            elif now is None:
                lines.append(LineDiff(fee.code, fee.name, "removed", fee.amount, None))
            else:
                changed = [f for f in LINE_FIELDS if getattr(was, f) != getattr(now, f)]
                state = "changed" if changed else "same"
                lines.append(LineDiff(fee.code, now.name, state, was.amount, now.amount, changed))
        if o is None:
            change = "added"
        elif n is None:
            change = "removed"
        else:
            change = "changed" if o.name != n.name or any(x.change != "same" for x in lines) else "same"
        result.append(ProcedureDiff(code, (n or o).name if (n or o) else code, change, lines))  # type: ignore[union-attr]
    return result


@dataclass(frozen=True)
class FeesView:
    agency: Agency | None
    agencies: list[Agency]
    current: ScheduleInForce
    versions: list[FeeScheduleVersion]
    authors: dict[str, str]


def _load_fees(s: Session, staff: Staff, code: str | None) -> FeesView:
    agency = agency_for(s, staff.user, code)
    if agency is None:
        agencies = list(s.exec(select(Agency).order_by(col(Agency.code))).all())
        return FeesView(None, agencies, ScheduleInForce(None, []), [], {})
    versions = versions_of(s, agency.id)
    ids = {v.created_by for v in versions}
    authors = dict(s.exec(select(StaffUser.id, StaffUser.email).where(col(StaffUser.id).in_(ids))).all())
    return FeesView(agency, [], schedule_on(s, agency.id, today()), versions, authors)


def _fees_view(
    request: Request, staff: Staff, view: FeesView, status: int = 200, faults: list[Fault] | None = None, **extra: Any
) -> HTMLResponse:
    done = request.query_params.get("done", "")
    return render(
        request,
        ctx_of(request).settings,
        "fees/schedule.html",
        staff.lang,
        status_code=status,
        view=view,
        today=today(),
        admin=staff.user.role in ADMINS,
        csrf=staff.session.csrf_token,
        faults=faults or [],
        done=done if done in ("applied", "undone") else "",
        max_mb=MAX_BYTES // (1024 * 1024),
        **extra,
    )


@router.get("/fees", response_class=HTMLResponse)
async def fees_page(request: Request) -> Response:
    staff = await staff_page(request, roles.FEES)
    if not isinstance(staff, Staff):
        return staff
    code = request.query_params.get("agency")
    view = await scoped_read(request, staff, lambda s: _load_fees(s, staff, code))
    if isinstance(view, Response):
        return view
    return _fees_view(request, staff, view)


def _download(content: bytes, name: str) -> Response:
    kinds = {
        "csv": "text/csv; charset=utf-8",
        "xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
    }
    return Response(
        content,
        media_type=kinds[name.rsplit(".", 1)[1]],
        headers={"Content-Disposition": f'attachment; filename="{name}"', "Cache-Control": "no-store"},
    )


@router.get("/fees/template.{ext}")
async def template_download(ext: str, request: Request) -> Response:
    staff = await staff_page(request, roles.FEES)
    if not isinstance(staff, Staff):
        return staff
    if ext not in ("csv", "xlsx"):
        return not_found(request, staff.lang)
    rows = [EXAMPLE]
    return _download(to_csv(rows) if ext == "csv" else to_xlsx(rows), f"fee-schedule-template.{ext}")


@router.get("/fees/export.{ext}")
async def export_download(ext: str, request: Request) -> Response:
    staff = await staff_page(request, roles.FEES)
    if not isinstance(staff, Staff):
        return staff
    if ext not in ("csv", "xlsx"):
        return not_found(request, staff.lang)
    code = request.query_params.get("agency")

    def load(s: Session) -> tuple[Agency, FeeSchedule | None]:
        agency = agency_for(s, staff.user, code)
        if agency is None:
            raise OutOfScope
        return agency, _in_force_schedule(schedule_on(s, agency.id, today()))

    found = await scoped_read(request, staff, load)
    if isinstance(found, Response):
        return found
    agency, schedule = found
    rows = schedule_rows(schedule) if schedule else []
    name = f"fee-schedule-{agency.code}-{today().isoformat()}.{ext}"
    return _download(to_csv(rows) if ext == "csv" else to_xlsx(rows), name)


def _file_name(upload: UploadFile) -> str:
    name = (upload.filename or "").replace("\\", "/").rsplit("/", 1)[-1]
    return "".join(c for c in name if ord(c) >= 32 and ord(c) != 127)[:200] or "upload"


def _day(text: str) -> date | None:
    try:
        day = date.fromisoformat(text)
    except ValueError:
        return None
    return day if day.year <= MAX_YEAR and len(text) == 10 else None


@router.post("/fees/import", response_class=HTMLResponse)
async def import_submit(request: Request) -> Response:
    try:
        form = await request.form(max_files=1, max_fields=10, max_part_size=16 * 1024)
        fields = {name: form_text(form.get(name, "")) for name in ("csrf", "lang", "agency", "effective_from")}
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
    return await _import(request, staff, fields, upload)


async def _import(request: Request, staff: Staff, fields: dict[str, str], upload: object) -> Response:
    """Check the upload and store it for its preview, or answer the fees page naming the faults."""
    ctx = ctx_of(request)
    code = fields["agency"] or None

    def load() -> FeesView:
        with ctx.db.read() as s:
            return _load_fees(s, staff, code)

    try:
        view = await run_in_threadpool(load)
    except OutOfScope:
        return not_found(request, staff.lang)
    if view.agency is None:
        return not_found(request, staff.lang)
    agency = view.agency
    day = _day(fields["effective_from"])
    if day is None or day < today():
        return _fees_view(request, staff, view, 400, [Fault(0, "effective_from", "fees_fault_day")])
    if not isinstance(upload, UploadFile):
        return _fees_view(request, staff, view, 400, [Fault(0, "", "fees_fault_no_file")])
    data = await upload.read(MAX_BYTES + 1)
    name = _file_name(upload)
    try:
        sheet = await run_in_threadpool(read_sheet, name, data)
    except SheetRefused as refused:
        return _fees_view(request, staff, view, 400, refused.faults, file_name=name)
    token = secrets.token_urlsafe(32)
    digest = hashlib.sha256(data).hexdigest()
    ip = client_ip(request)

    def store() -> None:
        with ctx.db.write() as s:
            s.add(
                FeeImport(
                    id=token,
                    agency_id=agency.id,
                    staff_id=staff.user.id,
                    source_name=name,
                    sha256=digest,
                    effective_from=day,
                    content=sheet.schedule.model_dump(mode="json"),
                )
            )
            s.flush()
            record(
                s,
                agency_id=agency.id,
                actor=staff.user.id,
                ip=ip,
                action="import.uploaded",
                target=token[:12],
                after={"file": name, "sha256": digest, "rows": sheet.rows, "effective_from": day.isoformat()},
            )

    await run_in_threadpool(store)
    return RedirectResponse(f"/console/fees/import/{token}?lang={staff.lang}", status_code=303)


def _import_in_scope(s: Session, user: StaffUser, token: str) -> tuple[FeeImport, Agency]:
    if not token or len(token) > MAX_TOKEN or any(ord(c) < 32 or ord(c) == 127 for c in token):
        raise OutOfScope
    found = s.get(FeeImport, token)
    if found is None or not may_see(user, found.agency_id) or found.applied_at is not None:
        raise OutOfScope
    if found.created_at < utcnow() - timedelta(hours=PREVIEW_HOURS):
        raise OutOfScope
    agency = s.get(Agency, found.agency_id)
    if agency is None:
        raise OutOfScope
    return found, agency


@router.get("/fees/import/{token}", response_class=HTMLResponse)
async def preview_page(token: str, request: Request) -> Response:
    staff = await staff_page(request, ADMINS)
    if not isinstance(staff, Staff):
        return staff
    ctx = ctx_of(request)

    def load() -> tuple[FeeImport, Agency, list[ProcedureDiff], date | None]:
        with ctx.db.read() as s:
            pending, agency = _import_in_scope(s, staff.user, token)
            current = schedule_on(s, agency.id, today())
            new = FeeSchedule.model_validate(pending.content)
            return pending, agency, diff(_in_force_schedule(current), new), current.effective_from

    try:
        pending, agency, changes, in_force = await run_in_threadpool(load)
    except OutOfScope:
        return not_found(request, staff.lang)
    return render(
        request,
        ctx.settings,
        "fees/preview.html",
        staff.lang,
        pending=pending,
        agency=agency,
        changes=changes,
        in_force=in_force,
        csrf=staff.session.csrf_token,
        back=_fees_url(staff.lang, agency.code),
    )


def _conflict(request: Request, staff: Staff, code: str, text: str) -> HTMLResponse:
    t = MESSAGES[staff.lang]
    back = _fees_url(staff.lang, code)
    return render(
        request,
        ctx_of(request).settings,
        "message.html",
        staff.lang,
        status_code=409,
        title=t["fees_conflict_title"],
        message=t[text],
        back=back,
        back_label=t["fees_back"],
    )


@router.post("/fees/import/{token}/apply", response_class=HTMLResponse)
async def apply_submit(token: str, request: Request) -> Response:
    posted = await _simple_form(request)
    if isinstance(posted, Response):
        return posted
    staff = await staff_form(request, ADMINS, posted[1], posted[0])
    if not isinstance(staff, Staff):
        return staff
    ctx = ctx_of(request)
    ip = client_ip(request)
    day_now = today()

    class TooLate(Exception):
        # The agency's code only: the rolled-back transaction leaves its row unreadable.
        def __init__(self, code: str) -> None:
            self.code = code

    def apply() -> str:
        with ctx.db.write() as s:
            pending, agency = _import_in_scope(s, staff.user, token)
            if pending.effective_from < day_now:
                raise TooLate(agency.code)
            schedule = FeeSchedule.model_validate(pending.content)
            try:
                version = add_version(
                    s, agency.id, schedule, pending.effective_from, pending.source_name, staff.user.id
                )
            except Conflict as exc:
                raise TooLate(agency.code) from exc
            pending.applied_at = utcnow()
            pending.version_id = version.id
            s.add(pending)
            record(
                s,
                agency_id=agency.id,
                actor=staff.user.id,
                ip=ip,
                action="fees.applied",
                target=str(version.id),
                after={
                    "effective_from": version.effective_from.isoformat(),
                    "file": pending.source_name,
                    "sha256": pending.sha256,
                    "procedures": len(schedule.procedures),
                    "lines": sum(len(p.fees) for p in schedule.procedures),
                },
            )
            return agency.code

    try:
        code = await run_in_threadpool(apply)
    except OutOfScope:
        return not_found(request, staff.lang)
    except TooLate as late:
        return _conflict(request, staff, late.code, "fees_conflict_day")
    return RedirectResponse(_fees_url(staff.lang, code, done="applied"), status_code=303)


async def _simple_form(request: Request) -> tuple[str, str] | Response:
    form = await read_form(request, (), max_fields=10)
    return form if isinstance(form, HTMLResponse) else (form.fields["csrf"], form.lang)


@router.post("/fees/versions/{version_id}/undo", response_class=HTMLResponse)
async def undo_submit(version_id: str, request: Request) -> Response:
    posted = await _simple_form(request)
    if isinstance(posted, Response):
        return posted
    staff = await staff_form(request, ADMINS, posted[1], posted[0])
    if not isinstance(staff, Staff):
        return staff
    ctx = ctx_of(request)
    ip = client_ip(request)
    day_now = today()

    class InForce(Exception):
        def __init__(self, code: str) -> None:
            self.code = code

    def undo() -> str:
        with ctx.db.write() as s:
            if not version_id.isdigit() or len(version_id) > 12:
                raise OutOfScope
            version = s.get(FeeScheduleVersion, int(version_id))
            if version is None or not may_see(staff.user, version.agency_id):
                raise OutOfScope
            agency = s.get(Agency, version.agency_id)
            assert agency is not None
            if version.effective_from <= day_now:
                raise InForce(agency.code)
            before = {
                "effective_from": version.effective_from.isoformat(),
                "file": version.source_name,
                "created_by": version.created_by,
            }
            s.execute(update(FeeImport).where(col(FeeImport.version_id) == version.id).values(version_id=None))
            remove_version(s, version, day_now)
            record(
                s,
                agency_id=agency.id,
                actor=staff.user.id,
                ip=ip,
                action="fees.undone",
                target=version_id,
                before=before,
            )
            return agency.code

    try:
        code = await run_in_threadpool(undo)
    except OutOfScope:
        return not_found(request, staff.lang)
    except InForce as in_force:
        return _conflict(request, staff, in_force.code, "fees_conflict_in_force")
    return RedirectResponse(_fees_url(staff.lang, code, done="undone"), status_code=303)
