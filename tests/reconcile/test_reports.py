"""The daily close and the day's exceptions: numbers on a known data set, the same in JSON, CSV and XLSX, and no
cell that a spreadsheet would run as a formula; on both databases."""

from __future__ import annotations

import csv
import io
import secrets
import zipfile
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
from openpyxl import load_workbook  # type: ignore[import-untyped]
from sqlmodel import select

from payments.agency.models import Procedure
from payments.core.context import AppContext
from payments.dossier.models import Dossier, DossierStatus
from payments.payment.models import Payment, Refund, RefundStatus
from payments.payment.states import PaymentStatus
from payments.reconcile.models import Category, ExceptionStatus, ReconException
from payments.reconcile.reports import (
    cell_text,
    daily_close,
    day_exceptions,
    exceptions_to_csv,
    exceptions_to_xlsx,
    to_csv,
    to_xlsx,
)
from tests.conftest import Api
from tests.factories import PROCEDURE, seed_agency

BASE = "/v1/reconciliation"
DAY = date(2026, 11, 20)
START = datetime(2026, 11, 19, 17, 0, tzinfo=UTC)  # 00:00 of DAY in GMT+7
END = START + timedelta(days=1)
NOON = datetime(2026, 11, 20, 5, 0, tzinfo=UTC)
P2 = "2.000456"
P1_NAME, P2_NAME = "Thủ tục thử nghiệm", "Cấp giấy phép lái xe"
HEADER = ["procedure_code", "procedure_name", "method", "payments", "gross", "refund_count", "refunds", "net"]
# (procedure_code, procedure_name, method, payments, gross, refund_count, refunds, net)
EXPECTED = [
    (PROCEDURE, P1_NAME, "momo", 1, 30_000, 1, 5_000, 25_000),
    (PROCEDURE, P1_NAME, "vnpay", 2, 150_000, 1, 10_000, 140_000),
    (P2, P2_NAME, "momo", 1, 40_000, 1, 40_000, 0),
    (P2, P2_NAME, "vietqr", 0, 0, 1, 7_000, -7_000),
    (P2, P2_NAME, "vnpay", 1, 200_000, 0, 0, 200_000),
]
TOTALS = (5, 420_000, 4, 62_000, 358_000)
NASTY = [
    '=HYPERLINK("http://x","y")',
    "+1",
    "-1",
    "@SUM(A1)",
    "\t=1+1",
    "\r=1+1",
    "  =1+1",
    "＝1+1",
    "=cmd|' /C calc'!A0",
]


# --- data ---------------------------------------------------------------------------------------------------------
def _procedure(ctx: AppContext, agency: str, code: str, name: str) -> str:
    with ctx.db.write() as s:
        existing = s.exec(select(Procedure).where(Procedure.agency_id == agency, Procedure.code == code)).first()
        if existing is not None:
            return existing.id
        row = Procedure(agency_id=agency, code=code, name=name)
        s.add(row)
        s.flush()
        return row.id


def _pay(
    ctx: AppContext,
    agency: str,
    procedure: str,
    gateway: str,
    amount: int,
    at: datetime | None,
    status: PaymentStatus = PaymentStatus.succeeded,
) -> str:
    ref = secrets.token_hex(6).upper()
    with ctx.db.write() as s:
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
        created = at or NOON
        p = Payment(
            agency_id=agency,
            dossier_id=dossier.id,
            gateway=gateway,
            amount=amount,
            status=status,
            gateway_token=f"g-{ref}",
            gateway_reference=ref,
            return_url="https://x.example/",
            description="d",
            expires_at=created,
            succeeded_at=at,
            created_at=created,
        )
        s.add(p)
        s.flush()
        return p.id


def _refund(
    ctx: AppContext, payment: str, amount: int, at: datetime | None, status: RefundStatus = RefundStatus.succeeded
) -> None:
    with ctx.db.write() as s:
        s.add(
            Refund(
                payment_id=payment,
                amount=amount,
                reason="r",
                status=status,
                gateway_token=secrets.token_hex(8),
                created_by="t",
                completed_at=at,
            )
        )


