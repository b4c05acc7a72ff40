"""The report pages: figures equal to the money the test wrote (payments, refunds, gateway fees, exceptions) on
Vietnam days, one agency never seeing another's, the XLSX read back (title block, real dates and numbers, one sheet
per section, formulas written as text, native charts over the cells of the page's chart series), the PDF's text and
charts, the SVG charts well-formed and script-free, a period without payments, the province's month, and hostile
query values answered by the 400 page."""

from __future__ import annotations

import io
import re
from datetime import date, datetime, timedelta

import pytest
from fastapi.testclient import TestClient
from lxml import etree  # type: ignore[import-untyped]  # lxml ships no type information and no stubs are installed
from openpyxl import load_workbook  # type: ignore[import-untyped]
from pypdf import PdfReader

from console.reports import charts
from console.reports.figures import Grain, report
from lephi.container import Container
from payments.agency.models import Agency
from payments.reconcile.models import ExceptionStatus
from payments.reconcile.reports import daily_close
from tests.console.conftest import MakeStaff, login
from tests.console.report_data import at, exception, failed_payment, fee, pay, procedure_of, refund

D1, D2 = date(2026, 11, 2), date(2026, 11, 3)
PERIOD = f"from={D1.isoformat()}&to={D2.isoformat()}"
ROLES = ["province_admin", "agency_admin", "finance", "approver", "viewer"]


def sign_in(client: TestClient, make_staff: MakeStaff, role: str, agency: str | None = "AGC-A") -> None:
    agency = None if role == "province_admin" else agency
    staff = make_staff(f"{role}.{agency or 'tinh'}@gov.vn".lower(), role=role, agency=agency)
    assert login(client, staff.email, staff.password).status_code == 303


def page(response: object, status: int = 200) -> str:
    assert response.status_code == status, (response.status_code, response.text[:300])  # type: ignore[attr-defined]
    assert response.headers["content-type"].startswith("text/html")  # type: ignore[attr-defined]
    return str(response.text)  # type: ignore[attr-defined]


@pytest.fixture
def money(ctx: Container, agencies: dict[str, str]) -> dict[str, int]:
    """A's and B's money over D1 and D2 and around them; returns what A's report of D1..D2 must show."""
    a, b = agencies["AGC-A"], agencies["AGC-B"]
    with ctx.db.write() as s:
        # A formula in a procedure's name must reach the spreadsheet as text.
        procedure_of(s, a).name = '=HYPERLINK("http://evil")'
        p1 = pay(s, a, 100_000, at(D1, 9))
        pay(s, a, 50_000, at(D1, 0, 5))  # 17:05 UTC on the day before: still D1 in Vietnam
        pay(s, a, 200_000, at(D1, 15), method="vnpay")
        pay(s, a, 30_000, at(D2, 23, 50), method="momo")  # 16:50 UTC: D2
        pay(s, a, 70_000, at(D2 + timedelta(days=1), 0, 10))  # 17:10 UTC on D2, but D3 in Vietnam: out
        pay(s, a, 90_000, at(D1 - timedelta(days=1), 23, 59))  # the day before: out of the period, in the trend
        failed_payment(s, a, 40_000, at(D1, 11))  # never succeeded: counts nowhere
        refund(s, p1, 20_000, at(D2, 8))
        fee(s, a, "vnpay", 200_000, 2_200, D1)
        fee(s, a, "vnpay", 1, 300, D2 + timedelta(days=1))  # booked after the period
        exception(s, a, D2)
        exception(s, a, D2, ExceptionStatus.resolved)
        # B's money: never in A's figures.
        pay(s, b, 999_000, at(D1, 10), method="vnpay")
        fee(s, b, "vnpay", 999_000, 9_990, D1)
        exception(s, b, D1)
    return {"payments": 4, "gross": 380_000, "refunds": 20_000, "net": 360_000, "fees": 2_200, "exceptions": 1}


