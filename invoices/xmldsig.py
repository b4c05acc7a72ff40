"""What signing and verifying share: the XML-DSig profile of e-receipts and notices (domain.md 3.4), where each
layout keeps its signed data and signature, and the hardened parser every untrusted or to-be-signed XML goes through.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta, timezone
from typing import Any, TypeAlias

from lxml import etree  # type: ignore[import-untyped]  # lxml ships no type information and no stubs are installed

from invoices.errors import InvalidDocument, Reason

__all__ = [
    "C14N",
    "DOCUMENT",
    "DS",
    "ENVELOPED",
    "MAX_XML_BYTES",
    "NOTICE",
    "RSA_SHA256",
    "SHA256",
    "SIGNATURE_PROPERTIES_TYPE",
    "VIETNAM",
    "Layout",
    "ds",
    "hardened_parser",
    "parse_xml",
    "signed_element",
]

MAX_XML_BYTES = 2 * 1024 * 1024
DS = "http://www.w3.org/2000/09/xmldsig#"
C14N = "http://www.w3.org/TR/2001/REC-xml-c14n-20010315"
RSA_SHA256 = "http://www.w3.org/2001/04/xmldsig-more#rsa-sha256"
SHA256 = "http://www.w3.org/2001/04/xmlenc#sha256"
ENVELOPED = "http://www.w3.org/2000/09/xmldsig#enveloped-signature"
SIGNATURE_PROPERTIES_TYPE = "http://www.w3.org/2000/09/xmldsig#SignatureProperties"
# Documents from the tax authority carry SigningTime without an offset; it is Vietnam time (no DST).
VIETNAM = timezone(timedelta(hours=7), "ICT")

_Element: TypeAlias = Any  # an lxml element, untyped for the reason above


def ds(tag: str) -> str:
    return f"{{{DS}}}{tag}"


@dataclass(frozen=True)
class Layout:
    """Where a signed message keeps the data its signature covers and the signature itself."""

    root: str
    signed_data: str  # the root's one child with an Id, referenced by the signature
    slot: str  # the child of DSCKS that holds the signer's ds:Signature
    signer: str  # who signs, for messages
    signer_tax_code: str  # the path, inside the signed data, of the signer's tax code
    unsigned_children: tuple[str, ...]  # other children of the root the format allows, not covered by this signature
    other_slots: tuple[str, ...]  # other children of DSCKS: signatures of other parties, not checked here

    @property
    def signature_path(self) -> str:
        return f"{self.root}/DSCKS/{self.slot}"


DOCUMENT = Layout(
    "HDon", "DLHDon", "NBan", "seller", "NDHDon/NBan/MST", ("DLQRCode", "MCCQT"), ("NMua", "CQT", "CCKSKhac")
)
NOTICE = Layout("TBao", "DLTBao", "NNT", "taxpayer", "MST", (), ("CQT",))
SUMMARY = Layout("BTHDLieu", "DLBTHop", "NNT", "taxpayer", "TTChung/MST", (), ("CQT",))


def hardened_parser() -> Any:
    # A fresh parser per document: lxml parsers keep state and are not meant to be shared between threads.
    return etree.XMLParser(
        resolve_entities=False, no_network=True, load_dtd=False, dtd_validation=False, huge_tree=False
    )


def parse_xml(data: bytes, *, max_bytes: int = MAX_XML_BYTES) -> _Element:
    """Parse untrusted XML: size-limited, no DTD (a DOCTYPE is refused outright), no entities, no network."""
    if len(data) > max_bytes:
        raise InvalidDocument(Reason.too_large, f"{len(data)} bytes, over the {max_bytes}-byte limit")
    try:
        root = etree.fromstring(data, hardened_parser())
    except etree.XMLSyntaxError as exc:
        raise InvalidDocument(Reason.parse_error, f"not well-formed XML: {exc}") from exc
    docinfo = root.getroottree().docinfo
    if docinfo.doctype or docinfo.internalDTD is not None or docinfo.externalDTD is not None:
        raise InvalidDocument(Reason.doctype, "a DOCTYPE is not allowed")
    return root


def signed_element(root: _Element, layout: Layout = DOCUMENT) -> _Element:
    """The one ``HDon/DLHDon`` (or the layout's equivalent), which must carry an Id: what the signature references."""
    found = root.findall(layout.signed_data) if root.tag == layout.root else []
    if len(found) != 1 or not found[0].get("Id"):
        raise InvalidDocument(
            Reason.malformed, f"expected an {layout.root} root with exactly one {layout.signed_data} carrying an Id"
        )
    return found[0]
