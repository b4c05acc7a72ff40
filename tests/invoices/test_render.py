"""Receipt views: the PDF and the HTML page of a signed document, from one template.

PDF rendering is the slow part, so one signed receipt is rendered once per module and every PDF assertion reads it.
"""

from __future__ import annotations

import io
import logging
import re
import struct
import unicodedata
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

import pypdf
import pytest
import segno
from markupsafe import escape

from invoices.content import Buyer, CorrectionKind, Document, FeeLine, Related, Seller, ServiceLine
from invoices.errors import InvalidDocument, Reason
from invoices.format import DocumentKind
from invoices.render import (
    FETCHER,
    FONTS_DIR,
    LABELS,
    TEMPLATES_DIR,
    Logo,
    PackageFetcher,
    format_money,
    lookup_qr,
    lookup_qr_svg,
    mask_citizen_id,
    receipt_view,
    render_html,
    render_pdf,
)
from invoices.signing import LocalSigner, make_dev_certificate
from invoices.xml import build_xml
from invoices.xmldsig import VIETNAM

TAX_CODE = "5800123456"
AGENCY = "Sở Tư pháp tỉnh Lâm Đồng"
PAYER = "Nguyễn Thị Hồng Ánh"
FEE = "Lệ phí cấp giấy phép xây dựng"
CITIZEN_ID = "001203004567"
WORDS = "Một triệu một trăm năm mươi nghìn đồng"
CODE = "7KQ2M9XP4RTW"
URL = f"https://lephi.example.vn/r/{CODE}"
SIGNED_AT = datetime(2026, 3, 2, 9, 30, tzinfo=VIETNAM)


def receipt(**changes: Any) -> Document:
    """1.000.000 lệ phí plus a 150.000 KCT service line; the payer's citizen ID is in the signed content."""
    fields: dict[str, Any] = {
        "kind": DocumentKind.receipt,
        "series": "C26TAA",
        "number": 42,
        "issue_date": date(2026, 3, 2),
        "dossier_code": "H38.01-260302-0042",
        "payment_method": "CK",
        "provider_tax_code": "0100109106",
        "seller": Seller(
            name=AGENCY,
            tax_code=TAX_CODE,
            address="36 Trần Phú, phường Xuân Hương - Đà Lạt, tỉnh Lâm Đồng",
            bank_account="3711.0.1051234",
            bank_name="Kho bạc Nhà nước khu vực XIV",
        ),
        "buyer": Buyer(
            name=PAYER,
            address="12 Hai Bà Trưng, phường Lâm Viên - Đà Lạt",
            id_number=CITIZEN_ID,
            email="anh.nguyen@example.vn",
        ),
        "fee_lines": (FeeLine(name=FEE, amount=1_000_000),),
        "service_lines": (
            ServiceLine(
                line_no=1, name="Sao y bản chính", unit="trang", quantity=Decimal(3), unit_price=50_000, amount=150_000
            ),
        ),
        "document_id": "DLHDon-5C26TAA-00000042",
    }
    return Document(**(fields | changes))


def correction(kind: CorrectionKind) -> Document:
    """Corrects receipt 7: the adjustment decreases the fee and one copied page, with signed (negative) amounts."""
    signed = kind is CorrectionKind.adjustment
    return receipt(
        number=9,
        issue_date=date(2026, 3, 4),
        fee_lines=(FeeLine(name="Phí thẩm định hồ sơ (điều chỉnh giảm)", amount=-25_000 if signed else 25_000),),
        service_lines=(
            ServiceLine(
                line_no=1,
                name="Sao y bản chính",
                quantity=Decimal(-1 if signed else 1),
                unit_price=2_000,
                amount=-2_000 if signed else 2_000,
            ),
        ),
        related=Related(
            kind=kind,
            template="5",
            series="C26TAA",
            number=7,
            issue_date=date(2026, 3, 2),
            note="Điều chỉnh giảm phí thẩm định theo mức thu nộp hồ sơ trực tuyến",
        ),
        document_id="DLHDon-5C26TAA-00000009",
    )


