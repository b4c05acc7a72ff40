"""An agency's fee schedule as a file (TOML or JSON): its procedures, each with its fee lines.

```toml
[[procedures]]
code = "2.000488"
name = "Cấp Phiếu lý lịch tư pháp cho công dân Việt Nam"

[[procedures.fees]]
code = "LE_PHI_LLTP"
kind = "phi"                # le_phi, phi or service
name = "Phí cung cấp thông tin lý lịch tư pháp"
amount = 200000             # whole VND per unit
default_quantity = 1        # optional, 1
max_quantity = 1            # optional, 1
legal_basis = "Thông tư ..." # optional
unit = "phiếu"              # optional
```
"""

from __future__ import annotations

import json
import tomllib
from pathlib import Path
from typing import Annotated, Any

from pydantic import Field, StrictInt, ValidationError, model_validator

from payments.agency.models import FeeKind
from payments.core.errors import ValidationFailed
from payments.core.schemas import StrictModel

# The largest dossier total the service accepts; no single line may exceed it.
MAX_AMOUNT = 999_999_999_999
Code = Annotated[str, Field(min_length=1, max_length=40, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$")]


class FeeLineIn(StrictModel):
    code: Code
    kind: FeeKind
    name: str = Field(min_length=1, max_length=500)
    # Strict: 200000.5, "200000" or true are refused rather than rounded or converted.
    amount: StrictInt = Field(gt=0, le=MAX_AMOUNT)
    default_quantity: StrictInt = Field(default=1, ge=0, le=10_000)
    max_quantity: StrictInt = Field(default=1, ge=1, le=10_000)
    legal_basis: str = Field(default="", max_length=500)
    unit: str = Field(default="", max_length=100)

    @model_validator(mode="after")
    def _quantities(self) -> FeeLineIn:
        if self.default_quantity > self.max_quantity:
            raise ValueError(f"default_quantity {self.default_quantity} exceeds max_quantity {self.max_quantity}")
        if self.amount * self.max_quantity > MAX_AMOUNT:
            raise ValueError(f"amount × max_quantity exceeds {MAX_AMOUNT:,} VND")
        return self


class ProcedureIn(StrictModel):
    code: Code
    name: str = Field(min_length=1, max_length=500)
    fees: list[FeeLineIn] = Field(min_length=1, max_length=100)

    @model_validator(mode="after")
    def _unique_fees(self) -> ProcedureIn:
        _refuse_duplicates([f.code for f in self.fees], "fee code")
        return self


class FeeSchedule(StrictModel):
    procedures: list[ProcedureIn] = Field(min_length=1, max_length=1000)

    @model_validator(mode="after")
    def _unique_procedures(self) -> FeeSchedule:
        _refuse_duplicates([p.code for p in self.procedures], "procedure code")
        return self


def _refuse_duplicates(codes: list[str], what: str) -> None:
    seen: set[str] = set()
    for code in codes:
        if code in seen:
            raise ValueError(f"{what} {code!r} appears twice")
        seen.add(code)


def load_fee_schedule(path: Path) -> FeeSchedule:
    """The schedule in ``path`` (``.toml`` or ``.json``), or ValidationFailed naming the first faults."""
    return parse_fee_schedule(_read(path), path.name)


def parse_fee_schedule(raw: Any, source: str = "the fee schedule") -> FeeSchedule:
    try:
        return FeeSchedule.model_validate(raw)
    except ValidationError as exc:
        faults = "; ".join(_fault(e) for e in exc.errors()[:5])
        raise ValidationFailed(f"{source}: {faults}") from exc


def _read(path: Path) -> Any:
    suffix = path.suffix.lower()
    if suffix not in (".toml", ".json"):
        raise ValidationFailed(f"{path.name}: a fee schedule is a .toml or .json file")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ValidationFailed(f"{path}: cannot read the fee schedule ({exc.__class__.__name__})") from exc
    try:
        return tomllib.loads(text) if suffix == ".toml" else json.loads(text)
    except (tomllib.TOMLDecodeError, json.JSONDecodeError) as exc:
        raise ValidationFailed(f"{path.name}: not valid {suffix[1:].upper()}: {exc}") from exc


def _fault(error: Any) -> str:
    where = ".".join(str(part) for part in error["loc"]) or "the file"
    message = str(error["msg"]).removeprefix("Value error, ")
    if error["type"] in ("int_type", "greater_than", "less_than_equal") and error["loc"][-1:] == ("amount",):
        message = f"an amount is a whole positive number of VND up to {MAX_AMOUNT:,} ({message})"
    return f"{where}: {message}"
