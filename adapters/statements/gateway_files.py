"""Default column layouts of the VNPay, MoMo and ZaloPay settlement (reconciliation) CSV exports.

ASSUMPTIONS, NOT FACTS: neither gateway publishes the layout of its merchant-portal exports, and none was available
while this was written. The headers below are plausible guesses built from the gateways' own API field names
(``vnp_TransactionNo``, ``vnp_TxnRef``; ``transId``, ``orderId``, ``responseTime``). An operator whose real export
differs writes a mapping file (TOML) that ``extends`` the default and renames what differs; see
``docs/statements.md``. Nothing else in the code depends on these names: this module is the one place to change.

VNPay (``VNPAY_MAPPING``), UTF-8 with or without BOM, comma-separated, amounts like ``1,150,000``:

==================  ==============================  ==========================================================
column              field                           meaning
==================  ==============================  ==========================================================
Mã GD VNPAY         external_id                     ``vnp_TransactionNo``, VNPay's id of the transaction
Mã tham chiếu       reference                       ``vnp_TxnRef``, the merchant order reference (Lephi's
                                                    gateway reference)
Ngày GD             booked_on                       ``dd/mm/yyyy HH:MM:SS``, GMT+7
Loại GD             kind                            Thanh toán -> payment, Hoàn tiền (một phần) -> refund
Số tiền             amount                          unsigned; refunds are made negative
Phí                 fee                             the fee VNPay keeps
Ngân hàng           counterparty                    ``vnp_BankCode``, the payer's bank
Nội dung            description                     ``vnp_OrderInfo``
==================  ==============================  ==========================================================

MoMo (``MOMO_MAPPING``), UTF-8, comma-separated, plain integer amounts:

==================  ==============================  ==========================================================
transId             external_id                     MoMo's id of the transaction
orderId             reference                       the merchant order id (Lephi's gateway reference)
responseTime        booked_on                       epoch milliseconds, as in MoMo's API; the day in GMT+7
type                kind                            payment, refund
amount              amount                          unsigned; refunds are made negative
fee                 fee                             the fee MoMo keeps
orderInfo           description                     the order description sent at creation
==================  ==============================  ==========================================================

ZaloPay (``ZALOPAY_MAPPING``), UTF-8, comma-separated, plain integer amounts. [S]/[I]: ZaloPay's merchant portal
(mc.zalopay.vn) export was not available either; the columns are the field names of ZaloPay's API v2 (callback
data and refund), which is the guess least likely to be wrong, and the only place they are written:

==================  ==============================  ==========================================================
zp_trans_id         external_id                     ZaloPay's id of the transaction (a refund's own id for a
                                                    refund line)
app_trans_id        reference                       the merchant order id (Lephi's gateway reference)
server_time         booked_on                       epoch milliseconds, as in ZaloPay's API; the day in GMT+7
type                kind                            payment, refund
amount              amount                          unsigned; refunds are made negative
fee                 fee                             the fee ZaloPay keeps
description         description                     the order description sent at creation
==================  ==============================  ==========================================================
"""

from __future__ import annotations

import tomllib
from pathlib import Path

from adapters.statements.base import LineKind, StatementFormat
from adapters.statements.csvfile import ColumnMapping

VNPAY_MAPPING = ColumnMapping(
    external_id="Mã GD VNPAY",
    reference="Mã tham chiếu",
    date="Ngày GD",
    date_format="%d/%m/%Y %H:%M:%S",
    kind="Loại GD",
    kind_values={
        "Thanh toán": LineKind.payment,
        "Hoàn tiền": LineKind.refund,
        "Hoàn tiền một phần": LineKind.refund,
    },
    negative_kinds=frozenset({LineKind.refund}),
    amount="Số tiền",
    fee="Phí",
    counterparty="Ngân hàng",
    description="Nội dung",
    thousands_separator=",",
    decimal_separator=".",
)

MOMO_MAPPING = ColumnMapping(
    external_id="transId",
    reference="orderId",
    date="responseTime",
    date_format="unix_ms",
    kind="type",
    kind_values={"payment": LineKind.payment, "refund": LineKind.refund},
    negative_kinds=frozenset({LineKind.refund}),
    amount="amount",
    fee="fee",
    description="orderInfo",
)

# [S]/[I] see the module docstring: every ZaloPay column name is an assumption, kept here only.
ZALOPAY_MAPPING = ColumnMapping(
    external_id="zp_trans_id",
    reference="app_trans_id",
    date="server_time",
    date_format="unix_ms",
    kind="type",
    kind_values={"payment": LineKind.payment, "refund": LineKind.refund},
    negative_kinds=frozenset({LineKind.refund}),
    amount="amount",
    fee="fee",
    description="description",
)

DEFAULT_MAPPINGS = {
    StatementFormat.vnpay_csv: VNPAY_MAPPING,
    StatementFormat.momo_csv: MOMO_MAPPING,
    StatementFormat.zalopay_csv: ZALOPAY_MAPPING,
}
# The names a mapping file's ``extends`` accepts.
NAMED_MAPPINGS = {"vnpay": VNPAY_MAPPING, "momo": MOMO_MAPPING, "zalopay": ZALOPAY_MAPPING}


def load_mapping(path: Path | str, name: str | None = None) -> ColumnMapping:
    """A mapping from a TOML file: the top-level table, or ``[mappings.<name>]``. A table with
    ``extends = "vnpay"`` (or ``"momo"``, ``"zalopay"``) changes only what it names in that default layout."""
    with Path(path).open("rb") as fh:
        document = tomllib.load(fh)
    table = dict(document if name is None else document["mappings"][name])
    parent = table.pop("extends", None)
    if parent is not None and parent not in NAMED_MAPPINGS:
        raise ValueError(f"'extends' must be one of {sorted(NAMED_MAPPINGS)}, not {parent!r}")
    return ColumnMapping.from_dict(table, NAMED_MAPPINGS[parent] if parent else None)
