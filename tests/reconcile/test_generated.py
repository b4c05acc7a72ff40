"""Import and matching on generated data (``devtools.generate``), on both databases: every injected
discrepancy is found in its category and nothing else is flagged, re-importing changes nothing, and a malformed file
names its line and imports nothing."""

from __future__ import annotations

import itertools
import shutil
import tempfile
from datetime import date
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import func
from sqlmodel import select

from adapters.statements.base import GMT7, StatementFormat
from devtools.generate import Manifest, generate, write_files
from payments.core.context import AppContext
from payments.core.db import Database, make_engine
from payments.payment.models import Payment
from payments.reconcile.importer import ImportFailed, ImportResult, import_file
from payments.reconcile.matching import RunResult, run_day
from payments.reconcile.models import EXCEPTIONS, ExceptionStatus, ReconException, StatementEntry, StatementImport
from payments.transfer.models import BankCredit

DAY = date(2026, 11, 20)
CODES = (f"AGC-GEN-{i}" for i in itertools.count())


def _generate(ctx: AppContext, out: Path, **kw: object) -> Manifest:
    options: dict[str, object] = {"payments": 300, "discrepancies": 3, "seed": 7}
    options.update(kw)
    return generate(ctx, agency_code=next(CODES), day=DAY, out_dir=out, **options)  # type: ignore[arg-type]


@pytest.fixture
def generated(ctx: AppContext, tmp_path: Path) -> Manifest:
    return _generate(ctx, tmp_path / "files")


def _import_all(ctx: AppContext, manifest: Manifest) -> list[ImportResult]:
    return [import_file(ctx, manifest.agency_code, f.path, f.format) for f in manifest.files]


def _open(ctx: AppContext, agency_id: str) -> dict[tuple[str, str], ReconException]:
    with ctx.db.read() as s:
        rows = s.exec(
            select(ReconException).where(
                ReconException.agency_id == agency_id, ReconException.status == ExceptionStatus.open
            )
        )
        return {(e.category.value, e.key): e for e in rows}


def _assert_exact(ctx: AppContext, manifest: Manifest, run: RunResult) -> None:
    """Precision and recall of 100%, with what went wrong spelled out when they are not."""
    expected = manifest.expected_keys(ctx)
    found = _open(ctx, manifest.agency_id)
    missing = expected - set(found)
    unexpected = set(found) - expected
    if missing or unexpected:
        why = {}
        for f in manifest.expected:
            why[f.key or f"{f.category.value} line {f.lines}"] = f.why
        lines = [f"seed {manifest.seed}, agency {manifest.agency_code}"]
        lines += [f"  missing    {c} {k}" for c, k in sorted(missing)]
        lines += [f"  unexpected {c} {k}: {found[c, k].detail}" for c, k in sorted(unexpected)]
        lines += [f"  injected: {k}: {w}" for k, w in why.items()]
        pytest.fail("findings differ from the manifest:\n" + "\n".join(lines))
    assert run.counts["matched"] == manifest.matched
    by_category = {c.value: sum(1 for cat, _ in expected if cat == c.value) for c in EXCEPTIONS}
    assert {c: run.counts[c] for c in by_category} == by_category


def test_every_injected_discrepancy_is_found_in_its_category_and_nothing_else(
    ctx: AppContext, generated: Manifest
) -> None:
    results = _import_all(ctx, generated)
    assert [r.new_lines for r in results] == [f.lines for f in generated.files]
    run = run_day(ctx, generated.agency_id, DAY)
    _assert_exact(ctx, generated, run)
    assert generated.injected == dict.fromkeys((c.value for c in EXCEPTIONS), 3)
    assert run.counts["matched"] > 250


