"""The e-receipt verifier called directly (invoices/verify.py): the exact reason and detail of each refusal, what a
verified notice and daily summary report, the unsigned parts the layout allows, and the signed fields' formats.

tests/invoices/test_verification.py checks the verifier through the API and the CLI, and tests/invoices/test_signing.py
its round trip and tamper matrix; these pin each branch cheaply, so that the mutation run (scripts/mutate
verification) takes minutes.
"""

from __future__ import annotations

import functools
from base64 import b64encode
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.x509.oid import NameOID
from lxml import etree  # type: ignore[import-untyped]  # lxml ships no type information and no stubs are installed

from invoices.errors import InvalidDocument, Reason
from invoices.verify import Pin, pinned, signed_values, subject_tax_code, verify, verify_notice, verify_summary
from invoices.xmldsig import C14N, DS, ENVELOPED, RSA_SHA256, SHA256, ds
from tests.invoices.test_signing import (
    CERT_FROM,
    GOLDEN,
    SIGNATURE,
    SIGNED_AT,
    TAX_CODE,
    Party,
    backdate,
    edit,
    no_uid_party,
    party,
    receipt,
    resign,
)

OTHER_TAX_CODE = "0312345678"
NOTICE_XML = (
    f'<TBao><DLTBao Id="DLTBao"><MSo>04/SS-HĐĐT</MSo><MST>{TAX_CODE}</MST></DLTBao><DSCKS><NNT/><CQT/></DSCKS></TBao>'
).encode()


@pytest.fixture(scope="module")
def agency() -> Party:
    return party(TAX_CODE, "Sở Tư pháp tỉnh Lâm Đồng")


@pytest.fixture(scope="module")
def stranger() -> Party:
    return party(OTHER_TAX_CODE, "Khác")


def refused(call: Callable[[], object], reason: Reason, detail: str) -> InvalidDocument:
    with pytest.raises(InvalidDocument) as caught:
        call()
    assert (caught.value.reason, caught.value.detail) == (reason, detail), str(caught.value)
    return caught.value


def changed(change: Callable[[Any], None]) -> bytes:
    """A receipt with `change` applied to its unsigned HDon, ready to be signed."""
    return edit(receipt(), change)


def set_text(path: str, text: str | None) -> Callable[[Any], None]:
    def change(root: Any) -> None:
        root.find(f"DLHDon/{path}").text = text

    return change


def remove(path: str) -> Callable[[Any], None]:
    def change(root: Any) -> None:
        node = root.find(f"DLHDon/{path}")
        node.getparent().remove(node)

    return change


# --- pins -------------------------------------------------------------------------------------------------------------


def test_a_certificate_without_a_tax_code_is_pinned_for_no_seller() -> None:
    certificate = no_uid_party().signer.certificate
    assert subject_tax_code(certificate) is None
    assert pinned(certificate) == [Pin(certificate, "", "")]


def test_a_certificate_is_pinned_for_the_tax_code_it_names(agency: Party) -> None:
    assert pinned(agency.signer.certificate) == [Pin(agency.signer.certificate, TAX_CODE, "")]


# --- notices and summaries --------------------------------------------------------------------------------------------


def test_a_verified_notice_reports_what_its_signature_covers(agency: Party) -> None:
    certificate = agency.signer.certificate
    checked = verify_notice(agency.signer.sign_notice(NOTICE_XML), [Pin(certificate, TAX_CODE, "STP-LD")])
    assert checked.signed_data.tag == "DLTBao" and checked.signed_data.findtext("MSo") == "04/SS-HĐĐT"
    assert (checked.certificate, checked.agency) == (certificate, "STP-LD")
    assert checked.signer_subject == certificate.subject.rfc4514_string()
    assert "UID=MST:5800123456" in checked.signer_subject
    assert (checked.signer_tax_code, checked.taxpayer_tax_code) == (TAX_CODE, TAX_CODE)
    assert checked.signing_time == SIGNED_AT
    assert checked.form == "04/SS-HĐĐT"


