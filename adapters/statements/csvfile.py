"""CSV exports (a bank's, a gateway's) read through a column mapping, one row at a time.

A ``ColumnMapping`` names the columns that carry each field, how dates and amounts are printed, and the file's
dialect. Header names are compared after Unicode NFC normalisation, trimming and case folding, so "Số tiền",
" SỐ TIỀN " and a decomposed "Số tiền" (as some macOS tools write it) are the same column. A mapped column the
header lacks is an error at the header's line, before any row is read.

Amounts are signed in one column (``amount``), or split into ``credit`` and ``debit`` columns (a debit is made
negative). Kinds named in ``negative_kinds`` are printed without a sign (a refund shown as 150,000) and made
negative. Without a ``kind`` column, a line is a ``credit`` or a ``debit`` by its sign (or its column), unless
``default_kind`` says otherwise.

Dates are read with ``date_format`` (``strptime`` directives), or ``unix`` / ``unix_ms`` for epoch seconds or
milliseconds; the business day is taken in GMT+7 (a printed date without an offset is already local).
"""

from __future__ import annotations

import codecs
import csv
import dataclasses
import io
import re
import unicodedata
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta, timezone
from typing import IO, Any

from adapters.statements.base import (
    CURRENCY,
    GMT7,
    LineFields,
    LineKind,
    Source,
    StatementError,
    StatementLine,
    check_currency,
    line_of,
    local_date,
    open_source,
    parse_amount,
)

# Two digits at most after the decimal separator: a third means the separators are swapped ("150,000" read with
# "," as the decimal separator), which would otherwise make 150 đồng out of 150 thousand.
MAX_FRACTION_DIGITS = 2
EPOCH_FORMATS = ("unix", "unix_ms")


