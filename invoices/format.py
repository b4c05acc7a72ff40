"""The format facts that are not settled: one place to change them when the tax authority publishes more.

Everything here is marked [S] (secondary source) or [I] (inference) in docs/domain.md, section 3:

- the template digit (`KHMSHDon`) per document kind [S]: 2 for a sales invoice, 5 ("other": tickets, receipts)
  for the fee receipt;
- the fee receipt's layout [V that it is not public]: this project issues it on the invoice's HDon structure with
  its own title and template, a provisional layout until an official one appears;
- the fee arithmetic [I]: state fees and charges (`DSLPhi/LPhi`) sit outside the VAT totals and are added into the
  total payable (`TgTTTBSo`);
- fee lines in the goods list [I]: each fee or charge is also an `HHDVu` of nature 4 (a descriptive line, never
  summed), so that a reader of `DSHHDVu` sees every line and a fee-only receipt has no empty list; its amount counts
  once, through `DSLPhi`;
- the buyer's element order [S]: `SDThoai`, `DCTDTu`, `HVTNMHang` before `CCCDan`, `SHChieu` (the XSD enforces it);
- the dossier code [I]: `MHSo` is the code the tax authority assigns to a dossier, so it is written only when one
  was assigned; the agency's own dossier code goes in `TTChung/TTKhac/TTin` under the field name `DOSSIER_FIELD`;
- how a negative total of an adjustment is read in words [I]: "Âm " before the amount in words;
- tax rounding [I]: VAT per rate group (`LTSuat`), rounded half away from zero to a whole đồng.

A new format version is a new `FormatProfile` in `PROFILES` plus its XSD in `invoices/schema/`.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import ROUND_HALF_UP
from enum import StrEnum
from types import MappingProxyType
from typing import Final


class DocumentKind(StrEnum):
    receipt = "receipt"
    sales_invoice = "sales_invoice"


@dataclass(frozen=True)
class FormatProfile:
    version: str
    titles: MappingProxyType[DocumentKind, str]
    templates: MappingProxyType[DocumentKind, str]
    xsd: str
    # Added into TgTTTBSo: the reading of the tag table, not a published rule.
    fees_in_payable: bool = True
    negative_words_prefix: str = "Âm"
    # LHDCLQuan of the original in a correction: 1 = an e-invoice under Decree 123, the only kind this service issues.
    related_invoice_type: int = 1
    # THHDVu/TChat: 1 = goods or service; promotions and discounts are not issued here.
    line_nature: int = 1
    # TChat of the descriptive HHDVu that repeats a fee line of DSLPhi: 4 = note, not summed.
    fee_line_nature: int = 4
    # Decimal rounding mode for VAT per rate group.
    tax_rounding: str = ROUND_HALF_UP


PROFILE_2_1_0: Final = FormatProfile(
    version="2.1.0",
    titles=MappingProxyType(
        {
            DocumentKind.receipt: "BIÊN LAI THU PHÍ, LỆ PHÍ",
            DocumentKind.sales_invoice: "HÓA ĐƠN BÁN HÀNG",
        }
    ),
    templates=MappingProxyType({DocumentKind.receipt: "5", DocumentKind.sales_invoice: "2"}),
    xsd="hdon-2.1.0.xsd",
)

# TTin/TTruong under which the agency's dossier code is carried in TTChung/TTKhac.
DOSSIER_FIELD: Final = "Mã hồ sơ"

PROFILES: Final = MappingProxyType({PROFILE_2_1_0.version: PROFILE_2_1_0})
CURRENT: Final = PROFILE_2_1_0


def profile_for(version: str) -> FormatProfile:
    try:
        return PROFILES[version]
    except KeyError:
        raise ValueError(f"unknown format version {version!r}; known: {', '.join(PROFILES)}") from None
