"""/v1/receipts: the issued documents, the signed XML byte for byte, and verification of an uploaded document."""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse, JSONResponse, Response
from pydantic import BaseModel, Field
from sqlmodel import Session, col, select

from invoices.context import ReceiptContext, ReceiptCtxDep
from invoices.errors import InvalidDocument
from invoices.service import BuyerChanges, lookup_url, replace_document
from invoices.tables import Document, DocumentPurpose
from invoices.tax.tables import TaxMessage, TaxMessageKind
from invoices.verification import Verification, verify_upload
from invoices.xmldsig import MAX_XML_BYTES
from payments.auth.access import is_foreign, owned_or_404
from payments.auth.deps import actor_of, require
from payments.auth.models import Scope
from payments.auth.service import Principal
from payments.core.errors import ValidationFailed
from payments.core.logging import get_logger
from payments.core.responses import problems, respond
from payments.core.schemas import StrictModel
from payments.idempotency.deps import Idempotent
from payments.payment.models import Payment

log = get_logger(__name__)
router = APIRouter(prefix="/v1/receipts", tags=["receipts"])
Reader = Annotated[Principal, Depends(require(Scope.payments_read))]
Staff = Annotated[Principal, Depends(require(Scope.receipts_write))]


class ReceiptOut(BaseModel):
    id: str
    payment_id: str
    purpose: DocumentPurpose
    template: str
    series: str
    number: int
    symbol: str
    issue_date: date
    total: int
    related_document_id: str | None
    refund_id: str | None
    reason: str | None
    lookup_code: str
    lookup_url: str
    xml_url: str
    pdf_url: str
    html_url: str
    transmission: TransmissionOut | None = None


class TransmissionOut(BaseModel):
    """The document's message to the tax authority (through the T-VAN provider) and what became of it."""

    message_id: str
    message_type: int
    status: str
    mccqt: str | None
    error: str | None
    sent_at: datetime | None


class PayerChanges(StrictModel):
    name: str | None = Field(default=None, min_length=1, max_length=400)
    tax_code: str | None = Field(default=None, max_length=14)
    address: str | None = Field(default=None, min_length=1, max_length=400)
    email: str | None = Field(default=None, max_length=50)
    phone: str | None = Field(default=None, max_length=20)


class ReplacementIn(StrictModel):
    reason: str = Field(min_length=1, max_length=255, examples=["Sai tên người nộp"])
    payer: PayerChanges


class VerificationOut(BaseModel):
    """What the seller's signature covers; only these values may be relied on."""

    valid: bool
    symbol: str
    number: int
    issue_date: date
    seller_tax_code: str
    seller_agency: str = Field(description="The agency the signing certificate is registered for (its code).")
    seller_name: str
    signer: str = Field(description="The signing certificate's subject (RFC 4514); its UID=MST is the seller's.")
    signing_time: datetime
    total: int
    issued_here: bool = Field(description="This service issued exactly these bytes, in the seller agency's series.")
    signed_values: dict[str, str] = Field(
        description="Every value the signature covers, by its path in DLHDon (repeated elements numbered from 1)."
    )
    unsigned_parts: list[str] = Field(
        description="Parts present that the seller's signature does not cover (e.g. MCCQT, DSCKS/CQT): not verified."
    )


def _transmission(s: Session, document_id: str) -> TransmissionOut | None:
    message = s.exec(
        select(TaxMessage)
        .where(TaxMessage.document_id == document_id, TaxMessage.kind == TaxMessageKind.document)
        .order_by(col(TaxMessage.created_at).desc())
    ).first()
    if message is None:
        return None
    return TransmissionOut(
        message_id=message.mtdiep,
        message_type=message.message_type,
        status=message.status.value,
        mccqt=message.mccqt,
        error=message.error,
        sent_at=message.sent_at,
    )


def _out(ctx: ReceiptContext, doc: Document, s: Session | None = None) -> ReceiptOut:
    return ReceiptOut(
        transmission=_transmission(s, doc.id) if s is not None else None,
        id=doc.id,
        payment_id=doc.payment_id,
        purpose=doc.purpose,
        template=doc.template,
        series=doc.series,
        number=doc.number,
        symbol=f"{doc.template}{doc.series}",
        issue_date=doc.issue_date,
        total=doc.total,
        related_document_id=doc.related_document_id,
        refund_id=doc.refund_id,
        reason=doc.reason,
        lookup_code=doc.lookup_code,
        lookup_url=lookup_url(ctx, doc.lookup_code),
        xml_url=f"/v1/receipts/{doc.id}.xml",
        pdf_url=f"/v1/receipts/{doc.id}.pdf",
        html_url=f"/v1/receipts/{doc.id}.html",
    )


def _get(s: Session, agency_id: str, document_id: str) -> Document:
    return owned_or_404(s.get(Document, document_id), agency_id, "receipt", document_id)


def _of_payment(s: Session, agency_id: str, payment_id: str) -> None:
    """Another agency's payment lists no receipts, as a missing one does; the attempt is logged."""
    is_foreign(s.get(Payment, payment_id), agency_id, payment_id)


@router.get("", response_model=list[ReceiptOut], responses=problems(401, 403, 422))
def get_receipts(
    ctx: ReceiptCtxDep, principal: Reader, payment_id: Annotated[str, Query(min_length=1, max_length=40)]
) -> list[ReceiptOut]:
    """The documents issued for one payment: its receipt and any corrections, in issue order."""
    with ctx.db.read() as s:
        _of_payment(s, principal.agency_id, payment_id)
        rows = s.exec(
            select(Document)
            .where(Document.agency_id == principal.agency_id, Document.payment_id == payment_id)
            .order_by(col(Document.created_at))
        )
        return [_out(ctx, d, s) for d in rows]


