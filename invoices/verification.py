"""Verification of an uploaded e-receipt, for the API and the CLI: the signature by a certificate registered for the
seller it names, then the format (XSD), then whether this service issued exactly these bytes."""

from __future__ import annotations

from dataclasses import dataclass

from sqlmodel import Session, select

from invoices import validate
from invoices.config import ReceiptSettings
from invoices.keys import registered_pins
from invoices.models import Document
from invoices.verify import MAX_XML_BYTES, InvalidDocument, Reason, VerifiedDocument, verify
from payments.agency.models import Agency

__all__ = ["Verification", "verify_upload"]


@dataclass(frozen=True)
class Verification:
    document: VerifiedDocument
    agency_name: str  # the seller agency the signing certificate is registered for
    issued_here: bool  # this service issued these exact bytes, in that agency's series


def verify_upload(s: Session, settings: ReceiptSettings, xml: bytes) -> Verification:
    """Raise :class:`InvalidDocument` with the precise reason unless ``xml`` is a valid receipt in its signer's name."""
    agencies = {row.code: row for row in s.exec(select(Agency))}
    pins = registered_pins(settings, ((a.code, a.tax_code) for a in agencies.values()))
    document = verify(xml, pins, max_bytes=MAX_XML_BYTES)
    try:
        validate.validate(xml)
    except validate.InvalidDocument as exc:
        # Signed, but not a document of the format: no reader could rely on where its values sit.
        raise InvalidDocument(Reason.schema, "; ".join(exc.errors[:5])) from exc
    agency = agencies[document.agency]
    signed_name = document.signed_values.get("NDHDon/NBan/Ten", "")
    if signed_name != agency.name:
        # The tax code binds the certificate; the name a reader sees must be the same agency's too.
        raise InvalidDocument(
            Reason.wrong_seller, f"the signed seller name is not that of agency {agency.code}, whose key signed it"
        )
    stored = s.exec(
        select(Document).where(
            Document.agency_id == agency.id,
            Document.template == document.template,
            Document.series == document.series,
            Document.year == document.issue_date.year,
            Document.number == document.number,
        )
    ).first()
    return Verification(document, agency.name, stored is not None and stored.xml == xml)
