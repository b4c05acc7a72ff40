"""Human-readable views of an issued e-receipt: an HTML page and a PDF, both from ``templates/receipt.html``.

The signed XML is the legal original (domain.md 3.5); these are converted copies. Everything shown is read from the
signed content ``DLHDon`` plus the seller signature's metadata (signer subject, signing time), never from the
database, so a view cannot disagree with the document it claims to show. The payer's citizen ID is personal data and
only ever leaves this module masked. The one exception is the agency's logo (``Logo``): presentation only, it is not
in the signed XML and never will be, so it can change after issuance without touching the legal original. It is read
when a view is rendered, never when a document is signed, and embedded as a ``data:`` URI so the page still loads
nothing from anywhere.

The PDF uses the DejaVu Sans files shipped in ``invoices/fonts`` (full Vietnamese coverage), loaded through
``@font-face`` by a URL fetcher that serves the package's own files and nothing else: the PDF does not depend on the
fonts installed on the machine, and rendering never touches the network.
"""

from __future__ import annotations

import base64
import mimetypes
import re
import secrets
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import Decimal
from functools import cache
from pathlib import Path
from types import MappingProxyType
from typing import Any, Final, TypeAlias
from urllib.parse import urlsplit
from urllib.request import url2pathname

import segno
from jinja2 import Environment, FileSystemLoader, StrictUndefined
from markupsafe import Markup
from sqlmodel import Session
from weasyprint import HTML  # type: ignore[import-untyped]  # WeasyPrint ships no type information
from weasyprint.text.fonts import FontConfiguration  # type: ignore[import-untyped]
from weasyprint.urls import URLFetcher, URLFetcherResponse  # type: ignore[import-untyped]

from invoices.errors import InvalidDocument, Reason
from invoices.format import CURRENT, DOSSIER_FIELD
from invoices.xmldsig import VIETNAM, ds, parse_xml
from payments.agency.logo import logo_type
from payments.agency.models import AgencyLogo

__all__ = [
    "FETCHER",
    "FONTS_DIR",
    "LABELS",
    "TEMPLATES_DIR",
    "BuyerView",
    "CorrectionView",
    "FeeLineView",
    "Logo",
    "PackageFetcher",
    "ReceiptView",
    "SellerView",
    "ServiceLineView",
    "agency_logo",
    "format_money",
    "lookup_qr",
    "lookup_qr_svg",
    "mask_citizen_id",
    "receipt_view",
    "render_html",
    "render_pdf",
]

_Element: TypeAlias = Any  # an lxml element; lxml ships no type information

PACKAGE_DIR: Final = Path(__file__).resolve().parent
TEMPLATES_DIR: Final = PACKAGE_DIR / "templates"
FONTS_DIR: Final = PACKAGE_DIR / "fonts"
TEMPLATE: Final = "receipt.html"
# Template digit of the fee receipt (invoices.format): its layout is the project's own until an official one appears.
RECEIPT_TEMPLATE: Final = "5"

_AMOUNT = re.compile(r"-?[0-9]{1,21}(\.[0-9]{1,6})?")
_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
_NUMBER = re.compile(r"[0-9]{1,8}")


@dataclass(frozen=True)
class SellerView:
    """NBan."""

    name: str
    tax_code: str
    address: str | None
    phone: str | None
    email: str | None
    bank_account: str | None
    bank_name: str | None


@dataclass(frozen=True)
class BuyerView:
    """NMua. The citizen ID (CCCDan) is held masked only, so no view or log of this object can reveal it."""

    name: str
    tax_code: str | None
    address: str | None
    email: str | None
    phone: str | None
    citizen_id_masked: str | None
    passport_masked: str | None = None


@dataclass(frozen=True)
class FeeLineView:
    """DSLPhi/LPhi."""

    name: str
    amount: Decimal


@dataclass(frozen=True)
class ServiceLineView:
    """DSHHDVu/HHDVu."""

    line_no: int
    name: str
    unit: str | None
    quantity: Decimal | None
    unit_price: Decimal | None
    amount: Decimal | None
    vat_code: str | None


