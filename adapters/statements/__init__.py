"""Reconciliation sources as uniform lines: bank statements (MT940, camt.053, bank CSV), gateway settlement files
(VNPay, MoMo, ZaloPay) and Stripe's balance history. See ``docs/statements.md``.

The names below are loaded on first use: the parsers bring lxml and more, and a command that only names a format
(``lephi reconcile --help``) should not pay for them.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from adapters.statements.base import (
        LineFields,
        LineKind,
        StatementError,
        StatementFormat,
        StatementLine,
        file_sha256,
    )
    from adapters.statements.camt053 import parse_camt053
    from adapters.statements.csvfile import ColumnMapping, parse_csv
    from adapters.statements.formats import parse_file, parse_file_fields
    from adapters.statements.gateway_files import MOMO_MAPPING, VNPAY_MAPPING, ZALOPAY_MAPPING, load_mapping
    from adapters.statements.mt940 import parse_mt940
    from adapters.statements.stripe_balance import stripe_balance_lines

_HOME = {
    "LineFields": "base",
    "LineKind": "base",
    "StatementError": "base",
    "StatementFormat": "base",
    "StatementLine": "base",
    "file_sha256": "base",
    "parse_camt053": "camt053",
    "ColumnMapping": "csvfile",
    "parse_csv": "csvfile",
    "parse_file": "formats",
    "parse_file_fields": "formats",
    "MOMO_MAPPING": "gateway_files",
    "ZALOPAY_MAPPING": "gateway_files",
    "VNPAY_MAPPING": "gateway_files",
    "load_mapping": "gateway_files",
    "parse_mt940": "mt940",
    "stripe_balance_lines": "stripe_balance",
}


def __getattr__(name: str) -> Any:
    home = _HOME.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{home}"), name)


__all__ = [
    "MOMO_MAPPING",
    "VNPAY_MAPPING",
    "ZALOPAY_MAPPING",
    "ColumnMapping",
    "LineFields",
    "LineKind",
    "StatementError",
    "StatementFormat",
    "StatementLine",
    "file_sha256",
    "load_mapping",
    "parse_camt053",
    "parse_csv",
    "parse_file",
    "parse_file_fields",
    "parse_mt940",
    "stripe_balance_lines",
]