def test_a_notice_without_its_form_is_refused(agency: Party) -> None:
    unsigned = NOTICE_XML.replace("<MSo>04/SS-HĐĐT</MSo>".encode(), b"<MSo> </MSo>")
    signed = agency.signer.sign_notice(unsigned)
    refused(
        lambda: verify_notice(signed, pinned(agency.signer.certificate)),
        Reason.malformed,
        "signed DLTBao has no valid MSo",
    )


def summary_party() -> Party:
    return party("0100000001", "Sở Tư pháp tỉnh Demo")  # the golden summary's taxpayer


def test_a_verified_summary_reports_what_its_signature_covers() -> None:
    taxpayer = summary_party()
    certificate = taxpayer.signer.certificate
    signed = taxpayer.signer.sign_summary((GOLDEN / "summary.xml").read_bytes())
    checked = verify_summary(signed, [Pin(certificate, "0100000001", "AGC-D")])
    assert checked.signed_data.tag == "DLBTHop"
    assert (checked.certificate, checked.agency) == (certificate, "AGC-D")
    assert checked.signer_subject == certificate.subject.rfc4514_string()
    assert (checked.signer_tax_code, checked.taxpayer_tax_code) == ("0100000001", "0100000001")
    assert checked.signing_time == SIGNED_AT
    assert checked.form == "01/TH-BLĐT"


def test_a_summary_without_its_form_is_refused() -> None:
    taxpayer = summary_party()

    def drop_form(root: Any) -> None:
        form = root.find("DLBTHop/TTChung/MSo")
        form.getparent().remove(form)

    signed = taxpayer.signer.sign_summary(edit((GOLDEN / "summary.xml").read_bytes(), drop_form))
    refused(
        lambda: verify_summary(signed, pinned(taxpayer.signer.certificate)),
        Reason.malformed,
        "signed DLBTHop has no valid TTChung/MSo",
    )


# --- unsigned content -------------------------------------------------------------------------------------------------


def text_before_the_data(root: Any) -> None:
    root.text = "hidden"


def text_after_the_data(root: Any) -> None:
    root.find("DLHDon").tail = "hidden"


def text_in_dscks(root: Any) -> None:
    root.find("DSCKS").text = "hidden"


def text_after_a_slot(root: Any) -> None:
    root.find("DSCKS/NBan").tail = "hidden"


def text_in_a_slot(root: Any) -> None:
    root.find("DSCKS/NBan").text = "hidden"


@pytest.mark.parametrize(
    ("change", "where"),
    [
        (text_before_the_data, "HDon"),
        (text_after_the_data, "HDon"),
        (text_in_dscks, "DSCKS"),
        (text_after_a_slot, "DSCKS"),
        (text_in_a_slot, "NBan"),
    ],
)
def test_text_outside_the_signed_data_is_refused(agency: Party, change: Callable[[Any], None], where: str) -> None:
    document = edit(agency.signer.sign(receipt()), change)
    refused(
        lambda: verify(document, pinned(agency.signer.certificate)),
        Reason.unsigned_content,
        f"text in {where} is not covered by the signature",
    )


def test_an_unknown_child_of_dscks_is_refused(agency: Party) -> None:
    document = edit(agency.signer.sign(receipt()), lambda r: etree.SubElement(r.find("DSCKS"), "Khac"))
    refused(
        lambda: verify(document, pinned(agency.signer.certificate)),
        Reason.unsigned_content,
        "DSCKS/Khac is not a signature slot",
    )


def test_other_slots_hold_signature_elements_only(agency: Party) -> None:
    signed = agency.signer.sign(receipt())

    def slot_with(tag: str) -> Callable[[Any], None]:
        def change(root: Any) -> None:
            etree.SubElement(etree.SubElement(root.find("DSCKS"), "CQT"), tag)

        return change

    # The tax authority's signing time may sit outside the ds namespace; it is not signed content of the seller's.
    with_time = verify(edit(signed, slot_with("SigningTime")), pinned(agency.signer.certificate))
    assert with_time.unsigned_parts == ("DSCKS/CQT",)
    with_ds = verify(edit(signed, slot_with(ds("Signature"))), pinned(agency.signer.certificate))
    assert with_ds.unsigned_parts == ("DSCKS/CQT",)
    for tag in ("MST", "signingtime", "Ten"):
        document = edit(signed, slot_with(tag))
        refused(
            functools.partial(verify, document, pinned(agency.signer.certificate)),
            Reason.unsigned_content,
            f"{tag} inside DSCKS/CQT is not signed",
        )
    empty = verify(edit(signed, lambda r: etree.SubElement(r.find("DSCKS"), "NMua")), pinned(agency.signer.certificate))
    assert empty.unsigned_parts == ()