@dataclass(frozen=True)
class CorrectionView:
    """TTHDLQuan: the original document this one replaces (kind 1) or adjusts (kind 2)."""

    kind: int
    template: str
    series: str
    number: int
    issue_date: date
    note: str | None

    @property
    def symbol(self) -> str:
        return f"{self.template}{self.series}"

    @property
    def number_text(self) -> str:
        return f"{self.number:08d}"


@dataclass(frozen=True)
class ReceiptView:
    """Everything the page shows, read from the signed content and the seller signature's metadata."""

    format_version: str
    title: str
    template: str
    series: str
    number: int
    issue_date: date
    dossier_code: str | None
    currency: str
    payment_method: str
    seller: SellerView
    buyer: BuyerView
    fee_lines: tuple[FeeLineView, ...]
    service_lines: tuple[ServiceLineView, ...]
    total_before_tax: Decimal
    total_tax: Decimal
    total_payable: Decimal
    total_in_words: str
    correction: CorrectionView | None
    signer_subject: str | None  # X509SubjectName; None for a document that is not signed
    signing_time: datetime | None

    @property
    def symbol(self) -> str:
        """The printed symbol, KHMSHDon + KHHDon, e.g. 5C26TAA."""
        return f"{self.template}{self.series}"

    @property
    def number_text(self) -> str:
        return f"{self.number:08d}"

    @property
    def is_receipt(self) -> bool:
        return self.template == RECEIPT_TEMPLATE


def receipt_view(xml: bytes) -> ReceiptView:
    """Read what a receipt page shows from a signed HDon document.

    The signature is NOT verified: callers render only documents they issued and stored themselves. A document that
    arrives from outside must pass ``invoices.verify.verify`` first. The XML is parsed with the hardened parser
    (size limit, no DTD, no entities, no network); a document without the fields a page needs raises
    ``InvalidDocument`` with reason ``malformed``.
    """
    root = parse_xml(xml)
    found = root.findall("DLHDon") if root.tag == "HDon" else []
    if len(found) != 1:
        raise InvalidDocument(Reason.malformed, "expected an HDon root with exactly one DLHDon")
    data = found[0]
    general, content = _child(data, "TTChung"), _child(data, "NDHDon")
    totals = _child(content, "TToan")
    signer_subject, signing_time = _signature_metadata(root)
    return ReceiptView(
        format_version=_required(general, "PBan"),
        title=_required(general, "THDon"),
        template=_required(general, "KHMSHDon"),
        series=_required(general, "KHHDon"),
        number=int(_required(general, "SHDon", _NUMBER)),
        issue_date=_date(general, "NLap"),
        dossier_code=_dossier_code(general),
        currency=_optional(general, "DVTTe") or "VND",
        payment_method=_required(general, "HTTToan"),
        seller=_seller(_child(content, "NBan")),
        buyer=_buyer(_child(content, "NMua")),
        fee_lines=tuple(
            FeeLineView(_required(fee, "TLPhi"), _amount(fee, "TPhi")) for fee in totals.iterfind("DSLPhi/LPhi")
        ),
        # Fee lines repeated in the goods list (TChat 4) are shown once, from DSLPhi.
        service_lines=tuple(
            _service_line(line)
            for line in content.iterfind("DSHHDVu/HHDVu")
            if line.findtext("TChat") != str(CURRENT.fee_line_nature)
        ),
        total_before_tax=_optional_amount(totals, "TgTCThue") or Decimal(0),
        total_tax=_optional_amount(totals, "TgTThue") or Decimal(0),
        total_payable=_amount(totals, "TgTTTBSo"),
        total_in_words=_required(totals, "TgTTTBChu"),
        correction=_correction(general.find("TTHDLQuan")),
        signer_subject=signer_subject,
        signing_time=signing_time,
    )


def _child(parent: _Element, tag: str) -> _Element:
    node = parent.find(tag)
    if node is None:
        raise InvalidDocument(Reason.malformed, f"{parent.tag} has no {tag}")
    return node


def _optional(parent: _Element, path: str) -> str | None:
    text = (parent.findtext(path) or "").strip()
    return text or None


def _required(parent: _Element, path: str, pattern: re.Pattern[str] | None = None) -> str:
    text = _optional(parent, path)
    if text is None or (pattern is not None and not pattern.fullmatch(text)):
        raise InvalidDocument(Reason.malformed, f"{parent.tag} has no valid {path}")
    return text