@pytest.fixture(scope="module")
def signer() -> LocalSigner:
    key_pem, cert_pem = make_dev_certificate(TAX_CODE, AGENCY, not_before=datetime(2026, 1, 1, tzinfo=UTC))
    return LocalSigner.from_pem(key_pem, cert_pem, clock=lambda: SIGNED_AT)


@pytest.fixture(scope="module")
def signed_receipt(signer: LocalSigner) -> bytes:
    return signer.sign(build_xml(receipt()))


@pytest.fixture(scope="module")
def signed_adjustment(signer: LocalSigner) -> bytes:
    return signer.sign(build_xml(correction(CorrectionKind.adjustment)))


class _Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


@dataclass(frozen=True)
class Rendered:
    pdf: bytes
    reader: pypdf.PdfReader
    text: str  # NFC: pypdf may hand back decomposed Vietnamese
    warnings: list[str]


@pytest.fixture(scope="module")
def rendered(signed_receipt: bytes) -> Iterator[Rendered]:
    # A font WeasyPrint cannot load is only logged, and the output silently falls back to another font.
    collect, logger = _Collect(), logging.getLogger("weasyprint")
    logger.addHandler(collect)
    try:
        pdf = render_pdf(signed_receipt, lookup_url=URL, lookup_code=CODE)
    finally:
        logger.removeHandler(collect)
    reader = pypdf.PdfReader(io.BytesIO(pdf))
    text = unicodedata.normalize("NFC", "\n".join(page.extract_text() for page in reader.pages))
    yield Rendered(pdf, reader, text, collect.messages)


@pytest.fixture(scope="module")
def html(signed_receipt: bytes) -> str:
    return render_html(signed_receipt, lookup_url=URL, lookup_code=CODE)


# --- PDF ---------------------------------------------------------------------------------------------------------


def test_pdf_shows_the_signed_content_with_vietnamese_text_intact(rendered: Rendered) -> None:
    for expected in (PAYER, WORDS, FEE, AGENCY, "BIÊN LAI THU PHÍ, LỆ PHÍ", "1.150.000", "1.000.000", CODE):
        assert expected in rendered.text, expected
    assert "Ký hiệu: 5C26TAA" in rendered.text
    assert "Số: 00000042" in rendered.text
    assert "Ngày lập: 02/03/2026" in rendered.text
    assert "Người nộp: " + PAYER in rendered.text
    assert "Ký ngày: 02/03/2026 09:30:00 (UTC+07:00)" in rendered.text
    assert "Mẫu biên lai tạm thời" in rendered.text  # template 5: the provisional-layout note


def test_pdf_is_one_a4_page(rendered: Rendered) -> None:
    (page,) = rendered.reader.pages
    assert (round(float(page.mediabox.width)), round(float(page.mediabox.height))) == (595, 842)


def test_pdf_embeds_the_packaged_font_and_nothing_else(rendered: Rendered) -> None:
    resources: list[Any] = [page["/Resources"] for page in rendered.reader.pages]
    fonts = [font.get_object() for resource in resources for font in resource["/Font"].values()]
    assert len(fonts) == 2  # regular and bold; no fallback face for a missing glyph
    for font in fonts:
        # The PDF names a face after its @font-face family: a system DejaVu would show up as "DejaVu-Sans".
        assert "+Lephi-DejaVu-Sans" in font["/BaseFont"]
        (descendant,) = font["/DescendantFonts"]
        assert "/FontFile2" in descendant.get_object()["/FontDescriptor"]
        assert "/ToUnicode" in font
    assert rendered.warnings == []


def test_pdf_is_the_same_bytes_every_time(rendered: Rendered, signed_receipt: bytes) -> None:
    assert render_pdf(signed_receipt, lookup_url=URL, lookup_code=CODE) == rendered.pdf


# --- the agency's logo ----------------------------------------------------------------------------------------


def png(width: int, height: int) -> bytes:
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    raw = b"".join(b"\x00" + b"\x0b\x5c\xad" * width for _ in range(height))
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b"")


