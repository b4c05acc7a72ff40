"""The fee schedule as a spreadsheet (XLSX or CSV): its layout, reading an upload and writing an export.

One row per fee line, under a header row naming the columns (any order; see docs/fee-schedule.md). Reading checks
everything before anything is stored, and names the row and column of each fault; a file that is not a spreadsheet,
is too large or has too many rows is refused as a whole."""

from __future__ import annotations

import csv
import io
import re
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from openpyxl import Workbook, load_workbook  # type: ignore[import-untyped]
from pydantic import ValidationError

from payments.agency.models import FeeKind
from payments.agency.schedule import MAX_AMOUNT, FeeLineIn, FeeSchedule, ProcedureIn

MAX_BYTES = 2 * 1024 * 1024
MAX_ROWS = 5_000
MAX_FAULTS = 20
MAX_CELL = 500

COLUMNS = (
    "procedure_code",
    "procedure_name",
    "fee_code",
    "fee_kind",
    "fee_name",
    "legal_basis",
    "unit_amount",
    "unit",
    "default_quantity",
    "max_quantity",
)
REQUIRED = ("procedure_code", "procedure_name", "fee_code", "fee_kind", "fee_name", "unit_amount")
CODE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,39}")
# A cell a spreadsheet program would run: refused on the way in, so that an export never carries one either.
FORMULA_START = ("=", "+", "-", "@")
# XLSX is a zip holding these parts.
XLSX_PARTS = ("[Content_Types].xml", "xl/workbook.xml")

EXAMPLE = (
    "2.000488",
    "Cấp Phiếu lý lịch tư pháp cho công dân Việt Nam",
    "LE_PHI_LLTP",
    "phi",
    "Phí cung cấp thông tin lý lịch tư pháp",
    "Thông tư 244/2016/TT-BTC",
    200000,
    "phiếu",
    1,
    1,
)


@dataclass(frozen=True)
class Fault:
    """What is wrong, where: ``row`` 0 is the file as a whole; ``code`` is a key of the fees texts."""

    row: int
    column: str
    code: str
    value: str = ""


class SheetRefused(Exception):
    def __init__(self, faults: list[Fault]) -> None:
        super().__init__(faults)
        self.faults = faults


@dataclass(frozen=True)
class Sheet:
    schedule: FeeSchedule
    rows: int


def read_sheet(name: str, data: bytes) -> Sheet:
    """The schedule in an uploaded file, or SheetRefused with the faults found."""
    if len(data) > MAX_BYTES:
        raise SheetRefused([Fault(0, "", "fees_fault_too_big")])
    if data.startswith(b"PK\x03\x04"):
        rows = _xlsx_rows(data)
    elif name.lower().endswith((".xlsx", ".xlsm", ".xls", ".ods", ".zip")) or b"\x00" in data[:4096]:
        raise SheetRefused([Fault(0, "", "fees_fault_not_sheet")])
    else:
        rows = _csv_rows(data)
    return _schedule(rows)


def _xlsx_rows(data: bytes) -> Iterator[list[Any]]:
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            names = set(archive.namelist())
            # A zip bomb's parts claim far more than the upload could honestly hold.
            if sum(i.file_size for i in archive.infolist()) > 50 * MAX_BYTES:
                raise SheetRefused([Fault(0, "", "fees_fault_too_big")])
        if not all(part in names for part in XLSX_PARTS):
            raise SheetRefused([Fault(0, "", "fees_fault_not_sheet")])
        book = load_workbook(io.BytesIO(data), read_only=True, data_only=False)
    except SheetRefused:
        raise
    except Exception as exc:  # a damaged zip or workbook: openpyxl's errors have no common base class
        raise SheetRefused([Fault(0, "", "fees_fault_not_sheet")]) from exc
    try:
        sheet = book.worksheets[0]
        for cells in sheet.iter_rows():
            row = []
            for cell in cells:
                if getattr(cell, "data_type", None) == "f":
                    row.append(_Formula())
                else:
                    row.append(cell.value)
            yield row
    finally:
        book.close()