def test_figures_equal_the_money_written(ctx: Container, money: dict[str, int], agencies: dict[str, str]) -> None:
    with ctx.db.read() as s:
        a = s.get(Agency, agencies["AGC-A"])
        assert a is not None
        r = report(s, [a], D1, D2, Grain.day)
    assert (r.summary.payments, r.summary.gross, r.summary.refunds, r.summary.net, r.summary.fees) == (
        money["payments"],
        money["gross"],
        money["refunds"],
        money["net"],
        money["fees"],
    )
    assert r.summary.net_of_fees == money["net"] - money["fees"] and r.open_exceptions == money["exceptions"]
    assert {m: (x.payments, x.gross, x.refunds, x.fees) for m, x in r.by_method.items()} == {
        "momo": (1, 30_000, 0, 0),
        "sandbox": (2, 150_000, 20_000, 0),
        "vnpay": (1, 200_000, 0, 2_200),
    }
    assert {d: (x.payments, x.gross, x.refunds, x.fees) for d, x in r.by_period.items()} == {
        D1: (3, 350_000, 0, 2_200),
        D2: (1, 30_000, 20_000, 0),
    }
    assert [(k[1], x.gross) for k, x in r.by_procedure.items()] == [("1.001234", 380_000)]
    # The same money as the API's daily close, day by day.
    with ctx.db.read() as s:
        for day in (D1, D2):
            close = daily_close(s, a.id, day).totals
            assert (close.payments, close.gross, close.refunds, close.net) == (
                r.by_period[day].payments,
                r.by_period[day].gross,
                r.by_period[day].refunds,
                r.by_period[day].net,
            )
    # The trend is the 30 days to D2, the day before the period included.
    assert len(r.trend) == 30 and r.trend[D1 - timedelta(days=1)].gross == 90_000 and r.trend[D2].gross == 30_000
    with ctx.db.read() as s:
        monthly = report(s, [a], D1, D2, Grain.month)
    assert list(monthly.by_period) == [date(2026, 11, 1)] and monthly.by_period[date(2026, 11, 1)].net == 360_000


def test_each_agency_sees_its_own_figures_and_the_province_every_one(
    client: TestClient, make_staff: MakeStaff, money: dict[str, int]
) -> None:
    sign_in(client, make_staff, "finance")
    text = page(client.get(f"/console/reports?lang=en&{PERIOD}"))
    summary = text[text.index('id="summary"') : text.index("<svg")]
    assert "VND\u00a0380,000" in summary and "VND\u00a0360,000" in summary and "VND\u00a02,200" in summary
    assert "999,000" not in text and "9,990" not in text and "AGC-B" not in text
    # Another agency by name, or one that does not exist: the same 404.
    page(client.get(f"/console/reports?agency=AGC-B&{PERIOD}"), 404)
    page(client.get(f"/console/reports?agency=NOPE&{PERIOD}"), 404)
    page(client.get(f"/console/reports/export.xlsx?agency=AGC-B&{PERIOD}"), 404)
    page(client.get(f"/console/reports/export.pdf?agency=AGC-B&{PERIOD}"), 404)

    sign_in(client, make_staff, "viewer", "AGC-B")
    text = page(client.get(f"/console/reports?lang=en&{PERIOD}"))
    assert "VND\u00a0999,000" in text
    assert "380,000" not in text and "200,000" not in text and "AGC-A" not in text

    sign_in(client, make_staff, "province_admin")
    everyone = page(client.get(f"/console/reports?lang=en&{PERIOD}"))
    assert "VND\u00a01,379,000" in everyone  # 380,000 + 999,000
    assert 'scope="row">AGC-A<' in everyone and 'scope="row">AGC-B<' in everyone
    only_b = page(client.get(f"/console/reports?lang=en&agency=AGC-B&{PERIOD}"))
    assert "VND\u00a0999,000" in only_b and "380,000" not in only_b
    # The form's "all agencies" choice sends an empty code.
    assert "1,379,000" in page(client.get(f"/console/reports?lang=en&agency=&{PERIOD}"))


def test_each_role_opens_reports_and_only_province_admin_the_province(
    client: TestClient, make_staff: MakeStaff, agencies: dict[str, str]
) -> None:
    for role in ROLES:
        sign_in(client, make_staff, role)
        home = page(client.get("/console/?lang=en"))
        assert 'href="/console/reports?lang=en"' in home, role
        assert ('href="/console/province?lang=en"' in home) is (role == "province_admin"), role
        page(client.get("/console/reports"))
        page(client.get("/console/province"), 200 if role == "province_admin" else 403)


