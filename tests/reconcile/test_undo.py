"""Undoing an import: its lines and the exceptions about them go; refused while one of them is resolved, or when a
bank credit it recorded reached a payment; a credit that found no payment goes with it. Both databases."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from sqlalchemy import func, select, text

from adapters.statements.base import LineKind, StatementFormat, StatementLine
from adapters.vietqr import make_reference
from devtools.statement_writers import write_mt940
from payments.core.context import AppContext
from payments.core.errors import NotFound
from payments.reconcile.exceptions import resolve_exception
from payments.reconcile.importer import import_file
from payments.reconcile.matching import run_day
from payments.reconcile.models import ReconException, StatementEntry, StatementImport
from payments.reconcile.undo import ImportCreditsApplied, ImportHasResolvedExceptions, undo_import
from payments.transfer.models import BankCredit
from tests.conftest import Api
from tests.factories import seed_agency
from tests.reconcile.test_exceptions_api import DAY, HEADER, _payment, _row


def _count(ctx: AppContext, model: type) -> int:
    with ctx.db.read() as s:
        return int(s.execute(select(func.count()).select_from(model)).scalar_one())


def _statement(tmp_path: Path, memos: list[tuple[str, int]]) -> Path:
    lines = [
        StatementLine(
            source_line=i + 1,
            external_id=f"BANK-{i}-{memo[:6]}",
            kind=LineKind.credit,
            amount=amount,
            booked_on=DAY,
            value_on=DAY,
            reference=memo,
        )
        for i, (memo, amount) in enumerate(memos)
    ]
    out = io.StringIO()
    write_mt940(lines, out)
    path = tmp_path / "statement.sta"
    path.write_text(out.getvalue(), encoding="utf-8")
    return path


def test_undo_removes_lines_and_their_exceptions_and_is_refused_after_a_resolve(api: Api, tmp_path: Path) -> None:
    ctx, agency = api.ctx, api.agency_id
    _payment(ctx, agency, "REF-MISMATCH", 70_000)
    path = tmp_path / "v.csv"
    path.write_text(HEADER + _row("1", "REF-MISMATCH", 69_000) + "\n" + _row("2", "REF-NONE", 5_000) + "\n")
    imp = import_file(ctx, "AGC-A", path, StatementFormat.vnpay_csv).import_id
    run_day(ctx, agency, DAY)
    with ctx.db.read() as s:
        ids = sorted(s.execute(select(ReconException.id).where(ReconException.entry_id.is_not(None))).scalars())  # type: ignore[union-attr]
    assert len(ids) == 2
    with ctx.db.write() as s:
        resolve_exception(s, agency, ids[0], "staff:x", "ok")
    with pytest.raises(ImportHasResolvedExceptions), ctx.db.write() as s:
        undo_import(s, agency, imp, "staff:x")
    assert _count(ctx, StatementEntry) == 2 and _count(ctx, ReconException) >= 2
    # Another agency's import is not found, like a missing one.
    with ctx.db.write() as s:
        other = seed_agency(s, "AGC-O", tax_code="0100000009").id
    with pytest.raises(NotFound), ctx.db.write() as s:
        undo_import(s, other, imp, "staff:x")
    # With the resolution gone (reopened), the undo takes the lines, the two exceptions and their trails.
    with ctx.db.write() as s:
        s.execute(text("UPDATE recon_exception SET status = 'open' WHERE id = :id"), {"id": ids[0]})
    with ctx.db.write() as s:
        done = undo_import(s, agency, imp, "staff:x")
    assert (done.lines, done.exceptions, done.credits) == (2, 2, 0)
    assert _count(ctx, StatementEntry) == 0 and _count(ctx, StatementImport) == 0
    with ctx.db.read() as s:
        assert not s.execute(select(ReconException).where(ReconException.id.in_(ids))).first()  # type: ignore[attr-defined]


def test_bank_credits_found_no_payment_go_with_the_import_and_one_that_reached_a_payment_refuses(
    api: Api, tmp_path: Path
) -> None:
    ctx, agency = api.ctx, api.agency_id
    nobody = make_reference("secret", "nobody")
    path = _statement(tmp_path, [(f"Le phi {nobody}", 50_000)])
    result = import_file(ctx, "AGC-A", path, StatementFormat.mt940)
    assert result.credits_applied == 1
    with ctx.db.read() as s:
        credit = s.execute(select(BankCredit)).scalars().one()
    assert credit.payment_id is None and credit.status.value == "unmatched"
    with ctx.db.write() as s:
        done = undo_import(s, agency, result.import_id, "staff:x")
    assert (done.lines, done.credits) == (1, 1) and _count(ctx, BankCredit) == 0

    # A credit naming a payment was held against it (the payment is flagged): the undo is refused.
    reference = make_reference("secret", "paid")
    payment = _payment(ctx, agency, "REF-QR", 80_000)
    with ctx.db.write() as s:
        s.execute(
            text("UPDATE payment SET gateway = 'vietqr', gateway_reference = :ref WHERE id = :id"),
            {"ref": reference, "id": payment.id},
        )
    path = _statement(tmp_path, [(f"Le phi {reference}", 80_000)])
    result = import_file(ctx, "AGC-A", path, StatementFormat.mt940)
    with ctx.db.read() as s:
        credit = s.execute(select(BankCredit)).scalars().one()
    assert credit.payment_id == payment.id
    with pytest.raises(ImportCreditsApplied), ctx.db.write() as s:
        undo_import(s, agency, result.import_id, "staff:x")
    assert _count(ctx, BankCredit) == 1 and _count(ctx, StatementEntry) == 1