@dataclass(frozen=True, slots=True, kw_only=True)
class ColumnMapping:
    """Which column holds what, and how the file is printed. Column names are as in the header row."""

    external_id: str
    date: str
    date_format: str = "%Y-%m-%d"
    value_date: str | None = None
    amount: str | None = None
    credit: str | None = None
    debit: str | None = None
    fee: str | None = None
    reference: str | None = None
    counterparty: str | None = None
    description: str | None = None
    kind: str | None = None
    kind_values: Mapping[str, LineKind] = field(default_factory=dict)
    default_kind: LineKind | None = None
    negative_kinds: frozenset[LineKind] = frozenset()
    currency: str | None = None
    decimal_separator: str = "."
    thousands_separator: str = ""
    delimiter: str = ","
    quotechar: str = '"'
    encoding: str = "utf-8-sig"
    skip_rows: int = 0
    footer_rows: int = 0

    def __post_init__(self) -> None:
        # Coerced here so a mapping built in Python with plain strings works like one loaded from TOML. A plain
        # dict, not a read-only proxy: the mapping must pickle, to reach an import worker.
        object.__setattr__(self, "kind_values", {str(k): LineKind(v) for k, v in self.kind_values.items()})
        object.__setattr__(self, "negative_kinds", frozenset(LineKind(k) for k in self.negative_kinds))
        if self.default_kind is not None:
            object.__setattr__(self, "default_kind", LineKind(self.default_kind))
        texts = [*self.columns().values(), self.date_format, self.delimiter, self.quotechar, self.encoding]
        if not all(t is None or isinstance(t, str) for t in texts) or self.external_id is None or self.date is None:
            raise ValueError("column names, date_format, delimiter, quotechar and encoding are strings")
        if type(self.skip_rows) is not int or type(self.footer_rows) is not int:
            raise ValueError("'skip_rows' and 'footer_rows' are whole numbers")
        if (self.amount is None) == (self.credit is None and self.debit is None):
            raise ValueError("a column mapping needs either 'amount' or both 'credit' and 'debit'")
        if (self.credit is None) != (self.debit is None):
            raise ValueError("'credit' and 'debit' columns go together")
        if len(self.delimiter) != 1 or len(self.quotechar) != 1:
            raise ValueError("'delimiter' and 'quotechar' must be one character each")
        if len(self.decimal_separator) != 1 or len(self.thousands_separator) > 1:
            raise ValueError("'decimal_separator' must be one character, 'thousands_separator' one or none")
        if self.decimal_separator == self.thousands_separator:
            raise ValueError("the decimal and thousands separators must differ")
        if self.skip_rows < 0 or self.footer_rows < 0:
            raise ValueError("'skip_rows' and 'footer_rows' cannot be negative")
        if not self.date_format:
            raise ValueError("'date_format' is empty")
        codecs.lookup(self.encoding)  # an unknown encoding fails now, not on the first import
        names = [n for n in self.columns().values() if n is not None]
        duplicates = {_normal(n) for n in names if sum(_normal(m) == _normal(n) for m in names) > 1}
        if duplicates:
            raise ValueError(f"one column cannot hold two fields: {sorted(duplicates)}")

    def columns(self) -> dict[str, str | None]:
        """Field name -> column name, in the order a writer puts them."""
        keys = (
            *("external_id", "date", "value_date", "kind", "amount", "credit", "debit", "fee", "currency"),
            *("reference", "counterparty", "description"),
        )
        return {k: getattr(self, k) for k in keys}

    @classmethod
    def from_dict(cls, table: Mapping[str, Any], base: ColumnMapping | None = None) -> ColumnMapping:
        """A mapping from a TOML table: the field names above as keys; ``kind_values`` a table of printed value ->
        kind; ``negative_kinds`` a list of kinds. Keys not given keep ``base``'s values. Unknown keys are errors
        (a typo would otherwise silently leave the default in place)."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(table) - known
        if unknown:
            raise ValueError(f"unknown column mapping keys: {sorted(unknown)}")
        values = dict(table)
        if base is None:
            return cls(**values)
        if "amount" in values:  # switching a signed-amount base to credit/debit columns, or back
            values.setdefault("credit", None)
            values.setdefault("debit", None)
        elif "credit" in values or "debit" in values:
            values.setdefault("amount", None)
        return dataclasses.replace(base, **values)


# --- reading -------------------------------------------------------------------------------------------------------
def parse_csv(source: Source, mapping: ColumnMapping) -> Iterator[StatementLine]:
    """The lines of a CSV export, in file order. An empty file (or one with a header and no rows) has no lines."""
    return map(line_of, parse_csv_fields(source, mapping))


def parse_csv_fields(source: Source, mapping: ColumnMapping) -> Iterator[LineFields]:
    """``parse_csv``'s lines as tuples (``LineFields``), read by the same rules: the bulk import's path."""
    with open_source(source) as raw:
        text = io.TextIOWrapper(raw, encoding=mapping.encoding, newline="")
        try:
            yield from _read(text, mapping)
        except UnicodeDecodeError:
            line = _undecodable_line(raw, mapping.encoding)
            raise StatementError(f"the file is not valid {mapping.encoding} text", line) from None
        finally:
            text.detach()  # the caller's file object stays open


def _read(text: IO[str], mapping: ColumnMapping) -> Iterator[LineFields]:
    reader = csv.reader(text, delimiter=mapping.delimiter, quotechar=mapping.quotechar, strict=True)
    records = _records(reader)
    for _ in range(mapping.skip_rows):
        if next(records, None) is None:
            return
    header = next((r for r in records if any(map(str.strip, r[1]))), None)
    if header is None:
        return
    convert = _RowReader(mapping, header[1], header[0])
    rows = (r for r in records if any(map(str.strip, r[1])))
    for n, row in _without_footer(rows, mapping.footer_rows) if mapping.footer_rows else rows:
        yield convert(row, n)


def _records(reader: Any) -> Iterator[tuple[int, list[str]]]:
    """(line where the record starts, fields): a quoted field can span lines, so a record can too."""
    end = 0
    try:
        for row in reader:
            yield end + 1, row
            end = reader.line_num
    except csv.Error as exc:
        raise StatementError(f"malformed CSV: {exc}", end + 1) from None


def _without_footer(rows: Iterable[tuple[int, list[str]]], footer: int) -> Iterator[tuple[int, list[str]]]:
    if not footer:
        yield from rows
        return
    held: deque[tuple[int, list[str]]] = deque()
    for item in rows:
        held.append(item)
        if len(held) > footer:
            yield held.popleft()


def _undecodable_line(raw: IO[bytes], encoding: str) -> int | None:
    """The line of the first byte the encoding cannot decode, found by reading the file again (error path only)."""
    if not raw.seekable():
        return None
    raw.seek(0)
    decoder = codecs.getincrementaldecoder(encoding)()
    line = 1
    for chunk in raw:
        try:
            line += decoder.decode(chunk).count("\n")
        except UnicodeDecodeError:
            return line
    return None


def _normal(name: str) -> str:
    return unicodedata.normalize("NFC", name).replace("\ufeff", "").strip().casefold()


class _RowReader:
    """Turns one row into a line's fields, with every column position worked out once from the header."""

    def __init__(self, mapping: ColumnMapping, header: list[str], line: int) -> None:
        positions: dict[str, int] = {}
        for i, name in enumerate(header):
            positions.setdefault(_normal(name), i)
        self.m = mapping
        self.at: dict[str, int] = {}
        for field_name, column in mapping.columns().items():
            if column is None:
                continue
            if _normal(column) not in positions:
                found = ", ".join(repr(h.strip()) for h in header if h.strip())
                raise StatementError(f"column {column!r} ({field_name}) is not in the header; found {found}", line)
            self.at[field_name] = positions[_normal(column)]
        self.width = max(self.at.values()) + 1
        self.kinds = {_normal(k): v for k, v in mapping.kind_values.items()}
        self.kinds.update({k.value: k for k in LineKind if k.value not in self.kinds})
        self.read_date = date_reader(mapping.date_format)
        at = self.at
        self.i_external_id, self.i_date = at["external_id"], at["date"]
        self.i_amount, self.i_kind, self.i_fee = at.get("amount"), at.get("kind"), at.get("fee")
        self.i_currency, self.i_value_date = at.get("currency"), at.get("value_date")
        self.i_reference, self.i_counterparty = at.get("reference"), at.get("counterparty")
        self.i_description = at.get("description")
        # Printed text -> value, for values whose reading depends on nothing but the text and the mapping.
        self.numbers: dict[str, int] = {}
        self.days: dict[str, date] = {}
        self.kind_of: dict[str, LineKind] = {}

    def __call__(self, row: list[str], n: int) -> LineFields:
        # The hot path of a million-row import. Amounts, kinds and dates repeat from row to row (fees come from
        # schedules), so each printed value is read once and then looked up by its exact text; whatever is not
        # cached goes through the same checks, in the same order, as before.
        if len(row) < self.width:
            raise StatementError(f"the row has {len(row)} fields, the mapping needs {self.width}", n)
        external_id = row[self.i_external_id].strip()
        if not external_id:
            raise StatementError(f"column {self.m.external_id!r} (external_id) is empty", n)
        if self.i_amount is None:
            amount, side = self._amount(row, n)
        else:
            amount = self._cached_number(row, n, "amount", self.i_amount)
            side = LineKind.debit if amount < 0 else LineKind.credit
        if self.i_kind is None:
            kind = self.m.default_kind or side
        else:
            kind = self.kind_of.get(row[self.i_kind]) or self._read_kind(row, n, side)
        if kind in self.m.negative_kinds:
            amount = -abs(amount)
        fee = 0
        if self.i_fee is not None and (self.numbers.get(row[self.i_fee]) or row[self.i_fee].strip()):
            fee = self._cached_number(row, n, "fee", self.i_fee)
        currency = CURRENCY if self.i_currency is None else self._currency(row, n)
        booked_on = self._cached_date(row, n, "date", self.i_date)
        value_on = None
        if self.i_value_date is not None and row[self.i_value_date].strip():
            value_on = self._cached_date(row, n, "value_date", self.i_value_date)
        i_reference, i_counterparty, i_description = self.i_reference, self.i_counterparty, self.i_description
        return (
            n,
            external_id,
            kind,
            amount,
            fee,
            currency,
            booked_on,
            value_on,
            "" if i_reference is None else row[i_reference].strip(),
            None if i_counterparty is None else (row[i_counterparty].strip() or None),
            "" if i_description is None else row[i_description].strip(),
        )

    def _cached_number(self, row: list[str], n: int, field_name: str, i: int) -> int:
        printed = row[i]
        value = self.numbers.get(printed)
        if value is None:
            value = self._number(row, n, field_name)
            _remember(self.numbers, printed, value)
        return value

    def _cached_date(self, row: list[str], n: int, field_name: str, i: int) -> date:
        printed = row[i]
        value = self.days.get(printed)
        if value is None:
            value = self._date(row, n, field_name)
            _remember(self.days, printed, value)
        return value

    def _read_kind(self, row: list[str], n: int, side: LineKind) -> LineKind:
        kind = self._kind(row, n, side)
        _remember(self.kind_of, row[self.i_kind or 0], kind)
        return kind

    def _currency(self, row: list[str], n: int) -> str:
        return check_currency(row[self.at["currency"]].strip() or CURRENCY, n, self.m.currency)

    def _number(self, row: list[str], n: int, field_name: str) -> int:
        m = self.m
        return parse_amount(
            row[self.at[field_name]],
            n,
            "fee" if field_name == "fee" else "amount",
            column=getattr(m, field_name),
            decimal=m.decimal_separator,
            thousands=m.thousands_separator,
            max_fraction_digits=MAX_FRACTION_DIGITS,
        )

    def _amount(self, row: list[str], n: int) -> tuple[int, LineKind]:
        """(signed amount, the side it was printed on: credit or debit)."""
        if "amount" in self.at:
            amount = self._number(row, n, "amount")
            return amount, LineKind.debit if amount < 0 else LineKind.credit
        credit, debit = row[self.at["credit"]].strip(), row[self.at["debit"]].strip()
        if not credit and not debit:
            raise StatementError(f"neither {self.m.credit!r} nor {self.m.debit!r} has an amount", n)
        money_in = self._number(row, n, "credit") if credit else 0
        money_out = abs(self._number(row, n, "debit")) if debit else 0
        if money_in and money_out:
            raise StatementError(f"both {self.m.credit!r} and {self.m.debit!r} have an amount", n)
        if money_out or (debit and not credit):
            return -money_out, LineKind.debit
        return money_in, LineKind.credit

    def _kind(self, row: list[str], n: int, side: LineKind) -> LineKind:
        if "kind" not in self.at:
            return self.m.default_kind or side
        printed = row[self.at["kind"]]
        kind = self.kinds.get(_normal(printed))
        if kind is None:
            if not printed.strip() and self.m.default_kind is not None:
                return self.m.default_kind
            known = ", ".join(repr(k) for k in self.m.kind_values) or ", ".join(k.value for k in LineKind)
            raise StatementError(f"kind {printed!r} in column {self.m.kind!r} is not one of {known}", n)
        return kind

    def _date(self, row: list[str], n: int, field_name: str) -> date:
        printed = row[self.at[field_name]]
        try:
            return self.read_date(printed.strip())
        except (ValueError, OverflowError):
            column = getattr(self.m, field_name)
            raise StatementError(
                f"date {printed!r} in column {column!r} is not a date in the format {self.m.date_format!r}", n
            ) from None


