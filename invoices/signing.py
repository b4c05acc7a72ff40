"""The seller signature on an e-receipt: enveloped XML-DSig in ``HDon/DSCKS/NBan`` (domain.md 3.4), made with lxml
and cryptography directly; signxml and the C library xmlsec verify it.

Layout (``ds`` is ``http://www.w3.org/2000/09/xmldsig#``)::

    <ds:Signature Id="NBan-<hex>">
      <ds:SignedInfo>
        <ds:CanonicalizationMethod Algorithm="...REC-xml-c14n-20010315"/>
        <ds:SignatureMethod Algorithm="...xmldsig-more#rsa-sha256"/>
        <ds:Reference URI="#<DLHDon/@Id>">  enveloped-signature transform, SHA-256
        <ds:Reference URI="#SigningTime-<hex>" Type="...#SignatureProperties">  no transform, SHA-256
      </ds:SignedInfo>
      <ds:SignatureValue/>
      <ds:KeyInfo><ds:X509Data><ds:X509SubjectName/><ds:X509Certificate/></ds:X509Data></ds:KeyInfo>
      <ds:Object Id="SigningTime-<hex>"><ds:SignatureProperties><ds:SignatureProperty Target="#NBan-<hex>">
        <ds:SigningTime>2026-03-01T09:30:00+07:00</ds:SigningTime>
      </ds:SignatureProperty></ds:SignatureProperties></ds:Object>
    </ds:Signature>

The ``ds:`` prefix differs from the tax authority's own documents (default namespace) but is the same XML: lxml 6.1 /
libxml2 2.14 mis-canonicalize default-namespace subtrees, which breaks the signing of that form.

A notice to the tax authority (04/SS-HĐĐT) is signed the same way by the same key, over ``TBao/DLTBao`` with the
signature in ``TBao/DSCKS/NNT`` (``NNT-<hex>`` as its Id): :meth:`LocalSigner.sign_notice`.
"""

from __future__ import annotations

import hashlib
import uuid
from base64 import b64encode
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol, TypeAlias

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.asymmetric.padding import PKCS1v15
from cryptography.hazmat.primitives.serialization import (
    BestAvailableEncryption,
    Encoding,
    NoEncryption,
    PrivateFormat,
    PublicFormat,
    load_pem_private_key,
    pkcs12,
)
from cryptography.x509.oid import NameOID
from lxml import etree  # type: ignore[import-untyped]  # lxml ships no type information and no stubs are installed

from invoices.errors import InvalidDocument, Reason
from invoices.xmldsig import (
    C14N,
    DOCUMENT,
    DS,
    ENVELOPED,
    NOTICE,
    RSA_SHA256,
    SHA256,
    SIGNATURE_PROPERTIES_TYPE,
    SUMMARY,
    VIETNAM,
    Layout,
    ds,
    parse_xml,
    signed_element,
)
from payments.agency.rules import TAX_CODE_RULE, is_tax_code
from payments.core.types import utcnow

__all__ = ["LocalSigner", "Signer", "make_dev_certificate", "to_pkcs12"]

_Element: TypeAlias = Any  # an lxml element, untyped for the reason above


class Signer(Protocol):
    """Signs an unsigned HDon document, or a TBao notice, of one agency. A local key, an HSM or a remote-signing
    service can stand behind it."""

    @property
    def certificate(self) -> x509.Certificate: ...

    def sign(self, xml: bytes) -> bytes: ...

    def sign_notice(self, xml: bytes) -> bytes: ...

    def sign_summary(self, xml: bytes) -> bytes: ...


def vietnam_now() -> datetime:
    return utcnow().astimezone(VIETNAM)


