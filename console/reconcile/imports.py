"""The imported files: the list, the upload form, undoing an import, and running a day's matching.

An upload goes through the importer the command line and the API use (``payments.reconcile.importer``), in the
request: the file is at most ``UPLOAD_MB`` MB (the request limit counts the body as it arrives, and the file is
counted again as it is copied), which the importer reads in seconds, so the result page states the lines processed
when it is done rather than polling a background job. With JavaScript, ``upload.js`` sends the same form and shows
the upload's progress, then the server's answer in place. The audit row is written in the import's own transaction."""

from __future__ import annotations

import shutil
import tempfile
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path, PurePosixPath
from typing import Any

from fastapi import Request
from fastapi.responses import FileResponse, HTMLResponse, Response
from sqlalchemy.exc import SQLAlchemyError
from sqlmodel import Session, col, select
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile

from adapters.statements.base import StatementFormat
from console.audit.service import record
from console.guard import (
    OutOfScope,
    Staff,
    agency_for,
    bad_request,
    client_ip,
    ctx_of,
    form_text,
    may_see,
    not_found,
    scoped_read,
    staff_form,
    staff_page,
)
from console.i18n import MESSAGES
from console.reconcile.common import (
    FIRST_DAY,
    PAGE_SIZE,
    UPLOADERS,
    VIEWERS,
    BadQuery,
    actor_of,
    agencies,
    agency_code,
    app_ctx,
    imports_url,
    page_url,
    parse_day,
    people,
    posted,
    query_page,
    result_page,
    router,
)
from console.render import BadLanguage, language, render
from console.staff.models import Role
from payments.agency.models import Agency
from payments.core.errors import LephiError, NotFound
from payments.core.logging import get_logger
from payments.pages import fmt
from payments.reconcile.importer import ImportResult, import_file
from payments.reconcile.matching import GMT7, RunResult, run_day
from payments.reconcile.models import Category, ReconException, StatementEntry, StatementImport
from payments.reconcile.undo import ImportCreditsApplied, ImportHasResolvedExceptions, undo_import

log = get_logger(__name__)

UPLOAD_MB = 20
UPLOAD_LIMIT = UPLOAD_MB * 1024 * 1024
# The request around the file: the multipart envelope and the form's few small fields.
BODY_LIMIT = UPLOAD_LIMIT + 64 * 1024
# Files staff upload; a bank CSV needs a column mapping file (the command line's ``--mapping``), Stripe is read
# from Stripe's API.
UPLOAD_FORMATS = [
    StatementFormat.vnpay_csv,
    StatementFormat.momo_csv,
    StatementFormat.zalopay_csv,
    StatementFormat.mt940,
    StatementFormat.camt053,
]
CHUNK = 1024 * 1024
UPLOAD_SCRIPT = Path(__file__).with_name("upload.js")


@dataclass(frozen=True)
class ImportsView:
    agency: Agency | None
    rows: list[StatementImport]
    more: bool
    actors: dict[str, str]
    agencies: list[Agency]


@router.get("/imports", response_class=HTMLResponse)
async def imports_page(request: Request) -> Response:
    staff = await staff_page(request, VIEWERS)
    if not isinstance(staff, Staff):
        return staff
    try:
        page = query_page(request)
    except BadQuery:
        return bad_request(request, staff.lang)
    ctx = ctx_of(request)

    def load(s: Session) -> ImportsView:
        agency = agency_for(s, staff.user, agency_code(request))
        if agency is None:
            return ImportsView(None, [], False, {}, agencies(s))
        query = (
            select(StatementImport)
            .where(StatementImport.agency_id == agency.id)
            .order_by(col(StatementImport.created_at).desc(), col(StatementImport.id).desc())
            .offset((page - 1) * PAGE_SIZE)
            .limit(PAGE_SIZE + 1)
        )
        rows = list(s.exec(query).all())
        return ImportsView(
            agency, rows[:PAGE_SIZE], len(rows) > PAGE_SIZE, people(s, {r.imported_by for r in rows}), []
        )

    view = await scoped_read(request, staff, load)
    if isinstance(view, Response):
        return view
    return render(
        request,
        ctx.settings,
        "reconcile_imports.html",
        staff.lang,
        province=staff.user.role == Role.province_admin,
        view=view,
        page=page,
        page_url=lambda n: page_url(request, n),
        can_upload=staff.user.role in UPLOADERS,
        formats=[f.value for f in UPLOAD_FORMATS],
        upload_mb=UPLOAD_MB,
        csrf=staff.session.csrf_token,
        today=datetime.now(GMT7).date().isoformat(),
        first_day=FIRST_DAY.isoformat(),
    )


@router.get("/upload.js", include_in_schema=False)
async def upload_script() -> FileResponse:
    # A file rather than an inline script, so that browsers keep it (and revalidate it); the nonce still allows it.
    return FileResponse(UPLOAD_SCRIPT, media_type="text/javascript", headers={"Cache-Control": "no-cache"})


