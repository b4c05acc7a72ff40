"""Seller signature: sign -> verify round trips, interop with the C library xmlsec both ways, key loading, and a
tamper matrix in which every attack is refused for its own reason."""

from __future__ import annotations

import re
import time
from base64 import b64encode
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import xmlsec
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
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
from hypothesis import given, settings
from hypothesis import strategies as st
from lxml import etree  # type: ignore[import-untyped]  # lxml ships no type information and no stubs are installed

from invoices.errors import InvalidDocument, Reason
from invoices.signing import LocalSigner, make_dev_certificate, to_pkcs12, vietnam_now
from invoices.verify import Pin, pinned, verify, verify_summary
from invoices.xmldsig import DS, MAX_XML_BYTES, VIETNAM, ds
from payments.agency.rules import TAX_CODE_RULE

TAX_CODE = "5800123456"
CERT_FROM = datetime(2026, 1, 1, tzinfo=UTC)  # fixed, so the suite does not depend on today's date
SIGNED_AT = datetime(2026, 3, 1, 9, 30, tzinfo=VIETNAM)
SIGNATURE = f"DSCKS/NBan/{ds('Signature')}"
GOLDEN = Path(__file__).parent / "golden"


def receipt(
    *,
    title: str = "BIÊN LAI THU PHÍ, LỆ PHÍ",
    payer: str = "Nguyễn Thị Hường",
    address: str = "5 Tràng Tiền",
    **kw: Any,
) -> bytes:
    """A small HDon of the builder's shape, made here so these tests do not depend on invoices/xml.py."""
    hdon = etree.Element("HDon")
    data = etree.SubElement(hdon, "DLHDon", Id=kw.get("data_id", "DLHDon-5C26TAA-00000042"))
    general = etree.SubElement(data, "TTChung")
    fields = [("PBan", "2.1.0"), ("THDon", title), ("KHMSHDon", "5"), ("KHHDon", "C26TAA"), ("SHDon", "42")]
    for tag, text in [*fields, ("NLap", "2026-03-01")]:
        etree.SubElement(general, tag).text = text
    content = etree.SubElement(data, "NDHDon")
    seller = etree.SubElement(content, "NBan")
    etree.SubElement(seller, "Ten").text = "Sở Tư pháp tỉnh Lâm Đồng"
    etree.SubElement(seller, "MST").text = TAX_CODE
    buyer = etree.SubElement(content, "NMua")
    etree.SubElement(buyer, "Ten").text = payer
    etree.SubElement(buyer, "DChi").text = address
    total = etree.SubElement(content, "TToan")
    etree.SubElement(total, "TgTTTBSo").text = "150000"
    etree.SubElement(total, "TgTTTBChu").text = "Một trăm năm mươi nghìn đồng"
    if kw.get("with_dscks", True):
        etree.SubElement(etree.SubElement(hdon, "DSCKS"), "NBan")
    return bytes(etree.tostring(hdon, xml_declaration=True, encoding="UTF-8"))


@dataclass(frozen=True)
class Party:
    key_pem: bytes
    cert_pem: bytes
    signer: LocalSigner


def party(tax_code: str, name: str) -> Party:
    key_pem, cert_pem = make_dev_certificate(tax_code, name, not_before=CERT_FROM)
    return Party(key_pem, cert_pem, LocalSigner.from_pem(key_pem, cert_pem, clock=lambda: SIGNED_AT))


@dataclass(frozen=True)
class Kit:
    agency: Party
    rotated: Party  # the same agency's second pinned certificate
    stranger: Party

    @property
    def trusted(self) -> list[Pin]:
        return pinned(self.agency.signer.certificate, self.rotated.signer.certificate)

    def signed(self) -> bytes:
        return self.agency.signer.sign(receipt())


@pytest.fixture(scope="module")
def kit() -> Kit:
    return Kit(party(TAX_CODE, "Sở Tư pháp tỉnh Lâm Đồng"), party(TAX_CODE, "Sở Tư pháp"), party("0312345678", "Khác"))