def test_another_partys_signature_before_the_sellers_does_not_stand_in_for_it(agency: Party, stranger: Party) -> None:
    """The buyer's slot comes first in DSCKS: the seller's signature is still the one in DSCKS/NBan."""
    by_stranger = etree.fromstring(stranger.signer.sign(receipt()))
    dscks = by_stranger.find("DSCKS")
    buyer = etree.Element("NMua")
    buyer.append(dscks.find("NBan").find(ds("Signature")))
    dscks.insert(0, buyer)
    both = agency.signer.sign(etree.tostring(by_stranger, xml_declaration=True, encoding="UTF-8"))
    assert b"<DSCKS><NMua><ds:Signature" in both
    checked = verify(both, pinned(agency.signer.certificate))
    assert checked.certificate == agency.signer.certificate and checked.unsigned_parts == ("DSCKS/NMua",)


# --- who signed -------------------------------------------------------------------------------------------------------


def test_a_certificate_naming_another_tax_code_says_which(agency: Party, stranger: Party) -> None:
    document = stranger.signer.sign(receipt())
    refused(
        lambda: verify(document, [Pin(stranger.signer.certificate, TAX_CODE)]),
        Reason.wrong_seller,
        f"the certificate names UID=MST:{OTHER_TAX_CODE}, the signed seller tax code is {TAX_CODE}",
    )
    unnamed = no_uid_party()
    refused(
        lambda: verify(unnamed.signer.sign(receipt()), [Pin(unnamed.signer.certificate, TAX_CODE)]),
        Reason.wrong_seller,
        f"the certificate names no UID=MST, the signed seller tax code is {TAX_CODE}",
    )


def test_a_certificate_registered_for_others_says_for_whom(agency: Party) -> None:
    certificate = agency.signer.certificate
    trusted = [Pin(certificate, OTHER_TAX_CODE, "AGC-B"), Pin(certificate, "0999999999"), Pin(certificate, "", "AGC-C")]
    refused(
        lambda: verify(agency.signer.sign(receipt()), trusted),
        Reason.wrong_seller,
        f"the certificate is registered for 0999999999, AGC-B, AGC-C, not for the seller with tax code {TAX_CODE}",
    )
    notice = agency.signer.sign_notice(NOTICE_XML)
    refused(
        lambda: verify_notice(notice, [Pin(certificate, OTHER_TAX_CODE, "AGC-B")]),
        Reason.wrong_seller,
        f"the certificate is registered for AGC-B, not for the taxpayer with tax code {TAX_CODE}",
    )


def test_the_registration_for_the_named_seller_is_the_one_reported(agency: Party) -> None:
    certificate = agency.signer.certificate
    trusted = [Pin(certificate, OTHER_TAX_CODE, "AGC-B"), Pin(certificate, TAX_CODE, "AGC-A")]
    assert verify(agency.signer.sign(receipt()), trusted).agency == "AGC-A"


# --- the cryptography's verdicts --------------------------------------------------------------------------------------


def resign_info(signer: Party, document: bytes, change: Callable[[Any], None]) -> bytes:
    """Apply `change` to the Signature and sign its SignedInfo again (digests untouched)."""
    root = etree.fromstring(document)
    signature = root.find(SIGNATURE)
    change(signature)
    info = signature.find(ds("SignedInfo"))
    value = signer.signer.key.sign(etree.tostring(info, method="c14n"), padding.PKCS1v15(), hashes.SHA256())
    signature.find(ds("SignatureValue")).text = b64encode(value).decode()
    return bytes(etree.tostring(root, xml_declaration=True, encoding="UTF-8"))


