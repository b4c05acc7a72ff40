"""ZaloPay settlement files: read with the default layout (an assumption, see adapters/statements/gateway_files.py),
imported as the ``zalopay`` source, and matched to ZaloPay payments only."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import update
from sqlmodel import col

from adapters.statements import ZALOPAY_MAPPING, parse_file
from adapters.statements.base import LineKind, StatementFormat
from payments.core.context import AppContext
from payments.payment.models import Payment
from payments.reconcile.importer import import_file
from payments.reconcile.matching import run_day
from tests.factories import seed_agency
from tests.reconcile.test_matching import DAY, _open, _payment

HEADER = "zp_trans_id,app_trans_id,server_time,type,amount,fee,description\n"
# 12:05 on 20/11/2026 in Vietnam.
STAMP = int(datetime(2026, 11, 20, 5, 5, tzinfo=UTC).timestamp() * 1000)


@pytest.fixture
def agency(ctx: AppContext) -> str:
    with ctx.db.write() as s:
        return seed_agency(s, "AGC-Z", ["zalopay", "vnpay"]).id


def _zalopay_payment(ctx: AppContext, agency: str, ref: str, amount: int) -> Payment:
    payment = _payment(ctx, agency, ref, amount)
    with ctx.db.write() as s:
        s.execute(update(Payment).where(col(Payment.id) == payment.id).values(gateway="zalopay"))
    return payment


def _file(tmp_path: Path, rows: list[tuple[str, str, int, str]]) -> Path:
    path = tmp_path / "zalopay.csv"
    lines = [f"{zp},{ref},{STAMP},{kind},{amount},1650,Le phi ho so" for zp, ref, amount, kind in rows]
    path.write_text(HEADER + "".join(line + "\n" for line in lines), encoding="utf-8")
    return path


def test_the_default_layout_reads_payments_and_refunds(tmp_path: Path) -> None:
    path = _file(
        tmp_path, [("261120000000001", "261120_abc", 150_000, "payment"), ("9", "261120_abc", 50_000, "refund")]
    )
    pay, refund = parse_file(path, StatementFormat.zalopay_csv)
    assert (pay.external_id, pay.reference, pay.amount, pay.fee, pay.kind) == (
        "261120000000001",
        "261120_abc",
        150_000,
        1650,
        LineKind.payment,
    )
    assert pay.booked_on == DAY and (refund.kind, refund.amount) == (LineKind.refund, -50_000)
    assert ZALOPAY_MAPPING.reference == "app_trans_id"


def test_a_zalopay_file_settles_zalopay_payments_only(ctx: AppContext, agency: str, tmp_path: Path) -> None:
    ok = _zalopay_payment(ctx, agency, "261120_ok", 100_000)
    unsettled = _zalopay_payment(ctx, agency, "261120_late", 50_000)
    mismatch = _zalopay_payment(ctx, agency, "261120_short", 70_000)
    other_gateway = _payment(ctx, agency, "261120_vnpay", 30_000)  # a VNPay payment with a look-alike reference
    path = _file(
        tmp_path,
        [
            ("1", "261120_ok", 100_000, "payment"),
            ("2", "261120_short", 69_000, "payment"),
            ("3", "261120_vnpay", 30_000, "payment"),
        ],
    )
    result = import_file(ctx, "AGC-Z", path, StatementFormat.zalopay_csv)
    assert result.lines == result.new_lines == 3
    run = run_day(ctx, agency, DAY)
    assert run.counts["matched"] == 1
    found = _open(ctx)
    assert found[f"paid_not_settled:{unsettled.id}"] == "open"
    assert found[f"amount_mismatch:{mismatch.id}"] == "open"
    assert found[f"paid_not_settled:{other_gateway.id}"] == "open"  # a ZaloPay line never settles a VNPay payment
    assert any(key.startswith("settled_unknown:") for key in found)
    assert ok.id not in "".join(found)
