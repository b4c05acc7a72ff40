"""The payments pages: each filter narrows the search in SQL, pagination keeps the filters, one agency's staff never
see another's payments (list, detail, exports), every role opens them, hostile filters get the 400 page, and the CSV
and XLSX exports hold what an accountant needs with formulas neutralised."""

from __future__ import annotations

import csv
import io
import re
from datetime import UTC, datetime
from typing import Any

import pytest
from fastapi.testclient import TestClient
from openpyxl import load_workbook  # type: ignore[import-untyped]
from sqlalchemy import event, text

from console.payments import export, search
from lephi.container import Container
from lephi.jobs import HANDLERS
from payments.outbox.worker import Worker
from payments.payment.models import Payment
from tests.conftest import ALL_SCOPES, Api
from tests.console.conftest import MakeStaff, login
from tests.factories import dossier_body, payment_body, sandbox_outcome

ROLES = ["province_admin", "agency_admin", "finance", "approver", "viewer"]
ROW = re.compile(r'<a href="/console/payments/(pay_[A-Za-z0-9_-]+)\?lang=')


def sign_in(client: TestClient, make_staff: MakeStaff, role: str, agency: str | None = "AGC-A") -> None:
    if role == "province_admin":
        agency = None
    staff = make_staff(f"{role}.{agency or 'tinh'}@gov.vn".lower(), role=role, agency=agency)
    response = login(client, staff.email, staff.password)
    assert response.status_code == 303, response.text


def pay(
    api: Api,
    code: str,
    outcome: str | None = "success",
    copies: int = 0,
    payer: dict[str, str] | None = None,
    key: str | None = None,
) -> str:
    """A dossier of ``code`` and a payment for it (taken to ``outcome`` on the sandbox page); the payment's id."""
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    body = dossier_body(code, copies=copies, payer=payer or {"name": "Nguyễn Văn An", "email": "an@example.com"})
    r = api.post("/v1/dossiers", body, headers=headers)
    assert r.status_code == 201, r.text
    r = api.post("/v1/payments", payment_body(code), headers=headers)
    assert r.status_code == 201, r.text
    payment = r.json()
    if outcome:
        sandbox_outcome(api.client, api.ctx.settings, payment["gateway_reference"], outcome)
    return str(payment["id"])


def b_key(api: Api) -> str:
    return api.new_key(ALL_SCOPES, "AGC-B")


def set_created(ctx: Container, payment_id: str, at: datetime) -> None:
    # Through the model, so that the column type stores it as the service does on each database.
    with ctx.db.write() as s:
        payment = s.get(Payment, payment_id)
        assert payment is not None
        payment.created_at = at


def ids(response: Any) -> list[str]:
    assert response.status_code == 200, (response.status_code, response.text[:400])
    return ROW.findall(response.text)


def main(page: str) -> str:
    return page[page.index("<main>") :]


def html(response: Any, status: int) -> None:
    assert response.status_code == status, (response.status_code, response.text[:400])
    assert response.headers["content-type"].startswith("text/html")
    assert "<main>" in response.text


def test_each_filter_narrows_the_search(
    client: TestClient, api: Api, make_staff: MakeStaff, agencies: dict[str, str]
) -> None:
    a = pay(
        api,
        "HS-2026-001",
        copies=1,
        payer={"name": "Trần Thị Bình", "email": "binh@example.com", "id_number": "001099012345"},
    )
    b = pay(api, "HS-2026-002", outcome="decline", copies=3, payer={"name": "Lê Văn Cường", "phone": "0912345678"})
    c = pay(api, "XY-77", outcome=None, copies=5, payer={"name": "Phạm Dũng", "email": "dung@mail.vn"})
    # Two Vietnam days: 2 Dec for a, 3 Dec for b (16:30 UTC on the 2nd is 23:30 there), 5 Dec for c.
    set_created(api.ctx, a, datetime(2026, 12, 2, 3, 0, tzinfo=UTC))
    set_created(api.ctx, b, datetime(2026, 12, 2, 17, 30, tzinfo=UTC))
    set_created(api.ctx, c, datetime(2026, 12, 5, 1, 0, tzinfo=UTC))
    sign_in(client, make_staff, "finance")
    every = ids(client.get("/console/payments"))
    assert every == [c, b, a]  # newest first
    cases = {
        "dossier=HS-2026-001": [a],
        "dossier=HS-2026*": [b, a],
        "dossier=HS-2026": [],  # exact unless it ends with a star
        "dossier=HS-2026%25*": [],  # LIKE's wildcards are searched for literally
        "payer=b%C3%ACnh": [a],  # "bình", in any case
        "payer=001099012345": [a],  # a citizen ID, whole, through its blind index
        "payer=00109901234": [],
        # E-mails and phones are sealed at rest: not searchable.
        "payer=BINH%40example": [],
        "payer=0912": [],
        "payer=mail.vn": [],
        "amount=105000": [a],
        "amount=105.000": [a],
        "min=110000": [c, b],
        "max=115000": [b, a],
        "min=110000&max=120000": [b],
        "from=2026-12-03": [c, b],
        "to=2026-12-02": [a],
        "from=2026-12-03&to=2026-12-03": [b],
        "status=succeeded": [a],
        "status=failed": [b],
        "status=pending": [c],
        "method=sandbox": [c, b, a],
        "method=momo": [],
        "dossier=HS-2026*&status=failed&payer=c%C6%B0%E1%BB%9Dng": [b],
    }
    for query, expected in cases.items():
        assert ids(client.get(f"/console/payments?{query}")) == expected, query
    page = client.get("/console/payments?status=succeeded&lang=en")
    assert "1 matching payments, VND\u00a0105,000 in total." in page.text
    assert "Succeeded" in page.text and "Trần Thị Bình" in page.text


