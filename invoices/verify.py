"""Verify the seller signature of an e-receipt, trusting only pinned certificates and only the signed content.

The accepted profile is the one ``invoices.signing`` produces (domain.md 3.4): inclusive C14N 1.0, RSA-SHA256,
SHA-256 digests, exactly two references (``#<DLHDon/@Id>`` with the enveloped-signature transform, and the ds:Object
holding ``SigningTime``), the certificate in ``KeyInfo/X509Data``. The structure is checked here before signxml checks
the cryptography, so every refusal carries a precise :class:`Reason`.

The same profile signs the taxpayer's notices to the tax authority (form 04/SS-HĐĐT, ``TBao/DLTBao`` signed in
``TBao/DSCKS/NNT``): :data:`NOTICE` names that layout and :func:`verify_notice` checks it with the same rules.

A signature proves who signed, and a document is valid only in its signer's name: the certificate must be one
registered (pinned) for the seller the signed content names (a :class:`Pin`: certificate, tax code, agency), and its
subject's ``UID=MST:<tax code>`` must be that seller's tax code too. Nothing may ride along unsigned: comments and
processing instructions are refused anywhere (canonicalization drops them, so a reader could see text that was never
signed), and outside the signed data only the layout's own unsigned parts are allowed.
"""

from __future__ import annotations

import re
from base64 import b64decode
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import Any, TypeAlias

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import NameOID
from lxml import etree  # type: ignore[import-untyped]  # lxml ships no type information and no stubs are installed
from signxml.algorithms import CanonicalizationMethod, DigestAlgorithm, SignatureMethod
from signxml.exceptions import InvalidCertificate, InvalidDigest, InvalidInput, InvalidSignature
from signxml.verifier import SignatureConfiguration, XMLVerifier

from invoices.errors import InvalidDocument, Reason
from invoices.xmldsig import (
    C14N,
    DOCUMENT,
    DS,
    ENVELOPED,
    MAX_XML_BYTES,
    NOTICE,
    RSA_SHA256,
    SHA256,
    SUMMARY,
    VIETNAM,
    Layout,
    ds,
    hardened_parser,
    parse_xml,
    signed_element,
)

__all__ = [
    "MAX_XML_BYTES",
    "Pin",
    "VerifiedDocument",
    "VerifiedNotice",
    "pinned",
    "signed_values",
    "subject_tax_code",
    "verify",
    "verify_notice",
]

_XML_NS = "{http://www.w3.org/XML/1998/namespace}"

_Element: TypeAlias = Any  # an lxml element, untyped for the reason above


@dataclass(frozen=True)
class Pin:
    """A certificate registered for one seller: documents it signs verify in that seller's name and no other."""

    certificate: x509.Certificate
    tax_code: str  # the seller (agency) it is registered for
    agency: str = ""  # the agency's code, when the registration comes from this service's agencies


def pinned(*certificates: x509.Certificate) -> list[Pin]:
    """Pins for certificates trusted for the seller each one names in its subject (``UID=MST:``), and no other."""
    return [Pin(certificate, subject_tax_code(certificate) or "") for certificate in certificates]


@dataclass(frozen=True)
class VerifiedDocument:
    """What the signature covers. Every field comes from the signed bytes, never from the document as received."""

    signed_data: _Element  # DLHDon, re-parsed from the canonical bytes that were digested
    certificate: x509.Certificate  # the pinned certificate that matched
    agency: str  # the code of the agency the certificate is registered for ("" for a bare pin)
    signer_subject: str  # RFC 4514
    signer_tax_code: str  # from UID=MST:<tax code> in the subject: equal to seller_tax_code
    signing_time: datetime
    signed_values: dict[str, str]  # every value the signature covers, by its path in DLHDon
    unsigned_parts: tuple[str, ...]  # parts present that this signature does not cover (e.g. MCCQT, DSCKS/CQT)
    series: str  # KHHDon
    template: str  # KHMSHDon
    number: int  # SHDon
    issue_date: date  # NLap
    seller_tax_code: str  # NBan/MST
    total: int  # TgTTTBSo, whole VND


@dataclass(frozen=True)
class VerifiedNotice:
    """What the taxpayer's signature on a notice covers, read from the signed bytes only."""

    signed_data: _Element  # DLTBao, re-parsed from the canonical bytes that were digested
    certificate: x509.Certificate
    agency: str
    signer_subject: str
    signer_tax_code: str
    signing_time: datetime
    form: str  # MSo
    taxpayer_tax_code: str  # MST