def test_without_a_session_the_pages_send_to_sign_in(client: TestClient) -> None:
    paths = ("/console/reports", "/console/reports/export.xlsx", "/console/reports/export.pdf", "/console/province")
    for path in paths:
        response = client.get(path, follow_redirects=False)
        assert response.status_code == 303 and response.headers["location"].startswith("/console/login"), path


HOSTILE = [
    "from=2026-13-01",
    "from=abc",
    "from=2026-11-0%07",
    "to=2026-11-01&from=2026-11-05",  # the end before the start
    "from=2024-01-01&to=2026-01-01",  # longer than 366 days
    "from=0001-01-01",
    "by=week",
    "by=%0a",
    "by=day%0a",
    "agency=" + "A" * 41,
    "agency=AGC%01",
    "from=2026-11-01&from=2026-11-02",
    "lang=xx",
    "from=" + "9" * 5000,
]


MONTHS = ["2026-13", "2026-1", "abcd-ef", "2026-11-01", "0000-01", "2026%0a11", "2026-11&month=2026-10"]


def test_hostile_query_values_get_the_400_page(
    client: TestClient, make_staff: MakeStaff, agencies: dict[str, str]
) -> None:
    sign_in(client, make_staff, "province_admin")
    for query in HOSTILE:
        for path in ("/console/reports", "/console/reports/export.xlsx", "/console/reports/export.pdf"):
            page(client.get(f"{path}?{query}"), 400)
    for month in MONTHS:
        page(client.get(f"/console/province?month={month}"), 400)


SVG = re.compile(r"<svg\b.*?</svg>", re.S)


def chart_refs(sheet: object) -> list[tuple[str, list[tuple[str, str, str]]]]:
    """Each chart of ``sheet``: its kind and, per series, the cells of its name, its values and its categories."""

    def local(ref: str) -> str:
        name, _, cells = ref.rpartition("!")
        assert name == f"'{sheet.title}'"  # type: ignore[attr-defined]
        return cells.replace("$", "")

    return [
        (
            type(chart).__name__,
            [(local(s.tx.strRef.f), local(s.val.numRef.f), local(s.cat.numRef.f)) for s in chart.series],
        )
        for chart in sheet._charts  # type: ignore[attr-defined]
    ]