def _file_name(raw: str | None) -> str | None:
    """The name to record: the last part of what the browser sent, or None for one our form cannot have sent."""
    if not raw:
        return None
    name = PurePosixPath(raw.replace("\\", "/")).name.strip()
    if not name or len(name) > 255 or any(ord(c) < 32 or ord(c) == 127 for c in name) or "\ufffd" in name:
        return None
    return name


def _copy(upload: UploadFile, target: Path) -> bool:
    """Copy the uploaded file, counting; False as soon as it is over the limit."""
    size = 0
    with target.open("wb") as out:
        while chunk := upload.file.read(CHUNK):
            size += len(chunk)
            if size > UPLOAD_LIMIT:
                return False
            out.write(chunk)
    return True


def _import_state(result: ImportResult, name: str, fmt: StatementFormat) -> dict[str, Any]:
    return {
        "file_name": name,
        "format": fmt.value,
        "lines": result.lines,
        "new_lines": result.new_lines,
        "total_amount": result.total_amount,
        "first_day": result.first_day.isoformat() if result.first_day else None,
        "last_day": result.last_day.isoformat() if result.last_day else None,
        "credits_applied": result.credits_applied,
    }


@dataclass(frozen=True)
class Upload:
    staff: Staff
    file: UploadFile
    name: str
    fmt: StatementFormat


async def _upload_form(request: Request) -> Upload | Response:
    """The signed-in uploader's file and format, or the page to answer instead."""
    try:
        form = await request.form(max_files=1, max_fields=10, max_part_size=16 * 1024)
        fields = {name: form_text(form.get(name, "")) for name in ("csrf", "lang", "format")}
        file = form.get("file")
    except Exception:  # the form parsers' errors have no common base class
        return bad_request(request)
    try:
        lang = language(request, fields["lang"] or None)
    except BadLanguage:
        return bad_request(request)
    staff = await staff_form(request, UPLOADERS, lang, fields["csrf"])
    if not isinstance(staff, Staff):
        return staff
    name = _file_name(file.filename) if isinstance(file, UploadFile) else None
    if not isinstance(file, UploadFile) or name is None or fields["format"] not in [f.value for f in UPLOAD_FORMATS]:
        lines = [MESSAGES[lang]["recon_upload_bad"]]
        return result_page(request, lang, 400, "recon_import_failed_title", lines, imports_url(lang))
    return Upload(staff, file, name, StatementFormat(fields["format"]))


def _failed(request: Request, lang: str, name: str, exc: Exception) -> Response:
    """The page for an import that stored nothing."""
    if isinstance(exc, OutOfScope):
        return not_found(request, lang)
    if isinstance(exc, SQLAlchemyError):
        raise exc
    t = MESSAGES[lang]
    if isinstance(exc, LephiError):
        log.info("console.import_failed", file=name, detail=exc.detail)
        lines = [t["recon_import_failed"].format(detail=exc.detail)]
    else:
        # A file the parser could not make sense of at all (binary, a wrong encoding, broken XML): nothing was kept,
        # since the import's transaction did not commit.
        log.warning("console.import_unreadable", file=name, exc_info=exc)
        lines = [t["recon_import_unreadable"]]
    return result_page(request, lang, 422, "recon_import_failed_title", lines, imports_url(lang))


@router.post("/imports", response_class=HTMLResponse)
async def upload(request: Request) -> Response:
    form = await _upload_form(request)
    if not isinstance(form, Upload):
        return form
    staff, name, fmt, lang = form.staff, form.name, form.fmt, form.staff.lang
    t = MESSAGES[lang]
    ctx = app_ctx(request)
    ip = client_ip(request)

    def work(folder: str) -> ImportResult | None:
        path = Path(folder) / "upload"
        if not _copy(form.file, path):
            return None
        with ctx.db.read() as s:
            agency = agency_for(s, staff.user, None)
        if agency is None:
            raise OutOfScope

        def audit(s: Session, result: ImportResult) -> None:
            after = _import_state(result, name, fmt)
            record(
                s,
                agency_id=agency.id,
                actor=staff.user.id,
                ip=ip,
                action="import.uploaded",
                target=result.import_id,
                after=after,
            )

        return import_file(ctx, agency.code, path, fmt, actor=actor_of(staff), file_name=name, on_done=audit)

    folder = tempfile.mkdtemp(prefix="lephi-upload-")
    try:
        result = await run_in_threadpool(work, folder)
    except Exception as exc:
        return _failed(request, lang, name, exc)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    back = imports_url(lang)
    if result is None:
        lines = [t["recon_upload_too_big"].format(mb=UPLOAD_MB)]
        return result_page(request, lang, 413, "recon_import_failed_title", lines, back)
    if result.duplicate_file:
        return result_page(request, lang, 200, "recon_imported_title", [t["recon_duplicate"].format(file=name)], back)
    lines = [t["recon_imported"].format(file=name, lines=result.lines, new=result.new_lines)]
    if result.credits_applied:
        lines.append(t["recon_credits_applied"].format(count=result.credits_applied))
    return result_page(request, lang, 200, "recon_imported_title", lines, back)