def test_pagination_keeps_the_filters_both_ways(
    client: TestClient, api: Api, make_staff: MakeStaff, agencies: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(search, "PAGE_SIZE", 5)  # pages of 5 rows: the same code as 50, with fewer payments to make
    made = [pay(api, f"HS-P{i:03d}", outcome=None) for i in range(8)]
    other = pay(api, "ZZ-1", outcome=None)
    # One second apart, and three at the very same time across the first page's edge, for the tie broken by ids.
    for i, pid in enumerate(made):
        set_created(api.ctx, pid, datetime(2026, 11, 1, 8, 0, min(i, 2), tzinfo=UTC))
    sign_in(client, make_staff, "viewer")
    first = client.get("/console/payments?dossier=HS-P*&lang=en")
    first_ids = ids(first)
    assert len(first_ids) == 5 and other not in first_ids
    assert "8 matching payments" in first.text
    older = re.search(r'href="([^"]+)" rel="next"', first.text)
    assert older and 'rel="prev"' not in first.text
    url = older.group(1).replace("&amp;", "&")
    assert "dossier=HS-P%2A" in url and "lang=en" in url
    second = client.get(url)
    second_ids = ids(second)
    assert len(second_ids) == 3 and not set(second_ids) & set(first_ids)
    assert set(first_ids) | set(second_ids) == set(made)
    assert 'rel="next"' not in second.text
    newer = re.search(r'href="([^"]+)" rel="prev"', second.text)
    assert newer and "dossier=HS-P%2A" in newer.group(1)
    assert ids(client.get(newer.group(1).replace("&amp;", "&"))) == first_ids


def test_agency_isolation_in_list_detail_and_exports(
    client: TestClient, api: Api, make_staff: MakeStaff, agencies: dict[str, str]
) -> None:
    mine = pay(api, "HS-A-1")
    theirs = pay(api, "HS-B-1", key=b_key(api))
    sign_in(client, make_staff, "finance")
    assert ids(client.get("/console/payments")) == [mine]
    assert ids(client.get("/console/payments?dossier=HS-B-1")) == []
    for path in (f"/console/payments/{theirs}", "/console/payments/pay_unknown", "/console/payments?agency=AGC-B"):
        html(client.get(path), 404)
    unknown = client.get("/console/payments/pay_unknown").text
    assert main(client.get(f"/console/payments/{theirs}").text) == main(unknown)  # theirs looks like none
    html(client.get("/console/payments/export.csv?agency=AGC-B"), 404)
    body = client.get("/console/payments/export.csv").content.decode("utf-8-sig")
    assert "HS-A-1" in body and "HS-B-1" not in body and theirs not in body
    book = load_workbook(io.BytesIO(client.get("/console/payments/export.xlsx").content))
    cells = [str(c.value) for row in book.active.iter_rows() for c in row if c.value is not None]
    assert "HS-A-1" in cells and "HS-B-1" not in cells


def test_province_admin_sees_every_agency_or_one(
    client: TestClient, api: Api, make_staff: MakeStaff, agencies: dict[str, str]
) -> None:
    mine = pay(api, "HS-A-1")
    theirs = pay(api, "HS-B-1", key=b_key(api))
    sign_in(client, make_staff, "province_admin")
    assert set(ids(client.get("/console/payments"))) == {mine, theirs}
    assert ids(client.get("/console/payments?agency=AGC-B")) == [theirs]
    html(client.get("/console/payments?agency=NOPE"), 404)
    page = client.get(f"/console/payments/{theirs}?lang=en")
    html(page, 200)
    assert "AGC-B" in page.text and "Request a refund" not in page.text  # refunds are requested by finance


def test_every_staff_role_opens_the_pages_and_only_finance_is_offered_a_refund(
    client: TestClient, api: Api, make_staff: MakeStaff, agencies: dict[str, str]
) -> None:
    paid = pay(api, "HS-R-1")
    for role in ROLES:
        sign_in(client, make_staff, role)
        home = client.get("/console/?lang=en")
        assert 'href="/console/payments?lang=en"' in home.text, role
        assert ids(client.get("/console/payments")) == [paid], role
        detail = client.get(f"/console/payments/{paid}?lang=en")
        html(detail, 200)
        refund_link = f'href="/console/refunds/new?payment={paid}&amp;lang=en"'
        assert (refund_link in detail.text) is (role == "finance"), role
        assert client.get("/console/payments/export.csv").status_code == 200, role
        assert client.get("/console/payments/export.xlsx").status_code == 200, role


def test_without_a_session_the_pages_send_to_sign_in(client: TestClient, api: Api) -> None:
    paid = pay(api, "HS-S-1")
    for path in ("/console/payments", f"/console/payments/{paid}", "/console/payments/export.xlsx"):
        response = client.get(path + "?lang=en", follow_redirects=False)
        assert response.status_code == 303 and response.headers["location"] == "/console/login?lang=en", path


HOSTILE = [
    "amount=abc",
    "amount=-5",
    "amount=1e5",
    "amount=%EF%BC%91",  # a full-width digit one
    "min=99999999999999999999",
    "max=12.5x",
    "from=2026-02-30",
    "from=20261201",
    "to=0001-01-01",
    "to=9999-12-31",
    "status=paid",
    "status=SUCCEEDED",
    "method=sand%20box",
    "method=" + "m" * 41,
    "dossier=" + "H" * 22,
    "dossier=A*B",
    "dossier=**",
    "payer=" + "x" * 401,
    "payer=a%0Ab",
    "dossier=%1B%5B31m",
    "before=not-a-cursor",
    "after=eyJ4Ijoi",
    "before=x&after=y",
    "lang=fr",
]


def test_hostile_filters_get_the_400_page(
    client: TestClient, api: Api, make_staff: MakeStaff, agencies: dict[str, str]
) -> None:
    pay(api, "HS-H-1")
    sign_in(client, make_staff, "finance")
    for path in ("/console/payments", "/console/payments/export.csv", "/console/payments/export.xlsx"):
        for query in HOSTILE:
            response = client.get(f"{path}?{query}")
            assert response.status_code == 400, (path, query)
            html(response, 400)
        html(client.get(f"{path}?agency=X%1F"), 404)
        # A NUL is refused for every page before any route, by the service's request limits, with its 422 page.
        for query in ("payer=an%00", "agency=%00"):
            response = client.get(f"{path}?{query}")
            assert response.status_code == 422 and response.headers["content-type"].startswith("text/html")


def test_hostile_payment_ids_get_the_404_page(
    client: TestClient, api: Api, make_staff: MakeStaff, agencies: dict[str, str]
) -> None:
    sign_in(client, make_staff, "finance")
    for pid in ("x" * 41, "pay_%1F", "pay_%C3%A9", "%20", "pay_'--"):
        html(client.get(f"/console/payments/{pid}"), 404)


def test_detail_shows_dossier_attempts_timeline_callbacks_receipts_and_refunds(
    client: TestClient, api: Api, make_staff: MakeStaff, agencies: dict[str, str]
) -> None:
    code = "HS-D-1"
    failed = pay(api, code, outcome="decline", copies=2)
    r = api.post("/v1/payments", payment_body(code))
    assert r.status_code == 201, r.text
    paid = r.json()
    sandbox_outcome(api.client, api.ctx.settings, paid["gateway_reference"], "success")
    Worker(api.ctx, HANDLERS).run_once()  # issues the receipt
    refund = api.post(f"/v1/payments/{paid['id']}/refunds", {"amount": 10_000, "reason": "Nộp thừa phí bản sao"})
    assert refund.status_code == 201, refund.text
    sign_in(client, make_staff, "finance")
    page = client.get(f"/console/payments/{paid['id']}?lang=en")
    html(page, 200)
    body = page.text
    for expected in (
        code,
        "Thủ tục thử nghiệm",
        "Nguyễn Văn An",
        "Bản sao",
        "VND\u00a0110,000",  # the dossier's total
        f'href="/console/payments/{failed}?lang=en"',  # the other attempt
        "Failed",
        "payment.created",
        "gateway.callback",
        paid["gateway_reference"],
        "Nộp thừa phí bản sao",
        "VND\u00a010,000",
        "Original",
        "In force",
    ):
        assert expected in body, expected
    with api.ctx.db.read() as s:
        lookup, number = s.execute(text("SELECT lookup_code, number FROM document")).one()
        event_ids = [
            row[0]
            for row in s.execute(text("SELECT event_id FROM gateway_inbox WHERE payment_id = :p"), {"p": paid["id"]})
        ]
        token = s.execute(text("SELECT gateway_token FROM payment WHERE id = :p"), {"p": paid["id"]}).scalar_one()
    assert f'href="/r/{lookup}.pdf"' in body and f'href="/r/{lookup}.xml"' in body and f"{number:08d}" in body
    assert event_ids and all(e in body for e in event_ids)
    assert token not in body  # the gateway's idempotency token stays out of the page
    failed_page = client.get(f"/console/payments/{failed}?lang=en").text
    assert "Request a refund" not in failed_page and "No receipt has been issued" in failed_page
    listed = client.get(f"/console/payments?dossier={code}").text
    assert f"{number:08d}" in listed  # the receipt number in the list


@pytest.mark.parametrize(("role", "full"), [("finance", True), ("agency_admin", True), ("viewer", False)])
def test_payers_contacts_and_identity_numbers_are_masked_for_staff_who_do_not_need_them(
    client: TestClient, api: Api, make_staff: MakeStaff, agencies: dict[str, str], role: str, full: bool
) -> None:
    payer = {
        "name": "Trần Thị Bình",
        "email": "binh.secret@example.com",
        "phone": "0912345678",
        "id_number": "001099012345",
        "passport_number": "C7654321",
    }
    payment = pay(api, "HS-MASK-1", payer=payer)
    sign_in(client, make_staff, role)
    pages = [
        client.get("/console/payments").text,
        client.get(f"/console/payments/{payment}").text,
        client.get("/console/payments/export.csv").content.decode("utf-8-sig"),
    ]
    for page in pages:
        assert "Trần Thị Bình" in page
        for secret in ("binh.secret@example.com", "0912345678"):
            assert (secret in page) is full, (role, secret)
    detail = pages[1]
    assert ("001099012345" in detail) is full and ("C7654321" in detail) is full
    if not full:
        assert "b***@example.com" in pages[0] and "*******678" in pages[0] and "*********345" in detail


def test_exports_hold_vietnamese_headers_dates_numbers_and_no_formulas(
    client: TestClient, api: Api, make_staff: MakeStaff, agencies: dict[str, str]
) -> None:
    hostile = pay(api, "HS-X-1", payer={"name": '=HYPERLINK("http://x","y")', "email": "a@example.com"})
    plain = pay(api, "HS-X-2", outcome="decline", copies=1)
    set_created(api.ctx, hostile, datetime(2026, 12, 2, 17, 30, 5, tzinfo=UTC))
    with api.ctx.db.write() as s:  # names an outside system may send: a plus, an at sign, a full-width equals
        s.execute(text("UPDATE dossier SET payer_name = '@SUM(A1)', payer_phone = '+84 912' WHERE code = 'HS-X-2'"))
    sign_in(client, make_staff, "finance")
    response = client.get("/console/payments/export.csv?lang=en")
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/csv")
    assert response.content.startswith(b"\xef\xbb\xbf")
    assert 'filename="thanh-toan-AGC-A-' in response.headers["content-disposition"]
    rows = list(csv.reader(io.StringIO(response.content.decode("utf-8-sig"))))
    assert rows[0] == export.HEADERS and rows[0][0] == "Thời gian tạo (giờ Việt Nam)"
    by_code = {r[2]: r for r in rows[1:]}
    assert by_code["HS-X-1"][0] == "03/12/2026 00:30:05"  # Vietnam time
    assert by_code["HS-X-1"][3] == '\'=HYPERLINK("http://x","y")'
    assert by_code["HS-X-2"][3] == "'@SUM(A1)" and by_code["HS-X-2"][5] == "'+84 912"
    assert by_code["HS-X-1"][6] == "100000" and by_code["HS-X-1"][8] == "Thành công"
    assert by_code["HS-X-2"][8] == "Thất bại" and by_code["HS-X-2"][10] == plain

    response = client.get("/console/payments/export.xlsx?status=succeeded&lang=en")
    assert response.status_code == 200
    sheet = load_workbook(io.BytesIO(response.content)).active
    values = [[c.value for c in row] for row in sheet.iter_rows()]
    assert values[0][0] == "Danh sách thanh toán"
    assert values[1][:2] == ["Cơ quan", "AGC-A · Agency AGC-A"]
    assert values[2][:2] == ["Bộ lọc", "Trạng thái: Thành công"]
    assert isinstance(values[3][1], datetime)
    header = values.index(export.HEADERS)
    (data,) = values[header + 1 :]
    assert data[0] == datetime(2026, 12, 3, 0, 30, 5)
    cell = sheet.cell(row=header + 2, column=1)
    assert cell.is_date and cell.number_format == "dd/mm/yyyy hh:mm:ss"
    amount = sheet.cell(row=header + 2, column=7)
    assert amount.value == 100_000 and amount.data_type == "n"
    name = sheet.cell(row=header + 2, column=4)
    assert name.value == '\'=HYPERLINK("http://x","y")' and name.data_type == "s"


def test_an_export_over_the_limit_is_refused(
    client: TestClient, api: Api, make_staff: MakeStaff, agencies: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    pay(api, "HS-L-1")
    pay(api, "HS-L-2")
    monkeypatch.setattr(export, "MAX_ROWS", 1)
    sign_in(client, make_staff, "finance")
    for kind in ("csv", "xlsx"):
        response = client.get(f"/console/payments/export.{kind}?lang=en")
        html(response, 400)
        assert "More than 100,000 payments match" in response.text
    assert client.get("/console/payments/export.csv?dossier=HS-L-1").status_code == 200


def test_the_list_costs_the_same_queries_for_few_rows_or_many(
    client: TestClient, api: Api, make_staff: MakeStaff, agencies: dict[str, str]
) -> None:
    statements: list[str] = []

    def counted(*args: Any) -> None:
        statements.append(str(args[2]))

    def cost() -> int:
        statements.clear()
        event.listen(api.ctx.db.engine, "before_cursor_execute", counted)
        try:
            assert client.get("/console/payments").status_code == 200
        finally:
            event.remove(api.ctx.db.engine, "before_cursor_execute", counted)
        return len(statements)

    pay(api, "HS-Q-0")
    sign_in(client, make_staff, "finance")
    few = cost()
    for i in range(1, 6):
        pay(api, f"HS-Q-{i}")
    Worker(api.ctx, HANDLERS).run_once()  # receipts for every row, read in one query for the page
    assert cost() == few


def test_a_damaged_sealed_value_is_a_clear_503_without_the_value(
    client: TestClient, api: Api, make_staff: MakeStaff, agencies: dict[str, str]
) -> None:
    from sqlalchemy import String, select, type_coerce, update

    from payments.core.db import table_of
    from payments.dossier.models import Dossier

    payment = pay(api, "HS-DAMAGED", payer={"name": "An", "phone": "0912345670"})
    table = table_of(Dossier)
    with api.ctx.db.write() as s:
        stored = s.execute(
            select(type_coerce(table.c.payer_phone, String())).where(table.c.code == "HS-DAMAGED")
        ).scalar_one()
        damaged = stored[:-4] + ("AAAA" if not stored.endswith("AAAA") else "BBBB")
        s.execute(update(table).where(table.c.code == "HS-DAMAGED").values(payer_phone=type_coerce(damaged, String())))
    sign_in(client, make_staff, "finance")
    # Answered as the console answers other failures of its storage: a 503 problem, never a 500, never the value.
    for path in (f"/console/payments/{payment}", "/console/payments"):
        page = client.get(path, headers={"Accept": "text/html"})
        assert page.status_code == 503 and page.json()["code"] == "personal_data_unreadable", page.text[:300]
        assert damaged not in page.text and stored not in page.text