def test_xlsx_pdf_and_charts(
    client: TestClient, make_staff: MakeStaff, money: dict[str, int], ctx: Container, agencies: dict[str, str]
) -> None:
    sign_in(client, make_staff, "finance")
    response = client.get(f"/console/reports/export.xlsx?{PERIOD}")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/vnd.openxmlformats")
    assert response.headers["content-disposition"] == f'attachment; filename="report-AGC-A-{D1}-{D2}.xlsx"'
    book = load_workbook(io.BytesIO(response.content))
    assert book.sheetnames == ["Tổng hợp", "Theo phương thức", "Theo thủ tục", "Theo ngày", "Biểu đồ"]
    summary = book["Tổng hợp"]
    assert summary["A2"].value == "Cơ quan" and summary["B2"].value == "AGC-A · Agency AGC-A"
    assert summary["B3"].value == datetime(2026, 11, 2) and summary["B3"].is_date
    assert summary["B4"].value == datetime(2026, 11, 3)
    assert isinstance(summary["B5"].value, datetime)  # generated at
    assert [summary.cell(7, 1).value, summary.cell(7, 2).value] == ["Chỉ tiêu", "Giá trị"]
    figures = {summary.cell(r, 1).value: summary.cell(r, 2).value for r in range(8, 16)}
    assert figures["Tổng thu (₫)"] == 380_000 and figures["Thực thu (₫)"] == 360_000
    assert figures["Phí cổng (₫)"] == 2_200 and figures["Sai lệch đối soát đang mở"] == 1
    days = book["Theo ngày"]
    assert days.cell(7, 1).value == "Ngày" and days.cell(7, 3).value == "Tổng thu (₫)"
    assert days.cell(8, 1).value == datetime(2026, 11, 2) and days.cell(8, 1).is_date
    assert (days.cell(8, 3).value, days.cell(9, 3).value) == (350_000, 30_000)
    methods = book["Theo phương thức"]
    assert [methods.cell(r, 1).value for r in (8, 9, 10)] == ["momo", "sandbox", "vnpay"]
    procedures = book["Theo thủ tục"]
    assert procedures.cell(8, 3).value == '\'=HYPERLINK("http://evil")'
    assert procedures.cell(8, 3).data_type == "s"
    sheet = book["Biểu đồ"]
    trend, methods = chart_refs(sheet)
    assert trend == (
        "LineChart",
        [("B7", "B8:B37", "A8:A37"), ("C7", "C8:C37", "A8:A37")],
    )
    assert methods == ("BarChart", [("F7", "F8:F10", "E8:E10")])
    titles = [chart.title.tx.rich.p[0].r[0].t for chart in sheet._charts]
    assert titles == ["Tổng thu và thực thu 30 ngày đến 03/11/2026", "Tổng thu theo phương thức trong kỳ"]
    assert [sheet[c].value for c in ("A7", "B7", "C7", "E7", "F7")] == [
        "Ngày", "Tổng thu (₫)", "Thực thu (₫)", "Phương thức", "Tổng thu (₫)"
    ]  # fmt: skip
    # The figures the charts draw are those of the page's charts (charts.series of the same report).
    with ctx.db.read() as s:
        a = s.get(Agency, agencies["AGC-A"])
        assert a is not None
        drawn = charts.series(report(s, [a], D1, D2, Grain.day))
    assert [sheet.cell(r, 1).value.date() for r in range(8, 38)] == drawn.days
    assert [sheet.cell(r, 2).value for r in range(8, 38)] == drawn.gross
    assert [sheet.cell(r, 3).value for r in range(8, 38)] == drawn.net
    assert drawn.days[-1] == D2 and sheet["B37"].value == 30_000 and sheet["C37"].value == 10_000
    assert sheet["A36"].is_date and sheet["B36"].value == 350_000 and sheet["B35"].value == 90_000
    assert (
        [(sheet.cell(r, 5).value, sheet.cell(r, 6).value) for r in (8, 9, 10)]
        == drawn.methods
        == [
            ("momo", 30_000),
            ("sandbox", 150_000),
            ("vnpay", 200_000),
        ]
    )

    response = client.get(f"/console/reports/export.pdf?{PERIOD}")
    assert response.status_code == 200 and response.headers["content-type"] == "application/pdf"
    text = " ".join(p.extract_text() for p in PdfReader(io.BytesIO(response.content)).pages)
    assert "Báo cáo" in text and "380.000" in text and "360.000" in text and "AGC-A" in text
    assert "999.000" not in text
    # Both charts' titles and the bars' labels: the SVG is drawn in the PDF.
    assert "Tổng thu và thực thu 30 ngày" in text and "Tổng thu theo phương thức trong kỳ" in text
    assert "momo" in text and "vnpay" in text

    with ctx.db.write() as s:
        pay(s, agencies["AGC-A"], 1_000, at(D2, 12), method="<script>alert(1)</script>")
    response = client.get(f"/console/reports?{PERIOD}")
    text = page(response)
    svgs = SVG.findall(text)
    assert len(svgs) == 2
    policy = response.headers["content-security-policy"]
    nonce = re.search(r"'nonce-([^']+)'", policy)
    assert nonce
    for svg in svgs:
        root = etree.fromstring(svg.encode())
        tags = {etree.QName(e).localname for e in root.iter() if isinstance(e.tag, str)}
        assert "script" not in tags and "foreignObject" not in tags
        assert not [n for e in root.iter() if isinstance(e.tag, str) for n in e.attrib if n.lower().startswith("on")]
        assert root.get("role") == "img" and root.get("aria-label")
        styles = [e for e in root.iter() if isinstance(e.tag, str) and etree.QName(e).localname == "style"]
        assert styles and all(e.get("nonce") == nonce.group(1) for e in styles)
    assert "<script>alert(1)</script>" not in text and "&lt;script&gt;alert(1)&lt;/script&gt;" in text