class _Formula:
    """A formula cell of an XLSX file, refused wherever it is."""


def _csv_rows(data: bytes) -> Iterator[list[Any]]:
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise SheetRefused([Fault(0, "", "fees_fault_encoding")]) from exc
    try:
        yield from csv.reader(io.StringIO(text, newline=""), strict=True)
    except csv.Error as exc:
        raise SheetRefused([Fault(0, "", "fees_fault_not_sheet")]) from exc


def _cell_text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value).strip()


def _schedule(rows: Iterator[list[Any]]) -> Sheet:
    faults: list[Fault] = []
    header: dict[str, int] | None = None
    procedures: dict[str, dict[str, Any]] = {}
    count = 0
    for number, raw in enumerate(rows, start=1):
        if header is None:
            if not any(_cell_text(v) for v in raw if not isinstance(v, _Formula)):
                continue  # blank lines above the header
            header = _header(raw, number)
            continue
        if not any(isinstance(v, _Formula) or _cell_text(v) for v in raw):
            continue
        count += 1
        if count > MAX_ROWS:
            raise SheetRefused([Fault(0, "", "fees_fault_too_many_rows")])
        _row(raw, number, header, procedures, faults)
        if len(faults) >= MAX_FAULTS:
            break
    if header is None or count == 0:
        raise SheetRefused(faults or [Fault(0, "", "fees_fault_empty")])
    if faults:
        raise SheetRefused(faults)
    try:
        schedule = FeeSchedule(
            procedures=[
                ProcedureIn(code=code, name=p["name"], fees=list(p["fees"].values())) for code, p in procedures.items()
            ]
        )
    except ValidationError as exc:  # too many procedures, or fee lines in one procedure
        raise SheetRefused([Fault(0, "", "fees_fault_too_many_rows")]) from exc
    return Sheet(schedule, count)


def _header(raw: list[Any], number: int) -> dict[str, int]:
    names = [_cell_text(v).lower() if not isinstance(v, _Formula) else "=" for v in raw]
    faults = [Fault(number, name, "fees_fault_unknown_column") for name in names if name and name not in COLUMNS]
    faults += [Fault(number, name, "fees_fault_column_twice") for name in set(names) if name and names.count(name) > 1]
    faults += [Fault(number, name, "fees_fault_missing_column") for name in REQUIRED if name not in names]
    if faults:
        raise SheetRefused(faults)
    return {name: index for index, name in enumerate(names) if name}


def _row(
    raw: list[Any], number: int, header: dict[str, int], procedures: dict[str, dict[str, Any]], faults: list[Fault]
) -> None:
    found: list[Fault] = []
    values = _texts(raw, number, header, found)
    numbers = _numbers(values, number, found) if not found else {}
    if not found:
        _codes(values, number, found)
    if not found:
        line = _line(values, numbers, number, procedures, found)
        if line is not None:
            procedures[values["procedure_code"]]["fees"][line.code] = line
    faults.extend(found)


def _texts(raw: list[Any], number: int, header: dict[str, int], faults: list[Fault]) -> dict[str, str]:
    values: dict[str, str] = {}
    for name, index in header.items():
        value = raw[index] if index < len(raw) else None
        if isinstance(value, _Formula):
            faults.append(Fault(number, name, "fees_fault_formula"))
            continue
        text = _cell_text(value)
        if text.startswith(FORMULA_START) and not (name in _NUMBERS and re.fullmatch(r"-[0-9]+", text)):
            faults.append(Fault(number, name, "fees_fault_formula", text[:40]))
        elif len(text) > MAX_CELL or any(ord(c) < 32 or ord(c) == 127 for c in text):
            faults.append(Fault(number, name, "fees_fault_text", text[:40]))
        values[name] = text
    faults.extend(Fault(number, name, "fees_fault_required") for name in REQUIRED if not values.get(name))
    return values