def _exception(
    ctx: AppContext, agency: str, day: date, status: ExceptionStatus = ExceptionStatus.open, **fields: Any
) -> str:
    with ctx.db.write() as s:
        row = ReconException(
            agency_id=agency,
            key=f"k:{secrets.token_hex(6)}",
            category=fields.pop("category", Category.paid_not_settled),
            business_day=day,
            status=status,
            first_run_id="rcn_x",
            last_run_id="rcn_x",
            **fields,
        )
        s.add(row)
        s.flush()
        return row.id


@pytest.fixture
def known_day(api: Api) -> None:
    """Two procedures, payments by three methods, refunds on the day and around it, noise that must not count."""
    ctx, agency = api.ctx, api.agency_id
    p1 = _procedure(ctx, agency, PROCEDURE, P1_NAME)
    p2 = _procedure(ctx, agency, P2, P2_NAME)
    # P1 vnpay: two payments (one at the first instant of the day), a refund of one of them.
    first = _pay(ctx, agency, p1, "vnpay", 100_000, NOON)
    _pay(ctx, agency, p1, "vnpay", 50_000, START)
    _refund(ctx, first, 10_000, NOON + timedelta(hours=1))
    # P1 momo: one at the last second of the day; a refund today of a payment made the day before.
    _pay(ctx, agency, p1, "momo", 30_000, END - timedelta(seconds=1))
    yesterday = _pay(ctx, agency, p1, "momo", 80_000, START - timedelta(minutes=1))
    _refund(ctx, yesterday, 5_000, NOON)
    # P2 vnpay: partially refunded, but the refund completed the next day; a pending and a failed refund.
    partial = _pay(ctx, agency, p2, "vnpay", 200_000, NOON, PaymentStatus.partially_refunded)
    _refund(ctx, partial, 20_000, END + timedelta(hours=2))
    _refund(ctx, partial, 1_000, None, RefundStatus.pending)
    _refund(ctx, partial, 2_000, NOON, RefundStatus.failed)
    # Not payments of the day: failed, still pending, the first instant of the next day.
    _pay(ctx, agency, p2, "vnpay", 300_000, None, PaymentStatus.failed)
    _pay(ctx, agency, p2, "vnpay", 300_000, None, PaymentStatus.pending)
    _pay(ctx, agency, p2, "vnpay", 300_000, END)
    # P2 momo: paid and fully refunded the same day.
    full = _pay(ctx, agency, p2, "momo", 40_000, NOON, PaymentStatus.refunded)
    _refund(ctx, full, 40_000, NOON + timedelta(hours=3))
    # P2 vietqr: only a refund today, of a transfer two days ago.
    old = _pay(ctx, agency, p2, "vietqr", 70_000, START - timedelta(days=1))
    _refund(ctx, old, 7_000, NOON)
    # Another agency's day counts nowhere here.
    with ctx.db.write() as s:
        other = seed_agency(s, "AGC-B").id
    other_p = _procedure(ctx, other, PROCEDURE, "Thủ tục của B")
    b_pay = _pay(ctx, other, other_p, "vnpay", 999_000, NOON)
    _refund(ctx, b_pay, 9_000, NOON)
    # Exceptions: two open on the day count; a resolved one, another day's, another agency's do not.
    _exception(ctx, agency, DAY)
    _exception(ctx, agency, DAY, category=Category.amount_mismatch)
    _exception(ctx, agency, DAY, ExceptionStatus.resolved)
    _exception(ctx, agency, DAY, ExceptionStatus.cleared)
    _exception(ctx, agency, DAY - timedelta(days=1))
    _exception(ctx, other, DAY)


def _csv_rows(content: bytes) -> list[list[str]]:
    assert content.startswith(b"\xef\xbb\xbf")
    return list(csv.reader(io.StringIO(content.decode("utf-8-sig"), newline="")))


def _sheet(content: bytes) -> Any:
    book = load_workbook(io.BytesIO(content))
    assert len(book.worksheets) == 1
    return book.worksheets[0]


def _values(sheet: Any) -> list[tuple[Any, ...]]:
    return [tuple(c.value for c in row) for row in sheet.iter_rows()]