def test_each_cryptographic_refusal_says_what_signxml_found(agency: Party) -> None:
    trusted = pinned(agency.signer.certificate)
    signed = agency.signer.sign(receipt())

    changed_content = refused_for(signed.replace(b">150000<", b">950000<"), trusted, Reason.digest_mismatch)
    assert changed_content.detail == f"{changed_content.__cause__}: the content changed after signing"
    assert "Digest mismatch" in changed_content.detail

    def garble(signature: Any) -> None:
        signature.find(ds("SignatureValue")).text = "AAAA"

    bad = refused_for(edit(signed, lambda r: garble(r.find(SIGNATURE))), trusted, Reason.bad_signature)
    assert bad.detail == f"SignatureValue does not match SignedInfo: {bad.__cause__}"

    def drop_digest_value(signature: Any) -> None:
        reference = signature.find(f"{ds('SignedInfo')}/{ds('Reference')}")
        reference.remove(reference.find(ds("DigestValue")))

    malformed = refused_for(resign_info(agency, signed, drop_digest_value), trusted, Reason.malformed)
    assert malformed.detail == str(malformed.__cause__) and "DigestValue" in malformed.detail


def test_a_signature_outside_the_certificates_validity_says_so() -> None:
    young = party(TAX_CODE, "Sở Tư pháp")  # valid from CERT_FROM
    document = resign(young.signer.sign(receipt()), young.signer.key, backdate)
    outside = refused_for(document, pinned(young.signer.certificate), Reason.certificate_not_valid)
    assert outside.detail == str(outside.__cause__) and outside.detail not in ("", "None")


def refused_for(document: bytes, trusted: list[Pin], reason: Reason) -> InvalidDocument:
    with pytest.raises(InvalidDocument) as caught:
        verify(document, trusted)
    assert caught.value.reason is reason, str(caught.value)
    return caught.value


# --- the signed fields ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("change", "detail"),
    [
        (set_text("TTChung/KHHDon", None), "signed DLHDon has no valid TTChung/KHHDon"),
        (set_text("TTChung/KHHDon", "  "), "signed DLHDon has no valid TTChung/KHHDon"),
        (remove("TTChung/KHHDon"), "signed DLHDon has no valid TTChung/KHHDon"),
        (remove("TTChung/KHMSHDon"), "signed DLHDon has no valid TTChung/KHMSHDon"),
        (set_text("TTChung/SHDon", "123456789"), "signed DLHDon has no valid TTChung/SHDon"),
        (set_text("TTChung/SHDon", "4a"), "signed DLHDon has no valid TTChung/SHDon"),
        (set_text("TTChung/SHDon", "-1"), "signed DLHDon has no valid TTChung/SHDon"),
        (set_text("TTChung/NLap", "20260301"), "signed DLHDon has no valid TTChung/NLap"),
        (set_text("TTChung/NLap", "2026-03-01T00:00"), "signed DLHDon has no valid TTChung/NLap"),
        (set_text("TTChung/NLap", "2026-02-30"), "NLap 2026-02-30 is not a calendar date"),
        (set_text("NDHDon/TToan/TgTTTBSo", "1.5e5"), "signed DLHDon has no valid NDHDon/TToan/TgTTTBSo"),
        (set_text("NDHDon/TToan/TgTTTBSo", "150_000"), "signed DLHDon has no valid NDHDon/TToan/TgTTTBSo"),
        (set_text("NDHDon/TToan/TgTTTBSo", "150000.5"), "TgTTTBSo is not a whole number of VND"),
        (set_text("NDHDon/TToan/TgTTTBSo", "0.0000001"), "signed DLHDon has no valid NDHDon/TToan/TgTTTBSo"),
        (remove("NDHDon/NBan/MST"), "signed DLHDon has no valid NDHDon/NBan/MST"),
    ],
)
def test_signed_fields_in_the_wrong_form_are_refused(agency: Party, change: Callable[[Any], None], detail: str) -> None:
    document = agency.signer.sign(changed(change))
    refused(lambda: verify(document, pinned(agency.signer.certificate)), Reason.malformed, detail)


