"""Writers of every file format the parsers read, streaming to an open text file (for test data, demos and the
benchmark's million-line files).

The contract: reading a written file gives back the same lines, ``source_line`` apart. A writer therefore raises
``ValueError`` rather than write a line its format cannot carry: another currency than VND, a fee or a counterparty
on a format without one, a kind that the format would read back differently (bank formats know only ``credit`` and
``debit``, signed accordingly), text with control characters or spaces at either end (readers trim), text over a
field's length limit.

Open the file with ``newline=""`` (``write_file`` does): MT940 lines end in CRLF as SWIFT wants, and the csv module
writes its own line ends. MT940 and camt.053 are written in UTF-8; a CSV file in the mapping's encoding.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Callable, Iterable, Iterator
from datetime import date, datetime, time
from pathlib import Path
from typing import IO, Literal
from xml.sax.saxutils import escape

from adapters.statements.base import CURRENCY, GMT7, LineKind, StatementFormat, StatementLine
from adapters.statements.csvfile import EPOCH_FORMATS, ColumnMapping, date_reader
from adapters.statements.gateway_files import DEFAULT_MAPPINGS, MOMO_MAPPING, VNPAY_MAPPING, ZALOPAY_MAPPING

_BAD_TEXT = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\ud800-\udfff\ufffe\uffff]")
# What a reader would take for a new tag or the end of the statement at the start of an MT940 line.
_MT940_LINE_START = re.compile(r":(?:[0-9]{2}[A-Z]?|NS):|-$|-\}")
_MT940_REF = re.compile(r"[!-~](?:[ -~]{0,14}[!-~])?")  # 16x, printable ASCII
MT940_WIDTH = 65
MT940_DETAILS_MAX = 6 * MT940_WIDTH
MT940_SUPPLEMENTARY_MAX = 34
MT940_BALANCE_DIGITS = 14  # 15d with the decimal comma
MT940_DAYS_APART_MAX = 180  # an entry date far from its value date would read back in the wrong year
CAMT_NAMESPACES = {
    "02": "urn:iso:std:iso:20022:tech:xsd:camt.053.001.02",
    "08": "urn:iso:std:iso:20022:tech:xsd:camt.053.001.08",
}
CAMT_USTRD_MAX = 140
CAMT_REF_MAX = 35
CAMT_NAME_MAX = 140
CAMT_INFO_MAX = 500


def _refuse(line: StatementLine, problem: str) -> ValueError:
    return ValueError(f"cannot write line {line.external_id!r}: {problem}")


def _text(line: StatementLine, name: str, value: str, limit: int | None = None) -> str:
    if _BAD_TEXT.search(value):
        raise _refuse(line, f"{name} contains control characters or line breaks")
    if value != value.strip():
        raise _refuse(line, f"{name} has spaces at either end (readers trim them)")
    if limit is not None and len(value) > limit:
        raise _refuse(line, f"{name} is longer than {limit} characters")
    return value


def _bank_line(line: StatementLine, fmt: str) -> None:
    """Bank statements carry credits and debits in VND, no fee."""
    if line.currency != CURRENCY:
        raise _refuse(line, f"{fmt} lines are in VND, not {line.currency!r}")
    if line.fee:
        raise _refuse(line, f"{fmt} has no fee field")
    if (line.kind is LineKind.credit and line.amount < 0) or (line.kind is LineKind.debit and line.amount > 0):
        raise _refuse(line, f"a {line.kind} of {line.amount} would read back with the other sign")
    if line.kind not in (LineKind.credit, LineKind.debit):
        raise _refuse(line, f"{fmt} lines are credits or debits, not {line.kind}")


# --- MT940 ---------------------------------------------------------------------------------------------------------
def write_mt940(
    lines: Iterable[StatementLine],
    out: IO[str],
    *,
    account: str = "970436/0011001234567",
    sender_bic: str = "BFTVVNVX",
    swift_blocks: bool = True,
    opening_balance: int = 0,
) -> int:
    """MT940 with one statement per booking day, balances chained from ``opening_balance``; each line needs its
    ``value_on``. Answers the number of lines written."""
    state = _Mt940State(out, account, sender_bic, swift_blocks, opening_balance)
    count = 0
    for line in lines:
        state.write(line)
        count += 1
    state.close()
    return count


class _Mt940State:
    def __init__(self, out: IO[str], account: str, bic: str, blocks: bool, balance: int) -> None:
        self.out, self.account, self.bic, self.blocks = out, account, bic, blocks
        self.balance = balance
        self.day: date | None = None
        self.statements = 0

    def write(self, line: StatementLine) -> None:
        entry = _mt940_entry(line)
        if line.booked_on != self.day:
            self.close()
            self.open(line.booked_on)
        self.balance += line.amount
        if abs(self.balance) >= 10**MT940_BALANCE_DIGITS:
            raise _refuse(line, f"the statement balance would not fit MT940's {MT940_BALANCE_DIGITS} digits")
        self.out.write(entry)

    def open(self, day: date) -> None:
        self.day = day
        self.statements += 1
        head = f"{{1:F01{self.bic}AXXX0000000000}}{{2:I940{self.bic}XXXXN}}{{4:\r\n" if self.blocks else ""
        self.out.write(
            f"{head}:20:LP{day:%y%m%d}{self.statements:06d}\r\n:25:{self.account}\r\n"
            f":28C:{self.statements}/1\r\n:60F:{_mt940_balance(self.balance, day)}\r\n"
        )

    def close(self) -> None:
        if self.day is None:
            return
        end = "-}" if self.blocks else "-"
        self.out.write(f":62F:{_mt940_balance(self.balance, self.day)}\r\n{end}\r\n")
        self.day = None


def _mt940_balance(balance: int, day: date) -> str:
    return f"{'D' if balance < 0 else 'C'}{day:%y%m%d}{CURRENCY}{abs(balance)},"


def _mt940_entry(line: StatementLine) -> str:
    _bank_line(line, "MT940")
    if line.counterparty is not None:
        raise _refuse(line, "MT940 has no counterparty field")
    value_on = line.value_on
    if value_on is None:
        raise _refuse(line, "an MT940 entry needs its value date (value_on)")
    if abs((line.booked_on - value_on).days) > MT940_DAYS_APART_MAX or not 2000 <= value_on.year <= 2099:
        raise _refuse(line, "MT940 writes a two-digit year and no year for the entry date")
    if not _MT940_REF.fullmatch(line.external_id):
        raise _refuse(line, "an MT940 bank reference is 1..16 printable ASCII characters")
    mark = "C" if line.kind is LineKind.credit else "D"
    text = f":61:{value_on:%y%m%d}{line.booked_on:%m%d}{mark}{abs(line.amount)},NTRFNONREF//{line.external_id}\r\n"
    description = _text(line, "description", line.description, MT940_SUPPLEMENTARY_MAX)
    if description:
        if _MT940_LINE_START.match(description):
            raise _refuse(line, "the description would read as an MT940 tag")
        text += description + "\r\n"
    reference = _text(line, "reference", line.reference, MT940_DETAILS_MAX)
    if reference:
        text += ":86:" + "\r\n".join(_mt940_wrap(line, reference)) + "\r\n"
    return text


def _mt940_wrap(line: StatementLine, text: str) -> list[str]:
    """Cut at 65 characters, moving a cut back where the next piece would start like a tag or an end marker."""
    pieces: list[str] = []
    while len(text) > MT940_WIDTH:
        cut = MT940_WIDTH
        while cut > 1 and _MT940_LINE_START.match(text, cut):
            cut -= 1
        if _MT940_LINE_START.match(text, cut):
            raise _refuse(line, "the reference cannot be cut into MT940 lines")
        pieces.append(text[:cut])
        text = text[cut:]
    pieces.append(text)
    return pieces


# --- camt.053 ------------------------------------------------------------------------------------------------------
def write_camt053(
    lines: Iterable[StatementLine],
    out: IO[str],
    *,
    account: str = "0011001234567",
    version: Literal["02", "08"] = "02",
    message_id: str = "LEPHI-CAMT053",
) -> int:
    """camt.053.001.02 (or .08) with one ``Stmt`` per booking day. Balances come before the entries in camt.053, so
    only the opening balance (``OPBD``: zero, then the previous day's total) is written: a closing balance would
    need the whole day in memory first."""
    it = iter(lines)
    first = next(it, None)
    created = f"{first.booked_on if first else date(2000, 1, 1)}T00:00:00+07:00"
    out.write(
        f'<?xml version="1.0" encoding="UTF-8"?>\n<Document xmlns="{CAMT_NAMESPACES[version]}">\n<BkToCstmrStmt>\n'
        f"<GrpHdr><MsgId>{escape(message_id)}</MsgId><CreDtTm>{created}</CreDtTm></GrpHdr>\n"
    )
    count, balance, day, statements = 0, 0, None, 0
    for line in _chain(first, it):
        entry = _camt_entry(line, version)
        if line.booked_on != day:
            if day is not None:
                out.write("</Stmt>\n")
            day, statements = line.booked_on, statements + 1
            out.write(_camt_statement_head(message_id, statements, account, balance, day, created))
        out.write(entry)
        balance += line.amount
        count += 1
    out.write(("</Stmt>\n" if day is not None else "") + "</BkToCstmrStmt>\n</Document>\n")
    return count


def _chain(first: StatementLine | None, rest: Iterator[StatementLine]) -> Iterator[StatementLine]:
    if first is not None:
        yield first
        yield from rest


def _camt_statement_head(message_id: str, n: int, account: str, balance: int, day: date, created: str) -> str:
    indicator = "DBIT" if balance < 0 else "CRDT"
    return (
        f"<Stmt><Id>{escape(message_id)}-{n}</Id><CreDtTm>{created}</CreDtTm>"
        f"<Acct><Id><Othr><Id>{escape(account)}</Id></Othr></Id><Ccy>{CURRENCY}</Ccy></Acct>\n"
        f'<Bal><Tp><CdOrPrtry><Cd>OPBD</Cd></CdOrPrtry></Tp><Amt Ccy="{CURRENCY}">{abs(balance)}</Amt>'
        f"<CdtDbtInd>{indicator}</CdtDbtInd><Dt><Dt>{day.isoformat()}</Dt></Dt></Bal>\n"
    )


def _camt_entry(line: StatementLine, version: str) -> str:
    _bank_line(line, "camt.053")
    credit = line.kind is LineKind.credit
    external_id = _text(line, "external_id", line.external_id, CAMT_REF_MAX)
    if not external_id:
        raise _refuse(line, "camt.053 needs an external_id (AcctSvcrRef)")
    status = "<Sts>BOOK</Sts>" if version == "02" else "<Sts><Cd>BOOK</Cd></Sts>"
    value = f"<ValDt><Dt>{line.value_on.isoformat()}</Dt></ValDt>" if line.value_on else ""
    family = "RCDT" if credit else "ICDT"
    text = (
        f'<Ntry><Amt Ccy="{CURRENCY}">{abs(line.amount)}</Amt><CdtDbtInd>{"CRDT" if credit else "DBIT"}</CdtDbtInd>'
        f"{status}<BookgDt><Dt>{line.booked_on.isoformat()}</Dt></BookgDt>{value}"
        f"<AcctSvcrRef>{escape(external_id)}</AcctSvcrRef>"
        f"<BkTxCd><Domn><Cd>PMNT</Cd><Fmly><Cd>{family}</Cd><SubFmlyCd>DMCT</SubFmlyCd></Fmly></Domn></BkTxCd>"
        f"{_camt_details(line, version, credit)}"
    )
    description = _text(line, "description", line.description, CAMT_INFO_MAX)
    if description:
        text += f"<AddtlNtryInf>{escape(description)}</AddtlNtryInf>"
    return text + "</Ntry>\n"


def _camt_details(line: StatementLine, version: str, credit: bool) -> str:
    parties = ""
    if line.counterparty is not None:
        name = _text(line, "counterparty", line.counterparty, CAMT_NAME_MAX)
        if not name:
            raise _refuse(line, "an empty counterparty reads back as None")
        role = "Dbtr" if credit else "Cdtr"
        party = f"<Nm>{escape(name)}</Nm>" if version == "02" else f"<Pty><Nm>{escape(name)}</Nm></Pty>"
        parties = f"<RltdPties><{role}>{party}</{role}></RltdPties>"
    reference = _text(line, "reference", line.reference)
    remittance = ""
    if reference:
        chunks = (reference[i : i + CAMT_USTRD_MAX] for i in range(0, len(reference), CAMT_USTRD_MAX))
        remittance = "<RmtInf>" + "".join(f"<Ustrd>{escape(c)}</Ustrd>" for c in chunks) + "</RmtInf>"
    if not parties and not remittance:
        return ""
    return f"<NtryDtls><TxDtls>{parties}{remittance}</TxDtls></NtryDtls>"


# --- CSV -----------------------------------------------------------------------------------------------------------
def write_csv(lines: Iterable[StatementLine], out: IO[str], mapping: ColumnMapping) -> int:
    """A CSV export laid out by ``mapping``: its ``skip_rows`` title rows, the header, the lines, and its
    ``footer_rows`` total rows."""
    writer = csv.writer(out, delimiter=mapping.delimiter, quotechar=mapping.quotechar, lineterminator="\r\n")
    for i in range(mapping.skip_rows):
        writer.writerow([f"Sao kê giao dịch ({i + 1})"])
    columns = [(name, column) for name, column in mapping.columns().items() if column is not None]
    writer.writerow([column for _, column in columns])
    row_of = _CsvRow(mapping, [name for name, _ in columns])
    count = total = 0
    for line in lines:
        writer.writerow(row_of(line))
        count += 1
        total += line.amount
    for i in range(mapping.footer_rows):
        writer.writerow(["Tổng cộng", str(count), str(total)] if i == 0 else [f"Ghi chú {i}"])
    return count


def write_vnpay_csv(lines: Iterable[StatementLine], out: IO[str]) -> int:
    return write_csv(lines, out, VNPAY_MAPPING)


def write_momo_csv(lines: Iterable[StatementLine], out: IO[str]) -> int:
    return write_csv(lines, out, MOMO_MAPPING)


def write_zalopay_csv(lines: Iterable[StatementLine], out: IO[str]) -> int:
    return write_csv(lines, out, ZALOPAY_MAPPING)


class _CsvRow:
    """Formats one line as a row, checking first that the mapping can carry everything in it."""

    def __init__(self, mapping: ColumnMapping, fields: list[str]) -> None:
        self.m = mapping
        self.fields = fields
        self.printed_kind: dict[LineKind, str] = {}
        for printed, kind in mapping.kind_values.items():
            self.printed_kind.setdefault(kind, printed)
        self.format_date = _date_writer(mapping.date_format)

    def __call__(self, line: StatementLine) -> list[str]:
        if line.currency != CURRENCY:
            raise _refuse(line, f"lines are in VND, not {line.currency!r}")
        values = {
            "external_id": _text(line, "external_id", line.external_id),
            "date": self.format_date(line, line.booked_on),
            "value_date": "" if line.value_on is None else self.format_date(line, line.value_on),
            "kind": self.printed_kind.get(line.kind, line.kind.value),
            "fee": self._number(line.fee),
            "currency": CURRENCY,
            "reference": _text(line, "reference", line.reference),
            "counterparty": _text(line, "counterparty", line.counterparty or ""),
            "description": _text(line, "description", line.description),
        }
        if not values["external_id"]:
            raise _refuse(line, "an empty external_id cannot be read back")
        self._check_absent(line)
        values.update(self._amount(line))
        return [values[name] for name in self.fields]

    def _check_absent(self, line: StatementLine) -> None:
        m = self.m
        absent = {
            "value_date": line.value_on is not None and m.value_date is None,
            "fee": line.fee != 0 and m.fee is None,
            "reference": bool(line.reference) and m.reference is None,
            "counterparty": line.counterparty is not None and (m.counterparty is None or not line.counterparty),
            "description": bool(line.description) and m.description is None,
        }
        for name, lost in absent.items():
            if lost:
                raise _refuse(line, f"the mapping has no column for {name} (or the value would read back changed)")

    def _amount(self, line: StatementLine) -> dict[str, str]:
        m, amount, kind = self.m, line.amount, line.kind
        if kind in m.negative_kinds:
            if amount > 0:
                raise _refuse(line, f"a {kind} is read back negative")
            printed = -amount
        else:
            printed = amount
        side = LineKind.debit if amount < 0 else LineKind.credit
        if m.kind is None:
            if m.default_kind is not None and kind is not m.default_kind:
                raise _refuse(line, f"without a kind column every line reads back as {m.default_kind}")
            if m.default_kind is None:
                if kind not in (LineKind.credit, LineKind.debit):
                    raise _refuse(line, f"without a kind column a line reads back as credit or debit, not {kind}")
                if (kind is LineKind.credit and amount < 0) or (kind is LineKind.debit and amount > 0):
                    raise _refuse(line, f"a {kind} of {amount} would read back with the other sign")
                if kind is LineKind.debit and amount == 0 and m.amount is not None:
                    raise _refuse(line, "a zero debit reads back as a credit from a signed amount column")
                side = kind
        if m.amount is not None:
            return {"amount": self._number(printed)}
        if side is LineKind.debit:
            return {"credit": "", "debit": self._number(abs(amount))}
        return {"credit": self._number(printed), "debit": ""}

    def _number(self, value: int) -> str:
        separator = self.m.thousands_separator
        if not separator:
            return str(value)
        return f"{value:,}".replace(",", separator)


def _date_writer(fmt: str) -> Callable[[StatementLine, date], str]:
    """Prints a day in ``fmt`` (checked once per day against the reader, so an unreadable format fails early)."""
    read = date_reader(fmt)
    seen: dict[date, str] = {}

    def write(line: StatementLine, day: date) -> str:
        printed = seen.get(day)
        if printed is None:
            midnight = datetime.combine(day, time(), GMT7)
            if fmt in EPOCH_FORMATS:
                seconds = int(midnight.timestamp())
                printed = str(seconds * 1000 if fmt == "unix_ms" else seconds)
            else:
                printed = midnight.strftime(fmt)
            try:
                if read(printed) != day:
                    raise ValueError(printed)
            except ValueError:
                raise _refuse(line, f"the date format {fmt!r} cannot carry {day.isoformat()}") from None
            seen[day] = printed
        return printed

    return write


# --- files ---------------------------------------------------------------------------------------------------------
def write_file(
    path: Path | str, fmt: StatementFormat, lines: Iterable[StatementLine], mapping: ColumnMapping | None = None
) -> int:
    """Write ``lines`` to ``path`` in ``fmt`` (``mapping`` as for ``parse_file``); answers the number written."""
    if fmt is StatementFormat.bank_csv and mapping is None:
        raise ValueError("a bank CSV file needs a column mapping")
    if fmt in (StatementFormat.bank_csv, *DEFAULT_MAPPINGS):
        chosen = mapping or DEFAULT_MAPPINGS[fmt]
        with Path(path).open("w", encoding=chosen.encoding, newline="") as out:
            return write_csv(lines, out, chosen)
    if fmt not in (StatementFormat.mt940, StatementFormat.camt053):
        raise ValueError(f"{fmt} is not a file format")
    with Path(path).open("w", encoding="utf-8", newline="") as out:
        if fmt is StatementFormat.mt940:
            return write_mt940(lines, out)
        return write_camt053(lines, out)