def _no_formulas(content: bytes) -> None:
    sheet = _sheet(content)
    for row in sheet.iter_rows():
        for cell in row:
            assert cell.data_type != "f", (cell.coordinate, cell.value)
    with zipfile.ZipFile(io.BytesIO(content)) as z:
        for name in z.namelist():
            if name.startswith("xl/worksheets/"):
                assert b"<f>" not in z.read(name) and b"<f " not in z.read(name), name


# --- the daily close ----------------------------------------------------------------------------------------------
def test_daily_close_on_a_known_day(api: Api, known_day: None) -> None:
    with api.ctx.db.read() as s:
        close = daily_close(s, api.agency_id, DAY)
    assert [
        (r.procedure_code, r.procedure_name, r.method, r.payments, r.gross, r.refund_count, r.refunds, r.net)
        for r in close.rows
    ] == EXPECTED
    t = close.totals
    assert (t.payments, t.gross, t.refund_count, t.refunds, t.net) == TOTALS
    assert close.open_exceptions == 2 and close.agency_code == "AGC-A" and close.business_day == DAY

    r = api.get(f"{BASE}/reports/daily", params={"business_day": "2026-11-20"})
    assert r.status_code == 200 and r.headers["content-type"] == "application/json", r.text
    body = r.json()
    assert body["business_day"] == "2026-11-20" and body["agency_code"] == "AGC-A"
    assert [tuple(row[k] for k in HEADER) for row in body["rows"]] == EXPECTED
    assert body["totals"] == dict(zip(HEADER[3:], TOTALS, strict=True))
    assert body["open_exceptions"] == 2
    assert api.get(f"{BASE}/reports/daily", params={"business_day": "2026-11-20", "format": "json"}).json() == body


def test_csv_and_xlsx_carry_the_same_numbers(api: Api, known_day: None) -> None:
    r = api.get(f"{BASE}/reports/daily", params={"business_day": "2026-11-20", "format": "csv"})
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "text/csv; charset=utf-8"
    assert r.headers["content-disposition"] == 'attachment; filename="daily-close-AGC-A-2026-11-20.csv"'
    with api.ctx.db.read() as s:
        assert r.content == to_csv(daily_close(s, api.agency_id, DAY))
    rows = _csv_rows(r.content)
    assert rows[0] == HEADER
    assert rows[1:6] == [[str(v) for v in row] for row in EXPECTED]
    assert rows[6] == ["Totals", "", "", *(str(v) for v in TOTALS)]
    assert rows[7:] == [[], ["Open exceptions", "2"]]
    assert P2_NAME in r.content.decode("utf-8-sig")

    x = api.get(f"{BASE}/reports/daily", params={"business_day": "2026-11-20", "format": "xlsx"})
    assert x.status_code == 200, x.text
    assert x.headers["content-type"] == "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
    assert x.headers["content-disposition"] == 'attachment; filename="daily-close-AGC-A-2026-11-20.xlsx"'
    sheet = _sheet(x.content)
    assert "2026-11-20" in sheet.title
    values = _values(sheet)
    assert values[0][: len(HEADER)] == tuple(HEADER)
    assert [v[: len(HEADER)] for v in values[1:6]] == EXPECTED
    assert values[6][: len(HEADER)] == ("Totals", None, None, *TOTALS)
    assert values[8][:2] == ("Open exceptions", 2)
    # Numbers are numbers, the header and the totals bold, the columns wide enough to read.
    for cell in sheet[2][3:8]:
        assert cell.data_type == "n" and isinstance(cell.value, int)
    assert all(c.font.bold for c in sheet[1][: len(HEADER)]) and all(c.font.bold for c in sheet[7][: len(HEADER)])
    assert not sheet["A2"].font.bold
    assert sheet.column_dimensions["B"].width >= len(P2_NAME)
    assert sheet.freeze_panes == "A2"
    # The CSV and the sheet agree cell for cell.
    csv_numbers = [[int(v) for v in row[3:]] for row in rows[1:7]]
    assert csv_numbers == [list(v[3 : len(HEADER)]) for v in values[1:7]]
    _no_formulas(x.content)
    with api.ctx.db.read() as s:
        assert _values(_sheet(to_xlsx(daily_close(s, api.agency_id, DAY)))) == values