def verify(xml: bytes, trusted: Sequence[Pin], *, max_bytes: int = MAX_XML_BYTES) -> VerifiedDocument:
    """Verify the seller signature in ``HDon/DSCKS/NBan``: by a certificate pinned for the seller it names."""
    checked = _verified(xml, trusted, max_bytes, DOCUMENT)
    return _document(checked)


def verify_notice(xml: bytes, trusted: Sequence[Pin], *, max_bytes: int = MAX_XML_BYTES) -> VerifiedNotice:
    """Verify the taxpayer signature in ``TBao/DSCKS/NNT`` of a notice: by a certificate pinned for its ``MST``."""
    checked = _verified(xml, trusted, max_bytes, NOTICE)
    return VerifiedNotice(
        signed_data=checked.data,
        certificate=checked.pin.certificate,
        agency=checked.pin.agency,
        signer_subject=checked.pin.certificate.subject.rfc4514_string(),
        signer_tax_code=checked.pin.tax_code,
        signing_time=checked.signing_time,
        form=_field(checked.data, "MSo", what=NOTICE.signed_data),
        taxpayer_tax_code=checked.pin.tax_code,
    )


def verify_summary(xml: bytes, trusted: Sequence[Pin], *, max_bytes: int = MAX_XML_BYTES) -> VerifiedNotice:
    """Verify the taxpayer signature in ``BTHDLieu/DSCKS/NNT`` of a daily summary, as for a notice."""
    checked = _verified(xml, trusted, max_bytes, SUMMARY)
    return VerifiedNotice(
        signed_data=checked.data,
        certificate=checked.pin.certificate,
        agency=checked.pin.agency,
        signer_subject=checked.pin.certificate.subject.rfc4514_string(),
        signer_tax_code=checked.pin.tax_code,
        signing_time=checked.signing_time,
        form=_field(checked.data, "TTChung/MSo", what=SUMMARY.signed_data),
        taxpayer_tax_code=checked.pin.tax_code,
    )


@dataclass(frozen=True)
class _Checked:
    data: _Element
    pin: Pin
    signing_time: datetime
    unsigned_parts: tuple[str, ...]


def _verified(xml: bytes, trusted: Sequence[Pin], max_bytes: int, layout: Layout) -> _Checked:
    root = parse_xml(xml, max_bytes=max_bytes)
    found = _inspect(root, layout)
    candidates = _pins_for(found.signature, trusted)
    certificate = candidates[0].certificate
    signed_data, signed_time = _check_cryptography(xml, certificate, found.claimed_time, layout)
    data = parse_xml(signed_data, max_bytes=max_bytes)
    signing_time = _signing_time(parse_xml(signed_time, max_bytes=max_bytes))
    if data.tag != layout.signed_data or signing_time != found.claimed_time:
        raise InvalidDocument(
            Reason.reference, f"the signed content is not the {layout.signed_data} and SigningTime checked"
        )
    pin = _bound(candidates, _field(data, layout.signer_tax_code, what=layout.signed_data), layout)
    return _Checked(data, pin, signing_time, found.unsigned_parts)


@dataclass(frozen=True)
class _Layout:
    signature: _Element
    claimed_time: datetime  # read before verification; compared with the signed value afterwards
    unsigned_parts: tuple[str, ...]


def _inspect(root: _Element, layout: Layout = DOCUMENT) -> _Layout:
    data = signed_element(root, layout)
    signature = _seller_signature(root, layout)
    if [child.tag for child in signature] != [ds("SignedInfo"), ds("SignatureValue"), ds("KeyInfo"), ds("Object")]:
        raise InvalidDocument(Reason.malformed, "Signature must hold SignedInfo, SignatureValue, KeyInfo, Object")
    _reject_inherited_xml_attributes(signature)
    signed_info, time_object = signature[0], signature[3]
    _check_algorithms(signed_info)
    _check_references(root, signed_info, data.get("Id", ""), time_object.get("Id", ""))
    return _Layout(signature, _signing_time(time_object), _unsigned_parts(root, layout))


def _unsigned_parts(root: _Element, layout: Layout) -> tuple[str, ...]:
    """Refuse anything a reader could take for signed content; name the unsigned parts the format allows."""
    _refuse_comments(root)
    present: list[str] = []
    _refuse_text(root)
    for child in root:
        if child.tag == layout.signed_data:
            continue
        if child.tag in layout.unsigned_children:
            if len(child):
                raise InvalidDocument(Reason.unsigned_content, f"{child.tag} holds elements; it is not signed")
            present.append(child.tag)
        elif child.tag == "DSCKS":
            present += _other_signatures(child, layout)
        else:
            where = f"{layout.root}/{_name(child)}"
            raise InvalidDocument(Reason.unsigned_content, f"{where} is not covered by the signature")
    return tuple(present)


