"""What an e-receipt or sales invoice says, checked before any XML exists.

The models mirror the tax authority's tree (domain.md 3.1) with English names; the XML tag each maps to is noted on
the class. They are frozen: a document is built once, then serialised, signed and kept unchanged. Field limits follow
the field table (3.2) so that a model that validates yields XML that validates; the XSD checks again before signing.
Totals are computed, never given, so they cannot disagree with the lines.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable
from datetime import date
from decimal import ROUND_HALF_UP, Decimal
from enum import IntEnum
from typing import Annotated, Any, Literal, NamedTuple, Protocol

from pydantic import AfterValidator, BaseModel, ConfigDict, EmailStr, Field, Strict, computed_field, model_validator

from invoices.format import CURRENT, PROFILES, DocumentKind, FormatProfile, profile_for
from invoices.words import MAX_AMOUNT, amount_in_words
from payments.agency.models import FeeKind


class SellerFacts(Protocol):
    """What the seller block needs of an agency: its table row, or the same columns read by a joined query."""

    @property
    def name(self) -> str: ...
    @property
    def tax_code(self) -> str: ...
    @property
    def address(self) -> str: ...
    @property
    def bank_account(self) -> str: ...
    @property
    def bank_name(self) -> str: ...


class PayerFacts(Protocol):
    """What the buyer block needs of a dossier."""

    @property
    def payer_name(self) -> str: ...
    @property
    def payer_tax_code(self) -> str | None: ...
    @property
    def payer_address(self) -> str | None: ...
    @property
    def payer_email(self) -> str | None: ...
    @property
    def payer_phone(self) -> str | None: ...
    @property
    def payer_id_number(self) -> str | None: ...
    @property
    def payer_passport_number(self) -> str | None: ...


class LineFacts(Protocol):
    """One computed fee line of a dossier."""

    @property
    def kind(self) -> str: ...
    @property
    def name(self) -> str: ...
    @property
    def quantity(self) -> int: ...
    @property
    def unit_amount(self) -> int: ...
    @property
    def amount(self) -> int: ...
    @property
    def position(self) -> int: ...


# Characters outside the XML 1.0 `Char` production: lxml refuses them, so the model refuses them first.
_NOT_XML_CHAR = re.compile("[^\t\n\r\u0020-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


def _text(max_length: int) -> AfterValidator:
    def check(value: str) -> str:
        # NFC: Vietnamese typed on some keyboards arrives decomposed; lengths and bytes must not depend on that.
        value = unicodedata.normalize("NFC", value)
        if not value.strip():
            raise ValueError("must not be blank")
        if _NOT_XML_CHAR.search(value):
            raise ValueError("contains a character that XML cannot carry")
        if len(value) > max_length:
            raise ValueError(f"must be at most {max_length} characters")
        return value

    return AfterValidator(check)


def _pattern(regex: str, what: str) -> AfterValidator:
    compiled = re.compile(regex)

    def check(value: str) -> str:
        if not compiled.fullmatch(value):
            raise ValueError(f"is not a valid {what}")
        return value

    return AfterValidator(check)


Text20 = Annotated[str, _text(20)]
Text30 = Annotated[str, _text(30)]
Text50 = Annotated[str, _text(50)]
Text100 = Annotated[str, _text(100)]
Text255 = Annotated[str, _text(255)]
Text400 = Annotated[str, _text(400)]
Text500 = Annotated[str, _text(500)]
Email = Annotated[EmailStr, _text(50)]
# 10 digits, a branch suffix "-NNN", or since 07/2025 an individual's 12-digit personal number used as tax code.
TaxCode = Annotated[str, _pattern(r"[0-9]{10}(-[0-9]{3})?|[0-9]{12}", "tax code")]
CitizenId = Annotated[str, _pattern(r"[0-9]{12}", "citizen ID number (12 digits)")]
Template = Annotated[str, _pattern(r"[1-9]", "template digit (KHMSHDon)")]
Series = Annotated[str, _pattern(r"[CK][0-9]{2}[TDLMNBGH][A-Z]{2}", "series (KHHDon), e.g. C26TAA")]
VatCode = Annotated[str, _pattern(r"0%|5%|8%|10%|KCT|KKKNT|KHAC:[0-9]{1,2}(\.[0-9]{1,2})?", "VAT code (TSuat)")]
# DLHDon/@Id is an xs:ID, so an XML name; the signature references it as "#<Id>".
DocumentId = Annotated[str, _pattern(r"[A-Za-z_][A-Za-z0-9_.-]{0,63}", "document id")]
Money = Annotated[int, Strict(), Field(ge=-MAX_AMOUNT, le=MAX_AMOUNT)]
Number = Annotated[int, Strict(), Field(ge=1, le=99_999_999)]
Quantity = Annotated[Decimal, Field(max_digits=21, decimal_places=6)]


class CorrectionKind(IntEnum):
    """TTHDLQuan/TCHDon."""

    replacement = 1
    adjustment = 2


class TaxGroup(NamedTuple):
    """THTTLTSuat/LTSuat: the service lines of one VAT code, summed."""

    vat_code: str
    amount: int
    tax: int


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Seller(_Frozen):
    """NBan: the collecting agency."""

    name: Text400
    tax_code: TaxCode
    address: Text400
    phone: Text20 | None = None
    email: Email | None = None
    bank_account: Text30 | None = None
    bank_name: Text400 | None = None

    @classmethod
    def from_agency(cls, agency: SellerFacts) -> Seller:
        # The agency table stores "" for "no bank account"; the document omits the element instead.
        return cls(
            name=agency.name,
            tax_code=agency.tax_code,
            address=agency.address,
            bank_account=agency.bank_account or None,
            bank_name=agency.bank_name or None,
        )


class Buyer(_Frozen):
    """NMua: the payer. `id_number` (CCCDan) and `passport_number` (SHChieu) only when the dossier carries them
    (personal data, sealed in the database; the signed receipt keeps them as accounting law requires)."""

    name: Text400
    tax_code: TaxCode | None = None
    address: Text400 | None = None
    id_number: CitizenId | None = None
    passport_number: Text20 | None = None
    email: Email | None = None
    phone: Text20 | None = None

    @classmethod
    def from_dossier(cls, dossier: PayerFacts) -> Buyer:
        return cls(
            name=dossier.payer_name,
            tax_code=dossier.payer_tax_code or None,
            address=dossier.payer_address or None,
            email=dossier.payer_email or None,
            phone=dossier.payer_phone or None,
            id_number=dossier.payer_id_number or None,
            passport_number=dossier.payer_passport_number or None,
        )


class FeeLine(_Frozen):
    """DSLPhi/LPhi: a state fee or charge (phí, lệ phí), outside VAT."""

    name: Text100
    amount: Money


class ServiceLine(_Frozen):
    """DSHHDVu/HHDVu: a goods or service line, e.g. a copying charge not subject to VAT (KCT)."""

    line_no: Annotated[int, Strict(), Field(ge=1, le=9999)]
    name: Text500
    unit: Text50 | None = None
    quantity: Quantity
    unit_price: Money
    amount: Money
    vat_code: VatCode = "KCT"

    @model_validator(mode="after")
    def _amount_is_quantity_times_price(self) -> ServiceLine:
        # Half away from zero, like the tax (format.py); a line amount in whole đồng.
        expected = _round(self.quantity * self.unit_price)
        if self.amount != expected:
            raise ValueError(f"amount {self.amount} is not quantity x unit price ({expected})")
        return self


class Related(_Frozen):
    """TTHDLQuan: the original document a replacement or an adjustment corrects."""

    kind: CorrectionKind
    template: Template
    series: Series
    number: Number
    issue_date: date
    note: Text255


def _known_version(version: str) -> str:
    return profile_for(version).version


def _profile_default(data: dict[str, Any], table: Literal["titles", "templates"]) -> str:
    profile, kind = PROFILES.get(str(data.get("format_version"))), data.get("kind")
    if profile is None or kind is None:
        return ""  # an earlier field failed; its error is the one reported
    return str(getattr(profile, table)[kind])


class Document(_Frozen):
    """HDon/DLHDon: one e-receipt or sales invoice. Title and template default to the format profile's."""

    kind: DocumentKind
    format_version: Annotated[str, AfterValidator(_known_version)] = CURRENT.version
    title: Text100 = Field(default_factory=lambda data: _profile_default(data, "titles"))
    template: Template = Field(default_factory=lambda data: _profile_default(data, "templates"))
    series: Series
    number: Number
    issue_date: date
    dossier_code: Text20 | None = None  # the agency's code, in TTChung/TTKhac
    tax_dossier_code: Text20 | None = None  # MHSo: only a code the tax authority assigned to the dossier
    currency: Literal["VND"] = "VND"
    payment_method: Text50
    provider_tax_code: TaxCode
    seller: Seller
    buyer: Buyer
    fee_lines: tuple[FeeLine, ...] = ()
    service_lines: tuple[ServiceLine, ...] = ()
    related: Related | None = None
    document_id: DocumentId

    @property
    def profile(self) -> FormatProfile:
        return profile_for(self.format_version)

    @property
    def is_adjustment(self) -> bool:
        return self.related is not None and self.related.kind is CorrectionKind.adjustment

    @property
    def tax_groups(self) -> tuple[TaxGroup, ...]:
        """One group per VAT code, in order of first appearance so that the XML is deterministic."""
        amounts: dict[str, int] = {}
        for line in self.service_lines:
            amounts[line.vat_code] = amounts.get(line.vat_code, 0) + line.amount
        return tuple(
            TaxGroup(code, amount, _round(amount * _vat_rate(code) / 100, self.profile.tax_rounding))
            for code, amount in amounts.items()
        )

    @computed_field  # type: ignore[prop-decorator]
    @property
    def total_before_tax(self) -> int:
        return sum(line.amount for line in self.service_lines)

    @computed_field  # type: ignore[prop-decorator]
    @property
    def total_tax(self) -> int:
        return sum(group.tax for group in self.tax_groups)

    @computed_field  # type: ignore[prop-decorator]
    @property
    def total_fees(self) -> int:
        return sum(line.amount for line in self.fee_lines)

    @computed_field  # type: ignore[prop-decorator]
    @property
    def total_payable(self) -> int:
        fees = self.total_fees if self.profile.fees_in_payable else 0
        return self.total_before_tax + self.total_tax + fees

    @computed_field  # type: ignore[prop-decorator]
    @property
    def total_in_words(self) -> str:
        words = amount_in_words(abs(self.total_payable))
        if self.total_payable >= 0:
            return words
        return f"{self.profile.negative_words_prefix} {words[0].lower()}{words[1:]}"

    @model_validator(mode="after")
    def _consistent(self) -> Document:
        _check_series_year(self.series, self.issue_date)
        _check_line_numbers(self.service_lines)
        if not self.is_adjustment:
            _check_not_negative(self)
            if not self.fee_lines and not self.service_lines:
                raise ValueError("a document needs at least one fee or service line")
        if self.related is not None and self.related.issue_date > self.issue_date:
            raise ValueError("the original document cannot be issued after its correction")
        totals = (self.total_before_tax, self.total_tax, self.total_fees, self.total_payable)
        if any(abs(total) > MAX_AMOUNT for total in totals):
            raise ValueError(f"totals must stay within {MAX_AMOUNT} VND")
        return self