def test_a_day_with_nothing_is_zeros(api: Api) -> None:
    body = api.get(f"{BASE}/reports/daily", params={"business_day": "2021-03-04"}).json()
    assert body == {
        "agency_code": "AGC-A",
        "business_day": "2021-03-04",
        "rows": [],
        "totals": {"payments": 0, "gross": 0, "refund_count": 0, "refunds": 0, "net": 0},
        "open_exceptions": 0,
    }
    rows = _csv_rows(api.get(f"{BASE}/reports/daily", params={"business_day": "2021-03-04", "format": "csv"}).content)
    assert rows == [HEADER, ["Totals", "", "", "0", "0", "0", "0", "0"], [], ["Open exceptions", "0"]]
    x = api.get(f"{BASE}/reports/daily", params={"business_day": "2021-03-04", "format": "xlsx"})
    assert _values(_sheet(x.content))[1][: len(HEADER)] == ("Totals", None, None, 0, 0, 0, 0, 0)
    e = api.get(f"{BASE}/reports/exceptions", params={"business_day": "2021-03-04"}).json()
    assert e == {"agency_code": "AGC-A", "business_day": "2021-03-04", "rows": []}
    assert (
        _csv_rows(
            api.get(f"{BASE}/reports/exceptions", params={"business_day": "2021-03-04", "format": "csv"}).content
        )[1:]
        == []
    )


@pytest.mark.parametrize("report", ["daily", "exceptions"])
@pytest.mark.parametrize(
    "params",
    [
        {"business_day": "2026-11-20", "format": "pdf"},
        {"business_day": "2026-11-20", "format": "CSV"},
        {"business_day": "2026-02-30"},
        {"business_day": "20/11/2026"},
        {"business_day": ""},
        {},
    ],
    ids=["pdf", "upper-case", "no-such-date", "not-iso", "empty", "missing"],
)
def test_bad_format_or_date_is_422(api: Api, report: str, params: dict[str, str]) -> None:
    r = api.get(f"{BASE}/reports/{report}", params=params)
    assert r.status_code == 422, r.text
    assert r.json()["code"] == "validation_error"


# --- formula injection --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("value", NASTY)
def test_cell_text_quotes_what_a_spreadsheet_would_run(value: str) -> None:
    assert cell_text(value) == "'" + value


@pytest.mark.parametrize("value", ["", "Lệ phí trước bạ", "1.001234", "a=b", "user@example.com", "'quoted", "10-2"])
def test_cell_text_leaves_ordinary_text_alone(value: str) -> None:
    assert cell_text(value) == value


def test_cell_text_drops_control_characters_before_looking() -> None:
    assert cell_text("\x01=1+1") == "'=1+1"
    assert cell_text("a\x00b\x1fc") == "abc"


def test_procedure_names_and_codes_never_become_formulas(api: Api) -> None:
    ctx, agency = api.ctx, api.agency_id
    for n, name in enumerate(NASTY):
        procedure = _procedure(ctx, agency, f"9.{n:06d}", name)
        _pay(ctx, agency, procedure, "vnpay", 1_000 * (n + 1), NOON)
    evil_code = _procedure(ctx, agency, "@evil", "Tên bình thường")
    _pay(ctx, agency, evil_code, "=momo", 500, NOON)

    # JSON is not a spreadsheet: it carries the names exactly as they are.
    body = api.get(f"{BASE}/reports/daily", params={"business_day": "2026-11-20"}).json()
    assert sorted(r["procedure_name"] for r in body["rows"]) == sorted([*NASTY, "Tên bình thường"])

    rows = _csv_rows(api.get(f"{BASE}/reports/daily", params={"business_day": "2026-11-20", "format": "csv"}).content)
    by_code = {row[0]: row for row in rows[1:] if row}
    for n, name in enumerate(NASTY):
        row = by_code[f"9.{n:06d}"]
        assert row[1] == "'" + name and row[1].startswith("'")
        assert row[4] == str(1_000 * (n + 1))
    assert by_code["'@evil"][1:3] == ["Tên bình thường", "'=momo"]

    content = api.get(f"{BASE}/reports/daily", params={"business_day": "2026-11-20", "format": "xlsx"}).content
    _no_formulas(content)
    sheet = _sheet(content)
    names = {row[0].value: row[1] for row in sheet.iter_rows(min_row=2) if row[0].value}
    for n, name in enumerate(NASTY):
        cell = names[f"9.{n:06d}"]
        assert cell.data_type == "s" and cell.value == "'" + name
    assert names["'@evil"].value == "Tên bình thường"


