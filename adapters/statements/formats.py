"""Reading a statement file by its format: the one place that knows every parser."""

from __future__ import annotations

from collections.abc import Iterator

from adapters.statements import camt053, csvfile, gateway_files, mt940
from adapters.statements.base import LineFields, Source, StatementFormat, StatementLine, fields_of
from adapters.statements.csvfile import ColumnMapping


def parse_file(path: Source, fmt: StatementFormat, mapping: ColumnMapping | None = None) -> Iterator[StatementLine]:
    """The lines of a file in the given format. ``mapping`` is required for ``bank_csv`` and replaces the default
    column layout for ``vnpay_csv``, ``momo_csv`` and ``zalopay_csv``; the other formats ignore it."""
    if fmt is StatementFormat.mt940:
        return mt940.parse_mt940(path)
    if fmt is StatementFormat.camt053:
        return camt053.parse_camt053(path)
    if fmt is StatementFormat.bank_csv:
        if mapping is None:
            raise ValueError("a bank CSV file needs a column mapping")
        return csvfile.parse_csv(path, mapping)
    if fmt in gateway_files.DEFAULT_MAPPINGS:
        return csvfile.parse_csv(path, mapping or gateway_files.DEFAULT_MAPPINGS[fmt])
    raise ValueError(f"{fmt} is not a file format: read it with adapters.statements.stripe_balance")


def parse_file_fields(path: Source, fmt: StatementFormat, mapping: ColumnMapping | None = None) -> Iterator[LineFields]:
    """``parse_file``'s lines as tuples, for a bulk import: the CSV formats build no line object at all."""
    if fmt is StatementFormat.bank_csv and mapping is not None:
        return csvfile.parse_csv_fields(path, mapping)
    if fmt in gateway_files.DEFAULT_MAPPINGS:
        return csvfile.parse_csv_fields(path, mapping or gateway_files.DEFAULT_MAPPINGS[fmt])
    return map(fields_of, parse_file(path, fmt, mapping))
