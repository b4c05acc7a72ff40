"""Reconciliation matching's steps called directly (payments/reconcile/matching.py): the finding each kind of row
becomes (category, amounts, subject, text), the day's bounds in GMT+7, the imports a run records, and how findings
open, update, reopen and clear exceptions on the database. tests/reconcile/test_matching.py checks the same end to
end from statement files; these pin each branch cheaply, so that the mutation run (scripts/mutate recon-matching)
takes minutes.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event, text
from sqlalchemy.exc import OperationalError
from sqlmodel import Session, col, select

from adapters.statements.base import StatementFormat
from invoices.tables import Document, DocumentPurpose
from payments.core.context import AppContext
from payments.payment.models import Payment, Refund, RefundStatus
from payments.payment.states import PaymentStatus
from payments.reconcile import matching
from payments.reconcile.importer import import_file
from payments.reconcile.matching import (
    SYSTEM,
    Finding,
    RunResult,
    _inputs,
    _line_finding,
    _payment_finding,
    _update_exceptions,
    day_bounds,
    run_day,
)
from payments.reconcile.models import (
    Category,
    ExceptionAction,
    ExceptionStatus,
    ReconException,
    ReconExceptionEvent,
    ReconRun,
    StatementEntry,
    StatementImport,
)
from tests.factories import seed_agency
from tests.reconcile.test_matching import NOON, _file, _payment, _row

DAY = date(2026, 11, 20)


def test_a_day_runs_from_midnight_to_midnight_in_gmt7() -> None:
    start, end = day_bounds(DAY)
    assert start == datetime(2026, 11, 19, 17, 0, tzinfo=UTC) and start.tzinfo is UTC
    assert end == datetime(2026, 11, 20, 17, 0, tzinfo=UTC)


def test_a_findings_key_names_its_category_and_subject() -> None:
    assert Finding(Category.paid_not_settled, "pay1").key == "paid_not_settled:pay1"
    assert Finding(Category.settled_unknown, "pay1", entry_id=7).key == "settled_unknown:e7"
    assert Finding(Category.settled_unknown, "pay1", entry_id=0).key == "settled_unknown:pay1"
    assert Finding(Category.receipt_without_payment, "pay1", document_id="doc1", entry_id=7).key == (
        "receipt_without_payment:doc1"
    )
    assert Finding(Category.refund_not_settled, "pay1", refund_id="rf1", document_id="d").key == (
        "refund_not_settled:rf1"
    )
    assert Finding(Category.transfer_unmatched).key == "transfer_unmatched:None"
    assert Finding(Category.matched).detail == "" and Finding(Category.matched).expected is None


def test_a_payment_without_a_line_is_paid_not_settled() -> None:
    assert _payment_finding("p", "d", "momo", 50_000, None, None, None) == Finding(
        Category.paid_not_settled, "p", "d", expected=50_000, detail="no momo line"
    )


def test_a_payment_settled_by_two_lines_is_a_duplicate() -> None:
    assert _payment_finding("p", "d", "vnpay", 50_000, 2, 100_000, 11) == Finding(
        Category.duplicate_payment,
        "p",
        "d",
        entry_id=11,
        expected=50_000,
        actual=100_000,
        detail="settled by 2 lines (100000 VND) for one payment of 50000 VND",
    )


@pytest.mark.parametrize(
    ("gateway", "total", "category"),
    [
        ("vnpay", 40_000, Category.amount_mismatch),
        ("vnpay", 60_000, Category.amount_mismatch),
        ("vietqr", 49_999, Category.transfer_underpaid),
        ("vietqr", 50_001, Category.transfer_overpaid),
        ("vietqr", None, Category.transfer_underpaid),
    ],
)
def test_a_payment_settled_by_another_amount(gateway: str, total: int | None, category: Category) -> None:
    assert _payment_finding("p", "d", gateway, 50_000, 1, total, 12) == Finding(
        category,
        "p",
        "d",
        entry_id=12,
        expected=50_000,
        actual=total,
        detail=f"line for {total} VND, payment of 50000 VND",
    )


def test_a_line_without_a_payment() -> None:
    assert _line_finding(5, "bank", "credit", 70_000, None, None, None, None, None) == Finding(
        Category.transfer_unmatched,
        entry_id=5,
        actual=70_000,
        detail="no payment reference in the transfer memo, or one this agency does not know",
    )
    assert _line_finding(6, "zalopay", "payment", 70_000, None, None, None, None, None) == Finding(
        Category.settled_unknown, entry_id=6, actual=70_000, detail="no zalopay payment with this reference"
    )


def test_a_line_for_a_payment_whose_dossier_another_paid_is_a_duplicate() -> None:
    assert _line_finding(7, "bank", "credit", 70_000, "p2", "failed", 50_000, "d", "p1") == Finding(
        Category.duplicate_payment,
        "p2",
        "d",
        entry_id=7,
        expected=50_000,
        actual=70_000,
        detail="the dossier was already paid by p1; this payment is failed",
    )


@pytest.mark.parametrize(
    ("amount", "category"), [(49_999, Category.transfer_underpaid), (50_001, Category.transfer_overpaid)]
)
def test_a_transfer_for_an_unpaid_payment_of_another_amount(amount: int, category: Category) -> None:
    assert _line_finding(8, "bank", "credit", amount, "p", "expired", 50_000, "d", None) == Finding(
        category,
        "p",
        "d",
        entry_id=8,
        expected=50_000,
        actual=amount,
        detail=f"received {amount} VND for a payment of 50000 VND that is expired",
    )


@pytest.mark.parametrize(
    ("source", "amount", "expected"),
    [("bank", 50_000, 50_000), ("bank", 40_000, None), ("vnpay", 40_000, 50_000)],
)
def test_a_line_that_settles_an_unpaid_payment(source: str, amount: int, expected: int | None) -> None:
    assert _line_finding(9, source, "payment", amount, "p", "pending", expected, "d", None) == Finding(
        Category.settled_unknown,
        "p",
        "d",
        entry_id=9,
        expected=expected,
        actual=amount,
        detail="the line settles a payment that is pending",
    )


@pytest.fixture
def agency(ctx: AppContext) -> str:
    with ctx.db.write() as s:
        return seed_agency(s, "AGC-U", ["vnpay"]).id


def _update(ctx: AppContext, agency: str, findings: list[Finding], day: date = DAY) -> tuple[str, tuple[int, int]]:
    with ctx.db.write() as s:
        run = ReconRun(agency_id=agency, business_day=day, created_by="t")
        s.add(run)
        s.flush()
        return run.id, _update_exceptions(s, agency, day, run.id, findings, "staff:ana")


def _exceptions(ctx: AppContext) -> dict[str, ReconException]:
    with ctx.db.read() as s:
        return {e.key: e for e in s.exec(select(ReconException))}


def _events(ctx: AppContext, exc_id: str) -> list[tuple[ExceptionAction, str, str | None, str | None]]:
    with ctx.db.read() as s:
        query = select(ReconExceptionEvent).where(ReconExceptionEvent.exception_id == exc_id)
        return [(e.action, e.actor, e.run_id, e.note) for e in s.exec(query.order_by(col(ReconExceptionEvent.id)))]


def test_findings_open_update_clear_and_reopen_exceptions(ctx: AppContext, agency: str) -> None:
    a = Finding(Category.paid_not_settled, "pa", "da", expected=10, detail="x" * 600)
    b = Finding(Category.settled_unknown, "pb", "db", "doc", "rf", 42, 1, 2, "b")
    run1, counts = _update(ctx, agency, [a, b, b])
    assert counts == (2, 0)
    found = _exceptions(ctx)
    assert set(found) == {"paid_not_settled:pa", "settled_unknown:rf"}
    ea, eb = found["paid_not_settled:pa"], found["settled_unknown:rf"]
    assert (ea.agency_id, ea.category, ea.business_day, ea.status) == (agency, a.category, DAY, ExceptionStatus.open)
    assert (ea.payment_id, ea.dossier_id, ea.expected_amount, ea.actual_amount) == ("pa", "da", 10, None)
    assert ea.detail == "x" * 500 and ea.first_run_id == run1 and ea.last_run_id == run1
    assert (eb.document_id, eb.refund_id, eb.entry_id, eb.expected_amount, eb.actual_amount, eb.detail) == (
        "doc",
        "rf",
        42,
        1,
        2,
        "b",
    )
    assert _events(ctx, ea.id) == [(ExceptionAction.opened, "staff:ana", run1, None)]

    # Found again with new amounts: updated in place, nothing opened.
    a2 = Finding(Category.paid_not_settled, "pa", "da", expected=11, actual=3, detail="y" * 600)
    run2, counts = _update(ctx, agency, [a2])
    assert counts == (0, 1)
    found = _exceptions(ctx)
    ea, eb = found["paid_not_settled:pa"], found["settled_unknown:rf"]
    assert (ea.expected_amount, ea.actual_amount, ea.detail) == (11, 3, "y" * 500)
    assert ea.first_run_id == run1 and ea.last_run_id == run2 and ea.updated_at > ea.created_at
    assert ea.status is ExceptionStatus.open and len(_events(ctx, ea.id)) == 1
    assert eb.status is ExceptionStatus.cleared and eb.last_run_id == run2
    assert _events(ctx, eb.id)[-1] == (ExceptionAction.cleared, "staff:ana", run2, "no longer found by the run")

    # Cleared and found again: reopened, with its trail.
    run3, counts = _update(ctx, agency, [a2, b])
    assert counts == (1, 0)
    eb = _exceptions(ctx)["settled_unknown:rf"]
    assert eb.status is ExceptionStatus.open and eb.last_run_id == run3 and eb.first_run_id == run1
    assert _events(ctx, eb.id)[-1] == (ExceptionAction.found_again, "staff:ana", run3, None)


def test_resolved_exceptions_and_other_days_are_not_cleared(ctx: AppContext, agency: str) -> None:
    a = Finding(Category.paid_not_settled, "pa", "da", expected=10)
    b = Finding(Category.paid_without_receipt, "pb", "db", expected=10)
    _update(ctx, agency, [a, b])
    other = Finding(Category.paid_not_settled, "po", "do", expected=10)
    _update(ctx, agency, [other], day=DAY - timedelta(days=1))
    with ctx.db.write() as s:
        e = s.exec(select(ReconException).where(ReconException.key == "paid_not_settled:pa")).one()
        e.status = ExceptionStatus.resolved
        s.add(e)
    # The other day's finding is read by its key: the run of DAY neither clears it nor takes it as its own.
    _, counts = _update(ctx, agency, [other])
    assert counts == (0, 1)
    found = _exceptions(ctx)
    assert found["paid_not_settled:pa"].status is ExceptionStatus.resolved
    assert found["paid_without_receipt:pb"].status is ExceptionStatus.cleared
    assert found["paid_not_settled:po"].status is ExceptionStatus.open
    assert found["paid_not_settled:po"].business_day == DAY - timedelta(days=1)
    _, counts = _update(ctx, agency, [])
    assert counts == (0, 0) and found["paid_not_settled:po"].status is ExceptionStatus.open


def test_more_findings_than_one_query_holds_are_matched_to_their_exceptions(ctx: AppContext, agency: str) -> None:
    findings = [Finding(Category.paid_not_settled, f"p{n}", expected=n) for n in range(1201)]
    assert _update(ctx, agency, findings)[1] == (1201, 0)
    # Read back by key across three batches of 500, on another day's run: none is opened twice.
    reads: list[str] = []

    def count(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        if statement.lstrip().startswith("SELECT") and "FROM recon_exception " in statement:
            reads.append(statement)

    event.listen(ctx.db.engine, "before_cursor_execute", count)
    try:
        assert _update(ctx, agency, findings, day=DAY + timedelta(days=1))[1] == (0, 0)
    finally:
        event.remove(ctx.db.engine, "before_cursor_execute", count)
    assert len(reads) == 4  # the day's, then the keys 500 at a time
    assert len(_exceptions(ctx)) == 1201


def test_a_run_records_the_imports_with_lines_within_a_week(ctx: AppContext, agency: str) -> None:
    def imp(name: str, first: date, last: date, at: int) -> None:
        s.add(
            StatementImport(
                agency_id=agency,
                source="vnpay",
                format="vnpay_csv",
                file_name=name,
                sha256=name * 4,
                line_count=len(name),
                first_day=first,
                last_day=last,
                created_at=datetime(2026, 11, 1, tzinfo=UTC) + timedelta(hours=at),
            )
        )

    week = timedelta(days=7)
    with ctx.db.write() as s:
        other = seed_agency(s, "AGC-V", ["vnpay"]).id
        imp("late", DAY + week, DAY + week + week, 2)
        imp("early", DAY - week - week, DAY - week, 1)
        imp("on", DAY, DAY, 3)
        imp("after", DAY + week + timedelta(days=1), DAY + week + week, 4)
        imp("before", DAY - week - week, DAY - week - timedelta(days=1), 5)
        s.add(
            StatementImport(
                agency_id=other, source="vnpay", format="f", file_name="x", sha256="y", first_day=DAY, last_day=DAY
            )
        )
    with ctx.db.read() as s:
        got = _inputs(s, agency, DAY)
        ids = {r.file_name: r.id for r in s.exec(select(StatementImport))}
    assert got == [
        {"import_id": ids[n], "sha256": n * 4, "file_name": n, "lines": len(n)} for n in ("early", "late", "on")
    ]


def _session_run(ctx: AppContext, agency: str) -> tuple[ReconRun, list[tuple[str, int]]]:
    seen: list[tuple[str, int]] = []

    def done(s: Session, result: RunResult) -> None:
        seen.append((result.run_id, len(s.exec(select(ReconRun)).all())))

    result = run_day(ctx, agency, DAY, on_done=done)
    with ctx.db.read() as s:
        run = s.get(ReconRun, result.run_id)
    assert run is not None
    return run, seen


def test_a_run_records_itself_and_calls_back_in_its_transaction(ctx: AppContext, agency: str) -> None:
    run, seen = _session_run(ctx, agency)
    assert seen == [(run.id, 1)]
    assert run.created_by == SYSTEM == "system:reconciliation" and run.agency_id == agency and run.business_day == DAY
    assert run.counts == {c.value: 0 for c in Category} and run.inputs == [] and run.finished_at is not None
    result = run_day(ctx, agency, DAY, actor="staff:ana")
    assert (result.business_day, result.counts, result.opened, result.cleared) == (DAY, run.counts, 0, 0)
    with ctx.db.read() as s:
        assert s.get(ReconRun, result.run_id).created_by == "staff:ana"  # type: ignore[union-attr]


def test_a_transfer_of_nothing_for_a_payment_of_one_dong_is_underpaid() -> None:
    finding = _payment_finding("p", "d", "vietqr", 1, 1, 0, 12)
    assert finding.category is Category.transfer_underpaid and finding.actual == 0


def test_a_run_links_lines_imported_before_their_payment_and_records_its_inputs(
    ctx: AppContext, tmp_path: Path
) -> None:
    with ctx.db.write() as s:
        agency = seed_agency(s, "AGC-R", ["vnpay"]).id
    result = import_file(ctx, "AGC-R", _file(tmp_path, [_row("T1", "REF-LATE", 50_000)]), StatementFormat.vnpay_csv)
    with ctx.db.read() as s:
        assert s.exec(select(StatementEntry.payment_id)).one() is None
    payment = _payment(ctx, agency, "REF-LATE", 50_000)
    out = run_day(ctx, agency, DAY)
    assert out.counts["matched"] == 1 and out.counts["settled_unknown"] == 0 and out.opened == 0
    with ctx.db.read() as s:
        assert s.exec(select(StatementEntry.payment_id)).one() == payment.id
        run = s.get(ReconRun, out.run_id)
        imp = s.exec(select(StatementImport)).one()
    assert run is not None and imp.id == result.import_id
    assert run.inputs == [{"import_id": imp.id, "sha256": imp.sha256, "file_name": imp.file_name, "lines": 1}]


class Log:
    """Records what matching logs: structlog may hold a logger configured before the test started."""

    def __init__(self) -> None:
        self.lines: list[dict[str, Any]] = []

    def info(self, event: str, **fields: Any) -> None:
        self.lines.append({"event": event, **fields})


def test_a_run_counts_its_findings_and_logs_them(
    ctx: AppContext, agency: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    _payment(ctx, agency, "REF-A", 50_000)
    _payment(ctx, agency, "REF-B", 60_000, receipt=False)
    _payment(ctx, agency, "REF-C", 70_000)
    import_file(
        ctx,
        "AGC-U",
        _file(tmp_path, [_row("T1", "REF-C", 65_000), _row("T2", "REF-X", 1_000)]),
        StatementFormat.vnpay_csv,
    )
    log = Log()
    monkeypatch.setattr(matching, "log", log)
    out = run_day(ctx, agency, DAY)
    counts = {"paid_not_settled": 2, "paid_without_receipt": 1, "amount_mismatch": 1, "settled_unknown": 1}
    expected = {c.value: 0 for c in Category} | counts
    assert out.counts == expected and out.opened == 5 and out.cleared == 0
    with ctx.db.read() as s:
        run = s.get(ReconRun, out.run_id)
    assert run is not None and run.counts == expected
    assert log.lines == [{"event": "reconcile.run", "run_id": out.run_id, "day": "2026-11-20", **expected}]
    with ctx.db.read() as s:
        found = {
            (e.category.value, e.payment_id, e.dossier_id, e.entry_id, e.expected_amount, e.actual_amount, e.detail)
            for e in s.exec(select(ReconException))
        }
        paid = {p.gateway_reference: (p.id, p.dossier_id) for p in s.exec(select(Payment))}
        entry, unknown = s.exec(select(StatementEntry.id).order_by(col(StatementEntry.id))).all()
    (pa, da), (pb, db), (pc, dc) = paid["REF-A"], paid["REF-B"], paid["REF-C"]
    assert found == {
        ("paid_not_settled", pa, da, None, 50_000, None, "no vnpay line"),
        ("paid_not_settled", pb, db, None, 60_000, None, "no vnpay line"),
        ("paid_without_receipt", pb, db, None, 60_000, None, "no e-receipt"),
        ("amount_mismatch", pc, dc, entry, 70_000, 65_000, "line for 65000 VND, payment of 70000 VND"),
        ("settled_unknown", None, None, unknown, None, 1_000, "no vnpay payment with this reference"),
    }


def test_a_line_that_settles_a_payment_that_is_not_paid_is_found_with_both_amounts(
    ctx: AppContext, agency: str, tmp_path: Path
) -> None:
    expired = _payment(ctx, agency, "REF-EXP", 50_000, status=PaymentStatus.expired)
    import_file(ctx, "AGC-U", _file(tmp_path, [_row("T1", "REF-EXP", 45_000)]), StatementFormat.vnpay_csv)
    out = run_day(ctx, agency, DAY)
    assert out.counts["settled_unknown"] == 1 and out.opened == 1
    with ctx.db.read() as s:
        [found] = s.exec(select(ReconException)).all()
        entry = s.exec(select(StatementEntry.id)).one()
    row = (found.category, found.payment_id, found.dossier_id, found.entry_id, found.expected_amount)
    assert row == (Category.settled_unknown, expired.id, expired.dossier_id, entry, 50_000)
    assert (found.actual_amount, found.detail) == (45_000, "the line settles a payment that is expired")


def test_each_exception_found_again_counts_as_opened(ctx: AppContext, agency: str) -> None:
    a = Finding(Category.paid_not_settled, "pa", "da", expected=10)
    b = Finding(Category.paid_without_receipt, "pb", "db", expected=20)
    c = Finding(Category.paid_not_settled, "pc", "dc", expected=30)
    assert _update(ctx, agency, [a, b, c])[1] == (3, 0)
    assert _update(ctx, agency, [c])[1] == (0, 2)
    run, counts = _update(ctx, agency, [a, b, c])
    assert counts == (2, 0)
    found = _exceptions(ctx)
    assert {k: e.status for k, e in found.items()} == {
        "paid_not_settled:pa": ExceptionStatus.open,
        "paid_without_receipt:pb": ExceptionStatus.open,
        "paid_not_settled:pc": ExceptionStatus.open,
    }
    for key in ("paid_not_settled:pa", "paid_without_receipt:pb"):
        assert _events(ctx, found[key].id)[-1] == (ExceptionAction.found_again, "staff:ana", run, None)


def _subject_and_amounts(e: ReconException) -> tuple[object, ...]:
    subject = (e.key, e.payment_id, e.dossier_id, e.document_id, e.refund_id, e.entry_id)
    return (*subject, e.expected_amount, e.actual_amount, e.detail)


def test_a_run_records_refunds_without_their_line_refund_lines_without_a_refund_and_receipts_of_unpaid_payments(
    ctx: AppContext, agency: str, tmp_path: Path
) -> None:
    refunded = _payment(ctx, agency, "REF-R", 40_000)
    other = _payment(ctx, agency, "REF-O", 30_000)
    unpaid = _payment(ctx, agency, "REF-U", 25_000, status=PaymentStatus.failed)
    with ctx.db.write() as s:
        refund = Refund(
            payment_id=refunded.id,
            amount=10_000,
            reason="r",
            status=RefundStatus.succeeded,
            gateway_token="rt1",
            created_by="t",
            completed_at=NOON + timedelta(hours=1),
        )
        receipt = Document(
            agency_id=agency,
            payment_id=unpaid.id,
            purpose=DocumentPurpose.original,
            template="5",
            series="K26TLP",
            year=2026,
            number=77,
            issue_date=DAY,
            total=25_000,
            lookup_code="REFUXXXXXXXX",
            xml=b"<HDon/>",
        )
        s.add(refund)
        s.add(receipt)
        s.flush()
        refund_id, receipt_id = refund.id, receipt.id
    rows = [_row("T1", "REF-R", 40_000), _row("T2", "REF-O", 30_000), _row("T3", "REF-O", 5_000, kind="Hoàn tiền")]
    import_file(ctx, "AGC-U", _file(tmp_path, rows), StatementFormat.vnpay_csv)
    out = run_day(ctx, agency, DAY)
    with ctx.db.read() as s:
        line = s.exec(select(StatementEntry.id).where(StatementEntry.external_id == "T3")).one()
        found = {_subject_and_amounts(e) for e in s.exec(select(ReconException))}
    assert found == {
        (
            f"refund_not_settled:{refund_id}",
            refunded.id,
            refunded.dossier_id,
            None,
            refund_id,
            None,
            -10_000,
            None,
            "no refund line",
        ),
        (
            f"settled_unknown:e{line}",
            other.id,
            None,
            None,
            None,
            line,
            None,
            -5_000,
            "a refund line for a payment this agency never refunded by that amount",
        ),
        (
            f"receipt_without_payment:{receipt_id}",
            unpaid.id,
            unpaid.dossier_id,
            receipt_id,
            None,
            None,
            None,
            25_000,
            "the receipt's payment is failed",
        ),
    }
    assert out.counts["matched"] == 2 and out.opened == 3


def test_a_run_leaves_another_agencys_exceptions_of_the_day_alone(ctx: AppContext, agency: str) -> None:
    with ctx.db.write() as s:
        other = seed_agency(s, "AGC-V", ["vnpay"]).id
    theirs = Finding(Category.paid_not_settled, "po", "do", expected=10)
    assert _update(ctx, other, [theirs])[1] == (1, 0)
    assert _update(ctx, agency, [])[1] == (0, 0)
    exc = _exceptions(ctx)["paid_not_settled:po"]
    assert exc.agency_id == other and exc.status is ExceptionStatus.open and len(_events(ctx, exc.id)) == 1


@pytest.mark.parametrize("database_url", ["postgres"], indirect=True)
def test_a_run_on_postgres_locks_the_days_and_the_found_exceptions_and_no_others(ctx: AppContext, agency: str) -> None:
    """Until the run commits, a staff member's resolve of one of its exceptions waits for it; exceptions of other
    days that the run does not find are not held."""
    found = Finding(Category.paid_not_settled, "pa", "da", expected=10)
    gone = Finding(Category.paid_without_receipt, "pb", "db", expected=10)
    elsewhere = Finding(Category.paid_not_settled, "po", "do", expected=10)
    _update(ctx, agency, [found, gone])
    _update(ctx, agency, [elsewhere], day=DAY - timedelta(days=1))
    ids = {k: e.id for k, e in _exceptions(ctx).items()}
    lock = text("SELECT id FROM recon_exception WHERE id = :id FOR UPDATE NOWAIT")
    held: dict[str, bool] = {}
    with ctx.db.write() as s:
        run = ReconRun(agency_id=agency, business_day=DAY, created_by="t")
        s.add(run)
        s.flush()
        _update_exceptions(s, agency, DAY, run.id, [found, gone], "t")  # nothing changed: no row written yet
        with ctx.db.engine.connect() as staff:
            for key, exc_id in ids.items():
                try:
                    staff.execute(lock, {"id": exc_id})
                    held[key] = False
                except OperationalError:
                    held[key] = True
                staff.rollback()
    assert held == {"paid_not_settled:pa": True, "paid_without_receipt:pb": True, "paid_not_settled:po": False}
