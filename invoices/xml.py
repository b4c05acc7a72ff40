"""Document -> the tax authority's HDon XML (domain.md 3.1), deterministic, unsigned.

The same `Document` always yields the same bytes: elements in the fixed order of the tree, no namespace on invoice
elements, UTF-8 with an XML declaration, no pretty-printing (whitespace inside DLHDon would be signed data), amounts
as plain integers, dates as YYYY-MM-DD. An optional element without a value is left out, never emitted empty.
`DSCKS/NBan` is emitted empty: the signing module inserts the seller's ds:Signature there.

The fee receipt (biên lai thu phí, lệ phí) is issued on this same HDon structure with the receipt's title and
template from `invoices.format`. Its official XML layout is not public: this is the project's provisional layout,
and `build_xml` is the one seam to replace when an official layout appears.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date
from decimal import Decimal
from typing import Any, TypeAlias

from lxml import etree  # type: ignore[import-untyped]  # lxml ships no type information and no stubs are installed

from invoices.content import Buyer, Document, FeeLine, Related, Seller, ServiceLine
from invoices.format import DOSSIER_FIELD

_Element: TypeAlias = Any  # an lxml element, untyped for the reason above
_Child = tuple[str, str | None]


def build_xml(doc: Document) -> bytes:
    root = etree.Element("HDon")
    data = etree.SubElement(root, "DLHDon", Id=doc.document_id)
    data.append(_general(doc))
    content = etree.SubElement(data, "NDHDon")
    content.append(_seller(doc.seller))
    content.append(_buyer(doc.buyer))
    lines = etree.SubElement(content, "DSHHDVu")
    for fee in doc.fee_lines:
        lines.append(_fee_as_line(fee, doc.profile.fee_line_nature))
    for line in doc.service_lines:
        lines.append(_service_line(line, doc.profile.line_nature))
    if not len(lines):
        # An adjustment of details only has no amounts; the list still says what the document is (a note line).
        note = doc.related.note if doc.related is not None and doc.related.note else doc.title
        lines.append(_element("HHDVu", [("TChat", str(doc.profile.fee_line_nature)), ("THHDVu", note)]))
    content.append(_totals(doc))
    etree.SubElement(etree.SubElement(root, "DSCKS"), "NBan")
    xml: bytes = etree.tostring(root, encoding="UTF-8", xml_declaration=True)
    return xml


# The number a draft is built with, so that everything but the number is built and validated before it is taken.
DRAFT_NUMBER = 99_999_999


def with_number(draft_xml: bytes, number: int) -> bytes:
    """The document ``build_xml`` makes of a draft built with :data:`DRAFT_NUMBER`, with ``number`` in its place.

    The gap-free number is taken under the series counter's lock, held to the commit: building and validating the
    XML outside that window lets another worker number its document meanwhile. ``SHDon`` occurs once, and any ``<``
    in a value is escaped, so the replacement cannot touch anything else."""
    old = b"<SHDon>%d</SHDon>" % DRAFT_NUMBER
    if draft_xml.count(old) != 1:
        raise ValueError("the draft does not hold exactly one draft number")
    return draft_xml.replace(old, b"<SHDon>%d</SHDon>" % number)


def _general(doc: Document) -> _Element:
    general = _element(
        "TTChung",
        [
            ("PBan", doc.format_version),
            ("THDon", doc.title),
            ("KHMSHDon", doc.template),
            ("KHHDon", doc.series),
            ("SHDon", str(doc.number)),
            ("MHSo", doc.tax_dossier_code),
            ("NLap", _date(doc.issue_date)),
            ("DVTTe", doc.currency),
            ("HTTToan", doc.payment_method),
            ("MSTTCGP", doc.provider_tax_code),
        ],
    )
    if doc.related is not None:
        general.append(_related(doc.related, doc.profile.related_invoice_type))
    if doc.dossier_code is not None:
        extras = etree.SubElement(general, "TTKhac")
        extras.append(_element("TTin", [("TTruong", DOSSIER_FIELD), ("KDLieu", "string"), ("DLieu", doc.dossier_code)]))
    return general


def _related(related: Related, invoice_type: int) -> _Element:
    return _element(
        "TTHDLQuan",
        [
            ("TCHDon", str(int(related.kind))),
            ("LHDCLQuan", str(invoice_type)),
            ("KHMSHDCLQuan", related.template),
            ("KHHDCLQuan", related.series),
            ("SHDCLQuan", str(related.number)),
            ("NLHDCLQuan", _date(related.issue_date)),
            ("GChu", related.note),
        ],
    )


def _seller(seller: Seller) -> _Element:
    return _element(
        "NBan",
        [
            ("Ten", seller.name),
            ("MST", seller.tax_code),
            ("DChi", seller.address),
            ("SDThoai", seller.phone),
            ("DCTDTu", seller.email),
            ("STKNHang", seller.bank_account),
            ("TNHang", seller.bank_name),
        ],
    )


def _buyer(buyer: Buyer) -> _Element:
    return _element(
        "NMua",
        [
            ("Ten", buyer.name),
            ("MST", buyer.tax_code),
            ("DChi", buyer.address),
            ("SDThoai", buyer.phone),
            ("DCTDTu", buyer.email),
            ("CCCDan", buyer.id_number),
            ("SHChieu", buyer.passport_number),
        ],
    )


def _service_line(line: ServiceLine, nature: int) -> _Element:
    return _element(
        "HHDVu",
        [
            ("TChat", str(nature)),
            ("STT", str(line.line_no)),
            ("THHDVu", line.name),
            ("DVTinh", line.unit),
            ("SLuong", _number(line.quantity)),
            ("DGia", str(line.unit_price)),
            ("ThTien", str(line.amount)),
            ("TSuat", line.vat_code),
        ],
    )


def _fee_as_line(fee: FeeLine, nature: int) -> _Element:
    """A fee of DSLPhi repeated in the goods list as a descriptive line: named and priced, counted once (format.py)."""
    return _element("HHDVu", [("TChat", str(nature)), ("THHDVu", fee.name), ("ThTien", str(fee.amount))])


def _totals(doc: Document) -> _Element:
    totals = etree.Element("TToan")
    if doc.tax_groups:
        by_rate = etree.SubElement(totals, "THTTLTSuat")
        for group in doc.tax_groups:
            rows = [("TSuat", group.vat_code), ("ThTien", str(group.amount)), ("TThue", str(group.tax))]
            by_rate.append(_element("LTSuat", rows))
    _children(totals, [("TgTCThue", str(doc.total_before_tax)), ("TgTThue", str(doc.total_tax))])
    if doc.fee_lines:
        fees = etree.SubElement(totals, "DSLPhi")
        for fee in doc.fee_lines:
            fees.append(_fee(fee))
    _children(totals, [("TgTTTBSo", str(doc.total_payable)), ("TgTTTBChu", doc.total_in_words)])
    return totals


def _fee(fee: FeeLine) -> _Element:
    return _element("LPhi", [("TLPhi", fee.name), ("TPhi", str(fee.amount))])


def _element(tag: str, children: Sequence[_Child]) -> _Element:
    element = etree.Element(tag)
    _children(element, children)
    return element


def _children(parent: _Element, children: Sequence[_Child]) -> None:
    for tag, text in children:
        if text is not None:
            etree.SubElement(parent, tag).text = text


def _date(value: date) -> str:
    return value.isoformat()


def _number(value: Decimal) -> str:
    """Plain decimal notation without trailing zeros: Decimal("2.500") -> "2.5", never "2.5E+0" or "-0"."""
    if value == 0:
        return "0"
    text = format(value, "f")
    return text.rstrip("0").rstrip(".") if "." in text else text
