"""The day's exceptions export (JSON, CSV, XLSX) says where each exception's statement line came from: file, line
number, transaction id, reference, memo and amount; a memo that starts like a formula stays text."""

from __future__ import annotations

from pathlib import Path

from adapters.statements.base import StatementFormat
from payments.reconcile.importer import import_file
from payments.reconcile.matching import run_day
from tests.conftest import Api
from tests.reconcile.test_exceptions_api import DAY, HEADER, _payment
from tests.reconcile.test_reports import _csv_rows, _sheet

BASE = "/v1/reconciliation"


def test_the_exceptions_export_carries_the_lines_provenance(api: Api, tmp_path: Path) -> None:
    ctx = api.ctx
    _payment(ctx, api.agency_id, "REF-MISMATCH", 70_000)
    path = tmp_path / "vnpay-20.csv"
    path.write_text(
        HEADER
        + 'T2,REF-MISMATCH,20/11/2026 12:05:00,Thanh toán,"69,000",1000,NCB,=cmd()\n'
        + 'T3,REF-NONE,20/11/2026 12:06:00,Thanh toán,"12,000",1000,NCB,Le phi\n',
        encoding="utf-8",
    )
    import_file(ctx, "AGC-A", path, StatementFormat.vnpay_csv)
    run_day(ctx, api.agency_id, DAY)
    params = {"business_day": DAY.isoformat()}
    body = api.get(f"{BASE}/reports/exceptions", params=params).json()
    lines = {r["external_id"]: r for r in body["rows"] if r["external_id"]}
    assert set(lines) == {"T2", "T3"}
    assert lines["T2"]["source_file"] == "vnpay-20.csv" and lines["T2"]["source_line"] == 2
    assert (lines["T2"]["reference"], lines["T2"]["memo"], lines["T2"]["line_amount"]) == (
        "REF-MISMATCH",
        "=cmd()",
        69_000,
    )
    assert lines["T3"]["source_line"] == 3 and lines["T3"]["reference"] == "REF-NONE"

    rows = _csv_rows(api.get(f"{BASE}/reports/exceptions", params={**params, "format": "csv"}).content)
    header = rows[0]
    assert header[-6:] == ["source_file", "source_line", "external_id", "reference", "memo", "line_amount"]
    data = {r["external_id"]: r for r in (dict(zip(header, row, strict=True)) for row in rows[1:])}
    assert data["T2"]["source_file"] == "vnpay-20.csv" and data["T2"]["source_line"] == "2"
    assert data["T2"]["memo"] == "'=cmd()" and data["T2"]["line_amount"] == "69000"

    sheet = _sheet(api.get(f"{BASE}/reports/exceptions", params={**params, "format": "xlsx"}).content)
    cells = [dict(zip(header, (c.value for c in row), strict=True)) for row in sheet.iter_rows(min_row=2)]
    t2 = next(c for c in cells if c["external_id"] == "T2")
    assert t2["line_amount"] == 69_000 and t2["memo"] == "'=cmd()" and t2["source_line"] == 2
