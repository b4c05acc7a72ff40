"""Document model -> XML -> XSD: golden files, the rules each layer enforces, and random documents.

Golden files are compared byte for byte. After a deliberate format change, rewrite them with
`LEPHI_UPDATE_GOLDEN=1 pytest tests/invoices/test_model_xml.py` and review the diff against docs/domain.md.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from datetime import date
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from lxml import etree  # type: ignore[import-untyped]  # no stubs installed
from pydantic import ValidationError

from invoices.content import (
    Buyer,
    CorrectionKind,
    Document,
    FeeLine,
    Related,
    Seller,
    ServiceLine,
    TaxGroup,
    lines_from_dossier,
)
from invoices.errors import InvalidDocument
from invoices.format import CURRENT, DocumentKind
from invoices.validate import validate
from invoices.xml import DRAFT_NUMBER, build_xml, with_number
from payments.agency.models import Agency
from payments.dossier.models import Dossier, DossierFeeLine
from tests.invoices.test_words import read_words

GOLDEN = Path(__file__).parent / "golden"
PROVIDER = "0100109106"

AGENCY = Agency(
    code="stp-ld",
    name="Sở Tư pháp tỉnh Lâm Đồng",
    tax_code="5800123456",
    address="36 Trần Phú, phường Xuân Hương - Đà Lạt, tỉnh Lâm Đồng",
    bank_account="3711.0.1051234",
    bank_name="Kho bạc Nhà nước khu vực XIV",
)


def _dossier_line(dossier: Dossier, kind: str, name: str, unit: int, quantity: int, position: int) -> DossierFeeLine:
    return DossierFeeLine(
        dossier_id=dossier.id,
        fee_code=f"F{position}",
        kind=kind,
        name=name,
        unit_amount=unit,
        quantity=quantity,
        amount=unit * quantity,
        position=position,
    )


def _line(
    line_no: int, name: str, quantity: str | Decimal, price: int, vat: str = "KCT", unit: str | None = None
) -> ServiceLine:
    amount = int((Decimal(quantity) * price).quantize(Decimal(1), rounding=ROUND_HALF_UP))
    return ServiceLine(
        line_no=line_no, name=name, unit=unit, quantity=Decimal(quantity), unit_price=price, amount=amount, vat_code=vat
    )


def receipt() -> Document:
    """A receipt for a dossier with one lệ phí, one phí and a copying charge (a KCT service line)."""
    dossier = Dossier(
        agency_id=AGENCY.id,
        code="H38.01-260302-0007",
        procedure_id="prc_1",
        payer_name="Nguyễn Thị Hồng Nhung",
        payer_email="nhung.nguyen@example.vn",
        payer_address="12 Hai Bà Trưng, phường Lâm Viên - Đà Lạt",
        total_amount=156_000,
        pay_token="t" * 32,
    )
    fee_lines = [
        _dossier_line(dossier, "le_phi", "Lệ phí đăng ký hộ kinh doanh", 100_000, 1, position=0),
        _dossier_line(dossier, "service", "Sao y bản chính (trang)", 2_000, 3, position=2),
        _dossier_line(dossier, "phi", "Phí thẩm định hồ sơ", 50_000, 1, position=1),
    ]
    fees, services = lines_from_dossier(fee_lines)
    return Document(
        kind=DocumentKind.receipt,
        series="C26TAA",
        number=7,
        issue_date=date(2026, 3, 2),
        dossier_code=dossier.code,
        payment_method="CK",
        provider_tax_code=PROVIDER,
        seller=Seller.from_agency(AGENCY),
        buyer=Buyer.from_dossier(dossier),
        fee_lines=fees,
        service_lines=services,
        document_id="DLHDon-5C26TAA-00000007",
    )


def sales_invoice() -> Document:
    return Document(
        kind=DocumentKind.sales_invoice,
        series="K26TBD",
        number=1,
        issue_date=date(2026, 1, 5),
        payment_method="TM/CK",
        provider_tax_code=PROVIDER,
        seller=Seller(
            name="Trung tâm Phục vụ hành chính công tỉnh Lâm Đồng",
            tax_code="5800654321-001",
            address="Tầng 1, Trung tâm Hành chính tỉnh, phường Xuân Hương - Đà Lạt",
            phone="02633999888",
            email="tthcc@lamdong.gov.vn",
        ),
        buyer=Buyer(
            name="Công ty TNHH Cà phê Cầu Đất & Cộng sự",
            tax_code="5801234567",
            address="Thôn Trại Mát, xã Xuân Trường - Đà Lạt",
            phone="0909123456",
        ),
        service_lines=(
            _line(1, "Chuyển phát kết quả qua bưu chính", "1", 35_000, unit="lần"),
            _line(2, "Lưu trữ hồ sơ bản giấy", "1.5", 20_000, unit="tháng"),
        ),
        document_id="DLHDon-2K26TBD-00000001",
    )


def changed(doc: Document, update: dict[str, Any]) -> Document:
    """A validated copy (model_copy would skip validation)."""
    return Document.model_validate(doc.model_dump(include=set(Document.model_fields)) | update)


def adjustment() -> Document:
    """Decreases the receipt above: the phí at the online rate, one page fewer copied."""
    return changed(
        receipt(),
        {
            "number": 9,
            "issue_date": date(2026, 3, 4),
            "fee_lines": (FeeLine(name="Phí thẩm định hồ sơ (điều chỉnh giảm)", amount=-25_000),),
            "service_lines": (_line(1, "Sao y bản chính (trang)", "-1", 2_000),),
            "related": Related(
                kind=CorrectionKind.adjustment,
                template="5",
                series="C26TAA",
                number=7,
                issue_date=date(2026, 3, 2),
                note="Điều chỉnh giảm phí thẩm định theo mức thu nộp hồ sơ trực tuyến",
            ),
            "document_id": "DLHDon-5C26TAA-00000009",
        },
    )


GOLDEN_DOCS: dict[str, Callable[[], Document]] = {
    "receipt": receipt,
    "sales_invoice": sales_invoice,
    "adjustment": adjustment,
}


@pytest.mark.parametrize("name", GOLDEN_DOCS)
def test_golden(name: str) -> None:
    xml = build_xml(GOLDEN_DOCS[name]())
    path = GOLDEN / f"{name}.xml"
    if os.environ.get("LEPHI_UPDATE_GOLDEN"):
        path.write_bytes(xml)
    assert xml == path.read_bytes()
    validate(xml)


def test_receipt_totals_and_profile() -> None:
    doc = receipt()
    assert (doc.title, doc.template) == (CURRENT.titles[DocumentKind.receipt], "5")
    assert [fee.name for fee in doc.fee_lines] == ["Lệ phí đăng ký hộ kinh doanh", "Phí thẩm định hồ sơ"]
    assert doc.tax_groups == (TaxGroup("KCT", 6_000, 0),)
    assert (doc.total_before_tax, doc.total_tax, doc.total_fees, doc.total_payable) == (6_000, 0, 150_000, 156_000)
    assert doc.total_in_words == "Một trăm năm mươi sáu nghìn đồng"
    assert doc.seller.bank_account == "3711.0.1051234" and doc.buyer.tax_code is None


def test_adjustment_reads_a_negative_total() -> None:
    doc = adjustment()
    assert doc.total_payable == -27_000
    assert doc.total_in_words == "Âm hai mươi bảy nghìn đồng"


def test_vat_per_rate_group_rounds_half_up() -> None:
    lines = [
        _line(1, "A", "1", 105, vat="10%"),
        _line(2, "B", "1", 100, vat="KHAC:5.26"),
        _line(3, "C", "1", 100, vat="10%"),
    ]
    doc = changed(sales_invoice(), {"service_lines": lines})
    assert doc.tax_groups == (TaxGroup("10%", 205, 21), TaxGroup("KHAC:5.26", 100, 5))
    assert (doc.total_tax, doc.total_payable) == (26, 331)


# ---- the model refuses what the format forbids ----

INVALID_CHANGES: list[tuple[dict[str, Any], str]] = [
    ({"seller": {"name": "x" * 401, "tax_code": "5800123456", "address": "a"}}, "at most 400"),
    ({"series": "C26XAA"}, "series"),
    ({"series": "C25TAA"}, "issue year"),
    ({"number": 0}, "greater than or equal to 1"),
    ({"number": 100_000_000}, "less than or equal to 99999999"),
    ({"payment_method": " "}, "blank"),
    ({"dossier_code": "x" * 21}, "at most 20"),
    ({"provider_tax_code": "12345"}, "tax code"),
    ({"provider_tax_code": "000000000\u19d0"}, "tax code"),  # a Unicode digit: XSD and lxml want ASCII
    ({"fee_lines": [{"name": "Lệ phí", "amount": -1}]}, "adjustment"),
    ({"fee_lines": [{"name": "Lệ phí", "amount": "100"}]}, "valid integer"),
    ({"fee_lines": [], "service_lines": []}, "at least one"),
    ({"format_version": "9.9.9"}, "unknown format version"),
    ({"buyer": {"name": "A\x00B"}}, "XML cannot carry"),
    ({"buyer": {"name": "A", "id_number": "12345"}}, "citizen ID"),
    ({"service_lines": [{"line_no": 2, "name": "S", "quantity": 1, "unit_price": 1, "amount": 1}]}, "1..1"),
    ({"service_lines": [{"line_no": 1, "name": "S", "quantity": 2, "unit_price": 3, "amount": 5}]}, "quantity x"),
    (
        {"service_lines": [{"line_no": 1, "name": "S", "quantity": 1, "unit_price": 1, "amount": 1, "vat_code": "7%"}]},
        "VAT",
    ),
    (
        {
            "related": {
                "kind": 1,
                "template": "5",
                "series": "C26TAA",
                "number": 1,
                "issue_date": "2026-12-31",
                "note": "n",
            }
        },
        "after its correction",
    ),
    ({"extra": 1}, "Extra inputs"),
]


@pytest.mark.parametrize(("change", "message"), INVALID_CHANGES)
def test_model_rejects(change: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        changed(receipt(), change)


def test_text_is_normalised_to_nfc() -> None:
    decomposed = "Nguye\u0302\u0303n"
    assert Buyer(name=decomposed).name == "Nguyễn"


# ---- the XSD refuses what the model would never build ----


def _mutated(edit: Callable[[Any], None]) -> bytes:
    root = etree.fromstring(build_xml(receipt()))
    edit(root)
    return bytes(etree.tostring(root, encoding="UTF-8", xml_declaration=True))


def _set(path: str, text: str) -> Callable[[Any], None]:
    def edit(root: Any) -> None:
        root.find(path).text = text

    return edit


def _remove(path: str) -> Callable[[Any], None]:
    def edit(root: Any) -> None:
        element = root.find(path)
        element.getparent().remove(element)

    return edit


XSD_VIOLATIONS = [
    (_set("DLHDon/NDHDon/NBan/Ten", "x" * 401), "Element 'Ten'", "maxLength"),
    (_set("DLHDon/TTChung/KHHDon", "C26XAA"), "Element 'KHHDon'", "pattern"),
    (_set("DLHDon/TTChung/NLap", "2026-03-02+07:00"), "Element 'NLap'", "pattern"),
    (_remove("DLHDon/TTChung/NLap"), "NLap", "Expected"),
    (_remove("DLHDon/TTChung/MSTTCGP"), "MSTTCGP", "Expected is ( MSTTCGP )"),
    (_remove("DLHDon/NDHDon/TToan/TgTTTBChu"), "TgTTTBChu", "Expected"),
    (_set("DLHDon/NDHDon/DSHHDVu/HHDVu/TSuat", "7%"), "Element 'TSuat'", "pattern"),
    (_set("DLHDon/NDHDon/DSHHDVu/HHDVu/TSuat", "KHAC:123"), "Element 'TSuat'", "pattern"),
    (_set("DLHDon/NDHDon/TToan/TgTTTBSo", "156000.1234567"), "Element 'TgTTTBSo'", "fraction"),
    (_set("DLHDon/TTChung/SHDon", "123456789"), "Element 'SHDon'", "maxInclusive"),
    (_set("DLHDon/NDHDon/NMua/DCTDTu", "a" * 51), "Element 'DCTDTu'", "maxLength"),
    (_set("DLHDon/NDHDon/TToan/DSLPhi/LPhi/TLPhi", "x" * 101), "Element 'TLPhi'", "maxLength"),
    (lambda root: root.find("DSCKS/NBan").append(etree.Element("Signature")), "Element 'Signature'", "expected"),
]


@pytest.mark.parametrize(("edit", "element", "problem"), XSD_VIOLATIONS)
def test_xsd_rejects(edit: Callable[[Any], None], element: str, problem: str) -> None:
    with pytest.raises(InvalidDocument) as caught:
        validate(_mutated(edit))
    assert any(element in e and problem in e and e.startswith("line ") for e in caught.value.errors), caught.value


def test_signature_is_allowed_in_dscks_nban() -> None:
    signature = etree.Element(
        "{http://www.w3.org/2000/09/xmldsig#}Signature", nsmap={"ds": "http://www.w3.org/2000/09/xmldsig#"}
    )
    etree.SubElement(signature, "{http://www.w3.org/2000/09/xmldsig#}SignedInfo")
    validate(_mutated(lambda root: root.find("DSCKS/NBan").append(signature)))


@pytest.mark.parametrize(
    ("xml", "message"),
    [
        (b"<HDon><DLHDon>", "line 1"),
        (b'<!DOCTYPE HDon [<!ENTITY x "y">]><HDon>&x;</HDon>', "document type declaration"),
        (b'<!DOCTYPE HDon [<!ENTITY x SYSTEM "file:///etc/passwd">]><HDon>&x;</HDon>', "document type declaration"),
        (b"<Invoice/>", "known format version"),
        (b"<HDon><DLHDon><TTChung><PBan>2.0.0</PBan></TTChung></DLHDon></HDon>", "'2.0.0'"),
    ],
)
def test_hostile_or_foreign_input(xml: bytes, message: str) -> None:
    with pytest.raises(InvalidDocument, match=message):
        validate(xml)


# ---- random valid documents always validate, and always give the same bytes ----

_LETTERS = "aăâbcdđeêghiklmnoôơpqrstuưvxyAĂÂĐÊÔƠƯàáảãạằắẳẵặầấẩẫậèéẻẽẹềếểễệìíỉĩịòóỏõọồốổỗộờớởỡợùúủũụừứửữựỳýỷỹỵ"
_ALPHABET = _LETTERS + "0123456789 .,-/&<>\"'()%"


def _text(max_size: int) -> st.SearchStrategy[str]:
    return st.text(_ALPHABET, min_size=1, max_size=max_size).filter(str.strip)


_TAX_CODE = st.from_regex(r"[0-9]{10}(-[0-9]{3})?|[0-9]{12}", fullmatch=True)
_EMAIL = st.from_regex(r"[a-z]{1,12}\.[a-z]{1,12}@[a-z]{2,10}\.vn", fullmatch=True)
_VAT = st.sampled_from(["0%", "5%", "8%", "10%", "KCT", "KKKNT", "KHAC:5.26", "KHAC:12.5"])


def _optional(**fields: st.SearchStrategy[Any]) -> dict[str, st.SearchStrategy[Any]]:
    return {name: st.none() | strategy for name, strategy in fields.items()}


_CITIZEN_ID = st.from_regex(r"[0-9]{12}", fullmatch=True)
_SELLER = st.builds(
    Seller, name=_text(400), tax_code=_TAX_CODE, address=_text(400),
    **_optional(phone=_text(20), email=_EMAIL, bank_account=_text(30), bank_name=_text(400)),
)  # fmt: skip
_BUYER = st.builds(
    Buyer, name=_text(400),
    **_optional(tax_code=_TAX_CODE, address=_text(400), id_number=_CITIZEN_ID, email=_EMAIL, phone=_text(20)),
)  # fmt: skip


@st.composite
def _service_lines(draw: st.DrawFn, signed: bool) -> tuple[ServiceLine, ...]:
    lines = []
    for line_no in range(1, draw(st.integers(0, 4)) + 1):
        quantity = draw(st.decimals(-1000 if signed else 0, 1000, places=draw(st.integers(0, 3))))
        price = draw(st.integers(-1_000_000 if signed else 0, 1_000_000))
        unit = draw(st.none() | _text(50))
        lines.append(_line(line_no, draw(_text(500)), quantity, price, vat=draw(_VAT), unit=unit))
    return tuple(lines)


@st.composite
def documents(draw: st.DrawFn) -> Document:
    issued = draw(st.dates(date(2000, 1, 1), date(2099, 12, 31)))
    related = draw(st.none() | st.builds(
        Related, kind=st.sampled_from(CorrectionKind), template=st.sampled_from("125"),
        series=st.from_regex(r"[CK][0-9]{2}[TDLMNBGH][A-Z]{2}", fullmatch=True), number=st.integers(1, 99_999_999),
        issue_date=st.dates(date(2000, 1, 1), issued), note=_text(255),
    ))  # fmt: skip
    signed = related is not None and related.kind is CorrectionKind.adjustment
    fee = st.builds(FeeLine, name=_text(100), amount=st.integers(-(10**9) if signed else 0, 10**9))
    fees = tuple(draw(st.lists(fee, max_size=4)))
    services = draw(_service_lines(signed))
    if not (signed or fees or services):
        fees = (FeeLine(name="Lệ phí", amount=draw(st.integers(0, 10**9))),)
    letter, suffix = draw(st.sampled_from("CK")), draw(st.from_regex(r"[TDLMNBGH][A-Z]{2}", fullmatch=True))
    return Document(
        kind=draw(st.sampled_from(DocumentKind)),
        series=f"{letter}{issued.year % 100:02d}{suffix}",
        number=draw(st.integers(1, 99_999_999)),
        issue_date=issued,
        dossier_code=draw(st.none() | _text(20)),
        payment_method=draw(_text(50)),
        provider_tax_code=draw(_TAX_CODE),
        seller=draw(_SELLER),
        buyer=draw(_BUYER),
        fee_lines=fees,
        service_lines=services,
        related=related,
        document_id=draw(st.from_regex(r"[A-Za-z_][A-Za-z0-9_.-]{0,63}", fullmatch=True)),
    )


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(documents())
def test_random_documents_validate_and_are_deterministic(doc: Document) -> None:
    xml = build_xml(doc)
    validate(xml)
    assert build_xml(changed(doc, {})) == xml
    root = etree.fromstring(xml)
    assert int(root.findtext("DLHDon/NDHDon/TToan/TgTTTBSo")) == doc.total_payable
    words = root.findtext("DLHDon/NDHDon/TToan/TgTTTBChu")
    if doc.total_payable >= 0:
        assert read_words(words) == doc.total_payable


# --- format details: fee lines in the goods list, the buyer's order, where the dossier code goes --------------------


def test_a_fee_only_receipt_lists_each_fee_as_a_line_and_never_an_empty_list() -> None:
    doc = receipt()
    fee_only = doc.model_copy(update={"service_lines": ()})
    root = etree.fromstring(build_xml(fee_only))
    lines = root.findall("DLHDon/NDHDon/DSHHDVu/HHDVu")
    assert [(ln.findtext("TChat"), ln.findtext("THHDVu"), ln.findtext("ThTien")) for ln in lines] == [
        (str(CURRENT.fee_line_nature), fee.name, str(fee.amount)) for fee in doc.fee_lines
    ]
    # The fees count once: in DSLPhi and the total payable, not again in the VAT totals.
    assert root.findtext("DLHDon/NDHDon/TToan/TgTCThue") == "0"
    assert root.findtext("DLHDon/NDHDon/TToan/TgTTTBSo") == str(sum(fee.amount for fee in doc.fee_lines))
    validate(build_xml(fee_only))
    with pytest.raises(InvalidDocument, match="DSHHDVu"):
        validate(_mutated(lambda r: [r.find("DLHDon/NDHDon/DSHHDVu").remove(x) for x in r.findall(".//HHDVu")]))


def test_the_buyers_contacts_come_before_the_identity_number() -> None:
    buyer = receipt().buyer.model_copy(update={"phone": "0909123456", "id_number": "068123456789"})
    root = etree.fromstring(build_xml(receipt().model_copy(update={"buyer": buyer})))
    tags = [child.tag for child in root.find("DLHDon/NDHDon/NMua")]
    assert tags.index("SDThoai") < tags.index("DCTDTu") < tags.index("CCCDan")

    def id_first(r: Any) -> None:
        payer = r.find("DLHDon/NDHDon/NMua")
        etree.SubElement(payer, "CCCDan").text = "068123456789"
        etree.SubElement(payer, "SDThoai").text = "0909123456"  # after the identity number: the old order

    with pytest.raises(InvalidDocument, match="SDThoai"):
        validate(_mutated(id_first))


def test_the_dossier_code_is_carried_in_ttkhac_and_mhso_only_when_the_tax_authority_assigned_one() -> None:
    doc = receipt()
    root = etree.fromstring(build_xml(doc))
    assert root.find("DLHDon/TTChung/MHSo") is None
    (extra,) = root.findall("DLHDon/TTChung/TTKhac/TTin")
    assert [extra.findtext(t) for t in ("TTruong", "KDLieu", "DLieu")] == ["Mã hồ sơ", "string", doc.dossier_code]
    assigned = etree.fromstring(build_xml(doc.model_copy(update={"tax_dossier_code": "000.00.00.H38-260302"})))
    assert assigned.findtext("DLHDon/TTChung/MHSo") == "000.00.00.H38-260302"


@pytest.mark.parametrize("number", [1, 2, 42, 1_000_000, DRAFT_NUMBER - 1, DRAFT_NUMBER])
@pytest.mark.parametrize("make", [receipt, sales_invoice, adjustment], ids=["receipt", "sales", "adjustment"])
def test_a_numbered_draft_is_the_document_built_with_its_number(make: Callable[[], Document], number: int) -> None:
    doc = make()
    draft = build_xml(changed(doc, {"number": DRAFT_NUMBER}))
    assert with_number(draft, number) == build_xml(changed(doc, {"number": number}))


def test_a_draft_number_in_a_value_is_escaped_and_left_alone() -> None:
    doc = receipt()
    trap = f"<SHDon>{DRAFT_NUMBER}</SHDon>"
    buyer = doc.buyer.model_copy(update={"name": trap})
    draft = build_xml(changed(doc, {"number": DRAFT_NUMBER, "buyer": buyer}))
    numbered = with_number(draft, 7)
    assert numbered == build_xml(changed(doc, {"number": 7, "buyer": buyer}))
    assert etree.fromstring(numbered).findtext(".//NMua/Ten") == trap


def test_a_draft_without_exactly_one_draft_number_is_refused() -> None:
    numbered = build_xml(changed(receipt(), {"number": 5}))
    with pytest.raises(ValueError, match="exactly one draft number"):
        with_number(numbered, 6)
    twice = build_xml(changed(receipt(), {"number": DRAFT_NUMBER})).replace(
        b"</TTChung>", b"<SHDon>%d</SHDon></TTChung>" % DRAFT_NUMBER
    )
    with pytest.raises(ValueError, match="exactly one draft number"):
        with_number(twice, 6)