def _refuse_comments(root: _Element) -> None:
    outside = [*root.itersiblings(preceding=True), *root.itersiblings()]
    if outside or any(not isinstance(node.tag, str) for node in root.iter()):
        # Canonicalization without comments leaves them out of the digest: text split by one would read differently
        # to a reader than to the verifier. Documents issued here never carry any.
        raise InvalidDocument(Reason.unsigned_content, "comments and processing instructions are not signed")


def _refuse_text(element: _Element) -> None:
    if (element.text or "").strip() or any((child.tail or "").strip() for child in element):
        raise InvalidDocument(Reason.unsigned_content, f"text in {_name(element)} is not covered by the signature")


def _other_signatures(dscks: _Element, layout: Layout) -> list[str]:
    _refuse_text(dscks)
    present = []
    for slot in dscks:
        if slot.tag != layout.slot and slot.tag not in layout.other_slots:
            raise InvalidDocument(Reason.unsigned_content, f"DSCKS/{_name(slot)} is not a signature slot")
        _refuse_text(slot)
        for node in slot.iterdescendants():
            # Signatures are ds: elements; an invoice element inside one (a DLHDon copy, say) is unsigned content.
            if etree.QName(node).namespace != DS and etree.QName(node).localname != "SigningTime":
                raise InvalidDocument(Reason.unsigned_content, f"{_name(node)} inside DSCKS/{slot.tag} is not signed")
        if slot.tag != layout.slot and len(slot):
            present.append(f"DSCKS/{slot.tag}")
    return present


def _name(element: _Element) -> str:
    return str(etree.QName(element).localname) if isinstance(element.tag, str) else "?"


def _seller_signature(root: _Element, layout: Layout = DOCUMENT) -> _Element:
    found = root.findall(f"DSCKS/{layout.slot}/{ds('Signature')}")
    if not found:
        raise InvalidDocument(Reason.no_signature, f"no {layout.signer} signature in {layout.signature_path}")
    if len(found) > 1:
        raise InvalidDocument(Reason.malformed, f"more than one {layout.signer} signature")
    return found[0]


def _reject_inherited_xml_attributes(signature: _Element) -> None:
    # Inclusive C14N 1.0 imports xml:* attributes of ancestors into a signed subtree; lxml (thus signxml) does not,
    # xmlsec does. Refusing them keeps this verifier's verdict equal to the C library's.
    for element in [*signature.iterancestors(), signature]:
        if any(name.startswith(_XML_NS) for name in element.attrib):
            raise InvalidDocument(Reason.malformed, f"xml:* attributes on {etree.QName(element).localname}")


def _check_algorithms(signed_info: _Element) -> None:
    c14n = _algorithm(signed_info, "CanonicalizationMethod")
    if c14n != C14N:
        raise InvalidDocument(Reason.algorithm, f"canonicalization {c14n} is not accepted, only {C14N}")
    method = _algorithm(signed_info, "SignatureMethod")
    if method != RSA_SHA256:
        raise InvalidDocument(Reason.algorithm, f"signature method {method} is not accepted, only {RSA_SHA256}")
    for reference in signed_info.iterchildren(ds("Reference")):
        digest = _algorithm(reference, "DigestMethod")
        if digest != SHA256:
            raise InvalidDocument(Reason.algorithm, f"digest method {digest} is not accepted, only {SHA256}")


def _algorithm(parent: _Element, tag: str) -> str:
    found = parent.findall(ds(tag))
    if len(found) != 1 or len(found[0]):
        raise InvalidDocument(Reason.malformed, f"expected one empty {tag}")
    return str(found[0].get("Algorithm", ""))


# Transforms allowed per reference. signxml silently skips transforms it does not know (XPath, XSLT) while other
# verifiers apply them, so anything else is refused rather than risk the two disagreeing about what was signed.
_DATA_TRANSFORMS = ([ENVELOPED], [ENVELOPED, C14N])
_TIME_TRANSFORMS: tuple[list[str], ...] = ([], [C14N])


def _check_references(root: _Element, signed_info: _Element, data_id: str, time_id: str) -> None:
    references = signed_info.findall(ds("Reference"))
    uris = [reference.get("URI") for reference in references]
    expected = [f"#{data_id}", f"#{time_id}"]
    if uris != expected:
        raise InvalidDocument(Reason.reference, f"expected exactly the references {expected}, found {uris}")
    for reference, allowed in zip(references, (_DATA_TRANSFORMS, _TIME_TRANSFORMS), strict=True):
        transforms = _transforms(reference)
        if transforms not in allowed:
            raise InvalidDocument(Reason.algorithm, f"transforms {transforms} on {reference.get('URI')}")
    for target in (data_id, time_id):
        # Unique Ids, or a copy of the signed element could be planted elsewhere (signature wrapping).
        count = len(root.xpath("//*[@*[local-name()='Id']=$id]", id=target))
        if count != 1:
            raise InvalidDocument(Reason.reference, f"Id {target!r} is carried by {count} elements")


