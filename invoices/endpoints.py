"""/v1/receipts: the issued documents, the signed XML byte for byte, and verification of an uploaded document."""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import Response
from pydantic import BaseModel
from sqlmodel import Session, col, select

from invoices.keys import registered_certificates
from invoices.models import Document, DocumentPurpose
from invoices.verify import InvalidDocument, verify
from payments.auth.deps import CtxDep, require
from payments.auth.models import Scope
from payments.auth.service import Principal
from payments.core.errors import NotFound, ValidationFailed
from payments.core.logging import get_logger
from payments.core.responses import problems

log = get_logger(__name__)
router = APIRouter(prefix="/v1/receipts", tags=["receipts"])
Reader = Annotated[Principal, Depends(require(Scope.payments_read))]


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
    lookup_code: str
    xml_url: str


class VerificationOut(BaseModel):
    valid: bool
    symbol: str
    number: int
    issue_date: date
    seller_tax_code: str
    signer: str
    signing_time: datetime
    total: int
    issued_here: bool


def _out(doc: Document) -> ReceiptOut:
    return ReceiptOut(
        id=doc.id,
        payment_id=doc.payment_id,
        purpose=doc.purpose,
        template=doc.template,
        series=doc.series,
        number=doc.number,
        symbol=f"{doc.template}{doc.series}",
        issue_date=doc.issue_date,
        total=doc.total,
        lookup_code=doc.lookup_code,
        xml_url=f"/v1/receipts/{doc.id}.xml",
    )


def _get(s: Session, agency_id: str, document_id: str) -> Document:
    doc = s.get(Document, document_id)
    if doc is None or doc.agency_id != agency_id:
        raise NotFound(f"no receipt {document_id!r}")
    return doc


@router.get("", response_model=list[ReceiptOut], responses=problems(401, 403, 422))
def get_receipts(
    ctx: CtxDep, principal: Reader, payment_id: Annotated[str, Query(min_length=1, max_length=40)]
) -> list[ReceiptOut]:
    """The documents issued for one payment: its receipt and any corrections, in issue order."""
    with ctx.db.read() as s:
        rows = s.exec(
            select(Document)
            .where(Document.agency_id == principal.agency_id, Document.payment_id == payment_id)
            .order_by(col(Document.created_at))
        )
        return [_out(d) for d in rows]


@router.get("/{document_id}.xml", response_class=Response, responses={200: {"content": {"application/xml": {}}}})
def get_receipt_xml(document_id: str, ctx: CtxDep, principal: Reader) -> Response:
    """The signed XML exactly as issued: the legal original."""
    with ctx.db.read() as s:
        doc = _get(s, principal.agency_id, document_id)
    return Response(
        doc.xml,
        media_type="application/xml",
        headers={"Content-Disposition": f'attachment; filename="{doc.template}{doc.series}-{doc.number:08d}.xml"'},
    )


@router.get("/{document_id}", response_model=ReceiptOut, responses=problems(401, 403, 404))
def get_receipt(document_id: str, ctx: CtxDep, principal: Reader) -> ReceiptOut:
    """One issued document's metadata."""
    with ctx.db.read() as s:
        return _out(_get(s, principal.agency_id, document_id))


@router.post(
    "/verify",
    response_model=VerificationOut,
    responses=problems(401, 403, 413, 422),
    openapi_extra={"requestBody": {"content": {"application/xml": {}}, "required": True}},
)
async def post_verify(request: Request, ctx: CtxDep, principal: Reader) -> VerificationOut:
    """Verify an e-receipt's signature against the agencies' registered certificates; says what was verified or
    exactly why not."""
    body = await request.body()
    try:
        result = verify(body, registered_certificates(ctx.settings))
    except InvalidDocument as exc:
        raise ValidationFailed(f"the document does not verify: {exc.detail}", reason=str(exc.reason)) from exc
    with ctx.db.read() as s:
        stored = s.exec(
            select(Document).where(
                Document.series == result.series, Document.template == result.template, Document.number == result.number
            )
        ).first()
    return VerificationOut(
        valid=True,
        symbol=f"{result.template}{result.series}",
        number=result.number,
        issue_date=result.issue_date,
        seller_tax_code=result.seller_tax_code,
        signer=result.signer_subject,
        signing_time=result.signing_time,
        total=result.total,
        issued_here=stored is not None and stored.xml == body,
    )