def xmlsec_verify(signed: bytes, certificate: x509.Certificate) -> None:
    """The C library's verdict, with the certificate's public key and every Id attribute registered."""
    root = etree.fromstring(signed)
    context = xmlsec.SignatureContext()
    for node in root.iter(etree.Element):
        if node.get("Id"):
            context.register_id(node, "Id")
    public_pem = certificate.public_key().public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo)
    context.key = xmlsec.Key.from_memory(public_pem, xmlsec.constants.KeyDataFormatPem)
    context.verify(root.find(SIGNATURE))


def test_round_trip_reads_everything_from_the_signed_content(kit: Kit) -> None:
    verified = verify(kit.signed(), kit.trusted)
    assert (verified.series, verified.template, verified.number) == ("C26TAA", "5", 42)
    assert (str(verified.issue_date), verified.seller_tax_code, verified.total) == ("2026-03-01", TAX_CODE, 150000)
    assert verified.signing_time == SIGNED_AT
    assert verified.signer_tax_code == TAX_CODE
    assert verified.certificate == kit.agency.signer.certificate
    assert "UID=MST:5800123456" in verified.signer_subject
    assert verified.signed_data.tag == "DLHDon"
    assert verified.signed_data.findtext("NDHDon/NMua/Ten") == "Nguyễn Thị Hường"


def test_signature_layout_follows_the_profile(kit: Kit) -> None:
    signature = etree.fromstring(kit.signed()).find(SIGNATURE)
    info, _value, key_info, time_object = signature
    assert info.find(ds("CanonicalizationMethod")).get("Algorithm") == "http://www.w3.org/TR/2001/REC-xml-c14n-20010315"
    assert info.find(ds("SignatureMethod")).get("Algorithm") == "http://www.w3.org/2001/04/xmldsig-more#rsa-sha256"
    data_ref, time_ref = info.findall(ds("Reference"))
    assert data_ref.get("URI") == "#DLHDon-5C26TAA-00000042"
    assert [t.get("Algorithm") for t in data_ref.iter(ds("Transform"))] == [f"{DS}enveloped-signature"]
    assert time_ref.get("URI") == f"#{time_object.get('Id')}" and time_ref.find(ds("Transforms")) is None
    digests = {m.get("Algorithm") for m in info.iter(ds("DigestMethod"))}
    assert digests == {"http://www.w3.org/2001/04/xmlenc#sha256"}
    assert key_info.findtext(f"{ds('X509Data')}/{ds('X509SubjectName')}").startswith("UID=MST:5800123456,")
    assert key_info.find(f"{ds('X509Data')}/{ds('X509Certificate')}") is not None
    prop = time_object.find(f"{ds('SignatureProperties')}/{ds('SignatureProperty')}")
    assert prop.get("Target") == f"#{signature.get('Id')}"
    assert prop.findtext(ds("SigningTime")) == "2026-03-01T09:30:00+07:00"


def test_dscks_and_nban_are_created_when_missing_and_a_signed_document_is_not_signed_again(kit: Kit) -> None:
    signed = kit.agency.signer.sign(receipt(with_dscks=False))
    assert etree.fromstring(signed).find(SIGNATURE) is not None
    assert verify(signed, kit.trusted).number == 42
    with pytest.raises(InvalidDocument, match="already holds a signature"):
        kit.agency.signer.sign(signed)


VIETNAMESE = "aăâbcdđeêghiklmnoôơpqrstuưvxyàảãáạằẳẵắặầẩẫấậèẻẽéẹềểễếệìỉĩíịòỏõóọồổỗốộờởỡớợùủũúụừửữứựỳỷỹýỵĐƯƠ"
TEXT = st.text(st.one_of(st.sampled_from(VIETNAMESE), st.characters(exclude_categories=("Cs", "Cc", "Cn", "Co"))))
WHITESPACE_TOO = st.text(st.sampled_from(VIETNAMESE + " \t\n\r&<>\"'"), max_size=40)


@settings(max_examples=40, deadline=None)
@given(title=TEXT, payer=TEXT, address=WHITESPACE_TOO)
def test_any_text_round_trips(kit: Kit, title: str, payer: str, address: str) -> None:
    signed = kit.agency.signer.sign(receipt(title=title, payer=payer, address=address))
    data = verify(signed, kit.trusted).signed_data
    assert data.findtext("TTChung/THDon", "") == title
    assert data.findtext("NDHDon/NMua/Ten", "") == payer
    assert data.findtext("NDHDon/NMua/DChi", "") == address


