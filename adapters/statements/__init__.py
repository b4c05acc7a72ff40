"""Reconciliation sources as uniform lines: bank statements (MT940, camt.053, bank CSV), gateway settlement files
(VNPay, MoMo) and Stripe's balance history; and writers of the same file formats. See ``docs/statements.md``."""

from adapters.statements.base import (
    LineKind,
    StatementError,
    StatementFormat,
    StatementLine,
    file_sha256,
    parse_file,
)
from adapters.statements.camt053 import parse_camt053
from adapters.statements.csvfile import ColumnMapping, load_mapping, parse_csv
from adapters.statements.gateway_files import MOMO_MAPPING, VNPAY_MAPPING
from adapters.statements.mt940 import parse_mt940
from adapters.statements.stripe_balance import stripe_balance_lines
from adapters.statements.writers import (
    write_camt053,
    write_csv,
    write_file,
    write_momo_csv,
    write_mt940,
    write_vnpay_csv,
)

__all__ = [
    "MOMO_MAPPING",
    "VNPAY_MAPPING",
    "ColumnMapping",
    "LineKind",
    "StatementError",
    "StatementFormat",
    "StatementLine",
    "file_sha256",
    "load_mapping",
    "parse_camt053",
    "parse_csv",
    "parse_file",
    "parse_mt940",
    "stripe_balance_lines",
    "write_camt053",
    "write_csv",
    "write_file",
    "write_momo_csv",
    "write_mt940",
    "write_vnpay_csv",
]