@dataclass(frozen=True)
class LocalSigner:
    """A loaded RSA key and its certificate, built once per process.

    The key is kept as a key object: handing signxml a PEM string re-parses and re-validates it on every document
    (about 57 ms), a loaded key costs about 2 ms. Any ``RSAPrivateKey`` implementation works, including one whose
    ``sign`` calls an HSM.
    """

    key: rsa.RSAPrivateKey = field(repr=False)
    certificate: x509.Certificate
    clock: Callable[[], datetime] = field(default=vietnam_now, repr=False, compare=False)
    _subject_name: str = field(init=False, repr=False, compare=False)
    _certificate_b64: str = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not isinstance(self.key, rsa.RSAPrivateKey):
            raise TypeError("rsa-sha256 needs an RSA private key")
        if _spki(self.key.public_key()) != _spki(self.certificate.public_key()):
            raise ValueError("the private key does not belong to the certificate")
        # The same for every document: worked out once per process rather than per signature.
        object.__setattr__(self, "_subject_name", self.certificate.subject.rfc4514_string())
        object.__setattr__(self, "_certificate_b64", b64encode(self.certificate.public_bytes(Encoding.DER)).decode())

    @classmethod
    def from_pkcs12(
        cls, data: bytes, password: bytes | None, *, clock: Callable[[], datetime] = vietnam_now
    ) -> LocalSigner:
        key, certificate, _chain = pkcs12.load_key_and_certificates(data, password)
        if key is None or certificate is None:
            raise ValueError("the PKCS#12 file must hold a private key and its certificate")
        return cls(_rsa(key), certificate, clock)

    @classmethod
    def from_pem(
        cls,
        key_pem: bytes,
        cert_pem: bytes,
        password: bytes | None = None,
        *,
        clock: Callable[[], datetime] = vietnam_now,
    ) -> LocalSigner:
        key = load_pem_private_key(key_pem, password)
        return cls(_rsa(key), x509.load_pem_x509_certificate(cert_pem), clock)

    def sign(self, xml: bytes) -> bytes:
        """Return the document with the seller signature in ``HDon/DSCKS/NBan`` (created when missing)."""
        return self._sign(xml, DOCUMENT)

    def sign_notice(self, xml: bytes) -> bytes:
        """Return the notice with the taxpayer signature in ``TBao/DSCKS/NNT`` (created when missing)."""
        return self._sign(xml, NOTICE)

    def sign_summary(self, xml: bytes) -> bytes:
        """Return the daily summary with the taxpayer signature in ``BTHDLieu/DSCKS/NNT`` (created when missing)."""
        return self._sign(xml, SUMMARY)

    def _sign(self, xml: bytes, layout: Layout) -> bytes:
        """Inclusive C14N 1.0 of the referenced elements in place, SHA-256 digests, then RSA PKCS#1 v1.5 over the
        canonical SignedInfo: the bytes signxml wrote for this profile, at about a third of its cost (it copies and
        re-parses the document and each referenced element)."""
        root = parse_xml(xml)
        data = signed_element(root, layout)
        data_id = data.get("Id")
        ids = _Ids.new(layout.slot)
        slot = _seller_slot(root, layout.slot)
        signing_time = self._signing_time()
        signature = etree.SubElement(slot, ds("Signature"), nsmap={"ds": DS}, Id=ids.signature)
        signed_info = etree.SubElement(signature, ds("SignedInfo"))
        etree.SubElement(signed_info, ds("CanonicalizationMethod"), Algorithm=C14N)
        etree.SubElement(signed_info, ds("SignatureMethod"), Algorithm=RSA_SHA256)
        data_reference = etree.SubElement(signed_info, ds("Reference"), URI=f"#{data_id}")
        etree.SubElement(etree.SubElement(data_reference, ds("Transforms")), ds("Transform"), Algorithm=ENVELOPED)
        time_reference = etree.SubElement(
            signed_info, ds("Reference"), URI=f"#{ids.signing_time}", Type=SIGNATURE_PROPERTIES_TYPE
        )
        signature_value = etree.SubElement(signature, ds("SignatureValue"))
        x509_data = etree.SubElement(etree.SubElement(signature, ds("KeyInfo")), ds("X509Data"))
        etree.SubElement(x509_data, ds("X509SubjectName")).text = self._subject_name
        etree.SubElement(x509_data, ds("X509Certificate")).text = self._certificate_b64
        time_object = etree.SubElement(signature, ds("Object"), Id=ids.signing_time)
        properties = etree.SubElement(time_object, ds("SignatureProperties"))
        signature_property = etree.SubElement(properties, ds("SignatureProperty"), Target=f"#{ids.signature}")
        etree.SubElement(signature_property, ds("SigningTime")).text = signing_time.isoformat()
        # The signature lies outside the signed data, so the enveloped-signature transform removes nothing from it.
        for reference, target in ((data_reference, data), (time_reference, time_object)):
            etree.SubElement(reference, ds("DigestMethod"), Algorithm=SHA256)
            etree.SubElement(reference, ds("DigestValue")).text = _digest(target)
        canonical_info: bytes = etree.tostring(signed_info, method="c14n")
        signature_value.text = b64encode(self.key.sign(canonical_info, PKCS1v15(), hashes.SHA256())).decode()
        signed_xml: bytes = etree.tostring(root, xml_declaration=True, encoding="UTF-8")
        return signed_xml

    def _signing_time(self) -> datetime:
        now = self.clock()
        if now.tzinfo is None:
            raise ValueError("the clock must return an aware datetime")
        now = now.astimezone(VIETNAM).replace(microsecond=0)  # the value written is the value checked
        if not self.certificate.not_valid_before_utc <= now <= self.certificate.not_valid_after_utc:
            # Refuse now rather than issue a receipt that no verifier will accept.
            raise ValueError(f"the certificate is not valid at {now.isoformat()}")
        return now