LOGO = Logo("image/png", png(40, 20))


def test_without_a_logo_the_views_carry_no_image(html: str, rendered: Rendered) -> None:
    assert "<img" not in html and "img-src" not in html
    assert [image.name for page in rendered.reader.pages for image in page.images] == []


def test_the_agency_logo_is_on_both_views_as_a_data_uri(signed_receipt: bytes) -> None:
    page = render_html(signed_receipt, lookup_url=URL, lookup_code=CODE, logo=LOGO)
    assert LOGO.data_uri.startswith("data:image/png;base64,iVBORw0KGgo")
    assert f'<img class="logo" src="{LOGO.data_uri}" alt="">' in page
    # The page's own policy lets in data: images, and only when there is a logo to show.
    policy = re.search(r'http-equiv="Content-Security-Policy" content="([^"]*)"', page)
    assert policy and policy.group(1).endswith("; img-src data:") and "http" not in policy.group(1)
    assert str(escape(PAYER)) in page
    pdf = pypdf.PdfReader(io.BytesIO(render_pdf(signed_receipt, lookup_url=URL, lookup_code=CODE, logo=LOGO)))
    [image] = [image for page in pdf.pages for image in page.images]
    assert image.image is not None and image.image.size == (40, 20)
    assert len(pdf.pages) == 1 and PAYER in unicodedata.normalize("NFC", pdf.pages[0].extract_text())


def test_the_fetcher_serves_the_logo_it_was_given_and_no_other_data_url() -> None:
    fetcher = PackageFetcher([FONTS_DIR], {LOGO.data_uri: (LOGO.content_type, LOGO.data)})
    served = fetcher.fetch(LOGO.data_uri)
    assert served.read() == LOGO.data and served.content_type == "image/png"
    other = Logo("image/png", png(1, 1)).data_uri
    with pytest.raises(ValueError, match="refused"):
        fetcher.fetch(other)
    with pytest.raises(ValueError, match="refused"):
        FETCHER.fetch(LOGO.data_uri)


# --- HTML --------------------------------------------------------------------------------------------------------


def test_html_shows_the_signed_content_and_the_lookup_qr(html: str) -> None:
    assert html.startswith("<!DOCTYPE html>")
    assert '<html lang="vi">' in html
    for expected in (PAYER, WORDS, FEE, "1.150.000", "5C26TAA", "00000042"):
        assert str(escape(expected)) in html, expected
    assert f'<span class="code">{CODE}</span>' in html
    assert f'<a href="{URL}" rel="noopener noreferrer">{URL}</a>' in html
    assert "<svg " in html and lookup_qr_svg(URL) in html


def test_the_qr_code_carries_the_lookup_url() -> None:
    qr = lookup_qr(URL)
    assert not qr.is_micro and qr.error in {"M", "Q", "H"}
    assert qr.matrix == segno.make_qr(URL, error="m").matrix
    assert lookup_qr_svg(URL).startswith("<svg ") and "viewBox" in lookup_qr_svg(URL)


def test_html_labels_are_vietnamese_by_default_and_english_on_request(signed_receipt: bytes, html: str) -> None:
    for label in ("Người nộp", "Tổng tiền thanh toán", "Số tiền viết bằng chữ", "Ký hiệu", "Ngày lập", "Mã tra cứu"):
        assert label in html
    assert "Tra cứu tại" in html
    english = render_html(signed_receipt, lookup_url=URL, lookup_code=CODE, lang="en")
    assert '<html lang="en">' in english
    for label in ("Payer", "Total payment", "Amount in words", "Symbol", "Issue date", "Lookup code", "Look up at"):
        assert label in english
    assert "Người nộp" not in english and "Tổng tiền thanh toán" not in english
    assert PAYER in english and "BIÊN LAI THU PHÍ, LỆ PHÍ" in english  # the document itself stays as signed
    assert LABELS["vi"].keys() == LABELS["en"].keys()


