"""The receipts pages: the search over issued documents, one document (its fields, files, chain and messages to the
tax authority, and the replace form), its XML and PDF, and the verification of an uploaded XML file.

Every role reads them: each sees its own agency's documents, a province admin any agency's (``?agency=CODE``) or all
of them; another agency's document answers the same 404 page as an unknown one, on every route. Only finance and
agency admins replace a document. The files are the API's bytes: the signed XML as stored, the PDF rendered from it."""

from __future__ import annotations

from urllib.parse import urlencode

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from sqlmodel import Session, col, select
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile

from console import roles
from console.guard import (
    FormData,
    OutOfScope,
    Staff,
    agency_for,
    bad_request,
    client_ip,
    ctx_of,
    form_text,
    not_found,
    read_form,
    staff_form,
    staff_page,
)
from console.i18n import MESSAGES
from console.receipts import service
from console.receipts.service import MAKERS, NotHere, Refused
from console.render import BadLanguage, language, render
from console.staff.models import Role
from invoices.context import ReceiptContext
from invoices.errors import InvalidDocument, Reason
from invoices.service import lookup_url
from invoices.tables import Document, DocumentPurpose
from invoices.verification import Verification, verify_upload
from invoices.xmldsig import MAX_XML_BYTES
from payments.agency.models import Agency

router = APIRouter(prefix="/console/receipts", include_in_schema=False)

# The verify form's body: the XML file (at most the API's limit) and the form's few fields around it.
MAX_BODY = MAX_XML_BYTES + 64 * 1024


def _rctx(request: Request) -> ReceiptContext:
    # The service's container is also the invoices package's context: the same signers and settings as the API.
    rctx: ReceiptContext = request.app.state.ctx
    return rctx


def _agencies(s: Session) -> list[Agency]:
    return list(s.exec(select(Agency).order_by(col(Agency.code))).all())


@router.get("", response_class=HTMLResponse)
async def list_page(request: Request) -> Response:
    staff = await staff_page(request, roles.RECEIPTS)
    if not isinstance(staff, Staff):
        return staff
    try:
        filters = service.parse_filters(request.query_params)
        cursor = service.parse_cursor(request.query_params)
    except service.BadFilter:
        return bad_request(request, staff.lang)
    ctx = ctx_of(request)
    # The filter form's "all agencies" choice sends an empty value.
    code = request.query_params.get("agency") or None
    province = staff.user.role == Role.province_admin

    def load() -> tuple[Agency | None, service.Found, list[Agency]]:
        with ctx.db.read() as s:
            agency = agency_for(s, staff.user, code)
            found = service.search(s, filters, agency.id if agency else None, cursor)
            return agency, found, _agencies(s) if province else []

    try:
        agency, found, agencies = await run_in_threadpool(load)
    except OutOfScope:
        return not_found(request, staff.lang)
    base = {"lang": staff.lang, **({"agency": agency.code} if agency and province else {}), **filters.query()}

    def url(**extra: str) -> str:
        return "/console/receipts?" + urlencode({**base, **extra})

    return render(
        request,
        ctx.settings,
        "receipts/list.html",
        staff.lang,
        agency=agency,
        agencies=agencies,
        province=province,
        found=found,
        filters=filters,
        kinds=[p.value for p in DocumentPurpose],
        transmissions=service.TRANSMISSIONS,
        url=url,
    )


# --- Verify (before /{document_id}, which would take "verify" for an id) ----------------------------------------

REASON_KEYS = {reason: f"receipts_why_{reason.name}" for reason in Reason}


def _verify_view(
    request: Request,
    staff: Staff,
    status: int = 200,
    result: Verification | None = None,
    error: str | None = None,
    detail: str = "",
    file_name: str = "",
    receipt_id: str | None = None,
) -> HTMLResponse:
    return render(
        request,
        ctx_of(request).settings,
        "receipts/verify.html",
        staff.lang,
        status_code=status,
        csrf=staff.session.csrf_token,
        result=result,
        error=error,
        detail=detail,
        file_name=file_name,
        receipt_id=receipt_id,
        max_mb=MAX_XML_BYTES // (1024 * 1024),
    )


@router.get("/verify", response_class=HTMLResponse)
async def verify_page(request: Request) -> Response:
    staff = await staff_page(request, roles.RECEIPTS)
    if not isinstance(staff, Staff):
        return staff
    return _verify_view(request, staff)