def test_mt940_and_payments_at_midnight(ctx: AppContext, tmp_path: Path) -> None:
    manifest = _generate(ctx, tmp_path, payments=120, discrepancies=1, formats=["vnpay_csv", "momo_csv", "mt940"])
    _import_all(ctx, manifest)
    _assert_exact(ctx, manifest, run_day(ctx, manifest.agency_id, DAY))
    with ctx.db.read() as s:
        times = s.exec(select(Payment.succeeded_at).where(Payment.agency_id == manifest.agency_id)).all()
        booked = s.exec(
            select(StatementEntry.booked_on).where(StatementEntry.agency_id == manifest.agency_id).distinct()
        ).all()
    local = sorted(t.astimezone(GMT7) for t in times if t is not None)
    # The first and last instants of the day, the evening before and the minutes after are all there.
    assert local[0].date() < DAY < local[-1].date()
    assert any(t.date() == DAY and t.hour == 0 and t.minute == 0 and t.second == 0 for t in local)
    assert any(t.date() == DAY and (t.hour, t.minute, t.second) == (23, 59, 59) for t in local)
    assert set(booked) == {DAY, date(2026, 11, 21)}  # lines after the cut-offs are booked the next day


def test_reimporting_changes_nothing_and_a_rerun_finds_the_same(
    ctx: AppContext, generated: Manifest, tmp_path: Path
) -> None:
    _import_all(ctx, generated)
    first = run_day(ctx, generated.agency_id, DAY)
    before = _snapshot(ctx, generated.agency_id)
    again = _import_all(ctx, generated)
    assert all(r.duplicate_file and r.new_lines == 0 for r in again)
    # The same lines in a file with other bytes (an overlapping export): every line is already there.
    vnpay = next(f for f in generated.files if f.format is StatementFormat.vnpay_csv)
    overlapping = tmp_path / "vnpay-again.csv"
    overlapping.write_bytes(vnpay.path.read_bytes() + b"\r\n")
    result = import_file(ctx, generated.agency_code, overlapping, vnpay.format)
    assert not result.duplicate_file and result.lines == vnpay.lines and result.new_lines == 0
    rerun = run_day(ctx, generated.agency_id, DAY)
    assert (rerun.opened, rerun.cleared) == (0, 0)
    assert rerun.counts == first.counts
    after = _snapshot(ctx, generated.agency_id)
    assert after["exceptions"] == before["exceptions"]
    assert (after["entries"], after["credits"]) == (before["entries"], before["credits"])
    assert after["imports"] == before["imports"] + 1
    _assert_exact(ctx, generated, rerun)


def _snapshot(ctx: AppContext, agency_id: str) -> dict[str, object]:
    with ctx.db.read() as s:
        return {
            "exceptions": {(k, e.id, e.status) for k, e in _open(ctx, agency_id).items()},
            "entries": s.exec(select(func.count()).where(StatementEntry.agency_id == agency_id)).one(),
            "credits": s.exec(select(func.count()).where(BankCredit.agency_id == agency_id)).one(),
            "imports": s.exec(select(func.count()).where(StatementImport.agency_id == agency_id)).one(),
        }


def _corrupt_csv(path: Path, column: int, value: str) -> int:
    """Put ``value`` in one column of the middle row; answers its line number."""
    rows = path.read_bytes().decode("utf-8-sig").split("\r\n")
    middle = len(rows) // 2
    cells = rows[middle].split(",")
    cells[column] = value
    rows[middle] = ",".join(cells)
    path.write_bytes("\r\n".join(rows).encode())
    return middle + 1