def test_unknown_language_and_non_web_lookup_urls_are_refused(signed_receipt: bytes) -> None:
    with pytest.raises(ValueError, match="language"):
        render_html(signed_receipt, lookup_url=URL, lookup_code=CODE, lang="fr")
    for url in ("javascript:alert(1)", "data:text/html,x", "lephi.example.vn/r/X"):
        with pytest.raises(ValueError, match="http"):
            render_html(signed_receipt, lookup_url=url, lookup_code=CODE)


def test_markup_in_the_document_is_escaped(signer: LocalSigner) -> None:
    payer = '<script>alert("x")</script> Trần & Cộng sự'
    page = render_html(signer.sign(build_xml(receipt(buyer=Buyer(name=payer)))), lookup_url=URL, lookup_code=CODE)
    assert "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt; Trần &amp; Cộng sự" in page
    assert "<script" not in page.lower()
    assert "Content-Security-Policy" in page and "default-src 'none'" in page


def test_the_citizen_id_is_never_shown_in_full(signed_receipt: bytes, html: str, rendered: Rendered) -> None:
    assert f"<CCCDan>{CITIZEN_ID}</CCCDan>" in signed_receipt.decode()  # it is in the signed content
    english = render_html(signed_receipt, lookup_url=URL, lookup_code=CODE, lang="en")
    for shown in (html, english, "".join(rendered.text.split()), repr(receipt_view(signed_receipt))):
        assert CITIZEN_ID not in shown
        assert "********4567" in shown


def test_mask_citizen_id() -> None:
    assert mask_citizen_id("001203004567") == "********4567"
    assert mask_citizen_id("1234567") == "*******"  # too short to reveal a part


# --- corrections -------------------------------------------------------------------------------------------------


def test_an_adjustment_shows_the_corrected_document_and_signed_amounts(signed_adjustment: bytes) -> None:
    page = render_html(signed_adjustment, lookup_url=URL, lookup_code=CODE)
    assert "Điều chỉnh cho chứng từ điện tử" in page
    assert "5C26TAA" in page and "00000007" in page and "02/03/2026" in page
    assert "Điều chỉnh giảm phí thẩm định theo mức thu nộp hồ sơ trực tuyến" in page
    for amount in ("-25.000", "-2.000", "-27.000"):
        assert f'<td class="num">{amount}</td>' in page, amount
    assert "Âm hai mươi bảy nghìn đồng" in page
    english = render_html(signed_adjustment, lookup_url=URL, lookup_code=CODE, lang="en")
    assert "Adjusts electronic document" in english


def test_a_replacement_says_what_it_replaces() -> None:
    xml = build_xml(correction(CorrectionKind.replacement))
    view = receipt_view(xml)
    assert view.correction is not None and (view.correction.kind, view.correction.symbol) == (1, "5C26TAA")
    assert "Thay thế cho chứng từ điện tử" in render_html(xml, lookup_url=URL, lookup_code=CODE)


# --- the view ----------------------------------------------------------------------------------------------------


def test_receipt_view_reads_the_signed_content_and_the_signature_metadata(signed_receipt: bytes) -> None:
    view = receipt_view(signed_receipt)
    assert (view.title, view.symbol, view.number_text) == ("BIÊN LAI THU PHÍ, LỆ PHÍ", "5C26TAA", "00000042")
    assert (view.issue_date, view.dossier_code, view.currency, view.payment_method) == (
        date(2026, 3, 2),
        "H38.01-260302-0042",
        "VND",
        "CK",
    )
    assert (view.seller.name, view.seller.tax_code, view.seller.bank_account) == (AGENCY, TAX_CODE, "3711.0.1051234")
    assert (view.buyer.name, view.buyer.email, view.buyer.citizen_id_masked) == (
        PAYER,
        "anh.nguyen@example.vn",
        "********4567",
    )
    assert [(fee.name, fee.amount) for fee in view.fee_lines] == [(FEE, Decimal(1_000_000))]
    (line,) = view.service_lines
    assert (line.line_no, line.unit, line.quantity, line.unit_price, line.amount, line.vat_code) == (
        1,
        "trang",
        Decimal(3),
        Decimal(50_000),
        Decimal(150_000),
        "KCT",
    )
    assert (view.total_before_tax, view.total_tax, view.total_payable) == tuple(map(Decimal, (150_000, 0, 1_150_000)))
    assert view.total_in_words == WORDS
    assert view.correction is None and view.format_version == "2.1.0" and view.is_receipt
    assert view.signer_subject is not None and view.signer_subject.startswith(f"UID=MST:{TAX_CODE},")
    assert view.signing_time == SIGNED_AT