@settings(max_examples=25, deadline=None)
@given(payer=st.text(st.sampled_from(VIETNAMESE), min_size=1, max_size=30), data=st.data())
def test_any_changed_character_of_signed_text_is_refused(kit: Kit, payer: str, data: st.DataObject) -> None:
    root = etree.fromstring(kit.agency.signer.sign(receipt(payer=payer)))
    where = data.draw(st.integers(0, len(payer) - 1))
    other = data.draw(st.sampled_from(VIETNAMESE).filter(lambda c: c != payer[where]))
    root.find("DLHDon/NDHDon/NMua/Ten").text = payer[:where] + other + payer[where + 1 :]
    with pytest.raises(InvalidDocument) as refused:
        verify(etree.tostring(root), kit.trusted)
    assert refused.value.reason is Reason.digest_mismatch


def test_xmlsec_verifies_documents_signed_here(kit: Kit) -> None:
    namespaced = receipt().replace(b"<HDon>", b'<HDon xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">')
    for document in (receipt(), receipt(payer="Ông Trần Văn Đức & bà Lê Thị Ánh <Hộ kinh doanh>"), namespaced):
        xmlsec_verify(kit.agency.signer.sign(document), kit.agency.signer.certificate)
    tampered = kit.signed().replace(b">150000<", b">950000<")
    with pytest.raises(xmlsec.Error):  # the interop check has teeth
        xmlsec_verify(tampered, kit.agency.signer.certificate)


def test_documents_signed_by_xmlsec_in_the_tax_authority_layout_verify_here(kit: Kit) -> None:
    """Default ds namespace, no Transforms on the time reference, SigningTime without an offset, wrapped base64."""
    root = etree.fromstring(receipt())
    signature = xmlsec.template.create(
        root, xmlsec.constants.TransformInclC14N, xmlsec.constants.TransformRsaSha256, id="seller"
    )
    root.find("DSCKS/NBan").append(signature)
    data_ref = xmlsec.template.add_reference(
        signature, xmlsec.constants.TransformSha256, uri="#DLHDon-5C26TAA-00000042"
    )
    xmlsec.template.add_transform(data_ref, xmlsec.constants.TransformEnveloped)
    xmlsec.template.add_reference(signature, xmlsec.constants.TransformSha256, uri="#TimeStamp")
    x509_data = xmlsec.template.add_x509_data(xmlsec.template.ensure_key_info(signature))
    xmlsec.template.x509_data_add_subject_name(x509_data)
    xmlsec.template.x509_data_add_certificate(x509_data)
    time_object = etree.SubElement(signature, ds("Object"), Id="TimeStamp")
    prop = etree.SubElement(etree.SubElement(time_object, ds("SignatureProperties")), ds("SignatureProperty"))
    prop.set("Target", "#seller")
    etree.SubElement(prop, ds("SigningTime")).text = "2026-03-01T09:30:00"
    context = xmlsec.SignatureContext()
    for node in (root.find("DLHDon"), time_object):
        context.register_id(node, "Id")
    key = xmlsec.Key.from_memory(kit.agency.key_pem, xmlsec.constants.KeyDataFormatPem)
    key.load_cert_from_memory(kit.agency.cert_pem, xmlsec.constants.KeyDataFormatCertPem)
    context.key = key
    context.sign(signature)
    assert etree.tostring(signature).startswith(b'<Signature xmlns="http://www.w3.org/2000/09/xmldsig#"')

    verified = verify(etree.tostring(root), kit.trusted)
    assert (verified.signing_time, verified.total) == (SIGNED_AT, 150000)


def test_one_signer_serves_many_threads(kit: Kit) -> None:
    payers = [f"Người nộp {i}" for i in range(32)]
    with ThreadPoolExecutor(max_workers=8) as pool:
        signed = pool.map(lambda payer: kit.agency.signer.sign(receipt(payer=payer)), payers)
        verified = list(pool.map(lambda doc: verify(doc, kit.trusted), signed))
    assert [v.signed_data.findtext("NDHDon/NMua/Ten") for v in verified] == payers


