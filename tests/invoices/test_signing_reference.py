"""The signer writes, byte for byte, what signxml wrote for the same profile, and both verifiers accept it.

The reference below is the signxml construction the signer replaced (enveloped signature into a placeholder that
already holds the SigningTime object, KeyInfo and the SignatureProperties reference completed by an annotator). With
the same clock and the same random Ids the two must agree on every byte: any difference in canonicalization, element
or attribute order, or namespace declarations would show here."""

from __future__ import annotations

import uuid
from base64 import b64encode
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from lxml import etree  # type: ignore[import-untyped]  # lxml ships no type information and no stubs are installed
from signxml.algorithms import CanonicalizationMethod, DigestAlgorithm, SignatureConstructionMethod, SignatureMethod
from signxml.signer import XMLSigner

from invoices.content import Buyer, Document, FeeLine, Seller, ServiceLine
from invoices.format import DocumentKind
from invoices.signing import LocalSigner, make_dev_certificate
from invoices.verify import pinned, verify, verify_notice
from invoices.xml import build_xml
from invoices.xmldsig import DOCUMENT, DS, NOTICE, SIGNATURE_PROPERTIES_TYPE, VIETNAM, Layout, ds, parse_xml
from tests.invoices.test_signing import xmlsec_verify

TAX_CODE = "5800123456"
SIGNED_AT = datetime(2026, 3, 1, 9, 30, tzinfo=VIETNAM)
TOKEN = uuid.UUID("0123456789abcdef0123456789abcdef")


def signxml_sign(signer: LocalSigner, xml: bytes, layout: Layout) -> bytes:
    root = parse_xml(xml)
    data_id = root.find(layout.signed_data).get("Id")
    signature_id, time_id = f"{layout.slot}-{TOKEN.hex}", f"SigningTime-{TOKEN.hex}"
    dscks = root.find("DSCKS")
    if dscks is None:
        dscks = etree.SubElement(root, "DSCKS")
    slot = dscks.find(layout.slot)
    if slot is None:
        slot = etree.Element(layout.slot)
        dscks.insert(0, slot)
    placeholder = etree.SubElement(slot, ds("Signature"), Id="placeholder", nsmap={"ds": DS})
    time_object = etree.SubElement(placeholder, ds("Object"), Id=time_id)
    properties = etree.SubElement(time_object, ds("SignatureProperties"))
    signature_property = etree.SubElement(properties, ds("SignatureProperty"), Target=f"#{signature_id}")
    etree.SubElement(signature_property, ds("SigningTime")).text = SIGNED_AT.isoformat()
    xml_signer = XMLSigner(
        method=SignatureConstructionMethod.enveloped,
        signature_algorithm=SignatureMethod.RSA_SHA256,
        digest_algorithm=DigestAlgorithm.SHA256,
        c14n_algorithm=CanonicalizationMethod.CANONICAL_XML_1_0,
    )
    xml_signer.signature_annotators = [
        partial(_complete, signature_id=signature_id, time_id=time_id, certificate=signer.certificate)
    ]
    signed = xml_signer.sign(
        root,
        key=signer.key,
        reference_uri=[f"#{data_id}", f"#{time_id}"],
        id_attribute="Id",
        exclude_c14n_transform_element=True,
    )
    out: bytes = etree.tostring(signed, xml_declaration=True, encoding="UTF-8")
    return out


def _complete(
    signature: Any, *, signing_settings: object, signature_id: str, time_id: str, certificate: x509.Certificate
) -> None:
    signature.set("Id", signature_id)
    reference = signature.find(f"{ds('SignedInfo')}/{ds('Reference')}[@URI='#{time_id}']")
    reference.remove(reference.find(ds("Transforms")))
    reference.set("Type", SIGNATURE_PROPERTIES_TYPE)
    x509_data = etree.SubElement(etree.SubElement(signature, ds("KeyInfo")), ds("X509Data"))
    etree.SubElement(x509_data, ds("X509SubjectName")).text = certificate.subject.rfc4514_string()
    etree.SubElement(x509_data, ds("X509Certificate")).text = b64encode(certificate.public_bytes(Encoding.DER)).decode()
    signature.append(signature.find(ds("Object")))


@pytest.fixture(scope="module")
def signer() -> LocalSigner:
    key_pem, cert_pem = make_dev_certificate(
        TAX_CODE, "Sở Tư pháp tỉnh Lâm Đồng", not_before=datetime(2026, 1, 1, tzinfo=UTC) - timedelta(days=1)
    )
    return LocalSigner.from_pem(key_pem, cert_pem, clock=lambda: SIGNED_AT)


def built_receipt() -> bytes:
    return build_xml(
        Document(
            kind=DocumentKind.receipt,
            series="K26TLP",
            number=42,
            issue_date=SIGNED_AT.date(),
            dossier_code="HS-2026-000042",
            payment_method="CK",
            provider_tax_code="0100000000",
            seller=Seller(name="Sở Tư pháp tỉnh Lâm Đồng", tax_code=TAX_CODE, address="36 Trần Phú, Đà Lạt"),
            buyer=Buyer(name="Nguyễn Thị Hường & <con>", address="5 Tràng Tiền", email="huong@example.com"),
            fee_lines=(FeeLine(name="Lệ phí cấp bản sao", amount=32_000), FeeLine(name="Phí thẩm định", amount=50_000)),
            service_lines=(
                ServiceLine(
                    line_no=1, name="Phí bưu chính", quantity=1, unit_price=45_000, amount=45_000, vat_code="KCT"
                ),
            ),
            document_id="DLHDon",
        )
    )


WITH_OTHER_SLOTS = (
    b'<?xml version="1.0" encoding="UTF-8"?>\n<HDon><DLHDon Id="DLHDon-1"><TTChung><SHDon>7</SHDon></TTChung>'
    b"<NDHDon><NBan><MST>5800123456</MST></NBan></NDHDon></DLHDon><DSCKS><NMua/><CQT/></DSCKS></HDon>"
)
NOTICE_XML = (
    b'<TBao><DLTBao Id="DLTBao"><MSo>04/SS-H\xc4\x90\xc4\x90T</MSo><MST>5800123456</MST></DLTBao>'
    b"<DSCKS><NNT/><CQT/></DSCKS></TBao>"
)


@pytest.mark.parametrize(
    ("xml", "layout"),
    [(built_receipt(), DOCUMENT), (WITH_OTHER_SLOTS, DOCUMENT), (NOTICE_XML, NOTICE)],
    ids=["built-receipt", "other-slots", "notice"],
)
def test_the_signer_writes_what_signxml_wrote(
    signer: LocalSigner, monkeypatch: pytest.MonkeyPatch, xml: bytes, layout: Layout
) -> None:
    monkeypatch.setattr(uuid, "uuid4", lambda: TOKEN)
    ours = signer.sign_notice(xml) if layout is NOTICE else signer.sign(xml)
    assert ours == signxml_sign(signer, xml, layout)
    xmlsec_verify_layout(ours, signer.certificate, layout)


def xmlsec_verify_layout(signed: bytes, certificate: x509.Certificate, layout: Layout) -> None:
    if layout is DOCUMENT:
        xmlsec_verify(signed, certificate)
        if b"SHDon>42<" in signed:
            assert verify(signed, pinned(certificate)).number == 42
    else:
        assert verify_notice(signed, pinned(certificate)).form == "04/SS-HĐĐT"