def test_signed_fields_at_the_edges_of_their_forms_are_read(agency: Party) -> None:
    def at_the_edges(root: Any) -> None:
        set_text("TTChung/SHDon", "99999999")(root)
        set_text("TTChung/NLap", "2028-02-29")(root)
        set_text("NDHDon/TToan/TgTTTBSo", " 150000.000000 ")(root)

    edges = changed(at_the_edges)
    checked = verify(agency.signer.sign(edges), pinned(agency.signer.certificate))
    assert (checked.number, str(checked.issue_date), checked.total) == (99999999, "2028-02-29", 150000)
    negative = changed(set_text("NDHDon/TToan/TgTTTBSo", "-20000"))
    assert verify(agency.signer.sign(negative), pinned(agency.signer.certificate)).total == -20000


def test_signed_values_name_every_leaf_and_number_repeated_elements() -> None:
    data = etree.fromstring(
        "<DLHDon><TTChung><SHDon> 42 </SHDon><Trong/></TTChung><DSHHDVu>"
        "<HHDVu><Ten>A</Ten><ThTien>1</ThTien></HHDVu><HHDVu><Ten>B</Ten><ThTien>2</ThTien></HHDVu>"
        "<HHDVu><Ten>C</Ten></HHDVu><Ghi/></DSHHDVu></DLHDon>"
    )
    assert signed_values(data) == {
        "TTChung/SHDon": "42",
        "TTChung/Trong": "",
        "DSHHDVu/HHDVu[1]/Ten": "A",
        "DSHHDVu/HHDVu[1]/ThTien": "1",
        "DSHHDVu/HHDVu[2]/Ten": "B",
        "DSHHDVu/HHDVu[2]/ThTien": "2",
        "DSHHDVu/HHDVu[3]/Ten": "C",
        "DSHHDVu/Ghi": "",
    }
    assert signed_values(etree.fromstring("<MST>5800123456</MST>")) == {"": "5800123456"}


# --- the embedded certificate ----------------------------------------------------------------------------------------


def key_info_change(change: Callable[[Any], None]) -> Callable[[Any], None]:
    def edit_key_info(root: Any) -> None:
        change(root.find(f"{SIGNATURE}/{ds('KeyInfo')}"))

    return edit_key_info


def certificate_text(key_info: Any) -> Any:
    return key_info.find(f"{ds('X509Data')}/{ds('X509Certificate')}")


@pytest.mark.parametrize(
    ("change", "detail"),
    [
        (lambda k: etree.SubElement(k, ds("KeyName")), "KeyInfo must hold one X509Data with one X509Certificate"),
        (
            lambda k: k.append(etree.fromstring(etree.tostring(k[0]))),
            "KeyInfo must hold one X509Data with one X509Certificate",
        ),
        (lambda k: k.remove(k[0]), "KeyInfo must hold one X509Data with one X509Certificate"),
        (
            lambda k: etree.SubElement(k[0], ds("X509IssuerSerial")),
            "X509Data must hold X509SubjectName and X509Certificate only",
        ),
        (lambda k: k[0].remove(certificate_text(k)), "X509Data must hold X509SubjectName and X509Certificate only"),
        (lambda k: k[0].insert(0, k[0][1]), "X509Data must hold X509SubjectName and X509Certificate only"),
        (
            lambda k: setattr(
                certificate_text(k), "text", certificate_text(k).text[:40] + "!" + certificate_text(k).text[40:]
            ),
            "X509Certificate is not base64",
        ),
        (
            lambda k: setattr(certificate_text(k), "text", certificate_text(k).text[:-1]),
            "X509Certificate is not base64",
        ),
    ],
)
def test_key_info_holds_one_certificate_in_base64(agency: Party, change: Callable[[Any], None], detail: str) -> None:
    document = edit(agency.signer.sign(receipt()), key_info_change(change))
    refused(lambda: verify(document, pinned(agency.signer.certificate)), Reason.malformed, detail)


def test_the_certificate_alone_or_wrapped_over_lines_is_read(agency: Party) -> None:
    signed = agency.signer.sign(receipt())

    def alone(key_info: Any) -> None:
        key_info[0].remove(key_info[0][0])

    def wrapped(key_info: Any) -> None:
        text = certificate_text(key_info).text
        certificate_text(key_info).text = "\n" + "\n".join(text[i : i + 64] for i in range(0, len(text), 64)) + "\n"

    for change in (alone, wrapped):
        assert verify(edit(signed, key_info_change(change)), pinned(agency.signer.certificate)).number == 42