def _file_name(upload: UploadFile) -> str:
    name = (upload.filename or "").replace("\\", "/").rsplit("/", 1)[-1]
    return "".join(c for c in name if ord(c) >= 32 and ord(c) != 127)[:200]


@router.post("/verify", response_class=HTMLResponse)
async def verify_submit(request: Request) -> Response:
    try:
        form = await request.form(max_files=1, max_fields=10, max_part_size=16 * 1024)
        fields = {name: form_text(form.get(name, "")) for name in ("csrf", "lang")}
        upload = form.get("file")
    except Exception:  # the form parsers' errors have no common base class
        return bad_request(request)
    try:
        lang = language(request, fields["lang"] or None)
    except BadLanguage:
        return bad_request(request)
    staff = await staff_form(request, roles.RECEIPTS, lang, fields["csrf"])
    if not isinstance(staff, Staff):
        return staff
    return await _verify(request, staff, upload)


async def _verify(request: Request, staff: Staff, upload: object) -> Response:
    """Verify the uploaded file and say what it is, or exactly why it does not verify; nothing is stored."""
    t = MESSAGES[staff.lang]
    if not isinstance(upload, UploadFile):
        return _verify_view(request, staff, 400, error=t["receipts_verify_no_file"])
    name = _file_name(upload)
    data = await upload.read(MAX_XML_BYTES + 1)
    if len(data) > MAX_XML_BYTES:
        error = t["receipts_why_too_large"].format(mb=MAX_XML_BYTES // (1024 * 1024))
        return _verify_view(request, staff, 413, error=error, file_name=name)
    if not data:
        return _verify_view(request, staff, 400, error=t["receipts_verify_no_file"], file_name=name)
    rctx = _rctx(request)

    def check() -> tuple[Verification, str | None]:
        with rctx.db.read() as s:
            checked = verify_upload(s, rctx.settings, data)
            return checked, _issued_id(s, staff, checked)

    try:
        result, receipt_id = await run_in_threadpool(check)
    except InvalidDocument as exc:
        why = t[REASON_KEYS[exc.reason]].format(mb=MAX_XML_BYTES // (1024 * 1024))
        return _verify_view(request, staff, 400, error=why, detail=exc.detail[:1000], file_name=name)
    return _verify_view(request, staff, result=result, file_name=name, receipt_id=receipt_id)


def _issued_id(s: Session, staff: Staff, checked: Verification) -> str | None:
    """The stored document these exact bytes are, when the user may open it."""
    if not checked.issued_here:
        return None
    doc = checked.document
    agency = s.exec(select(Agency).where(col(Agency.code) == doc.agency)).first()
    if agency is None or (staff.user.role != Role.province_admin and agency.id != staff.user.agency_id):
        return None
    return s.exec(
        select(Document.id).where(
            col(Document.agency_id) == agency.id,
            col(Document.template) == doc.template,
            col(Document.series) == doc.series,
            col(Document.year) == doc.issue_date.year,
            col(Document.number) == doc.number,
        )
    ).first()


# --- One document -------------------------------------------------------------------------------------------------

DONE = {"replaced"}


def _detail_view(
    request: Request,
    staff: Staff,
    d: service.Detail,
    status: int = 200,
    error: str | None = None,
    error_detail: str = "",
    form: dict[str, str] | None = None,
) -> HTMLResponse:
    t = MESSAGES[staff.lang]
    done = request.query_params.get("done", "")
    maker = staff.user.role in MAKERS
    return render(
        request,
        ctx_of(request).settings,
        "receipts/detail.html",
        staff.lang,
        status_code=status,
        d=d,
        csrf=staff.session.csrf_token,
        notice=t[f"receipts_done_{done}"] if done in DONE and error is None else None,
        error=error,
        error_detail=error_detail,
        may_replace=maker and d.replaceable,
        form=form if form is not None else service.current_payer(d.doc),
        reason=(form or {}).get("reason", ""),
        lookup=lookup_url(_rctx(request), d.doc.lookup_code),
        province=staff.user.role == Role.province_admin,
    )


def _load(request: Request, staff: Staff, document_id: str) -> service.Detail:
    with ctx_of(request).db.read() as s:
        return service.detail(s, staff.user, document_id)


@router.get("/{document_id}", response_class=HTMLResponse)
async def detail_page(document_id: str, request: Request) -> Response:
    staff = await staff_page(request, roles.RECEIPTS)
    if not isinstance(staff, Staff):
        return staff
    try:
        d = await run_in_threadpool(_load, request, staff, document_id)
    except NotHere:
        return not_found(request, staff.lang)
    return _detail_view(request, staff, d)


def _document(request: Request, staff: Staff, document_id: str) -> Document:
    with ctx_of(request).db.read() as s:
        return service.get_document(s, staff.user, document_id)


@router.get("/{document_id}/xml")
async def xml_download(document_id: str, request: Request) -> Response:
    staff = await staff_page(request, roles.RECEIPTS)
    if not isinstance(staff, Staff):
        return staff
    try:
        doc = await run_in_threadpool(_document, request, staff, document_id)
    except NotHere:
        return not_found(request, staff.lang)
    headers = {"Content-Disposition": f'attachment; filename="{doc.file_name("xml")}"', "Cache-Control": "no-store"}
    return Response(doc.xml, media_type="application/xml", headers=headers)


@router.get("/{document_id}/pdf")
async def pdf_download(document_id: str, request: Request) -> Response:
    staff = await staff_page(request, roles.RECEIPTS)
    if not isinstance(staff, Staff):
        return staff
    try:
        doc = await run_in_threadpool(_document, request, staff, document_id)
    except NotHere:
        return not_found(request, staff.lang)
    from invoices.render import agency_logo, render_pdf

    rctx = _rctx(request)
    code = doc.lookup_code

    def render() -> bytes:
        # The same copy the API and the payer get: with the agency's logo when it has one.
        with rctx.db.read() as s:
            logo = agency_logo(s, doc.agency_id)
        return render_pdf(doc.xml, lookup_url=lookup_url(rctx, code), lookup_code=code, logo=logo)

    pdf = await run_in_threadpool(render)
    headers = {"Content-Disposition": f'inline; filename="{doc.file_name("pdf")}"', "Cache-Control": "no-store"}
    return Response(pdf, media_type="application/pdf", headers=headers)


@router.get("/{document_id}/notice")
async def notice_download(document_id: str, request: Request) -> Response:
    """The signed 04/SS-HĐĐT notice sent about this document's replacement."""
    staff = await staff_page(request, roles.RECEIPTS)
    if not isinstance(staff, Staff):
        return staff
    try:
        d = await run_in_threadpool(_load, request, staff, document_id)
    except NotHere:
        return not_found(request, staff.lang)
    if d.notice is None:
        return not_found(request, staff.lang)
    body = service.notice_bytes(d.notice.message)
    name = f"04SS-{d.notice.message.mtdiep}.xml"
    headers = {"Content-Disposition": f'attachment; filename="{name}"', "Cache-Control": "no-store"}
    return Response(body, media_type="application/xml", headers=headers)


@router.post("/{document_id}/replace", response_class=HTMLResponse)
async def replace_submit(document_id: str, request: Request) -> Response:
    posted = await read_form(request, (*service.PAYER_FIELDS, "reason"))
    if isinstance(posted, HTMLResponse):
        return posted
    staff = await staff_form(request, MAKERS, posted.lang, posted.fields["csrf"])
    if not isinstance(staff, Staff):
        return staff
    return await _replace(request, staff, posted, document_id)


async def _replace(request: Request, staff: Staff, posted: FormData, document_id: str) -> Response:
    rctx = _rctx(request)
    ip = client_ip(request)

    def change() -> str:
        with rctx.db.write() as s:
            return service.replace(s, rctx, staff.user, document_id, posted.fields, ip).id

    try:
        new_id = await run_in_threadpool(change)
    except NotHere:
        return not_found(request, staff.lang)
    except Refused as refused:
        try:
            d = await run_in_threadpool(_load, request, staff, document_id)
        except NotHere:
            return not_found(request, staff.lang)
        error = MESSAGES[staff.lang][refused.key]
        kept = {k: posted.fields[k][:400] for k in (*service.PAYER_FIELDS, "reason")}
        return _detail_view(request, staff, d, refused.status, error, refused.detail, kept)
    return RedirectResponse(
        f"/console/receipts/{new_id}?" + urlencode({"lang": staff.lang, "done": "replaced"}), status_code=303
    )
