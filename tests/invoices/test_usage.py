"""The report on the use of receipts (BC26/BLĐT): its layout (golden file, XSD), figures read from the documents and
the series registry, as XML and XLSX from the API and the CLI."""

from __future__ import annotations

import io
import os
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

import pytest
from lxml import etree  # type: ignore[import-untyped]
from openpyxl import load_workbook  # type: ignore[import-untyped]

from invoices.errors import InvalidDocument
from invoices.service import issue_adjustment, issue_receipt
from invoices.tables import SeriesStatus
from invoices.usage import UsageLine, UsageReport, usage_xml, validate_usage
from tests.conftest import Api, Cli
from tests.factories import dossier_body, payment_body, sandbox_outcome

GOLDEN = Path(__file__).parent / "golden"
GMT7 = timezone(timedelta(hours=7))


def _golden_report() -> UsageReport:
    return UsageReport(
        agency_code="DEMO-STP",
        taxpayer_name="Sở Tư pháp tỉnh Demo",
        tax_code="0100000001",
        start=date(2026, 10, 1),
        end=date(2026, 12, 31),
        created_on=date(2027, 1, 5),
        lines=(
            UsageLine("5", "C26TAB", SeriesStatus.closed, 120, 1, 120, 2, 1, 0, 0),
            UsageLine("5", "K26TLP", SeriesStatus.open, 0, None, None, 0, 0, 0, 99_999_958),
        ),
    )


def test_golden() -> None:
    xml = usage_xml(_golden_report())
    path = GOLDEN / "usage_report.xml"
    if os.environ.get("LEPHI_UPDATE_GOLDEN"):
        path.write_bytes(xml)
    assert xml == path.read_bytes()
    validate_usage(xml)
    with pytest.raises(InvalidDocument):
        validate_usage(xml.replace(b"<SLCLai>0</SLCLai>", b"<SLCLai>-1</SLCLai>"))


def _issue(api: Api, at: datetime) -> str:
    code = api.post("/v1/dossiers", dossier_body()).json()["code"]
    payment = api.post("/v1/payments", payment_body(code)).json()
    sandbox_outcome(api.client, api.ctx.settings, payment["gateway_reference"], "success")
    assert issue_receipt(api.ctx, api.ctx.signers, payment["id"], now=at) is not None
    return str(payment["id"])


def test_the_report_counts_the_documents_of_the_period(api: Api, cli: Cli, tmp_path: Path) -> None:
    today = datetime.now(GMT7)
    yy = today.year % 100
    before = today - timedelta(days=3)
    _issue(api, before)  # no. 1, before the period
    paid = _issue(api, today)  # no. 2
    _issue(api, today)  # no. 3
    refund = api.post(f"/v1/payments/{paid}/refunds", {"amount": 10_000, "reason": "Hồ sơ bị trả lại"}).json()
    assert issue_adjustment(api.ctx, api.ctx.signers, refund["id"], now=today) is not None  # no. 4
    period = {"start": (today - timedelta(days=1)).date().isoformat(), "end": today.date().isoformat()}

    r = api.get("/v1/receipt-series/usage", params=period)
    assert r.status_code == 200 and r.headers["content-type"].startswith("application/xml"), r.text
    validate_usage(r.content)
    (line,) = etree.fromstring(r.content).iterfind("DLBCao/NDBCao/DSBLai/BLai")
    fields = {child.tag: child.text for child in line}
    assert fields == {
        "STT": "1",
        "KHMSBLai": "5",
        "KHBLai": f"K{yy:02d}TLP",
        "TThai": "1",
        "TSo": "2",
        "DSo": "4",
        "SLSDung": "3",
        "SLDChinh": "1",
        "SLTThe": "0",
        "SLHuy": "0",
        "SLCLai": str(99_999_999 - 4),
    }

    r = api.get("/v1/receipt-series/usage", params={**period, "format": "xlsx"})
    assert r.status_code == 200 and "spreadsheetml" in r.headers["content-type"]
    sheet = load_workbook(io.BytesIO(r.content)).active
    rows = [[cell.value for cell in row] for row in sheet.iter_rows()]
    assert rows[0][:6] == ["Ký hiệu mẫu", "Ký hiệu", "Trạng thái", "Từ số", "Đến số", "Đã sử dụng"]
    assert rows[1] == ["5", f"K{yy:02d}TLP", "Đang dùng", 2, 4, 3, 1, 0, 0, 99_999_995]

    for bad in (
        {"start": "2026-12-31", "end": "2026-12-01"},
        {"start": "2020-01-01", "end": "2026-01-01"},
        {"start": "x", "end": "2026-01-01"},
        {**period, "format": "pdf"},
    ):
        r = api.get("/v1/receipt-series/usage", params=bad)
        assert r.status_code == 422 and r.headers["content-type"].startswith("application/problem+json"), bad

    out = tmp_path / "bc26.xlsx"
    result = cli(
        "receipts", "report", "--agency", "AGC-A", "--from", period["start"], "--to", period["end"], "--out", str(out)
    )
    assert result.exit_code == 0 and "1 series" in result.output, result.output
    assert [c.value for c in load_workbook(out).active[2]][:6] == ["5", f"K{yy:02d}TLP", "Đang dùng", 2, 4, 3]
    out = tmp_path / "bc26.xml"
    assert (
        cli(
            "receipts",
            "report",
            "--agency",
            "AGC-A",
            "--from",
            period["start"],
            "--to",
            period["end"],
            "--out",
            str(out),
        ).exit_code
        == 0
    )
    validate_usage(out.read_bytes())
    result = cli(
        "receipts", "report", "--agency", "AGC-A", "--from", "2026-12-31", "--to", "2026-12-01", "--out", str(out)
    )
    assert result.exit_code == 2 and "ends before it starts" in result.output