def _check_series_year(series: str, issue_date: date) -> None:
    # Characters 2-3 of KHHDon are the issue year (domain.md 3.3); a January document in last year's series is wrong.
    if series[1:3] != f"{issue_date.year % 100:02d}":
        raise ValueError(f"series {series} does not carry the issue year {issue_date.year}")


def _check_line_numbers(lines: tuple[ServiceLine, ...]) -> None:
    numbers = [line.line_no for line in lines]
    if numbers != list(range(1, len(lines) + 1)):
        raise ValueError(f"service line numbers must be 1..{len(lines)} in order, not {numbers}")


def _check_not_negative(doc: Document) -> None:
    # Signed amounts exist only to express a decrease in an adjustment (domain.md 3.5).
    amounts = [line.amount for line in doc.fee_lines]
    amounts += [value for line in doc.service_lines for value in (line.amount, line.unit_price)]
    quantities = [line.quantity for line in doc.service_lines]
    if any(value < 0 for value in amounts) or any(value < 0 for value in quantities):
        raise ValueError("negative amounts are allowed only in an adjustment document")


def _vat_rate(code: str) -> Decimal:
    """Percent; zero for codes that carry no VAT (KCT not subject, KKKNT not declared)."""
    if code in {"KCT", "KKKNT"}:
        return Decimal(0)
    return Decimal(code.removeprefix("KHAC:").removesuffix("%"))


def _round(value: Decimal, rounding: str = ROUND_HALF_UP) -> int:
    return int(value.quantize(Decimal(1), rounding=rounding))


def lines_from_dossier(lines: Iterable[LineFacts]) -> tuple[tuple[FeeLine, ...], tuple[ServiceLine, ...]]:
    """Split a dossier's computed fee lines: phí and lệ phí go to DSLPhi, service charges become KCT lines."""
    ordered = sorted(lines, key=lambda line: line.position)
    unknown = {line.kind for line in ordered} - set(FeeKind)
    if unknown:
        raise ValueError(f"unknown fee line kind {sorted(unknown)}")
    fees = tuple(FeeLine(name=line.name, amount=line.amount) for line in ordered if line.kind != FeeKind.service)
    services = (line for line in ordered if line.kind == FeeKind.service)
    return fees, tuple(
        ServiceLine(
            line_no=index,
            name=line.name,
            quantity=Decimal(line.quantity),
            unit_price=line.unit_amount,
            amount=line.amount,
            vat_code="KCT",
        )
        for index, line in enumerate(services, start=1)
    )