def _optional_amount(parent: _Element, path: str) -> Decimal | None:
    text = _optional(parent, path)
    if text is None:
        return None
    if not _AMOUNT.fullmatch(text):
        raise InvalidDocument(Reason.malformed, f"{parent.tag}/{path} is not a number: {text!r}")
    return Decimal(text)


def _amount(parent: _Element, path: str) -> Decimal:
    value = _optional_amount(parent, path)
    if value is None:
        raise InvalidDocument(Reason.malformed, f"{parent.tag} has no {path}")
    return value


def _date(parent: _Element, path: str) -> date:
    text = _required(parent, path, _DATE)
    try:
        return date.fromisoformat(text)
    except ValueError as exc:
        raise InvalidDocument(Reason.malformed, f"{path} {text} is not a calendar date") from exc


def _seller(node: _Element) -> SellerView:
    return SellerView(
        name=_required(node, "Ten"),
        tax_code=_required(node, "MST"),
        address=_optional(node, "DChi"),
        phone=_optional(node, "SDThoai"),
        email=_optional(node, "DCTDTu"),
        bank_account=_optional(node, "STKNHang"),
        bank_name=_optional(node, "TNHang"),
    )


def _buyer(node: _Element) -> BuyerView:
    citizen_id = _optional(node, "CCCDan")
    passport = _optional(node, "SHChieu")
    return BuyerView(
        name=_required(node, "Ten"),
        tax_code=_optional(node, "MST"),
        address=_optional(node, "DChi"),
        email=_optional(node, "DCTDTu"),
        phone=_optional(node, "SDThoai"),
        citizen_id_masked=mask_citizen_id(citizen_id) if citizen_id else None,
        passport_masked=mask_citizen_id(passport) if passport else None,
    )


def mask_citizen_id(value: str) -> str:
    """Keep the last four characters, e.g. ********1234; a value too short to mask is hidden entirely."""
    visible = 4 if len(value) >= 8 else 0
    return "*" * (len(value) - visible) + value[len(value) - visible :]


def _dossier_code(general: _Element) -> str | None:
    for extra in general.iterfind("TTKhac/TTin"):
        if extra.findtext("TTruong") == DOSSIER_FIELD:
            return _optional(extra, "DLieu")
    return _optional(general, "MHSo")


def _service_line(node: _Element) -> ServiceLineView:
    return ServiceLineView(
        line_no=int(_required(node, "STT", re.compile(r"[0-9]{1,4}"))),
        name=_required(node, "THHDVu"),
        unit=_optional(node, "DVTinh"),
        quantity=_optional_amount(node, "SLuong"),
        unit_price=_optional_amount(node, "DGia"),
        amount=_optional_amount(node, "ThTien"),
        vat_code=_optional(node, "TSuat"),
    )


def _correction(node: _Element | None) -> CorrectionView | None:
    if node is None:
        return None
    return CorrectionView(
        kind=int(_required(node, "TCHDon", re.compile(r"[12]"))),
        template=_required(node, "KHMSHDCLQuan"),
        series=_required(node, "KHHDCLQuan"),
        number=int(_required(node, "SHDCLQuan", _NUMBER)),
        issue_date=_date(node, "NLHDCLQuan"),
        note=_optional(node, "GChu"),
    )


def _signature_metadata(root: _Element) -> tuple[str | None, datetime | None]:
    signature = root.find(f"DSCKS/NBan/{ds('Signature')}")
    if signature is None:
        return None, None
    subject = _optional(signature, f"{ds('KeyInfo')}/{ds('X509Data')}/{ds('X509SubjectName')}")
    # The tax authority's documents keep SigningTime in the ds namespace, others in none: match the local name.
    times = [
        node.text or ""
        for node in signature.iterfind(f"{ds('Object')}/{ds('SignatureProperties')}/{ds('SignatureProperty')}/*")
        if isinstance(node.tag, str) and node.tag.rpartition("}")[2] == "SigningTime"
    ]
    if len(times) != 1:
        return subject, None
    try:
        value = datetime.fromisoformat(times[0].strip())
    except ValueError as exc:
        raise InvalidDocument(Reason.malformed, "SigningTime is not an ISO 8601 time") from exc
    # Without an offset it is Vietnam time, as in invoices.verify.
    return subject, value if value.tzinfo else value.replace(tzinfo=VIETNAM)