def test_an_empty_or_unregistered_certificate_is_not_trusted(agency: Party, stranger: Party) -> None:
    signed = agency.signer.sign(receipt())
    empty = edit(signed, key_info_change(lambda k: setattr(certificate_text(k), "text", None)))
    for document, trusted in (
        (empty, pinned(agency.signer.certificate)),
        (signed, pinned(stranger.signer.certificate)),
    ):
        refused(
            functools.partial(verify, document, trusted),
            Reason.untrusted_certificate,
            "the signing certificate is not registered here",
        )


def test_signed_values_number_a_pair_of_repeated_elements() -> None:
    data = etree.fromstring("<DLHDon><Ghi>a</Ghi><Ghi>b</Ghi><Ten>c</Ten></DLHDon>")
    assert signed_values(data) == {"Ghi[1]": "a", "Ghi[2]": "b", "Ten": "c"}


# --- the structure, checked before any cryptography ------------------------------------------------------------------

XML_LANG = "{http://www.w3.org/XML/1998/namespace}lang"


def signature_part(*path: str) -> str:
    return "/".join([SIGNATURE, *(ds(step) for step in path)])


def drop(*path: str) -> Callable[[Any], None]:
    def change(root: Any) -> None:
        node = root.find(signature_part(*path))
        node.getparent().remove(node)

    return change


def set_attribute(path: str, name: str, value: str) -> Callable[[Any], None]:
    def change(root: Any) -> None:
        root.find(path).set(name, value)

    return change


def add(path: str, tag: str, **attributes: str) -> Callable[[Any], None]:
    def change(root: Any) -> None:
        etree.SubElement(root.find(path), tag, **attributes)

    return change


def reference(index: int) -> str:
    return f"{signature_part('SignedInfo')}/{ds('Reference')}[{index}]"


def signing_time_text(text: str) -> Callable[[Any], None]:
    def change(root: Any) -> None:
        root.find(f".//{ds('SigningTime')}").text = text

    return change


def move_first_child_last(path: str) -> Callable[[Any], None]:
    def change(root: Any) -> None:
        parent = root.find(path)
        parent.append(parent[0])

    return change


def second_signature(root: Any) -> None:
    root.find("DSCKS/NBan").append(etree.fromstring(etree.tostring(root.find(SIGNATURE))))


def duplicate_data_id(root: Any) -> None:
    etree.SubElement(root.find(f"{SIGNATURE}/{ds('Object')}"), ds("Object"), Id=root.find("DLHDon").get("Id"))