@router.get("/{document_id}.xml", response_class=Response, responses={200: {"content": {"application/xml": {}}}})
def get_receipt_xml(document_id: str, ctx: ReceiptCtxDep, principal: Reader) -> Response:
    """The signed XML exactly as issued: the legal original."""
    with ctx.db.read() as s:
        doc = _get(s, principal.agency_id, document_id)
    return Response(
        doc.xml,
        media_type="application/xml",
        headers={"Content-Disposition": f'attachment; filename="{doc.file_name("xml")}"'},
    )


@router.get("/{document_id}.pdf", response_class=Response, responses={200: {"content": {"application/pdf": {}}}})
def get_receipt_pdf(document_id: str, ctx: ReceiptCtxDep, principal: Reader) -> Response:
    """A PDF copy of the document for printing (Vietnamese, embedded font, QR code to the public lookup page). The
    signed XML is the legal original."""
    from invoices.render import agency_logo, render_pdf  # WeasyPrint takes a second to import: only for a PDF

    with ctx.db.read() as s:
        doc = _get(s, principal.agency_id, document_id)
        logo = agency_logo(s, doc.agency_id)
    pdf = render_pdf(doc.xml, lookup_url=lookup_url(ctx, doc.lookup_code), lookup_code=doc.lookup_code, logo=logo)
    disposition = f'inline; filename="{doc.file_name("pdf")}"'
    return Response(pdf, media_type="application/pdf", headers={"Content-Disposition": disposition})


@router.get("/{document_id}.html", response_class=HTMLResponse)
def get_receipt_html(
    document_id: str,
    request: Request,
    ctx: ReceiptCtxDep,
    principal: Reader,
    lang: Annotated[Literal["vi", "en"], Query()] = "vi",
) -> HTMLResponse:
    """The document as a web page, from the same template as the PDF."""
    from invoices.render import agency_logo, render_html
    from payments.core.security import nonce

    with ctx.db.read() as s:
        doc = _get(s, principal.agency_id, document_id)
        logo = agency_logo(s, doc.agency_id)
    page_nonce = nonce(request)
    code = doc.lookup_code
    html = render_html(
        doc.xml, lookup_url=lookup_url(ctx, code), lookup_code=code, lang=lang, nonce=page_nonce, logo=logo
    )
    return HTMLResponse(html)


@router.get("/{document_id}", response_model=ReceiptOut, responses=problems(401, 403, 404))
def get_receipt(document_id: str, ctx: ReceiptCtxDep, principal: Reader) -> ReceiptOut:
    """One issued document's metadata."""
    with ctx.db.read() as s:
        return _out(ctx, _get(s, principal.agency_id, document_id), s)


@router.post(
    "/verify",
    response_model=VerificationOut,
    responses=problems(401, 403, 413, 422),
    openapi_extra={
        "requestBody": {"content": {"application/xml": {}}, "required": True},
        "x-max-body-bytes": MAX_XML_BYTES,
    },
)
async def post_verify(request: Request, ctx: ReceiptCtxDep, principal: Reader) -> VerificationOut:
    """Verify an e-receipt: signed by a certificate registered for the seller it names, unaltered, nothing unsigned
    riding along, valid against the format's XSD. Says exactly which values were signed, or why it does not verify."""
    body = await request.body()

    def check() -> Verification:
        with ctx.db.read() as s:
            return verify_upload(s, ctx.settings, body)

    try:
        # Up to 2 MiB of parsing, canonicalization, RSA and XSD work: off the event loop, or it stalls every request.
        checked = await run_in_threadpool(check)
    except InvalidDocument as exc:
        raise ValidationFailed(f"the document does not verify: {exc.detail}", reason=str(exc.reason)) from exc
    result = checked.document
    return VerificationOut(
        valid=True,
        symbol=f"{result.template}{result.series}",
        number=result.number,
        issue_date=result.issue_date,
        seller_tax_code=result.seller_tax_code,
        seller_agency=result.agency,
        seller_name=checked.agency_name,
        signer=result.signer_subject,
        signing_time=result.signing_time,
        total=result.total,
        issued_here=checked.issued_here,
        signed_values=result.signed_values,
        unsigned_parts=list(result.unsigned_parts),
    )


@router.post(
    "/{document_id}/replace",
    response_model=ReceiptOut,
    status_code=201,
    responses=problems(400, 401, 403, 404, 409, 413, 422),
)
def post_replace(
    document_id: str, data: ReplacementIn, ctx: ReceiptCtxDep, principal: Staff, idem: Idempotent
) -> JSONResponse:
    """Replace an issued receipt whose payer details are wrong (TCHDon 1): a new signed document with a new number
    that names the replaced one. The amounts come from the dossier and cannot change; a refund is an adjustment."""
    changes = BuyerChanges(**data.payer.model_dump())
    if changes == BuyerChanges():
        raise ValidationFailed("nothing to correct: give at least one payer field")

    def replace(s: Session) -> tuple[int, dict[str, object]]:
        row = replace_document(
            s, ctx, ctx.signers, principal.agency_id, document_id, changes, data.reason, actor_of(principal)
        )
        return 201, _out(ctx, row, s).model_dump(mode="json")

    return respond(ctx.idempotency.run_in_transaction(principal.key_id, idem.key, idem.fingerprint(data), replace))