def test_an_unsigned_document_says_so() -> None:
    xml = build_xml(receipt())
    assert (receipt_view(xml).signer_subject, receipt_view(xml).signing_time) == (None, None)
    assert "Chưa ký số" in render_html(xml, lookup_url=URL, lookup_code=CODE)


def test_the_provisional_layout_note_is_only_on_fee_receipts() -> None:
    invoice = receipt(kind=DocumentKind.sales_invoice, series="K26TBD", document_id="DLHDon-2K26TBD-00000042")
    page = render_html(build_xml(invoice), lookup_url=URL, lookup_code=CODE)
    assert "HÓA ĐƠN BÁN HÀNG" in page and "Người mua hàng" in page
    assert LABELS["vi"]["legal_copy"] in page
    assert LABELS["vi"]["provisional"] not in page
    english = render_html(build_xml(invoice), lookup_url=URL, lookup_code=CODE, lang="en")
    assert ">Seller<" in english and "Buyer:" in english and LABELS["en"]["provisional"] not in english


@pytest.mark.parametrize(
    ("xml", "reason"),
    [
        (b'<!DOCTYPE HDon [<!ENTITY x "y">]><HDon>&x;</HDon>', Reason.doctype),
        (b"<Invoice/>", Reason.malformed),
        (build_xml(receipt()).replace(b"<TgTTTBSo>1150000</TgTTTBSo>", b""), Reason.malformed),
        (build_xml(receipt()).replace(b"<TgTTTBSo>1150000<", b"<TgTTTBSo>1e6<"), Reason.malformed),
    ],
)
def test_documents_without_what_a_page_needs_are_refused(xml: bytes, reason: Reason) -> None:
    with pytest.raises(InvalidDocument) as refused:
        receipt_view(xml)
    assert refused.value.reason is reason


@pytest.mark.parametrize(
    ("amount", "text"),
    [
        (1_150_000, "1.150.000"),
        (-27_000, "-27.000"),
        (0, "0"),
        (Decimal("-0"), "0"),
        (999, "999"),
        (Decimal("1234.500"), "1.234,5"),
        (Decimal("-0.25"), "-0,25"),
    ],
)
def test_money_is_formatted_the_vietnamese_way(amount: Decimal | int, text: str) -> None:
    assert format_money(amount) == text


# --- no network --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        "http://example.com/font.ttf",
        "https://example.com/receipt.css",
        "ftp://example.com/font.ttf",
        "data:font/ttf;base64,AAAA",
        "file:///etc/passwd",
        "file://example.com" + (FONTS_DIR / "DejaVuSans.ttf").as_posix(),
        (FONTS_DIR / "DejaVuSans.ttf").as_uri() + "?x=1",
        FONTS_DIR.as_uri() + "/../render.py",
        FONTS_DIR.as_uri() + "/missing.ttf",
        FONTS_DIR.as_uri(),
    ],
)
def test_the_fetcher_refuses_anything_but_the_packaged_files(url: str) -> None:
    with pytest.raises(ValueError, match="refused"):
        FETCHER.fetch(url)


def test_the_fetcher_serves_the_packaged_fonts_and_templates() -> None:
    for path in (FONTS_DIR / "DejaVuSans.ttf", FONTS_DIR / "DejaVuSans-Bold.ttf", TEMPLATES_DIR / "receipt.css"):
        response = FETCHER.fetch(path.as_uri())
        try:
            assert response.read() == path.read_bytes()
        finally:
            response.close()
    assert (FONTS_DIR / "LICENSE").read_text().startswith("DejaVu Sans")