STRUCTURE: dict[str, tuple[Callable[[Any], None], Reason, str]] = {
    "no signature": (drop(), Reason.no_signature, "no seller signature in HDon/DSCKS/NBan"),
    "two signatures": (second_signature, Reason.malformed, "more than one seller signature"),
    "children out of order": (
        move_first_child_last(SIGNATURE),
        Reason.malformed,
        "Signature must hold SignedInfo, SignatureValue, KeyInfo, Object",
    ),
    "no Object": (drop("Object"), Reason.malformed, "Signature must hold SignedInfo, SignatureValue, KeyInfo, Object"),
    "xml:lang on HDon": (set_attribute(".", XML_LANG, "vi"), Reason.malformed, "xml:* attributes on HDon"),
    "xml:lang on the slot": (set_attribute("DSCKS/NBan", XML_LANG, "vi"), Reason.malformed, "xml:* attributes on NBan"),
    "xml:lang on Signature": (
        set_attribute(SIGNATURE, XML_LANG, "vi"),
        Reason.malformed,
        "xml:* attributes on Signature",
    ),
    "exclusive C14N": (
        set_attribute(
            signature_part("SignedInfo", "CanonicalizationMethod"),
            "Algorithm",
            "http://www.w3.org/2001/10/xml-exc-c14n#",
        ),
        Reason.algorithm,
        f"canonicalization http://www.w3.org/2001/10/xml-exc-c14n# is not accepted, only {C14N}",
    ),
    "no canonicalization": (
        drop("SignedInfo", "CanonicalizationMethod"),
        Reason.malformed,
        "expected one empty CanonicalizationMethod",
    ),
    "two canonicalizations": (
        add(signature_part("SignedInfo"), ds("CanonicalizationMethod"), Algorithm=C14N),
        Reason.malformed,
        "expected one empty CanonicalizationMethod",
    ),
    "a canonicalization with content": (
        add(signature_part("SignedInfo", "CanonicalizationMethod"), ds("InclusiveNamespaces")),
        Reason.malformed,
        "expected one empty CanonicalizationMethod",
    ),
    "RSA-SHA1": (
        set_attribute(signature_part("SignedInfo", "SignatureMethod"), "Algorithm", f"{DS}rsa-sha1"),
        Reason.algorithm,
        f"signature method {DS}rsa-sha1 is not accepted, only {RSA_SHA256}",
    ),
    "no signature method": (
        drop("SignedInfo", "SignatureMethod"),
        Reason.malformed,
        "expected one empty SignatureMethod",
    ),
    "SHA-1 digest of the signing time": (
        set_attribute(f"{reference(2)}/{ds('DigestMethod')}", "Algorithm", f"{DS}sha1"),
        Reason.algorithm,
        f"digest method {DS}sha1 is not accepted, only {SHA256}",
    ),
    "a method without an algorithm": (
        lambda r: r.find(signature_part("SignedInfo", "SignatureMethod")).attrib.pop("Algorithm"),
        Reason.algorithm,
        f"signature method  is not accepted, only {RSA_SHA256}",
    ),
    "references swapped": (
        lambda r: r.find(signature_part("SignedInfo")).append(r.find(reference(1))),
        Reason.reference,
        "expected exactly the references ['#DLHDon-5C26TAA-00000042', '#SIGNING_TIME'], found ['#SIGNING_TIME', "
        "'#DLHDon-5C26TAA-00000042']",
    ),
    "an XPath transform": (
        add(
            f"{reference(1)}/{ds('Transforms')}",
            ds("Transform"),
            Algorithm="http://www.w3.org/TR/1999/REC-xpath-19991116",
        ),
        Reason.algorithm,
        f"transforms ['{ENVELOPED}', 'http://www.w3.org/TR/1999/REC-xpath-19991116'] on #DLHDon-5C26TAA-00000042",
    ),
    "a transform on the signing time": (
        lambda r: etree.SubElement(
            etree.SubElement(r.find(reference(2)), ds("Transforms")), ds("Transform"), Algorithm=ENVELOPED
        ),
        Reason.algorithm,
        f"transforms ['{ENVELOPED}'] on #SIGNING_TIME",
    ),
    "a transform without an algorithm": (
        add(f"{reference(1)}/{ds('Transforms')}", ds("Transform")),
        Reason.algorithm,
        f"transforms ['{ENVELOPED}', ''] on #DLHDon-5C26TAA-00000042",
    ),
    "a second element with the data's Id": (
        duplicate_data_id,
        Reason.reference,
        "Id 'DLHDon-5C26TAA-00000042' is carried by 2 elements",
    ),
    "no signing time": (
        drop("Object", "SignatureProperties", "SignatureProperty", "SigningTime"),
        Reason.malformed,
        "the signed Object must hold exactly one SigningTime",
    ),
    "two signing times": (
        lambda r: r.find(f".//{ds('SignatureProperty')}").append(
            etree.fromstring(etree.tostring(r.find(f".//{ds('SigningTime')}")))
        ),
        Reason.malformed,
        "the signed Object must hold exactly one SigningTime",
    ),
    "a signing time that is no time": (
        signing_time_text("1 March 2026"),
        Reason.malformed,
        "SigningTime is not an ISO 8601 time",
    ),
    "an empty signing time": (signing_time_text(""), Reason.malformed, "SigningTime is not an ISO 8601 time"),
    "an element in MCCQT": (
        lambda r: etree.SubElement(etree.SubElement(r, "MCCQT"), "Ma"),
        Reason.unsigned_content,
        "MCCQT holds elements; it is not signed",
    ),
    "an unknown child of HDon": (
        lambda r: etree.SubElement(r, "TTKhac"),
        Reason.unsigned_content,
        "HDon/TTKhac is not covered by the signature",
    ),
    "a comment after the root": (
        lambda r: r.addnext(etree.Comment("x")),
        Reason.unsigned_content,
        "comments and processing instructions are not signed",
    ),
    "a comment before the root": (
        lambda r: r.addprevious(etree.Comment("x")),
        Reason.unsigned_content,
        "comments and processing instructions are not signed",
    ),
    "a processing instruction inside": (
        lambda r: r.find("DSCKS").append(etree.ProcessingInstruction("x")),
        Reason.unsigned_content,
        "comments and processing instructions are not signed",
    ),
}