# --- the agency's logo -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Logo:
    """The issuing agency's logo on a receipt's views. Not part of the signed document: see the module's text."""

    content_type: str  # image/png or image/jpeg
    data: bytes

    @property
    def data_uri(self) -> str:
        return f"data:{self.content_type};base64,{base64.b64encode(self.data).decode('ascii')}"


def agency_logo(s: Session, agency_id: str) -> Logo | None:
    """The agency's logo, if it has one that is still a PNG or JPEG within the limits the upload checks: a row that
    does not pass (written before the check, or by hand) is left out rather than shown."""
    row = s.get(AgencyLogo, agency_id)
    if row is None:
        return None
    kind = logo_type(row.data)
    return Logo(kind, row.data) if kind is not None else None


# --- formatting ------------------------------------------------------------------------------------------------------


def format_money(value: Decimal | int) -> str:
    """Vietnamese style: dots between thousands, a comma before decimals, a leading minus: -1.150.000,5."""
    number = Decimal(value)
    sign = "-" if number < 0 else ""
    whole, _, fraction = f"{abs(number):f}".partition(".")
    grouped = f"{int(whole):,}".replace(",", ".")
    fraction = fraction.rstrip("0")
    return f"{sign}{grouped},{fraction}" if fraction else f"{sign}{grouped}"


def _format_date(value: date) -> str:
    return value.strftime("%d/%m/%Y")


def _format_time(value: datetime) -> str:
    minutes = int((value.utcoffset() or timedelta(0)).total_seconds()) // 60
    hours, rest = divmod(abs(minutes), 60)
    return f"{value:%d/%m/%Y %H:%M:%S} (UTC{'-' if minutes < 0 else '+'}{hours:02d}:{rest:02d})"


# --- labels ----------------------------------------------------------------------------------------------------------

LABELS: Final[Mapping[str, Mapping[str, str]]] = MappingProxyType(
    {
        "vi": MappingProxyType(
            {
                "seller_receipt": "Đơn vị thu",
                "seller_invoice": "Đơn vị bán hàng",
                "buyer_receipt": "Người nộp",
                "buyer_invoice": "Người mua hàng",
                "tax_code": "Mã số thuế",
                "address": "Địa chỉ",
                "phone": "Điện thoại",
                "email": "Email",
                "bank_account": "Số tài khoản",
                "bank_name": "Tại",
                "citizen_id": "Số CCCD",
                "passport": "Số hộ chiếu",
                "symbol": "Ký hiệu",
                "number": "Số",
                "issue_date": "Ngày lập",
                "dossier_code": "Mã hồ sơ",
                "payment_method": "Hình thức thanh toán",
                "currency": "Đơn vị tiền tệ",
                "fees": "Các khoản phí, lệ phí",
                "fee_name": "Tên khoản phí, lệ phí",
                "amount": "Số tiền",
                "services": "Hàng hóa, dịch vụ",
                "line_no": "STT",
                "line_name": "Tên hàng hóa, dịch vụ",
                "unit": "Đơn vị tính",
                "quantity": "Số lượng",
                "unit_price": "Đơn giá",
                "line_amount": "Thành tiền",
                "vat_code": "Thuế suất",
                "total_before_tax": "Tổng tiền chưa thuế",
                "total_tax": "Tổng tiền thuế GTGT",
                "total_payable": "Tổng tiền thanh toán",
                "total_in_words": "Số tiền viết bằng chữ",
                "correction_1": "Thay thế cho",
                "correction_2": "Điều chỉnh cho",
                "original": "chứng từ điện tử",
                "note": "Ghi chú",
                "signature": "Chữ ký số",
                "signed_by": "Ký bởi",
                "signing_time": "Ký ngày",
                "not_signed": "Chưa ký số",
                "lookup_code": "Mã tra cứu",
                "lookup_at": "Tra cứu tại",
                "format_version": "Phiên bản định dạng",
                "legal_copy": (
                    "Bản thể hiện của chứng từ điện tử. Bản gốc có giá trị pháp lý là tệp XML đã ký số; "
                    "bản này là bản chuyển đổi."
                ),
                "provisional": "Mẫu biên lai tạm thời: định dạng chính thức của biên lai điện tử chưa được công bố.",
                "page": "Trang",
            }
        ),
        "en": MappingProxyType(
            {
                "seller_receipt": "Collecting agency",
                "seller_invoice": "Seller",
                "buyer_receipt": "Payer",
                "buyer_invoice": "Buyer",
                "tax_code": "Tax code",
                "address": "Address",
                "phone": "Phone",
                "email": "Email",
                "bank_account": "Bank account",
                "bank_name": "At",
                "citizen_id": "Citizen ID",
                "passport": "Passport number",
                "symbol": "Symbol",
                "number": "No.",
                "issue_date": "Issue date",
                "dossier_code": "Dossier code",
                "payment_method": "Payment method",
                "currency": "Currency",
                "fees": "Fees and charges",
                "fee_name": "Fee or charge",
                "amount": "Amount",
                "services": "Goods and services",
                "line_no": "No.",
                "line_name": "Description",
                "unit": "Unit",
                "quantity": "Quantity",
                "unit_price": "Unit price",
                "line_amount": "Amount",
                "vat_code": "VAT rate",
                "total_before_tax": "Total before VAT",
                "total_tax": "Total VAT",
                "total_payable": "Total payment",
                "total_in_words": "Amount in words",
                "correction_1": "Replaces",
                "correction_2": "Adjusts",
                "original": "electronic document",
                "note": "Note",
                "signature": "Digital signature",
                "signed_by": "Signed by",
                "signing_time": "Signed at",
                "not_signed": "Not signed",
                "lookup_code": "Lookup code",
                "lookup_at": "Look up at",
                "format_version": "Format version",
                "legal_copy": (
                    "A rendering of an electronic document. The legal original is the digitally signed XML file; "
                    "this is a converted copy."
                ),
                "provisional": "Provisional receipt layout: the official e-receipt layout has not been published.",
                "page": "Page",
            }
        ),
    }
)


