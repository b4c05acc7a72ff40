"""Import and matching on hand-made data: each category from one small, explicit case, on both databases."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest
from sqlmodel import select

from adapters.statements.base import StatementFormat
from invoices.tables import Document, DocumentPurpose
from payments.agency.models import Procedure
from payments.core.context import AppContext
from payments.dossier.models import Dossier, DossierStatus
from payments.payment.models import Payment, Refund, RefundStatus
from payments.payment.states import PaymentStatus
from payments.reconcile.importer import ImportFailed, import_file
from payments.reconcile.matching import run_day
from payments.reconcile.models import ReconException, StatementEntry
from tests.factories import seed_agency

DAY = date(2026, 11, 20)
NOON = datetime(2026, 11, 20, 5, 0, tzinfo=UTC)  # 12:00 in GMT+7
HEADER = "Mã GD VNPAY,Mã tham chiếu,Ngày GD,Loại GD,Số tiền,Phí,Ngân hàng,Nội dung\n"


@pytest.fixture
def agency(ctx: AppContext) -> str:
    with ctx.db.write() as s:
        return seed_agency(s, "AGC-R", ["vnpay"]).id


def _payment(
    ctx: AppContext,
    agency: str,
    ref: str,
    amount: int,
    status: PaymentStatus = PaymentStatus.succeeded,
    dossier_id: str | None = None,
    receipt: bool = True,
    at: datetime = NOON,
) -> Payment:
    with ctx.db.write() as s:
        if dossier_id is None:
            procedure = s.exec(select(Procedure.id).where(Procedure.agency_id == agency)).first()
            dossier = Dossier(
                agency_id=agency,
                code=f"HS-{ref}",
                procedure_id=procedure,
                payer_name="Nguyễn Văn An",
                total_amount=amount,
                status=DossierStatus.paid,
                pay_token=f"t-{ref}",
            )
            s.add(dossier)
            s.flush()
            dossier_id = dossier.id
        p = Payment(
            agency_id=agency,
            dossier_id=dossier_id,
            gateway="vnpay",
            amount=amount,
            status=status,
            gateway_token=f"g-{ref}",
            gateway_reference=ref,
            return_url="https://x.example/",
            description="d",
            expires_at=at,
            succeeded_at=at if status is PaymentStatus.succeeded else None,
            created_at=at,
        )
        s.add(p)
        s.flush()
        if receipt and status is PaymentStatus.succeeded:
            s.add(
                Document(
                    agency_id=agency,
                    payment_id=p.id,
                    purpose=DocumentPurpose.original,
                    template="5",
                    series="K26TLP",
                    year=2026,
                    number=abs(hash(ref)) % 10_000_000,
                    issue_date=DAY,
                    total=amount,
                    lookup_code=ref[:12].ljust(12, "X"),
                    xml=b"<HDon/>",
                )
            )
        return p


def _file(tmp_path: Path, rows: list[str], name: str = "vnpay.csv") -> Path:
    path = tmp_path / name
    path.write_text(HEADER + "".join(r + "\n" for r in rows), encoding="utf-8")
    return path


def _row(txn: str, ref: str, amount: int, kind: str = "Thanh toán", day: str = "20/11/2026 12:05:00") -> str:
    return f'{txn},{ref},{day},{kind},"{amount:,}",1000,NCB,Le phi'


def _open(ctx: AppContext) -> dict[str, str]:
    with ctx.db.read() as s:
        return {
            e.key.split(":")[0] + ":" + (e.payment_id or str(e.entry_id)): e.status.value
            for e in s.exec(select(ReconException))
        }


def test_each_category_from_a_small_case(ctx: AppContext, agency: str, tmp_path: Path) -> None:
    ok = _payment(ctx, agency, "REF-OK", 100_000)
    unsettled = _payment(ctx, agency, "REF-UNSETTLED", 50_000)
    mismatch = _payment(ctx, agency, "REF-MISMATCH", 70_000)
    no_receipt = _payment(ctx, agency, "REF-NORECEIPT", 20_000, receipt=False)
    first = _payment(ctx, agency, "REF-FIRST", 30_000)
    late = _payment(ctx, agency, "REF-LATE", 30_000, status=PaymentStatus.expired, dossier_id=first.dossier_id)
    refunded = _payment(ctx, agency, "REF-REFUNDED", 40_000)
    with ctx.db.write() as s:
        s.add(
            Refund(
                payment_id=refunded.id,
                amount=10_000,
                reason="r",
                status=RefundStatus.succeeded,
                gateway_token="rt1",
                created_by="t",
                completed_at=NOON + timedelta(hours=1),
            )
        )
    path = _file(
        tmp_path,
        [
            _row("1", "REF-OK", 100_000),
            _row("2", "REF-MISMATCH", 69_000),
            _row("3", "REF-NORECEIPT", 20_000),
            _row("4", "REF-FIRST", 30_000),
            _row("5", "REF-LATE", 30_000),
            _row("6", "REF-UNKNOWN", 12_000),
            _row("7", "REF-REFUNDED", 40_000),
        ],
    )
    result = import_file(ctx, "AGC-R", path, StatementFormat.vnpay_csv)
    assert result.lines == result.new_lines == 7 and not result.duplicate_file
    run = run_day(ctx, agency, DAY)
    assert run.counts["matched"] == 4  # OK, NORECEIPT, FIRST, REFUNDED
    found = _open(ctx)
    assert found == {
        f"paid_not_settled:{unsettled.id}": "open",
        f"amount_mismatch:{mismatch.id}": "open",
        f"paid_without_receipt:{no_receipt.id}": "open",
        f"duplicate_payment:{late.id}": "open",
        f"refund_not_settled:{refunded.id}": "open",
        "settled_unknown:" + found_key(found, "settled_unknown"): "open",
    }
    assert ok.id not in "".join(found)


def found_key(found: dict[str, str], category: str) -> str:
    (key,) = [k for k in found if k.startswith(category)]
    return key.split(":", 1)[1]


def test_reimporting_changes_nothing_and_a_rerun_clears_what_was_fixed(
    ctx: AppContext, agency: str, tmp_path: Path
) -> None:
    unsettled = _payment(ctx, agency, "REF-A", 50_000)
    first = _file(tmp_path, [_row("1", "REF-X", 1_000)], "day1.csv")
    import_file(ctx, "AGC-R", first, StatementFormat.vnpay_csv)
    again = import_file(ctx, "AGC-R", first, StatementFormat.vnpay_csv)
    assert again.duplicate_file and again.new_lines == 0
    run_day(ctx, agency, DAY)
    assert _open(ctx)[f"paid_not_settled:{unsettled.id}"] == "open"
    # The settlement arrives in the next file, overlapping the first one.
    second = _file(
        tmp_path, [_row("1", "REF-X", 1_000), _row("2", "REF-A", 50_000, day="21/11/2026 09:00:00")], "day2.csv"
    )
    result = import_file(ctx, "AGC-R", second, StatementFormat.vnpay_csv)
    assert result.lines == 2 and result.new_lines == 1
    run = run_day(ctx, agency, DAY)
    assert _open(ctx)[f"paid_not_settled:{unsettled.id}"] == "cleared" and run.counts["matched"] == 1
    with ctx.db.read() as s:
        assert len(s.exec(select(StatementEntry)).all()) == 2


def test_a_malformed_file_names_the_line_and_imports_nothing(ctx: AppContext, agency: str, tmp_path: Path) -> None:
    path = _file(tmp_path, [_row("1", "REF-A", 1_000), "2,REF-B,20/11/2026 12:00:00,Thanh toán,abc,0,NCB,x"])
    with pytest.raises(ImportFailed) as failed:
        import_file(ctx, "AGC-R", path, StatementFormat.vnpay_csv)
    assert "line 3" in failed.value.detail and failed.value.extra["line"] == 3
    with ctx.db.read() as s:
        assert s.exec(select(StatementEntry)).all() == []


def test_concurrent_runs_of_one_day_give_one_exception_each_and_no_error(
    ctx: AppContext, agency: str, tmp_path: Path
) -> None:
    import threading

    for n in range(6):
        _payment(ctx, agency, f"REF-C{n}", 10_000 + n)  # none settled: six exceptions to open
    errors: list[BaseException] = []

    def run() -> None:
        try:
            run_day(ctx, agency, DAY)
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert errors == []
    with ctx.db.read() as s:
        keys = [e.key for e in s.exec(select(ReconException))]
    assert len(keys) == len(set(keys)) == 6