def with_time_id(document: bytes) -> bytes:
    """The signer's random Id of the signing time's Object replaced by a fixed one, so messages can be compared."""
    root = etree.fromstring(document)
    time_object = root.find(signature_part("Object"))
    old = time_object.get("Id")
    time_object.set("Id", "SIGNING_TIME")
    root.find(reference(2)).set("URI", "#SIGNING_TIME")
    assert old
    return bytes(etree.tostring(root.getroottree(), xml_declaration=True, encoding="UTF-8"))


@pytest.mark.parametrize(("change", "reason", "detail"), STRUCTURE.values(), ids=STRUCTURE.keys())
def test_the_structure_is_refused_for_the_right_reason(
    agency: Party, change: Callable[[Any], None], reason: Reason, detail: str
) -> None:
    root = etree.fromstring(with_time_id(agency.signer.sign(receipt())))
    change(root)
    document = bytes(etree.tostring(root.getroottree(), xml_declaration=True, encoding="UTF-8"))
    refused(lambda: verify(document, pinned(agency.signer.certificate)), reason, detail)


def test_the_unsigned_parts_the_layout_allows_are_named(agency: Party) -> None:
    def allowed(root: Any) -> None:
        etree.SubElement(root, "MCCQT").text = "M1-26-ABCDE"
        etree.SubElement(root, "DLQRCode")

    checked = verify(edit(agency.signer.sign(receipt()), allowed), pinned(agency.signer.certificate))
    assert checked.unsigned_parts == ("MCCQT", "DLQRCode")

    def before_the_signatures(root: Any) -> None:
        code = etree.Element("MCCQT")
        code.text = "M1-26-ABCDE"
        root.insert(1, code)
        etree.SubElement(etree.SubElement(root.find("DSCKS"), "CQT"), ds("Signature"))

    both = verify(edit(agency.signer.sign(receipt()), before_the_signatures), pinned(agency.signer.certificate))
    assert both.unsigned_parts == ("MCCQT", "DSCKS/CQT")


def test_a_signing_time_without_a_zone_is_vietnam_time(agency: Party) -> None:
    naive = resign(agency.signer.sign(receipt()), agency.signer.key, signing_time_text("2026-03-01T09:30:00"))
    assert verify(naive, pinned(agency.signer.certificate)).signing_time == SIGNED_AT
    spaced = resign(agency.signer.sign(receipt()), agency.signer.key, signing_time_text(" 2026-03-01T09:30:00+07:00 "))
    assert verify(spaced, pinned(agency.signer.certificate)).signing_time == SIGNED_AT
    utc = resign(agency.signer.sign(receipt()), agency.signer.key, signing_time_text("2026-03-01T02:30:00+00:00"))
    assert verify(utc, pinned(agency.signer.certificate)).signing_time.utcoffset() == timedelta(0)
    assert verify(utc, pinned(agency.signer.certificate)).signing_time == SIGNED_AT


def certificate_with_uids(*uids: str) -> x509.Certificate:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name(
        [x509.NameAttribute(NameOID.COMMON_NAME, "Sở Tư pháp"), *(x509.NameAttribute(NameOID.USER_ID, u) for u in uids)]
    )
    return (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(CERT_FROM)
        .not_valid_after(CERT_FROM + timedelta(days=365))
        .sign(key, hashes.SHA256())
    )


def test_the_tax_code_is_the_uid_written_mst_colon() -> None:
    assert subject_tax_code(certificate_with_uids("CMND:012345678901", f"MST:{TAX_CODE}")) == TAX_CODE
    assert subject_tax_code(certificate_with_uids(f"MST{TAX_CODE}")) is None
    assert subject_tax_code(certificate_with_uids(f"mst:{TAX_CODE}")) is None
    assert subject_tax_code(certificate_with_uids("MST:")) == ""
