"""API shapes of dossiers. Clients send who pays and for which procedure; the server computes what is owed."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, EmailStr, Field, StrictInt

from payments.core.schemas import StrictModel
from payments.dossier.models import DossierStatus

CODE_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._/-]{0,19}$"
# The payer's identity documents (domain notes section 6): the citizen ID (CCCD) is 12 digits; a passport number is
# taken as printed, 1 to 20 capital letters and digits (SHChieu holds 20) [S].
ID_NUMBER_PATTERN = r"^[0-9]{12}$"
PASSPORT_PATTERN = r"^[A-Z0-9]{1,20}$"


class PayerIn(StrictModel):
    name: str = Field(min_length=1, max_length=400, examples=["Nguyễn Văn An"])
    email: EmailStr | None = Field(default=None, max_length=254)
    phone: str | None = Field(default=None, pattern=r"^\+?[0-9 ]{6,20}$", examples=["0912345678"])
    tax_code: str | None = Field(default=None, pattern=r"^[0-9]{10}(-[0-9]{3})?$")
    address: str | None = Field(default=None, max_length=400)
    id_number: str | None = Field(
        default=None,
        pattern=ID_NUMBER_PATTERN,
        examples=["001099012345"],
        description="Citizen ID (CCCD), 12 digits; only where the receipt requires it (NMua/CCCDan). Stored sealed.",
    )
    passport_number: str | None = Field(
        default=None,
        pattern=PASSPORT_PATTERN,
        examples=["C1234567"],
        description="Passport number, capital letters and digits (NMua/SHChieu). Stored sealed.",
    )


class FeeItemIn(StrictModel):
    fee_code: str = Field(min_length=1, max_length=40, examples=["BAN_SAO"])
    quantity: StrictInt = Field(ge=0, le=1000, examples=[2])


class DossierIn(StrictModel):
    code: str = Field(pattern=CODE_PATTERN, examples=["HS-2026-000123"])
    procedure_code: str = Field(min_length=1, max_length=40, examples=["2.000488"])
    payer: PayerIn
    items: list[FeeItemIn] = Field(
        default_factory=list, max_length=50, description="Quantities for fee lines charged per copy or page."
    )


class FeeLineOut(BaseModel):
    fee_code: str
    kind: str
    name: str
    unit_amount: int
    quantity: int
    amount: int


class DossierOut(BaseModel):
    code: str
    agency_code: str
    procedure_code: str
    procedure_name: str
    payer_name: str
    status: DossierStatus
    total_amount: int = Field(description="Total owed in whole VND, computed from the fee schedule.")
    currency: str = "VND"
    fee_lines: list[FeeLineOut]
    pay_url: str = Field(description="The payer's page for this dossier; share it only with the payer.")
    pay_secret: str = Field(
        description="Print it on the one-stop receipt: with the dossier code it opens the payer's page at /tra-cuu "
        "(derived from the pay link's token, so as secret as pay_url)."
    )
    created_at: datetime
    updated_at: datetime
    paid_at: datetime | None
