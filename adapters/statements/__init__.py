"""Reconciliation sources as uniform lines: bank statements (MT940, camt.053, bank CSV), gateway settlement files
(VNPay, MoMo, ZaloPay) and Stripe's balance history. See ``docs/statements.md``."""

from adapters.statements.base import (
    LineKind,
    StatementError,
    StatementFormat,
    StatementLine,
    file_sha256,
)
from adapters.statements.camt053 import parse_camt053
from adapters.statements.csvfile import ColumnMapping, parse_csv
from adapters.statements.formats import parse_file
from adapters.statements.gateway_files import MOMO_MAPPING, VNPAY_MAPPING, ZALOPAY_MAPPING, load_mapping
from adapters.statements.mt940 import parse_mt940
from adapters.statements.stripe_balance import stripe_balance_lines

__all__ = [
    "MOMO_MAPPING",
    "VNPAY_MAPPING",
    "ZALOPAY_MAPPING",
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
]