def _remember(cache: dict[str, Any], printed: str, value: Any) -> None:
    if len(cache) >= _CACHE_LIMIT:
        cache.clear()
    cache[printed] = value


# --- dates ---------------------------------------------------------------------------------------------------------
_DIRECTIVES = {
    "d": r"(?P<d>[0-9]{1,2})",
    "m": r"(?P<m>[0-9]{1,2})",
    "Y": r"(?P<Y>[0-9]{4})",
    "y": r"(?P<y>[0-9]{2})",
    "H": r"(?P<H>[0-9]{1,2})",
    "M": r"(?P<M>[0-9]{1,2})",
    "S": r"(?P<S>[0-9]{1,2})",
    "f": r"[0-9]{1,6}",
    "z": r"(?P<z>Z|[+-][0-9]{2}:?[0-9]{2}(?::?[0-9]{2})?)",
    "%": "%",
}
_CACHE_LIMIT = 4096


def date_reader(fmt: str) -> Callable[[str], date]:
    """A function from printed text to the GMT+7 business day, ValueError when the text does not fit ``fmt``.

    Common ``strptime`` directives are compiled into one regular expression (``strptime`` itself costs several
    microseconds a call, too much for a million rows); anything else falls back to ``strptime``.
    """
    if fmt in EPOCH_FORMATS:
        scale = 1000 if fmt == "unix_ms" else 1
        return _cached(lambda text: _epoch_day(_epoch(text) // scale))
    pattern = _compile(fmt)
    if pattern is None:
        return _cached(lambda text: local_date(datetime.strptime(text, fmt)))
    return _cached(lambda text: _regex_date(pattern, text))


def _epoch_day(seconds: int) -> date:
    try:
        return datetime.fromtimestamp(seconds, GMT7).date()
    except (OverflowError, OSError) as exc:  # beyond what the platform's time functions take
        raise ValueError(f"{seconds} seconds is not a time") from exc


def _epoch(text: str) -> int:
    if not (text.isdigit() and text.isascii()):
        raise ValueError(text)
    return int(text)


def _cached(read: Callable[[str], date]) -> Callable[[str], date]:
    # Files carry few distinct days: a small cache turns most rows into one dict lookup.
    seen: dict[str, date] = {}

    def cached(text: str) -> date:
        found = seen.get(text)
        if found is None:
            if len(seen) >= _CACHE_LIMIT:
                seen.clear()
            found = seen[text] = read(text)
        return found

    return cached


def _compile(fmt: str) -> re.Pattern[str] | None:
    parts: list[str] = []
    i = 0
    while i < len(fmt):
        char = fmt[i]
        if char != "%":
            parts.append(r"\s+" if char.isspace() else re.escape(char))
            i += 1
            continue
        directive = fmt[i + 1 : i + 2]
        if directive not in _DIRECTIVES:
            return None
        parts.append(_DIRECTIVES[directive])
        i += 2
    try:
        pattern = re.compile("".join(parts))
    except re.error:  # a directive used twice
        return None
    has_day = {"d", "m"} <= set(pattern.groupindex) and ({"Y", "y"} & set(pattern.groupindex))
    return pattern if has_day else None


def _regex_date(pattern: re.Pattern[str], text: str) -> date:
    match = pattern.fullmatch(text)
    if match is None:
        raise ValueError(text)
    found = match.groupdict()
    year = int(found["Y"]) if found.get("Y") else _century(int(found["y"]))
    hour, minute, second = (int(found.get(k) or 0) for k in ("H", "M", "S"))
    if hour > 23 or minute > 59 or second > 61:
        raise ValueError(text)
    day = date(year, int(found["m"]), int(found["d"]))
    offset = found.get("z")
    if not offset:
        return day
    return local_date(datetime.combine(day, time(hour, minute, min(second, 59)), _zone(offset)))


def _century(year: int) -> int:
    return year + (1900 if year >= 69 else 2000)  # strptime's %y rule


def _zone(offset: str) -> timezone:
    if offset == "Z":
        return UTC
    digits = offset[1:].replace(":", "")
    delta = timedelta(hours=int(digits[:2]), minutes=int(digits[2:4]), seconds=int(digits[4:6] or 0))
    return timezone(-delta if offset[0] == "-" else delta)
