"""MT940 customer statements, read line by line.

A file holds one or more statements, with or without SWIFT blocks (``{1:...}{2:...}{4:`` ... ``-}``). A statement
runs from ``:20:`` to ``-`` / ``-}``, or to the next ``:20:`` or the end of the file. Each ``:61:`` (with the
``:86:`` that follows it) becomes one ``StatementLine``, yielded as soon as the next tag starts. A bank can put a
whole day in one statement, so statements are never held in memory either.

The field grammar is the ``mt940`` package's (its ``:61:`` and balance patterns). ``mt940.parse`` itself is not
used: it needs the whole text in memory and reads about 37,000 entries a second, where this reader needs one line
at a time and is several times faster.

Mapping of one entry:

- ``amount``: the ``:61:`` amount, positive for ``C`` (credit) and ``RD`` (reversal of a debit), negative for ``D``
  and ``RC``; ``kind`` is ``credit`` or ``debit`` accordingly. ``currency`` comes from the statement's ``:60F:``.
- ``booked_on``: the entry date (MMDD, its year taken from the value date); the value date when there is none.
  ``value_on``: the value date.
- ``external_id``: the bank reference (after ``//``); when absent, ``{:20: reference}/{:28C: number}/{n}``, n being
  the entry's position in its statement.
- ``reference``: the ``:86:`` text, continuation lines joined as they are (SWIFT cuts lines at 65 characters, so a
  payment reference cut in two is whole again); without ``:86:``, the customer reference unless it is ``NONREF``.
- ``description``: the ``:61:`` supplementary details (its second line).

Checks: the transaction type code (``NTRF``, ``NMSC``...) is required, as SWIFT says; every statement needs its
opening balance (``:60F:``/``:60M:``) before its first entry and a closing balance (``:62F:``/``:62M:``) equal to
the opening plus the entries, which a file cut short fails. Errors can therefore come after earlier lines were
yielded: import a file in one transaction.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date

from mt940 import tags as mt940_tags

from adapters.statements.base import (
    LineKind,
    Source,
    StatementError,
    StatementLine,
    check_currency,
    open_source,
    parse_amount,
)

_STATEMENT_LINE = re.compile(mt940_tags.Statement.pattern, mt940_tags.Tag.RE_FLAGS)
_BALANCE = re.compile(mt940_tags.BalanceBase.pattern, mt940_tags.Tag.RE_FLAGS)
_TAG = re.compile(r":([0-9]{2}[A-Z]?|NS):")
# {1:..}{2:..}{3:{108:..}} before {4:, and {5:..} trailers; block 3 nests one level of braces.
_ENVELOPE = re.compile(r"(?:\{[1-35]:(?:[^{}]|\{[^{}]*\})*\})*(?:\{4:)?")
# Outside statements some banks print the sender's BIC and the message type ("940") on lines of their own.
_HEADER_WORD = re.compile(r"[A-Za-z0-9$]{1,12}")
_SIGN = {"C": 1, "RD": 1, "D": -1, "RC": -1}
_OPENING = frozenset({"60F", "60M", "60"})
_CLOSING = frozenset({"62F", "62M", "62"})
_HALF_YEAR_DAYS = 183


@dataclass(slots=True)
class _Statement:
    reference: str
    start: int
    number: str = ""
    currency: str | None = None
    opening: int = 0
    balance: int = 0
    entries: int = 0
    closed: bool = False

    def describe(self) -> str:
        return f"statement {self.reference!r} (opened at line {self.start})"


@dataclass(slots=True)
class _Entry:
    line: int
    parts: list[str]
    details: list[str] | None = None


@dataclass(slots=True)
class _Reader:
    statement: _Statement | None = None
    entry: _Entry | None = None
    target: list[str] | None = field(default=None)  # where continuation lines of the current tag go

    def feed(self, n: int, text: str) -> StatementLine | None:
        """Take one line; answer the entry it completed, if any."""
        if self.statement is None:
            self._outside(n, text)
            return None
        if text[:1] == ":":
            match = _TAG.match(text)
            if match:
                return self._tag(n, match.group(1), text[match.end() :])
        elif text == "-" or text.startswith("-}"):
            done = self._finish_entry()
            self._close(n, at_end=False)
            return done
        if self.target is not None:
            self.target.append(text)
        return None

    def finish(self, n: int) -> StatementLine | None:
        if self.statement is None:
            return None
        done = self._finish_entry()
        self._close(n, at_end=True)
        return done

    def _outside(self, n: int, text: str) -> None:
        if text.startswith("{"):
            text = text[_ENVELOPE.match(text).end() :]  # type: ignore[union-attr]  # the pattern matches ""
        stripped = text.strip()
        if not stripped or stripped == "-" or stripped.startswith("-}") or _HEADER_WORD.fullmatch(stripped):
            return
        match = _TAG.match(text)
        if match is None or match.group(1) != "20":
            raise StatementError(f"expected ':20:' to start a statement, found {text[:40]!r}", n)
        self.statement = _Statement(text[match.end() :].strip(), n)
        self.target = None

    def _tag(self, n: int, tag: str, value: str) -> StatementLine | None:
        statement = self.statement
        assert statement is not None
        if tag == "86" and self.entry is not None and self.entry.details is None:
            self.entry.details = [value]
            self.target = self.entry.details
            return None
        done = self._finish_entry()  # any other tag ends the entry being read
        self.target = None
        if tag == "61":
            self.entry = _Entry(n, [value])
            self.target = self.entry.parts
        elif tag in _OPENING:
            statement.currency, statement.opening = _balance(n, tag, value)
            statement.balance = statement.opening
        elif tag in _CLOSING:
            self._check_closing(n, tag, value)
        elif tag in ("28C", "28"):
            statement.number = value.strip()
        elif tag == "20":
            self._close(n, at_end=False)
            self.statement = _Statement(value.strip(), n)
        return done

    def _check_closing(self, n: int, tag: str, value: str) -> None:
        statement = self.statement
        assert statement is not None
        if statement.currency is None:
            raise StatementError(f"{statement.describe()} has no opening balance :60F: before :{tag}:", n)
        _, closing = _balance(n, tag, value)  # a non-VND closing balance is refused inside
        if closing != statement.balance:
            raise StatementError(
                f"closing balance {closing} of {statement.describe()} is not its opening balance "
                f"{statement.opening} plus its entries ({statement.balance})",
                n,
            )
        statement.closed = True

    def _close(self, n: int, *, at_end: bool) -> None:
        statement = self.statement
        assert statement is not None
        if not statement.closed:
            where = "the file ends inside" if at_end else "end of"
            raise StatementError(f"{where} {statement.describe()} before its closing balance :62F:", n)
        self.statement = None
        self.target = None

    def _finish_entry(self) -> StatementLine | None:
        entry, statement = self.entry, self.statement
        if entry is None or statement is None:
            return None
        self.entry = None
        if statement.currency is None:
            raise StatementError(f"{statement.describe()} has no opening balance :60F: before this :61:", entry.line)
        statement.entries += 1
        line = _statement_line(entry, statement)
        statement.balance += line.amount
        return line


def parse_mt940(source: Source, *, encoding: str = "utf-8") -> Iterator[StatementLine]:
    """The entries of an MT940 file, in file order. ``encoding`` is the text encoding of the file (a leading
    byte-order mark is ignored)."""
    with open_source(source) as fh:
        reader = _Reader()
        n = 0
        for raw in fh:
            n += 1
            try:
                text = raw.decode(encoding)
            except UnicodeDecodeError:
                raise StatementError(f"the line is not valid {encoding} text", n) from None
            if n == 1:
                text = text.removeprefix("\ufeff")
            done = reader.feed(n, text.rstrip("\r\n"))
            if done is not None:
                yield done
        done = reader.finish(n)
        if done is not None:
            yield done


def _balance(n: int, tag: str, value: str) -> tuple[str, int]:
    """(currency, signed amount) of a :60F:/:62F:-style balance."""
    value = value.strip()
    match = _BALANCE.match(value)
    if match is None or match.end() != len(value) or not match.group("amount"):
        raise StatementError(f"malformed :{tag}: balance {value!r}", n)
    currency = check_currency(match.group("currency"), n)
    amount = parse_amount(match.group("amount"), n, f":{tag}: amount", decimal=",")
    return currency, -amount if match.group("status").upper() == "D" else amount


_GROUPS = ("status", "amount", "year", "month", "day", "entry_month", "entry_day")
_TEXT_GROUPS = ("customer_reference", "bank_reference", "extra_details")
# (value date, entry date) as printed -> (value_on, booked_on): a statement has few distinct days.
_DAYS: dict[str, tuple[date, date]] = {}
_DAYS_MAX = 4096


def _statement_line(entry: _Entry, statement: _Statement) -> StatementLine:
    n = entry.line
    value = "\n".join(entry.parts)
    match = _STATEMENT_LINE.match(value)
    # mt940's grammar leaves out the transaction type (e.g. NTRF) when it cannot match, which SWIFT makes
    # mandatory; insisting on it keeps "15O,00" (a letter O) from reading as 15 đồng and a customer reference.
    if match is None or not match.group("id"):
        raise StatementError(f"malformed :61: statement line {value[:80]!r}", n)
    status, amount_text, year, month, day, entry_month, entry_day = match.group(*_GROUPS)
    sign = _SIGN[status.upper()]
    amount = sign * parse_amount(amount_text, n, ":61: amount", decimal=",")
    value_on, booked_on = _days(n, year + month + day, (entry_month or "") + (entry_day or ""))
    customer, bank_reference, supplementary = (g.strip() if g else "" for g in match.group(*_TEXT_GROUPS))
    details = "".join(entry.details).strip() if entry.details is not None else ""
    return StatementLine(
        source_line=n,
        external_id=bank_reference or f"{statement.reference}/{statement.number}/{statement.entries}",
        kind=LineKind.credit if sign > 0 else LineKind.debit,
        amount=amount,
        currency=statement.currency or "",
        booked_on=booked_on,
        value_on=value_on,
        reference=details or ("" if customer.upper() == "NONREF" else customer),
        description=supplementary,
    )


def _days(n: int, value_date: str, entry_date: str) -> tuple[date, date]:
    """(value_on, booked_on) from YYMMDD and MMDD (blank when the entry date is not given)."""
    key = value_date + entry_date
    found = _DAYS.get(key)
    if found is None:
        value_on = _date(n, value_date[:2], value_date[2:4], value_date[4:])
        booked_on = value_on
        if entry_date.strip():
            if not (entry_date.isdigit() and entry_date.isascii()):
                raise StatementError(f"entry date {entry_date!r} is not a date (MMDD)", n)
            booked_on = _entry_date(n, value_on, int(entry_date[:2]), int(entry_date[2:]))
        found = (value_on, booked_on)
        if len(_DAYS) < _DAYS_MAX:
            _DAYS[key] = found
    return found


def _date(n: int, year: str, month: str, day: str) -> date:
    try:
        # The pattern's \d also matches other scripts' digits, which int() would accept.
        if not (year + month + day).isascii():
            raise ValueError
        return date(2000 + int(year), int(month), int(day))
    except ValueError:
        raise StatementError(f"value date {year}{month}{day} is not a date (YYMMDD)", n) from None


def _entry_date(n: int, value_on: date, month: int, day: int) -> date:
    """The entry date's year is not written: the one of the years around the value date closest to it."""
    best: date | None = None
    for year in (value_on.year, value_on.year - 1, value_on.year + 1):
        try:
            candidate = date(year, month, day)
        except ValueError:
            continue
        if abs((candidate - value_on).days) <= _HALF_YEAR_DAYS:
            return candidate
        if best is None or abs((candidate - value_on).days) < abs((best - value_on).days):
            best = candidate
    if best is None:
        raise StatementError(f"entry date {month:02d}{day:02d} is not a date (MMDD)", n)
    return best