# --- QR code ---------------------------------------------------------------------------------------------------------


def lookup_qr(url: str) -> segno.QRCode:
    """A full QR code (never a Micro QR, which common phone scanners do not read), error correction level M or
    better."""
    return segno.make_qr(url, error="m")


def lookup_qr_svg(url: str) -> str:
    """Inline SVG of the lookup QR: no XML declaration, no namespace clutter, sized by CSS through its viewBox."""
    svg: str = lookup_qr(url).svg_inline(omitsize=True, svgclass="qr", lineclass=None)
    return svg


# --- rendering -------------------------------------------------------------------------------------------------------


def _environment() -> Environment:
    env = Environment(
        loader=FileSystemLoader(TEMPLATES_DIR),
        autoescape=True,
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        auto_reload=False,
    )
    env.filters.update(money=format_money, day=_format_date, moment=_format_time)
    return env


_ENV: Final = _environment()


def _render(
    xml: bytes,
    *,
    lookup_url: str,
    lookup_code: str,
    lang: str,
    pdf: bool,
    fonts: Mapping[str, str],
    nonce: str = "",
    logo: Logo | None = None,
) -> str:
    if lang not in LABELS:
        raise ValueError(f"unknown language {lang!r}; known: {', '.join(LABELS)}")
    if urlsplit(lookup_url).scheme not in {"http", "https"}:
        # The URL lands in an href and in the QR code: a javascript: or data: URL would be an attack on the reader.
        raise ValueError("the lookup URL must be an http or https URL")
    view = receipt_view(xml)
    return _ENV.get_template(TEMPLATE).render(
        view=view,
        labels=LABELS[lang],
        lang=lang,
        pdf=pdf,
        fonts=fonts,
        lookup_url=lookup_url,
        lookup_code=lookup_code,
        qr_svg=Markup(lookup_qr_svg(lookup_url)),  # noqa: S704  # segno's own output; the URL is not copied into it
        nonce=nonce,
        logo_uri=logo.data_uri if logo is not None else "",
    )