def test_pkcs12_and_pem_loading(kit: Kit) -> None:
    agency = kit.agency
    for password in (b"m\xe1\xba\xadt kh\xe1\xba\xa9u", None):
        bundle = to_pkcs12(agency.key_pem, agency.cert_pem, password)
        loaded = LocalSigner.from_pkcs12(bundle, password, clock=lambda: SIGNED_AT)
        assert loaded.certificate == agency.signer.certificate
        assert verify(loaded.sign(receipt()), kit.trusted).number == 42
    with pytest.raises(ValueError):
        LocalSigner.from_pkcs12(to_pkcs12(agency.key_pem, agency.cert_pem, b"right"), b"wrong")

    key = load_pem_private_key(agency.key_pem, None)
    encrypted = key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, BestAvailableEncryption(b"pw"))
    loaded = LocalSigner.from_pem(encrypted, agency.cert_pem, b"pw", clock=lambda: SIGNED_AT)
    assert verify(loaded.sign(receipt()), kit.trusted).signer_tax_code == TAX_CODE
    with pytest.raises(ValueError, match="does not belong"):
        LocalSigner.from_pem(agency.key_pem, kit.stranger.cert_pem)


def test_dev_certificate_carries_the_tax_code_as_uid(kit: Kit) -> None:
    certificate = kit.agency.signer.certificate
    (uid,) = certificate.subject.get_attributes_for_oid(x509.ObjectIdentifier("0.9.2342.19200300.100.1.1"))
    assert uid.value == "MST:5800123456"
    assert certificate.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "Sở Tư pháp tỉnh Lâm Đồng"
    assert certificate.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)[0].value == "Sở Tư pháp tỉnh Lâm Đồng"
    certificate.verify_directly_issued_by(certificate)  # self-signed
    public_key = certificate.public_key()
    assert isinstance(public_key, rsa.RSAPublicKey) and public_key.key_size == 2048
    assert certificate.not_valid_after_utc - certificate.not_valid_before_utc == timedelta(days=825)
    with pytest.raises(ValueError, match="tax code"):
        make_dev_certificate("12345", "Sở Tư pháp")


def test_signer_refuses_a_time_outside_the_certificate_or_without_a_zone(kit: Kit) -> None:
    key, certificate = kit.agency.signer.key, kit.agency.signer.certificate
    with pytest.raises(ValueError, match="not valid at"):
        LocalSigner(key, certificate, clock=lambda: CERT_FROM - timedelta(days=1)).sign(receipt())
    with pytest.raises(ValueError, match="aware"):
        LocalSigner(key, certificate, clock=lambda: datetime(2026, 3, 1, 9, 30)).sign(receipt())


# --- tamper matrix ---------------------------------------------------------------------------------------------------


def resign(doc: bytes, key: rsa.RSAPrivateKey, change: Callable[[Any], None], *, sha1: bool = False) -> bytes:
    """Apply `change` to the Signature, then recompute every digest and the SignatureValue: only policy can refuse."""
    root = etree.fromstring(doc)
    signature = root.find(SIGNATURE)
    change(signature)
    algorithm: hashes.HashAlgorithm = hashes.SHA1() if sha1 else hashes.SHA256()
    info = signature.find(ds("SignedInfo"))
    if sha1:
        info.find(ds("SignatureMethod")).set("Algorithm", f"{DS}rsa-sha1")
    for reference in info.iter(ds("Reference")):
        if sha1:
            reference.find(ds("DigestMethod")).set("Algorithm", f"{DS}sha1")
        (target,) = root.xpath("//*[@Id=$id]", id=reference.get("URI")[1:])
        digest = hashes.Hash(algorithm)
        digest.update(etree.tostring(target, method="c14n"))  # no target holds the Signature: no transform needed
        reference.find(ds("DigestValue")).text = b64encode(digest.finalize()).decode()
    value = key.sign(etree.tostring(info, method="c14n"), padding.PKCS1v15(), algorithm)
    signature.find(ds("SignatureValue")).text = b64encode(value).decode()
    return bytes(etree.tostring(root, xml_declaration=True, encoding="UTF-8"))


def add_key_info_reference(signature: Any) -> None:
    signature.find(ds("KeyInfo")).set("Id", "KeyInfo-1")
    reference = etree.SubElement(signature.find(ds("SignedInfo")), ds("Reference"), URI="#KeyInfo-1")
    etree.SubElement(reference, ds("DigestMethod"), Algorithm="http://www.w3.org/2001/04/xmlenc#sha256")
    etree.SubElement(reference, ds("DigestValue"))