def test_exceptions_export_quotes_free_text(api: Api) -> None:
    ctx, agency = api.ctx, api.agency_id
    procedure = _procedure(ctx, agency, PROCEDURE, P1_NAME)
    payment = _pay(ctx, agency, procedure, "vnpay", 50_000, NOON)
    with ctx.db.read() as s:
        p = s.get(Payment, payment)
        assert p is not None
        dossier = s.get(Dossier, p.dossier_id)
        assert dossier is not None
    first = _exception(
        ctx,
        agency,
        DAY,
        payment_id=payment,
        dossier_id=dossier.id,
        expected_amount=50_000,
        detail='=HYPERLINK("http://x","bấm vào đây")',
    )
    second = _exception(
        ctx,
        agency,
        DAY,
        category=Category.refund_not_settled,
        expected_amount=-10_000,
        detail="+84 912 345 678",
    )
    _exception(ctx, agency, DAY - timedelta(days=1), detail="another day")
    r = api.post(f"{BASE}/exceptions/{second}/resolve", {"note": "@SUM(A1) -- đã hoàn tiền"})
    assert r.status_code == 200, r.text

    body = api.get(f"{BASE}/reports/exceptions", params={"business_day": "2026-11-20"}).json()
    assert [row["id"] for row in body["rows"]] == [first, second]  # by category
    assert body["rows"][0]["dossier_code"] == dossier.code
    assert body["rows"][0]["detail"] == '=HYPERLINK("http://x","bấm vào đây")'
    assert body["rows"][1]["status"] == "resolved" and body["rows"][1]["note"] == "@SUM(A1) -- đã hoàn tiền"

    r = api.get(f"{BASE}/reports/exceptions", params={"business_day": "2026-11-20", "format": "csv"})
    assert r.headers["content-disposition"] == 'attachment; filename="exceptions-AGC-A-2026-11-20.csv"'
    rows = _csv_rows(r.content)
    header, data = rows[0], [dict(zip(rows[0], row, strict=True)) for row in rows[1:]]
    assert header[:3] == ["id", "category", "status"] and len(data) == 2
    assert data[0]["detail"] == '\'=HYPERLINK("http://x","bấm vào đây")' and data[0]["dossier_code"] == dossier.code
    assert data[0]["expected_amount"] == "50000"
    assert data[1]["detail"] == "'+84 912 345 678" and data[1]["note"] == "'@SUM(A1) -- đã hoàn tiền"
    assert data[1]["expected_amount"] == "-10000"  # a number, not text: nothing to quote
    assert data[1]["resolved_by"].startswith("api_key:") and data[1]["resolved_at"].endswith("+07:00")

    x = api.get(f"{BASE}/reports/exceptions", params={"business_day": "2026-11-20", "format": "xlsx"})
    assert x.headers["content-disposition"] == 'attachment; filename="exceptions-AGC-A-2026-11-20.xlsx"'
    _no_formulas(x.content)
    sheet = _sheet(x.content)
    assert "2026-11-20" in sheet.title
    cells = [dict(zip(header, row, strict=True)) for row in sheet.iter_rows(min_row=2)]
    assert cells[0]["detail"].value == data[0]["detail"] and cells[0]["detail"].data_type == "s"
    assert cells[1]["note"].value == data[1]["note"]
    assert cells[1]["expected_amount"].value == -10_000 and cells[1]["expected_amount"].data_type == "n"

    # The service functions the CLI uses give the same files.
    with ctx.db.read() as s:
        report = day_exceptions(s, agency, DAY)
    assert exceptions_to_csv(report) == r.content
    assert _values(_sheet(exceptions_to_xlsx(report))) == _values(sheet)