def test_a_period_without_payments_has_empty_charts(
    client: TestClient, make_staff: MakeStaff, agencies: dict[str, str]
) -> None:
    sign_in(client, make_staff, "finance")
    quiet = "from=2026-06-01&to=2026-06-02"
    text = page(client.get(f"/console/reports?{quiet}"))
    assert len(SVG.findall(text)) == 2 and "Không có số liệu trong kỳ." in text
    response = client.get(f"/console/reports/export.xlsx?{quiet}")
    assert response.status_code == 200
    sheet = load_workbook(io.BytesIO(response.content))["Biểu đồ"]
    # The trend still has its 30 days (all zero); the by-method chart has no series.
    assert chart_refs(sheet) == [
        ("LineChart", [("B7", "B8:B37", "A8:A37"), ("C7", "C8:C37", "A8:A37")]),
        ("BarChart", []),
    ]
    assert sheet["A37"].value == datetime(2026, 6, 2) and sheet["A8"].value == datetime(2026, 5, 4)
    assert {sheet.cell(r, c).value for r in range(8, 38) for c in (2, 3)} == {0}
    assert sheet["E8"].value is None
    response = client.get(f"/console/reports/export.pdf?{quiet}")
    assert response.status_code == 200 and response.headers["content-type"] == "application/pdf"
    text = " ".join(p.extract_text() for p in PdfReader(io.BytesIO(response.content)).pages)
    assert "Tổng thu và thực thu 30 ngày" in text and "Tổng thu theo phương thức trong kỳ" in text


def test_the_sanitiser_leaves_drawing_only() -> None:
    hostile = (
        '<svg xmlns="http://www.w3.org/2000/svg" xmlns:xlink="http://www.w3.org/1999/xlink" onload="alert(1)">'
        '<script>alert(2)</script><style>.a{fill:red}</style><a href="javascript:alert(3)"><text>x</text></a>'
        '<foreignObject><div xmlns="http://www.w3.org/1999/xhtml">y</div></foreignObject>'
        '<rect style="fill:url(http://evil/)" onclick="alert(4)" fill="url(#g)"/>'
        '<image xlink:href="http://evil/track.png"/><use href="#local"/></svg>'
    )
    clean = charts.sanitise(hostile, "Biểu đồ", nonce="n0nce")
    root = etree.fromstring(clean.encode())
    tags = {etree.QName(e).localname for e in root.iter() if isinstance(e.tag, str)}
    assert tags == {"svg", "style", "rect"}
    assert "alert" not in clean and "evil" not in clean and "style=" not in clean
    assert 'nonce="n0nce"' in clean and root.get("aria-label") == "Biểu đồ" and root.get("role") == "img"
    assert root.find("{http://www.w3.org/2000/svg}rect").get("fill") == "url(#g)"


def test_province_month(client: TestClient, make_staff: MakeStaff, ctx: Container, agencies: dict[str, str]) -> None:
    a, b = agencies["AGC-A"], agencies["AGC-B"]
    with ctx.db.write() as s:
        created = at(D1, 8)
        pay(s, a, 100_000, created + timedelta(minutes=10), created=created)
        pay(s, a, 200_000, created + timedelta(minutes=30), created=created, method="vnpay")
        pay(s, a, 300_000, created + timedelta(minutes=90), created=created, method="vnpay")
        from tests.console.report_data import unpaid_dossier

        unpaid_dossier(s, a, 100_000, created)  # a fee not paid through the service
        unpaid_dossier(s, a, 0, created)  # no fee: not counted
        unpaid_dossier(s, b, 100_000, created)
        exception(s, a, D2)
        pay(s, a, 400_000, at(date(2026, 10, 31), 12))  # October
    sign_in(client, make_staff, "province_admin")
    text = page(client.get("/console/province?lang=en&month=2026-11"))
    row_a = re.search(r'<tr><th scope="row">AGC-A · .*?</tr>', text)
    assert row_a, text
    cells = re.findall(r'<td class="num">([^<]*)</td>', row_a.group(0))
    # dossiers with fees, paid, share, payments, amount, median, open exceptions
    assert cells == ["4", "3", "75.0 %", "3", "VND\u00a0600,000", "30 min", "1"]
    row_b = re.search(r'<tr><th scope="row">AGC-B · .*?</tr>', text)
    assert row_b and re.findall(r'<td class="num">([^<]*)</td>', row_b.group(0))[:3] == ["1", "0", "0.0 %"]
    assert len(SVG.findall(text)) == 2
    october = page(client.get("/console/province?lang=en&month=2026-10"))
    assert "VND\u00a0400,000" in october and "600,000" not in october
