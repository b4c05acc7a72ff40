"""``/console/certificate``: the agency's signing certificate, and its replacement by an agency or province admin.

Finance and viewer staff see the certificate; only admins replace it. A replacement is checked completely (format,
password, key size, key and certificate matching, the agency's tax code in the subject, validity today) before
anything is written, then installed for every process (``invoices.keys.install_certificate``) in the transaction
that writes its audit row: if the files cannot be written, the row is rolled back with the error page."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Protocol
from urllib.parse import urlencode

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from sqlmodel import select
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile

from console import roles
from console.audit.service import record
from console.certificate import checks
from console.certificate.checks import Facts, Refused
from console.guard import (
    ADMINS,
    OutOfScope,
    Staff,
    agency_for,
    agency_or_choice,
    bad_request,
    client_ip,
    ctx_of,
    form_text,
    not_found,
    scoped_read,
    staff_form,
    staff_page,
)
from console.i18n import MESSAGES
from console.render import BadLanguage, language, render
from invoices.config import ReceiptSettings
from invoices.keys import SignerStore, current_certificate, install_certificate
from payments.agency.models import Agency
from payments.core.db import Database
from payments.core.logging import get_logger

log = get_logger(__name__)
router = APIRouter(prefix="/console", include_in_schema=False)

KINDS = ("p12", "pem")
# Both PEM files at their limit, plus the form's other fields and multipart framing.
MAX_BODY = 2 * checks.MAX_FILE + 16 * 1024


class CertificateContext(Protocol):
    @property
    def settings(self) -> ReceiptSettings: ...
    @property
    def db(self) -> Database: ...
    @property
    def signers(self) -> SignerStore: ...


def _ctx(request: Request) -> CertificateContext:
    ctx: CertificateContext = request.app.state.ctx
    return ctx


@dataclass(frozen=True)
class Current:
    facts: Facts | None
    unreadable: bool


def _now() -> datetime:
    return datetime.now(UTC)


def _current(request: Request, code: str) -> Current:
    try:
        certificate = current_certificate(_ctx(request).settings, code)
    except (OSError, ValueError, TypeError) as exc:
        log.error("console.certificate_unreadable", agency=code, error_type=type(exc).__name__)
        return Current(None, True)
    return Current(checks.facts(certificate) if certificate is not None else None, False)


def _view(
    request: Request,
    staff: Staff,
    agency: Agency | None,
    agencies: list[Agency],
    *,
    error: str | None = None,
    notice: str | None = None,
    status: int = 200,
) -> HTMLResponse:
    current = _current(request, agency.code) if agency is not None else Current(None, False)
    return render(
        request,
        ctx_of(request).settings,
        "certificate.html",
        staff.lang,
        status_code=status,
        agency=agency,
        agencies=agencies,
        current=current,
        now=_now(),
        may_replace=staff.user.role in ADMINS,
        csrf=staff.session.csrf_token,
        max_kb=checks.MAX_FILE // 1024,
        error=error,
        notice=notice,
    )


@router.get("/certificate", response_class=HTMLResponse)
async def certificate_page(request: Request) -> Response:
    staff = await staff_page(request, roles.CERTIFICATE)
    if not isinstance(staff, Staff):
        return staff
    code = request.query_params.get("agency")
    choice = await scoped_read(request, staff, lambda s: agency_or_choice(s, staff.user, code))
    if isinstance(choice, Response):
        return choice
    done = request.query_params.get("done") == "replaced"
    notice = MESSAGES[staff.lang]["cert_replaced_done"] if done else None
    return await run_in_threadpool(_view, request, staff, choice.agency, choice.agencies, notice=notice)


@dataclass(frozen=True)
class Upload:
    fields: dict[str, str]
    files: dict[str, bytes]
    lang: str


async def _upload(request: Request) -> Upload | Response:
    """The form's fields and files, or the 400 page for a form that is not ours. A file over the limit is read
    only up to one byte past it, and refused later with its own message."""
    try:
        form = await request.form(max_files=3, max_fields=10, max_part_size=16 * 1024)
        fields = {name: form_text(form.get(name, "")) for name in ("csrf", "lang", "agency", "kind", "password")}
        files: dict[str, bytes] = {}
        for name in ("p12", "cert", "key"):
            value = form.get(name)
            if value is None or value == "":
                files[name] = b""
            elif isinstance(value, UploadFile):
                files[name] = await value.read(checks.MAX_FILE + 1)
            else:
                return bad_request(request)
    except Exception:  # the form parsers' errors have no common base class
        return bad_request(request)
    try:
        lang = language(request, fields["lang"] or None)
    except BadLanguage:
        return bad_request(request)
    if fields["kind"] not in KINDS:
        return bad_request(request, lang)
    return Upload(fields, files, lang)


def _candidate(upload: Upload) -> checks.Candidate:
    password = upload.fields["password"]
    if upload.fields["kind"] == "p12":
        return checks.from_pkcs12(upload.files["p12"], password)
    return checks.from_pem(upload.files["cert"], upload.files["key"], password)


@router.post("/certificate", response_class=HTMLResponse)
async def certificate_replace(request: Request) -> Response:
    upload = await _upload(request)
    if not isinstance(upload, Upload):
        return upload
    staff = await staff_form(request, ADMINS, upload.lang, upload.fields["csrf"])
    if not isinstance(staff, Staff):
        return staff
    ctx = _ctx(request)
    code = upload.fields["agency"] or None
    ip = client_ip(request)

    def replace() -> tuple[Agency, str | None]:
        with ctx.db.read() as s:
            agency = agency_for(s, staff.user, code)
            if agency is None:
                raise OutOfScope
        # Parsed and checked before the transaction: opening a .p12 costs a key derivation, no lock is held for it.
        now = _now()
        try:
            candidate = _candidate(upload)
            new = checks.check(candidate, agency.tax_code, now)
        except Refused as refused:
            log.info("console.certificate_refused", agency=agency.code, reason=refused.reason)
            return agency, refused.reason
        try:
            with ctx.db.write() as s:
                # Two replacements of one agency's certificate queue here, so each audit row's "before" is exact.
                s.exec(select(Agency.id).where(Agency.id == agency.id).with_for_update()).first()
                old = _current(request, agency.code).facts
                record(
                    s,
                    agency_id=agency.id,
                    actor=staff.user.id,
                    ip=ip,
                    action="certificate.replaced",
                    target=agency.code,
                    before=old.audit() if old else None,
                    after=new.audit(),
                )
                # Last before the commit: a failed write rolls the audit row back with it.
                install_certificate(ctx.settings, agency.code, candidate.key, candidate.certificate, now)
        except OSError as exc:
            # The signing directory could not be written (disk full, permissions): the audit row is rolled back,
            # and the earlier certificate, whose file is only ever replaced whole, still signs.
            log.error("console.certificate_not_written", agency=agency.code, error_type=type(exc).__name__)
            return agency, "write_failed"
        return agency, None

    try:
        agency, refused = await run_in_threadpool(replace)
    except OutOfScope:
        return not_found(request, staff.lang)
    if refused is not None:
        error = MESSAGES[staff.lang][f"cert_refused_{refused}"]
        status = 500 if refused == "write_failed" else 400  # the server's fault, not the upload's
        return await run_in_threadpool(_view, request, staff, agency, [], error=error, status=status)
    # This process signs with the new key from its next document; the others within SignerStore's check interval.
    ctx.signers.forget(agency.code)
    url = "/console/certificate?" + urlencode({"lang": staff.lang, "agency": agency.code, "done": "replaced"})
    return RedirectResponse(url, status_code=303)