def backdate(signature: Any) -> None:
    signature.find(f".//{ds('SigningTime')}").text = "2025-12-01T09:30:00+07:00"  # before the certificate


def edit(doc: bytes, change: Callable[[Any], None]) -> bytes:
    root = etree.fromstring(doc)
    change(root)
    return bytes(etree.tostring(root, xml_declaration=True, encoding="UTF-8"))


def swap_certificate(party: Party) -> Callable[[Any], None]:
    def change(root: Any) -> None:
        der = party.signer.certificate.public_bytes(Encoding.DER)
        root.find(f"{SIGNATURE}/{ds('KeyInfo')}/{ds('X509Data')}/{ds('X509Certificate')}").text = b64encode(der)

    return change


def wrap(root: Any) -> None:
    """Signature wrapping: hide the signed DLHDon in an unsigned place, put a forged one where readers look."""
    original = root.find("DLHDon")
    forged = etree.fromstring(etree.tostring(original).replace(b">150000<", b">1<"))
    root.find("DSCKS/NBan").append(original)
    root.insert(0, forged)


def one_byte(doc: bytes) -> bytes:
    assert doc.count(b">150000<") == 1
    return doc.replace(b">150000<", b">950000<")


TAMPERS: dict[str, tuple[Callable[[Kit], bytes], Reason]] = {
    "one byte changed inside DLHDon": (lambda k: one_byte(k.signed()), Reason.digest_mismatch),
    "SigningTime changed": (
        lambda k: k.signed().replace(b"T09:30:00+07:00<", b"T09:31:00+07:00<"),
        Reason.digest_mismatch,
    ),
    "signed by a foreign key": (lambda k: k.stranger.signer.sign(receipt()), Reason.untrusted_certificate),
    "extra reference": (lambda k: resign(k.signed(), k.agency.signer.key, add_key_info_reference), Reason.reference),
    "SHA-1": (lambda k: resign(k.signed(), k.agency.signer.key, lambda s: None, sha1=True), Reason.algorithm),
    "DOCTYPE with an entity": (
        lambda k: (
            k.signed()
            .replace(b"<HDon>", b'<!DOCTYPE HDon [<!ENTITY t "Nguyen">]><HDon>')
            .replace("Nguyễn Thị Hường".encode(), b"&t;")
        ),
        Reason.doctype,
    ),
    "oversized": (lambda k: k.signed() + b"<!--" + b" " * MAX_XML_BYTES + b"-->", Reason.too_large),
    "Signature removed": (
        lambda k: edit(k.signed(), lambda r: r.find("DSCKS/NBan").remove(r.find(SIGNATURE))),
        Reason.no_signature,
    ),
    "certificate swapped for a foreign one": (
        lambda k: edit(k.signed(), swap_certificate(k.stranger)),
        Reason.untrusted_certificate,
    ),
    "certificate swapped for another pinned one": (
        lambda k: edit(k.signed(), swap_certificate(k.rotated)),
        Reason.bad_signature,
    ),
    "signing time outside the certificate": (
        lambda k: resign(k.signed(), k.agency.signer.key, backdate),
        Reason.certificate_not_valid,
    ),
    "signature wrapping": (lambda k: edit(k.signed(), wrap), Reason.reference),
    "not well-formed": (lambda k: k.signed()[:-8], Reason.parse_error),
}


@pytest.mark.parametrize(("tamper", "reason"), TAMPERS.values(), ids=TAMPERS.keys())
def test_tampered_documents_are_refused_for_the_right_reason(
    kit: Kit, tamper: Callable[[Kit], bytes], reason: Reason
) -> None:
    with pytest.raises(InvalidDocument) as refused:
        verify(tamper(kit), kit.trusted)
    assert refused.value.reason is reason, str(refused.value)


@pytest.mark.parametrize("case", ["extra reference", "SHA-1", "signing time outside the certificate"])
def test_resigned_attacks_are_cryptographically_sound(kit: Kit, case: str) -> None:
    """xmlsec accepts them: the verifier refuses on policy, not because the test forged a broken signature."""
    tamper, _reason = TAMPERS[case]
    xmlsec_verify(tamper(kit), kit.agency.signer.certificate)