def _numbers(values: dict[str, str], number: int, faults: list[Fault]) -> dict[str, int]:
    numbers: dict[str, int] = {}
    for name in _NUMBERS:
        text = values.get(name, "")
        if not text and name != "unit_amount":
            numbers[name] = 1
        elif re.fullmatch(r"[0-9]{1,13}", text) and (name == "unit_amount" or int(text) <= 10_000):
            numbers[name] = int(text)
        else:
            code = "fees_fault_negative" if text.startswith("-") else f"fees_fault_{name}"
            faults.append(Fault(number, name, code, text[:40]))
    if numbers.get("unit_amount") == 0 or numbers.get("unit_amount", 0) > MAX_AMOUNT:
        faults.append(Fault(number, "unit_amount", "fees_fault_unit_amount", values["unit_amount"]))
    return numbers


def _codes(values: dict[str, str], number: int, faults: list[Fault]) -> None:
    for name in ("procedure_code", "fee_code"):
        if not CODE.fullmatch(values[name]):
            faults.append(Fault(number, name, "fees_fault_code", values[name][:40]))
    if values["fee_kind"] not in {k.value for k in FeeKind}:
        faults.append(Fault(number, "fee_kind", "fees_fault_kind", values["fee_kind"][:40]))


def _line(
    values: dict[str, str],
    numbers: dict[str, int],
    number: int,
    procedures: dict[str, dict[str, Any]],
    faults: list[Fault],
) -> FeeLineIn | None:
    procedure = procedures.setdefault(values["procedure_code"], {"name": values["procedure_name"], "fees": {}})
    if procedure["name"] != values["procedure_name"]:
        faults.append(Fault(number, "procedure_name", "fees_fault_procedure_name", values["procedure_name"][:40]))
        return None
    if values["fee_code"] in procedure["fees"]:
        faults.append(Fault(number, "fee_code", "fees_fault_duplicate", values["fee_code"]))
        return None
    try:
        return FeeLineIn(
            code=values["fee_code"],
            kind=FeeKind(values["fee_kind"]),
            name=values["fee_name"],
            amount=numbers["unit_amount"],
            default_quantity=numbers["default_quantity"],
            max_quantity=numbers["max_quantity"],
            legal_basis=values.get("legal_basis", ""),
            unit=values.get("unit", "")[:100],
        )
    except ValidationError:
        faults.append(Fault(number, "max_quantity", "fees_fault_quantities", values.get("max_quantity", "")))
        return None


_NUMBERS = ("unit_amount", "default_quantity", "max_quantity")


def schedule_rows(schedule: FeeSchedule) -> list[tuple[Any, ...]]:
    return [
        (
            *(p.code, p.name, f.code, f.kind.value, f.name, f.legal_basis),
            *(f.amount, f.unit, f.default_quantity, f.max_quantity),
        )
        for p in schedule.procedures
        for f in p.fees
    ]


def to_csv(rows: list[tuple[Any, ...]]) -> bytes:
    out = io.StringIO(newline="")
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(COLUMNS)
    writer.writerows(rows)
    # With a BOM, so that Excel opens the Vietnamese text as UTF-8.
    return ("\ufeff" + out.getvalue()).encode("utf-8")


def to_xlsx(rows: list[tuple[Any, ...]]) -> bytes:
    book = Workbook()
    sheet = book.active
    assert sheet is not None
    sheet.title = "fees"
    for r, row in enumerate([COLUMNS, *rows], start=1):
        for c, value in enumerate(row, start=1):
            cell = sheet.cell(row=r, column=c)
            cell.value = value
            if not isinstance(value, int):
                # Never let openpyxl decide from the first character that a text is a formula.
                cell.data_type = "s"
    out = io.BytesIO()
    book.save(out)
    return out.getvalue()