def _transforms(reference: _Element) -> list[str]:
    holder = reference.find(ds("Transforms"))
    if holder is None:
        return []
    return [transform.get("Algorithm", "") for transform in holder]


def _pins_for(signature: _Element, trusted: Sequence[Pin]) -> list[Pin]:
    """The registrations of the embedded certificate: an exact match, never a chain to a CA."""
    key_info = signature[2]
    x509_data = key_info.findall(ds("X509Data"))
    if len(key_info) != 1 or len(x509_data) != 1:
        raise InvalidDocument(Reason.malformed, "KeyInfo must hold one X509Data with one X509Certificate")
    # KeyInfo is not signed: only the certificate and its subject name may sit there.
    tags = [child.tag for child in x509_data[0]]
    if tags not in ([ds("X509SubjectName"), ds("X509Certificate")], [ds("X509Certificate")]):
        raise InvalidDocument(Reason.malformed, "X509Data must hold X509SubjectName and X509Certificate only")
    try:
        # base64Binary may be wrapped over several lines (xmlsec wraps at 64 columns).
        embedded = b64decode("".join((x509_data[0][-1].text or "").split()), validate=True)
    except ValueError as exc:
        raise InvalidDocument(Reason.malformed, "X509Certificate is not base64") from exc
    found = [pin for pin in trusted if pin.certificate.public_bytes(Encoding.DER) == embedded]
    if not found:
        raise InvalidDocument(Reason.untrusted_certificate, "the signing certificate is not registered here")
    return found


def _bound(candidates: Sequence[Pin], tax_code: str, layout: Layout) -> Pin:
    """The registration for the signer the signed content names; a valid signature in another's name is refused."""
    certificate = candidates[0].certificate
    named_code = subject_tax_code(certificate)
    if named_code != tax_code:
        named = f"UID=MST:{named_code}" if named_code else "no UID=MST"
        raise InvalidDocument(
            Reason.wrong_seller, f"the certificate names {named}, the signed {layout.signer} tax code is {tax_code}"
        )
    for pin in candidates:
        if pin.tax_code == tax_code:
            return pin
    owners = ", ".join(sorted({pin.agency or pin.tax_code for pin in candidates}))
    raise InvalidDocument(
        Reason.wrong_seller,
        f"the certificate is registered for {owners}, not for the {layout.signer} with tax code {tax_code}",
    )


class _Verifier(XMLVerifier):
    def _c14n(self, nodes: Any, algorithm: CanonicalizationMethod, inclusive_ns_prefixes: Any = None) -> bytes:
        # lxml 6.1 with libxml2 2.14 emits a spurious xmlns="" two levels below the apex when canonicalizing a
        # subtree whose default namespace is declared above it, so a Signature in the default ds namespace (the
        # tax authority's and most vendors' layout) would never verify. A serialized copy carries its in-scope
        # namespaces on its root, and whole-document C14N is correct.
        copies = [self._standalone(node) for node in (nodes if isinstance(nodes, list) else [nodes])]
        c14n: bytes = super()._c14n(copies, algorithm, inclusive_ns_prefixes)
        return c14n

    def _standalone(self, node: _Element) -> _Element:
        return self._fromstring(self._tostring(node))  # type: ignore[no-untyped-call]


def _check_cryptography(
    xml: bytes, certificate: x509.Certificate, claimed_time: datetime, layout: Layout = DOCUMENT
) -> tuple[bytes, bytes]:
    """signxml's verdict on SignatureValue and both digests; returns the canonical bytes of the two references."""
    config = SignatureConfiguration(
        location=f"./DSCKS/{layout.slot}/",
        expect_references=2,
        signature_methods=frozenset({SignatureMethod.RSA_SHA256}),
        digest_algorithms=frozenset({DigestAlgorithm.SHA256}),
        default_reference_c14n_method=CanonicalizationMethod.CANONICAL_XML_1_0,
        # A receipt stays valid after its certificate expires: validity is judged at the signing time.
        verification_time=claimed_time,
    )
    try:
        # The xmldsig schema wants SignatureProperty content outside the ds namespace, yet the tax authority's
        # documents put SigningTime in it; _inspect checked the structure instead.
        results = _Verifier().verify(
            xml,
            x509_cert=certificate,
            parser=hardened_parser(),
            id_attribute="Id",
            validate_schema=False,
            expect_config=config,
        )
    except InvalidDigest as exc:
        raise InvalidDocument(Reason.digest_mismatch, f"{exc}: the content changed after signing") from exc
    except InvalidCertificate as exc:
        raise InvalidDocument(Reason.certificate_not_valid, str(exc)) from exc
    except InvalidSignature as exc:
        raise InvalidDocument(Reason.bad_signature, f"SignatureValue does not match SignedInfo: {exc}") from exc
    except (InvalidInput, ValueError, etree.LxmlError) as exc:
        raise InvalidDocument(Reason.malformed, str(exc)) from exc
    assert isinstance(results, list)  # expect_references=2 makes signxml return one result per reference
    return results[0].signed_data, results[1].signed_data