def render_html(
    xml: bytes,
    *,
    lookup_url: str,
    lookup_code: str,
    lang: str = "vi",
    nonce: str | None = None,
    logo: Logo | None = None,
) -> str:
    """A standalone HTML page of the receipt, labels in ``lang``; the document's own text is shown as signed, with
    the agency's ``logo`` when it has one.

    Its style sheet is inline and allowed by ``nonce`` (the serving request's CSP nonce; a fresh one for a page
    saved or shown on its own), never by 'unsafe-inline'."""
    page_nonce = nonce or secrets.token_urlsafe(18)
    return _render(
        xml,
        lookup_url=lookup_url,
        lookup_code=lookup_code,
        lang=lang,
        pdf=False,
        fonts={},
        nonce=page_nonce,
        logo=logo,
    )


class PackageFetcher(URLFetcher):  # type: ignore[misc]  # WeasyPrint is untyped
    """WeasyPrint's URL fetcher for receipts: serves files under the given folders and refuses every other URL.

    No http, https, ftp or data URL, and no file outside those folders: the PDF can neither leak a request to the
    network nor pick up a file an attacker named. The only other URLs served are the exact ones in ``documents``
    (the agency's logo, as the data: URI the page itself carries), answered from memory.
    """

    def __init__(self, roots: Iterable[Path], documents: Mapping[str, tuple[str, bytes]] | None = None) -> None:
        # fail_on_errors: a font that cannot be loaded stops the rendering instead of falling back to system fonts.
        super().__init__(fail_on_errors=True)
        self.roots = tuple(root.resolve() for root in roots)
        self.documents = dict(documents or {})

    def fetch(self, url: str, headers: Mapping[str, str] | None = None) -> Any:
        if url in self.documents:
            content_type, data = self.documents[url]
            return URLFetcherResponse(url, data, {"Content-Type": content_type})
        path = self.resolve(url)
        content_type = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
        return URLFetcherResponse(url, path.read_bytes(), {"Content-Type": content_type})

    def resolve(self, url: str) -> Path:
        """The local file a URL names, if it is one this fetcher serves; ValueError otherwise."""
        parts = urlsplit(url)
        if parts.scheme != "file" or parts.netloc not in {"", "localhost"} or parts.query:
            raise ValueError(f"refused to fetch {url!r}: only the receipt's own files are served")
        try:
            path = Path(url2pathname(parts.path)).resolve(strict=True)
        except (OSError, RuntimeError) as exc:
            raise ValueError(f"refused to fetch {url!r}: no such file") from exc
        if not path.is_file() or not any(path.is_relative_to(root) for root in self.roots):
            raise ValueError(f"refused to fetch {url!r}: outside the receipt's folders")
        return path


FETCHER: Final = PackageFetcher([FONTS_DIR, TEMPLATES_DIR])
_PDF_FONTS: Final = MappingProxyType(
    {
        "regular": (FONTS_DIR / "DejaVuSans.ttf").as_uri(),
        "bold": (FONTS_DIR / "DejaVuSans-Bold.ttf").as_uri(),
    }
)
# Pango and fontconfig objects are not safe to share between threads; one lock keeps a single shared font
# configuration (fonts read and registered once per process) while requests render from a thread pool.
_PDF_LOCK: Final = threading.Lock()


@cache
def _font_config() -> Any:
    return FontConfiguration()


def render_pdf(xml: bytes, *, lookup_url: str, lookup_code: str, logo: Logo | None = None) -> bytes:
    """An A4 PDF of the receipt with Vietnamese labels, from the same template as the HTML page, with the agency's
    ``logo`` when it has one."""
    page = _render(
        xml, lookup_url=lookup_url, lookup_code=lookup_code, lang="vi", pdf=True, fonts=_PDF_FONTS, logo=logo
    )
    fetcher = FETCHER
    if logo is not None:
        fetcher = PackageFetcher([FONTS_DIR, TEMPLATES_DIR], {logo.data_uri: (logo.content_type, logo.data)})
    with _PDF_LOCK:
        font_config = _font_config()
        document = HTML(string=page, base_url=TEMPLATES_DIR.as_uri() + "/", url_fetcher=fetcher)
        pdf: bytes = document.write_pdf(font_config=font_config)
    return pdf