def test_size_limit_is_a_parameter(kit: Kit) -> None:
    signed = kit.signed()
    with pytest.raises(InvalidDocument) as refused:
        verify(signed, kit.trusted, max_bytes=len(signed) - 1)
    assert refused.value.reason is Reason.too_large
    assert verify(signed, kit.trusted, max_bytes=len(signed)).number == 42


def test_nothing_is_trusted_without_pinned_certificates(kit: Kit) -> None:
    with pytest.raises(InvalidDocument) as refused:
        verify(kit.signed(), [])
    assert refused.value.reason is Reason.untrusted_certificate


# --- binding: a valid signature counts only in the name of the seller its certificate is registered for ----------


def no_uid_party() -> Party:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Không có MST")])
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(CERT_FROM)
        .not_valid_after(CERT_FROM + timedelta(days=365))
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption())
    cert_pem = certificate.public_bytes(Encoding.PEM)
    return Party(key_pem, cert_pem, LocalSigner.from_pem(key_pem, cert_pem, clock=lambda: SIGNED_AT))


def comment_in_signed_text(doc: bytes) -> bytes:
    name = "Nguyễn Thị Hường".encode()
    return doc.replace(name, name[:7] + b"<!-- -->" + name[7:])


BINDING: dict[str, tuple[Callable[[Kit], tuple[bytes, list[Pin]]], Reason]] = {
    "signed with another agency's registered key": (
        lambda k: (k.stranger.signer.sign(receipt()), [*k.trusted, Pin(k.stranger.signer.certificate, "0312345678")]),
        Reason.wrong_seller,
    ),
    "certificate naming another tax code, pinned for this seller": (
        lambda k: (k.stranger.signer.sign(receipt()), [Pin(k.stranger.signer.certificate, TAX_CODE)]),
        Reason.wrong_seller,
    ),
    "certificate without UID=MST, pinned for this seller": (
        lambda k: ((p := no_uid_party()).signer.sign(receipt()), [Pin(p.signer.certificate, TAX_CODE)]),
        Reason.wrong_seller,
    ),
    "a comment inside signed text": (
        lambda k: (comment_in_signed_text(k.signed()), k.trusted),
        Reason.unsigned_content,
    ),
}


@pytest.mark.parametrize(("case", "reason"), BINDING.values(), ids=BINDING.keys())
def test_a_signature_counts_only_for_the_seller_it_is_registered_for(
    kit: Kit, case: Callable[[Kit], tuple[bytes, list[Pin]]], reason: Reason
) -> None:
    document, trust = case(kit)
    with pytest.raises(InvalidDocument) as refused:
        verify(document, trust)
    assert refused.value.reason is reason, str(refused.value)


def test_the_comment_attack_is_cryptographically_sound(kit: Kit) -> None:
    """xmlsec accepts it (canonicalization drops comments): only the verifier's policy keeps it out."""
    xmlsec_verify(comment_in_signed_text(kit.signed()), kit.agency.signer.certificate)


def test_a_verified_document_says_which_agency_and_values_were_signed(kit: Kit) -> None:
    verified = verify(kit.signed(), [Pin(kit.agency.signer.certificate, TAX_CODE, "STP-LD")])
    assert verified.agency == "STP-LD" and verified.signer_tax_code == TAX_CODE
    assert verified.signed_values["NDHDon/NBan/MST"] == TAX_CODE
    assert verified.signed_values["NDHDon/NMua/Ten"] == "Nguyễn Thị Hường"
    assert verified.unsigned_parts == ()


# --- edges and exact texts (the survivors of the first mutation run, docs/testing.md) -----------------------------
def signing_time_of(signed: bytes) -> str:
    return str(etree.fromstring(signed).findtext(f".//{ds('SigningTime')}"))


def test_the_certificate_window_includes_both_ends(kit: Kit) -> None:
    signer = kit.agency.signer
    first, last = signer.certificate.not_valid_before_utc, signer.certificate.not_valid_after_utc

    def at(moment: datetime) -> LocalSigner:
        return LocalSigner(signer.key, signer.certificate, clock=lambda: moment)

    for moment in (first, last):
        assert signing_time_of(at(moment).sign(receipt())) == moment.astimezone(VIETNAM).isoformat()
    for moment in (first - timedelta(seconds=1), last + timedelta(seconds=1)):
        shown = moment.astimezone(VIETNAM).isoformat()
        with pytest.raises(ValueError, match=f"^the certificate is not valid at {re.escape(shown)}$"):
            at(moment).sign(receipt())