def _signing_time(time_object: _Element) -> datetime:
    found = [
        node
        for node in time_object.findall(f"{ds('SignatureProperties')}/{ds('SignatureProperty')}/*")
        if etree.QName(node).localname == "SigningTime"
    ]
    if len(found) != 1:
        raise InvalidDocument(Reason.malformed, "the signed Object must hold exactly one SigningTime")
    try:
        value = datetime.fromisoformat((found[0].text or "").strip())
    except ValueError as exc:
        raise InvalidDocument(Reason.malformed, "SigningTime is not an ISO 8601 time") from exc
    return value if value.tzinfo else value.replace(tzinfo=VIETNAM)


def _document(checked: _Checked) -> VerifiedDocument:
    data, certificate = checked.data, checked.pin.certificate
    return VerifiedDocument(
        signed_data=data,
        certificate=certificate,
        agency=checked.pin.agency,
        signer_subject=certificate.subject.rfc4514_string(),
        signer_tax_code=checked.pin.tax_code,
        signing_time=checked.signing_time,
        signed_values=signed_values(data),
        unsigned_parts=checked.unsigned_parts,
        series=_field(data, "TTChung/KHHDon"),
        template=_field(data, "TTChung/KHMSHDon"),
        number=int(_field(data, "TTChung/SHDon", r"[0-9]{1,8}")),
        issue_date=_issue_date(_field(data, "TTChung/NLap", r"[0-9]{4}-[0-9]{2}-[0-9]{2}")),
        seller_tax_code=_field(data, "NDHDon/NBan/MST"),
        total=_whole_vnd(_field(data, "NDHDon/TToan/TgTTTBSo", r"-?[0-9]{1,21}(\.[0-9]{1,6})?")),
    )


def _field(data: _Element, path: str, pattern: str = r".+", *, what: str = "DLHDon") -> str:
    node = data.find(path)
    text = (node.text or "").strip() if node is not None else ""
    if not re.fullmatch(pattern, text):
        raise InvalidDocument(Reason.malformed, f"signed {what} has no valid {path}")
    return text


def _issue_date(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError as exc:  # the pattern let through a day that does not exist, e.g. 2026-02-30
        raise InvalidDocument(Reason.malformed, f"NLap {text} is not a calendar date") from exc


def _whole_vnd(text: str) -> int:
    amount = Decimal(text)
    if amount != amount.to_integral_value():
        raise InvalidDocument(Reason.malformed, "TgTTTBSo is not a whole number of VND")
    return int(amount)


def subject_tax_code(certificate: x509.Certificate) -> str | None:
    """The tax code a certificate names in its subject as ``UID=MST:<tax code>``, as Vietnamese CAs issue them."""
    for attribute in certificate.subject.get_attributes_for_oid(NameOID.USER_ID):
        value = attribute.value if isinstance(attribute.value, str) else attribute.value.decode()
        if value.startswith("MST:"):
            return value.removeprefix("MST:")
    return None


def signed_values(data: _Element) -> dict[str, str]:
    """Every leaf value of the signed data by its path, repeated elements numbered from 1 (``HHDVu[2]/ThTien``)."""
    values: dict[str, str] = {}

    def walk(element: _Element, path: str) -> None:
        if not len(element):
            values[path] = (element.text or "").strip()
            return
        counts: dict[str, int] = {}
        for child in element:
            counts[child.tag] = counts.get(child.tag, 0) + 1
        seen: dict[str, int] = {}
        for child in element:
            seen[child.tag] = seen.get(child.tag, 0) + 1
            step = f"{child.tag}[{seen[child.tag]}]" if counts[child.tag] > 1 else child.tag
            walk(child, f"{path}/{step}" if path else step)

    walk(data, "")
    return values