@dataclass(frozen=True)
class _Ids:
    signature: str
    signing_time: str

    @classmethod
    def new(cls, prefix: str = "NBan") -> _Ids:
        token = uuid.uuid4().hex  # random, so they cannot collide with Ids already in the document
        return cls(f"{prefix}-{token}", f"SigningTime-{token}")


def _seller_slot(root: _Element, name: str = "NBan") -> _Element:
    dscks = root.find("DSCKS")
    if dscks is None:
        dscks = etree.SubElement(root, "DSCKS")
    slot = dscks.find(name)
    if slot is None:
        slot = etree.Element(name)
        dscks.insert(0, slot)  # the signer's own slot comes first: NBan before NMua, CQT, CCKSKhac; NNT before CQT
    if len(slot):
        raise InvalidDocument(Reason.malformed, f"DSCKS/{name} already holds a signature")
    return slot


def _digest(element: _Element) -> str:
    canonical: bytes = etree.tostring(element, method="c14n")
    return b64encode(hashlib.sha256(canonical).digest()).decode()


def _spki(key: object) -> bytes:
    if not isinstance(key, rsa.RSAPublicKey):
        return b""
    return key.public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)


def _rsa(key: object) -> rsa.RSAPrivateKey:
    if not isinstance(key, rsa.RSAPrivateKey):
        raise ValueError("rsa-sha256 needs an RSA private key")
    return key


_SIGNING_ONLY = x509.KeyUsage(
    digital_signature=True,
    content_commitment=True,  # non-repudiation: what a document-signing certificate asserts
    key_encipherment=False,
    data_encipherment=False,
    key_agreement=False,
    key_cert_sign=False,
    crl_sign=False,
    encipher_only=False,
    decipher_only=False,
)


def make_dev_certificate(
    tax_code: str, name: str, valid_days: int = 825, *, not_before: datetime | None = None
) -> tuple[bytes, bytes]:
    """A self-signed RSA-2048 certificate for development and tests: (PEM key, PEM certificate).

    The subject is CN=name, O=name, UID=MST:<tax code>, as registered certificates carry the tax code.
    """
    if not is_tax_code(tax_code):
        raise ValueError(f"a tax code is {TAX_CODE_RULE}")
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    subject = x509.Name(
        [
            # X.509 caps both at 64 characters; a development certificate may carry a shortened agency name.
            x509.NameAttribute(NameOID.COMMON_NAME, name[:64]),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, name[:64]),
            x509.NameAttribute(NameOID.USER_ID, f"MST:{tax_code}"),
        ]
    )
    start = not_before or datetime.now(UTC) - timedelta(minutes=5)  # a little slack for clock skew
    certificate = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(start + timedelta(days=valid_days))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_SIGNING_ONLY, critical=True)
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption())
    return key_pem, certificate.public_bytes(Encoding.PEM)


def to_pkcs12(key_pem: bytes, cert_pem: bytes, password: bytes | None) -> bytes:
    """Bundle an unencrypted PEM key and its certificate as PKCS#12, the form USB tokens and CAs hand out."""
    key = _rsa(load_pem_private_key(key_pem, None))
    certificate = x509.load_pem_x509_certificate(cert_pem)
    encryption = BestAvailableEncryption(password) if password else NoEncryption()
    return pkcs12.serialize_key_and_certificates(b"lephi", key, certificate, None, encryption)