def _import_in_scope(s: Session, staff: Staff, import_id: str) -> StatementImport:
    row = s.get(StatementImport, import_id) if 0 < len(import_id) <= 40 else None
    if row is None or not may_see(staff.user, row.agency_id):
        raise OutOfScope
    return row


@router.get("/imports/{import_id}/undo", response_class=HTMLResponse)
async def undo_page(import_id: str, request: Request) -> Response:
    staff = await staff_page(request, UPLOADERS)
    if not isinstance(staff, Staff):
        return staff
    ctx = ctx_of(request)

    def load(s: Session) -> tuple[StatementImport, list[ReconException]]:
        row = _import_in_scope(s, staff, import_id)
        lines = select(StatementEntry.id).where(StatementEntry.import_id == row.id)
        query = select(ReconException).where(
            ReconException.agency_id == row.agency_id, col(ReconException.entry_id).in_(lines)
        )
        return row, list(s.exec(query.order_by(col(ReconException.id))).all())

    loaded = await scoped_read(request, staff, load)
    if isinstance(loaded, Response):
        return loaded
    row, exceptions = loaded
    return render(
        request,
        ctx.settings,
        "reconcile_undo.html",
        staff.lang,
        row=row,
        exceptions=exceptions,
        csrf=staff.session.csrf_token,
    )


@router.post("/imports/{import_id}/undo", response_class=HTMLResponse)
async def undo_submit(import_id: str, request: Request) -> Response:
    form = await posted(request)
    if isinstance(form, HTMLResponse):
        return form
    staff = await staff_form(request, UPLOADERS, form.lang, form.fields["csrf"])
    if not isinstance(staff, Staff):
        return staff
    ctx = ctx_of(request)
    ip = client_ip(request)
    t = MESSAGES[staff.lang]
    back = imports_url(staff.lang)

    def undo() -> dict[str, Any]:
        with ctx.db.write() as s:
            agency = agency_for(s, staff.user, None)
            if agency is None or len(import_id) > 40:
                raise OutOfScope
            try:
                done = undo_import(s, agency.id, import_id, actor_of(staff))
            except NotFound:
                raise OutOfScope from None
            before = {
                "file_name": done.file_name,
                "source": done.source,
                "sha256": done.sha256,
                "lines": done.lines,
                "exceptions_removed": done.exceptions,
                "credits_removed": done.credits,
            }
            record(
                s,
                agency_id=agency.id,
                actor=staff.user.id,
                ip=ip,
                action="import.undone",
                target=done.import_id,
                before=before,
            )
            return before

    try:
        before = await run_in_threadpool(undo)
    except OutOfScope:
        return not_found(request, staff.lang)
    except ImportHasResolvedExceptions as exc:
        lines = [t["recon_undo_resolved"].format(ids=", ".join(exc.extra["exceptions"]))]
        return result_page(request, staff.lang, 409, "recon_undo_refused_title", lines, back)
    except ImportCreditsApplied as exc:
        lines = [t["recon_undo_credits"].format(ids=", ".join(exc.extra["credits"]))]
        return result_page(request, staff.lang, 409, "recon_undo_refused_title", lines, back)
    text = t["recon_undone"].format(
        file=before["file_name"], lines=before["lines"], exceptions=before["exceptions_removed"]
    )
    return result_page(request, staff.lang, 200, "recon_undo_title", [text], back)


@router.post("/runs", response_class=HTMLResponse)
async def run_submit(request: Request) -> Response:
    form = await posted(request, "business_day")
    if isinstance(form, HTMLResponse):
        return form
    staff = await staff_form(request, UPLOADERS, form.lang, form.fields["csrf"])
    if not isinstance(staff, Staff):
        return staff
    t = MESSAGES[staff.lang]
    back = imports_url(staff.lang)
    day = parse_day(form.fields["business_day"].strip())
    if day is None or day > datetime.now(GMT7).date():
        return result_page(request, staff.lang, 400, "recon_run_title", [t["recon_run_bad_day"]], back)
    ctx = ctx_of(request)
    ip = client_ip(request)

    def run(when: date) -> RunResult:
        with ctx.db.read() as s:
            agency = agency_for(s, staff.user, None)
        if agency is None:
            raise OutOfScope

        def audit(s: Session, result: RunResult) -> None:
            after = {
                "business_day": when.isoformat(),
                "counts": result.counts,
                "opened": result.opened,
                "cleared": result.cleared,
            }
            record(
                s,
                agency_id=agency.id,
                actor=staff.user.id,
                ip=ip,
                action="recon.run",
                target=result.run_id,
                after=after,
            )

        return run_day(app_ctx(request), agency.id, when, actor_of(staff), on_done=audit)

    try:
        result = await run_in_threadpool(run, day)
    except OutOfScope:
        return not_found(request, staff.lang)
    text = t["recon_run_done"].format(
        day=fmt.day(day, staff.lang),
        opened=result.opened,
        cleared=result.cleared,
    )
    counts = {c.value: result.counts.get(c.value, 0) for c in Category}
    return result_page(request, staff.lang, 200, "recon_run_done_title", [text], back, counts=counts)
