"""Uniform statement lines, the one error every parser raises, and the helpers the parsers share.

Every parser turns one source (a bank statement, a gateway settlement file, Stripe's balance history) into
``StatementLine`` objects, one at a time: no parser reads a whole file into memory, so a file of a million lines
costs what one line costs. A problem in the file raises ``StatementError`` naming the line where the entry starts.

Money is ``int`` VND. VND has no minor unit: ``150000.00`` is read as 150000, but ``150000.50`` (a fraction of a
đồng) is an error, as is any currency other than VND: a line is never converted.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from enum import StrEnum
from pathlib import Path
from typing import IO, TypeAlias

# Business days are Vietnamese days: a payment at 23:30 UTC belongs to the next day in Hà Nội.
GMT7 = timezone(timedelta(hours=7), "ICT")
CURRENCY = "VND"
# Far beyond any fee, yet inside a signed 64-bit column: longer digit runs are garbage, not money.
MAX_DIGITS = 18

Source: TypeAlias = Path | str | IO[bytes]
"""A path, or a binary file object open for reading (an upload, a BytesIO); file objects are never closed here."""


class LineKind(StrEnum):
    payment = "payment"
    refund = "refund"
    fee = "fee"
    payout = "payout"
    credit = "credit"  # money in on a bank account (a transfer from a payer)
    debit = "debit"  # money out of a bank account
    other = "other"


class StatementFormat(StrEnum):
    mt940 = "mt940"
    camt053 = "camt053"
    bank_csv = "bank_csv"
    vnpay_csv = "vnpay_csv"
    momo_csv = "momo_csv"
    zalopay_csv = "zalopay_csv"
    stripe_api = "stripe_api"


class StatementError(ValueError):
    """A source that cannot be read as the format says; ``line`` is 1-based, or None when no line applies."""

    def __init__(self, message: str, line: int | None = None) -> None:
        super().__init__(message, line)  # both in args, so the error pickles (workers, multiprocessing)
        self.message = message
        self.line = line

    def __str__(self) -> str:
        return self.message if self.line is None else f"line {self.line}: {self.message}"


@dataclass(frozen=True, slots=True, kw_only=True)
class StatementLine:
    """One entry of a statement or settlement file.

    ``amount`` is signed (money in positive, refunds, payouts and debits negative); ``fee`` is what the gateway
    kept, as the file states it. ``booked_on`` is the business day in GMT+7. ``reference`` is our payment or
    gateway reference as the source gives it: for bank lines, the transfer memo exactly as printed.
    ``external_id`` is the source's own id of the entry, unique within that source.
    """

    source_line: int
    external_id: str
    kind: LineKind
    amount: int
    fee: int = 0
    currency: str = CURRENCY
    booked_on: date
    value_on: date | None = None
    reference: str = ""
    counterparty: str | None = None
    description: str = ""


# A line as a plain tuple, in ``StatementLine``'s field order: what a bulk import reads, a million times over,
# without one object per line beyond the tuple itself. Every parser's rules produce it; ``line_of`` makes the object.
LineFields: TypeAlias = tuple[int, str, LineKind, int, int, str, date, date | None, str, str | None, str]


def line_of(fields: LineFields) -> StatementLine:
    n, external_id, kind, amount, fee, currency, booked_on, value_on, reference, counterparty, description = fields
    return StatementLine(
        source_line=n,
        external_id=external_id,
        kind=kind,
        amount=amount,
        fee=fee,
        currency=currency,
        booked_on=booked_on,
        value_on=value_on,
        reference=reference,
        counterparty=counterparty,
        description=description,
    )


def fields_of(line: StatementLine) -> LineFields:
    return (
        line.source_line,
        line.external_id,
        line.kind,
        line.amount,
        line.fee,
        line.currency,
        line.booked_on,
        line.value_on,
        line.reference,
        line.counterparty,
        line.description,
    )


# --- sources -------------------------------------------------------------------------------------------------------
@contextmanager
def open_source(source: Source) -> Iterator[IO[bytes]]:
    """The source as a binary file: paths are opened (and closed afterwards), file objects are passed through."""
    if isinstance(source, str | Path):
        with Path(source).open("rb") as fh:
            yield fh
    else:
        yield source


def is_blank(fh: IO[bytes], probe: int = 65536) -> bool:
    """True for an empty or whitespace-only source; the position is put back, so parsing starts from the top.

    A source that cannot seek is never called blank: the parser then reads it and decides by itself.
    """
    if not fh.seekable():
        return False
    start = fh.tell()
    head = fh.read(probe)
    blank = not head.removeprefix(b"\xef\xbb\xbf").strip() and len(head) < probe
    fh.seek(start)
    return blank


def file_sha256(path: Path | str) -> str:
    """Hex SHA-256 of a file's bytes, read in chunks: the key that stops the same file being imported twice."""
    with Path(path).open("rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()


# --- values --------------------------------------------------------------------------------------------------------
_DIGITS = re.compile(r"[0-9]+")


def parse_amount(
    text: str,
    line: int | None,
    what: str = "amount",
    *,
    column: str | None = None,
    decimal: str = ".",
    thousands: str = "",
    max_fraction_digits: int | None = None,
) -> int:
    """Whole VND from a printed amount: optional sign, optional thousands separators in groups of three, optional
    decimal part that must be zero. ``max_fraction_digits`` catches swapped separators: read with ``,`` as the
    decimal separator, ``150,000`` would otherwise silently be 150 đồng."""
    value = text.strip()
    if value.isdigit() and value.isascii() and len(value) <= MAX_DIGITS:
        return int(value)  # the common case, kept cheap: a million lines go through here
    body = value[1:] if value[:1] in "+-" else value
    whole, _, fraction = body.partition(decimal) if decimal else (body, "", "")
    if thousands and thousands in whole:
        groups = whole.split(thousands)
        if not (1 <= len(groups[0]) <= 3 and all(len(g) == 3 for g in groups[1:])):
            raise _value_error(what, text, column, f"has misplaced thousands separators {thousands!r}", line)
        whole = "".join(groups)
    # An empty fraction is allowed: "150000," is how MT940 writes a whole amount.
    if not _DIGITS.fullmatch(whole) or len(whole) > MAX_DIGITS or (fraction and not _DIGITS.fullmatch(fraction)):
        raise _value_error(what, text, column, "is not a number", line)
    if max_fraction_digits is not None and len(fraction) > max_fraction_digits:
        problem = (
            f"has {len(fraction)} digits after the decimal separator {decimal!r}: "
            "check the decimal and thousands separators of the mapping"
        )
        raise _value_error(what, text, column, problem, line)
    if fraction.strip("0"):
        raise _value_error(what, text, column, "has a fraction of a đồng (VND has no minor unit)", line)
    amount = int(whole)
    return -amount if value[:1] == "-" else amount


def check_currency(code: str, line: int | None, column: str | None = None) -> str:
    """``VND``, or a StatementError: lines in other currencies are refused, never converted."""
    if code.strip().upper() not in ("VND", "VNĐ"):
        raise _value_error("currency", code, column, "is not VND: only VND lines are accepted", line)
    return CURRENCY


def _value_error(what: str, text: str, column: str | None, problem: str, line: int | None) -> StatementError:
    """``amount '1,5' in column 'Số tiền' is not a number``: the value as printed, and where it was."""
    where = "" if column is None else f" in column {column!r}"
    return StatementError(f"{what} {text!r}{where} {problem}", line)


def local_date(moment: datetime) -> date:
    """The GMT+7 business day of a timestamp; a naive timestamp is taken as already in GMT+7."""
    return moment.date() if moment.tzinfo is None else moment.astimezone(GMT7).date()
