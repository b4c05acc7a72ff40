"""``lephi reconcile``: import (progress, summary, idempotent, malformed file refused with the line), run (a table of
categories), report (table, CSV, XLSX, JSON)."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from click.testing import Result
from openpyxl import load_workbook  # type: ignore[import-untyped]
from typer.testing import CliRunner

from lephi.cli import app as cli_app
from lephi.settings import get_settings
from payments.core.context import AppContext
from payments.core.logging import configure_logging
from tests.reconcile.test_matching import DAY, _file, _payment, _row

Cli = Callable[..., Result]


@pytest.fixture
def cli(ctx: AppContext, database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Cli]:
    monkeypatch.setenv("LEPHI_DATABASE_URL", database_url)
    monkeypatch.setenv("LEPHI_ENV", "test")
    monkeypatch.setenv("LEPHI_DATA_DIR", str(tmp_path / "cli"))
    monkeypatch.setenv("LEPHI_LOG_LEVEL", "WARNING")
    monkeypatch.setenv("COLUMNS", "200")
    get_settings.cache_clear()
    runner = CliRunner()

    def run(*args: str) -> Result:
        result = runner.invoke(cli_app, list(args))
        configure_logging(ctx.settings.log_level, ctx.settings.log_json)
        return result

    yield run
    get_settings.cache_clear()


@pytest.fixture
def agency(ctx: AppContext) -> str:
    from tests.factories import seed_agency

    with ctx.db.write() as s:
        return seed_agency(s, "AGC-R", ["vnpay"]).id


def test_import_run_and_report_from_the_command_line(cli: Cli, ctx: AppContext, agency: str, tmp_path: Path) -> None:
    _payment(ctx, agency, "REF-OK", 100_000)
    unsettled = _payment(ctx, agency, "REF-LATE", 50_000)
    path = _file(tmp_path, [_row("1", "REF-OK", 100_000), _row("2", "REF-NOBODY", 7_000)])

    first = cli("reconcile", "import", str(path), "--agency", "AGC-R", "--format", "vnpay_csv")
    assert first.exit_code == 0, first.output
    assert "vnpay.csv" in first.output and "107,000" in first.output
    again = cli("reconcile", "import", str(path), "--agency", "AGC-R", "--format", "vnpay_csv")
    assert again.exit_code == 0 and "already imported" in again.output

    run = cli("reconcile", "run", "--agency", "AGC-R", "--date", DAY.isoformat())
    assert run.exit_code == 0, run.output
    rows = {
        line.split("│")[1].strip(): line.split("│")[2].strip()
        for line in run.output.splitlines()
        if line.count("│") >= 3
    }
    assert rows["matched"] == "1" and rows["paid_not_settled"] == "1" and rows["settled_unknown"] == "1"

    table = cli("reconcile", "report", "--agency", "AGC-R", "--date", DAY.isoformat())
    assert table.exit_code == 0 and "150,000" in table.output  # gross of the two payments
    for fmt in ("csv", "xlsx", "json"):
        out = tmp_path / f"close.{fmt}"
        r = cli(
            "reconcile", "report", "--agency", "AGC-R", "--date", DAY.isoformat(), "--format", fmt, "--output", str(out)
        )
        assert r.exit_code == 0, r.output
    assert any("150000" in row for row in csv.reader(io.StringIO((tmp_path / "close.csv").read_text("utf-8-sig"))))
    sheet = load_workbook(tmp_path / "close.xlsx").active
    assert 150_000 in [cell.value for row in sheet.iter_rows() for cell in row]
    assert json.loads((tmp_path / "close.json").read_text())["totals"]["gross"] == 150_000
    assert unsettled.id


def test_a_malformed_file_fails_with_its_line_and_imports_nothing(cli: Cli, agency: str, tmp_path: Path) -> None:
    path = _file(tmp_path, [_row("1", "REF-A", 1_000), "2,REF-B,31/02/2026 12:00:00,Thanh toán,1000,0,NCB,x"])
    r = cli("reconcile", "import", str(path), "--agency", "AGC-R", "--format", "vnpay_csv")
    assert r.exit_code == 1 and "line 3" in r.output and "nothing was imported" in r.output


def test_bad_arguments_are_refused_clearly(cli: Cli, agency: str, tmp_path: Path) -> None:
    path = _file(tmp_path, [_row("1", "REF-A", 1_000)])
    assert "must be one of" in cli("reconcile", "import", str(path), "--agency", "AGC-R", "--format", "xls").output
    r = cli("reconcile", "run", "--agency", "NOPE", "--date", DAY.isoformat())
    assert r.exit_code == 2 and "no agency" in r.output
    r = cli("reconcile", "run", "--agency", "AGC-R", "--date", "26/11/2026")
    assert r.exit_code == 2 and "is not a date" in r.output


def test_generate_then_import_and_run_finds_what_was_injected(cli: Cli, tmp_path: Path) -> None:
    out = tmp_path / "files"
    r = cli(
        "reconcile",
        "generate",
        "--agency",
        "GEN-CLI",
        "--out",
        str(out),
        "--date",
        "2026-11-20",
        "--payments",
        "60",
        "--discrepancies",
        "1",
    )
    assert r.exit_code == 0, r.output
    assert "vnpay" in r.output and "must match" in r.output
    formats = {"vnpay": "vnpay_csv", "momo": "momo_csv"}
    for path in sorted(out.iterdir()):
        fmt = next((v for k, v in formats.items() if k in path.name), "mt940")
        imported = cli("reconcile", "import", str(path), "--agency", "GEN-CLI", "--format", fmt)
        assert imported.exit_code == 0, imported.output
    run = cli("reconcile", "run", "--agency", "GEN-CLI", "--date", "2026-11-20")
    assert run.exit_code == 0, run.output
    rows = {
        line.split("│")[1].strip(): line.split("│")[2].strip()
        for line in run.output.splitlines()
        if line.count("│") >= 3
    }
    exceptions = [c for c in rows if c not in {"matched", "new exceptions", "cleared", "category"}]
    assert len(exceptions) == 10 and all(rows[c] == "1" for c in exceptions), rows