def _truncate(path: Path) -> int:
    """Cut the file in the middle of a line; answers that line's number."""
    lines = path.read_bytes().split(b"\n")
    keep = len(lines) // 2
    path.write_bytes(b"\n".join(lines[:keep]) + b"\n" + lines[keep][: len(lines[keep]) // 2])
    return keep + 1


@pytest.mark.parametrize(
    ("fmt", "damage", "message"),
    [
        (StatementFormat.momo_csv, lambda p: _corrupt_csv(p, 3, "15O000"), "is not a number"),
        (StatementFormat.vnpay_csv, lambda p: _corrupt_csv(p, 1, "32/11/2026 10:00:00"), "is not a date"),
        (StatementFormat.camt053, _truncate, "not well-formed XML"),
    ],
    ids=["bad-amount", "bad-date", "truncated-camt"],
)
def test_a_malformed_file_names_its_line_and_imports_nothing(
    ctx: AppContext, generated: Manifest, tmp_path: Path, fmt: StatementFormat, damage: object, message: str
) -> None:
    original = next(f for f in generated.files if f.format is fmt)
    broken = tmp_path / f"broken-{original.path.name}"
    broken.write_bytes(original.path.read_bytes())
    line = damage(broken)  # type: ignore[operator]
    assert 2 < line < original.lines  # in the middle, after lines that would have been imported
    with pytest.raises(ImportFailed) as failed:
        import_file(ctx, generated.agency_code, broken, fmt)
    assert failed.value.extra["line"] == line
    assert f"line {line}" in failed.value.detail and message in failed.value.detail
    assert "nothing was imported" in failed.value.detail
    with ctx.db.read() as s:
        assert s.exec(select(func.count()).where(StatementEntry.agency_id == generated.agency_id)).one() == 0
        assert s.exec(select(func.count()).where(StatementImport.agency_id == generated.agency_id)).one() == 0
        credits = s.exec(select(func.count()).where(BankCredit.source == "statement")).one()
    assert credits == 0
    # The intact file still imports in full afterwards: the failure left nothing half done.
    assert import_file(ctx, generated.agency_code, original.path, fmt).new_lines == original.lines


def test_files_written_from_the_database_settle_a_clean_day(ctx: AppContext, tmp_path: Path) -> None:
    manifest = _generate(ctx, tmp_path / "generated", payments=150, discrepancies=0)
    assert manifest.expected == ()
    files = write_files(ctx, manifest.agency_code, DAY, tmp_path / "from-db", bank_format=StatementFormat.mt940)
    for f in files:
        import_file(ctx, manifest.agency_code, f.path, f.format)
    run = run_day(ctx, manifest.agency_id, DAY)
    assert _open(ctx, manifest.agency_id) == {}
    assert run.counts["matched"] == manifest.matched
    again = write_files(ctx, manifest.agency_code, DAY, tmp_path / "again", bank_format=StatementFormat.mt940)
    assert [f.path.read_bytes() for f in again] == [f.path.read_bytes() for f in files]


def test_the_same_arguments_give_the_same_files(ctx: AppContext, sqlite_template: Path, tmp_path: Path) -> None:
    outputs = []
    for name in ("one", "two"):
        shutil.copy(sqlite_template, tmp_path / f"{name}.db")
        db = Database(make_engine(f"sqlite:///{tmp_path / name}.db", ctx.settings))
        manifest = generate(db, agency_code="AGC-SAME", day=DAY, payments=80, discrepancies=1, out_dir=tmp_path / name)
        outputs.append([f.path.read_bytes() for f in manifest.files])
        db.dispose()
    assert outputs[0] == outputs[1]
    with pytest.raises(ValueError, match="exists"):
        generate(ctx, agency_code=manifest.agency_code, day=DAY, payments=0, out_dir=tmp_path)
        generate(ctx, agency_code=manifest.agency_code, day=DAY, payments=0, out_dir=tmp_path)


counts = st.fixed_dictionaries({c.value: st.integers(0, 2) for c in EXCEPTIONS})


@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    payments=st.integers(0, 40),
    injected=counts,
    seed=st.integers(0, 2**32),
    bank=st.sampled_from([StatementFormat.mt940, StatementFormat.camt053]),
)
def test_any_mix_of_discrepancies_is_found_exactly(
    ctx: AppContext, payments: int, injected: dict[str, int], seed: int, bank: StatementFormat
) -> None:
    with tempfile.TemporaryDirectory() as out:
        manifest = _generate(
            ctx,
            Path(out),
            payments=payments,
            discrepancies=injected,
            seed=seed,
            formats=[StatementFormat.vnpay_csv, StatementFormat.momo_csv, bank],
        )
        assert manifest.injected == injected
        _import_all(ctx, manifest)
        _assert_exact(ctx, manifest, run_day(ctx, manifest.agency_id, DAY))