def test_a_daily_summary_is_signed_by_the_taxpayer_directly() -> None:
    # The golden summary's taxpayer, so the signature is pinned for the tax code the summary names.
    taxpayer = party("0100000001", "Sở Tư pháp tỉnh Demo")
    unsigned = (GOLDEN / "summary.xml").read_bytes()
    signed = taxpayer.signer.sign_summary(unsigned)
    root = etree.fromstring(signed)
    (signature,) = root.findall(f"DSCKS/NNT/{ds('Signature')}")
    assert str(signature.get("Id")).startswith("NNT-")
    checked = verify_summary(signed, pinned(taxpayer.signer.certificate))
    assert (checked.taxpayer_tax_code, checked.form) == ("0100000001", "01/TH-BLĐT")
    assert checked.signing_time == SIGNED_AT
    assert checked.signed_data.findtext("TTChung/SLBLai") == "7"


def test_a_pkcs12_bundle_without_a_key_or_certificate_is_refused(kit: Kit) -> None:
    agency = kit.agency
    key = load_pem_private_key(agency.key_pem, None)
    assert isinstance(key, rsa.RSAPrivateKey)
    certificate = agency.signer.certificate
    only_key = pkcs12.serialize_key_and_certificates(b"k", key, None, None, NoEncryption())
    only_certificate = pkcs12.serialize_key_and_certificates(b"c", None, certificate, None, NoEncryption())
    for bundle in (only_key, only_certificate):
        with pytest.raises(ValueError, match=r"^the PKCS#12 file must hold a private key and its certificate$"):
            LocalSigner.from_pkcs12(bundle, None)


def test_a_pkcs12_signer_keeps_the_clock_it_is_given(kit: Kit) -> None:
    bundle = to_pkcs12(kit.agency.key_pem, kit.agency.cert_pem, None)
    signed = LocalSigner.from_pkcs12(bundle, None, clock=lambda: SIGNED_AT).sign(receipt())
    assert signing_time_of(signed) == "2026-03-01T09:30:00+07:00"


def test_the_default_clock_is_vietnam_time(monkeypatch: pytest.MonkeyPatch) -> None:
    # A local zone that is neither UTC nor GMT+7, so a time in the machine's zone would show.
    monkeypatch.setenv("TZ", "Asia/Tokyo")
    time.tzset()
    try:
        now = vietnam_now()
    finally:
        monkeypatch.undo()
        time.tzset()
    assert now.tzinfo is VIETNAM and now.utcoffset() == timedelta(hours=7)
    assert abs(now - datetime.now(UTC)) < timedelta(minutes=5)


def test_key_errors_say_what_is_wrong(kit: Kit) -> None:
    agency = kit.agency
    with pytest.raises(ValueError, match=r"^the private key does not belong to the certificate$"):
        LocalSigner.from_pem(agency.key_pem, kit.stranger.cert_pem)
    ec_key = ec.generate_private_key(ec.SECP256R1())
    ec_pem = ec_key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption())
    with pytest.raises(ValueError, match=r"^rsa-sha256 needs an RSA private key$"):
        LocalSigner.from_pem(ec_pem, agency.cert_pem)
    with pytest.raises(TypeError, match=r"^rsa-sha256 needs an RSA private key$"):
        LocalSigner(ec_key, agency.signer.certificate)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"^rsa-sha256 needs an RSA private key$"):
        to_pkcs12(ec_pem, agency.cert_pem, None)


def test_signing_errors_say_what_is_wrong(kit: Kit) -> None:
    signer = kit.agency.signer
    with pytest.raises(ValueError, match=r"^the clock must return an aware datetime$"):
        LocalSigner(signer.key, signer.certificate, clock=lambda: datetime(2026, 3, 1, 9, 30)).sign(receipt())
    with pytest.raises(InvalidDocument, match=r"DSCKS/NBan already holds a signature$") as refused:
        signer.sign(signer.sign(receipt()))
    assert refused.value.reason is Reason.malformed
    with pytest.raises(ValueError, match=f"^a tax code is {re.escape(TAX_CODE_RULE)}$"):
        make_dev_certificate("12345", "Sở Tư pháp")
