"""The receipts pages: the search's filters and pagination, one agency's staff never reach another's documents on
any route, only finance and agency admins replace a document (with its audit row and its 04/SS-HĐĐT notice, and
never twice), and the verification of an uploaded file says what it is or exactly why not, storing nothing."""

from __future__ import annotations

import importlib.util
import re
import threading
from datetime import UTC, date, datetime
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import update
from sqlmodel import select

from console.audit.models import AuditLog
from console.audit.service import verify as verify_chain
from console.receipts import service
from console.staff.models import StaffUser
from invoices.service import issue_receipt
from invoices.tables import Document, DocumentPurpose
from invoices.tax.tables import TaxMessage, TaxMessageKind, TaxMessageStatus
from invoices.verify import pinned, verify_notice
from invoices.xmldsig import MAX_XML_BYTES
from lephi.container import Container
from lephi.migrate import MIGRATIONS
from tests.conftest import ALL_SCOPES, Api
from tests.console.conftest import MakeStaff, count, csrf_of, login
from tests.console.test_console_fuzz import FIELDS, HOSTILE, page_below_500
from tests.factories import dossier_body, payment_body, sandbox_outcome

ROW = re.compile(r'<a href="/console/receipts/(doc_[A-Za-z0-9_]+)\?lang=')
REPLACED = re.compile(r"/console/receipts/(doc_[A-Za-z0-9_]+)\?lang=vi&done=replaced")


def receipt(api: Api, code: str, payer: dict[str, str] | None = None, agency: str | None = None) -> str:
    """A dossier ``code`` paid in the sandbox and its receipt issued; the document's id."""
    headers = {"Authorization": f"Bearer {api.new_key(ALL_SCOPES, agency)}"} if agency else {}
    body = dossier_body(code, payer=payer or {"name": "Nguyễn Văn An", "email": "an@example.com"})
    assert api.post("/v1/dossiers", body, headers=headers).status_code == 201
    payment = api.post("/v1/payments", payment_body(code), headers=headers).json()
    sandbox_outcome(api.client, api.ctx.settings, payment["gateway_reference"], "success")
    doc_id = issue_receipt(api.ctx, api.ctx.signers, payment["id"])
    assert doc_id is not None
    return doc_id


def sign_in(client: TestClient, make_staff: MakeStaff, role: str, agency: str | None = "AGC-A") -> None:
    if role == "province_admin":
        agency = None
    staff = make_staff(f"{role}.{agency or 'tinh'}@gov.vn".lower(), role=role, agency=agency)
    assert login(client, staff.email, staff.password).status_code == 303


def ids(response: Any) -> list[str]:
    assert response.status_code == 200, (response.status_code, response.text[:400])
    return ROW.findall(response.text)


def document(ctx: Container, doc_id: str) -> Document:
    with ctx.db.read() as s:
        doc = s.get(Document, doc_id)
        assert doc is not None
        return doc


def replacements_audited(ctx: Container) -> int:
    with ctx.db.read() as s:
        return len(s.exec(select(AuditLog).where(AuditLog.action == "receipt.replaced")).all())


def set_dates(ctx: Container, doc_id: str, issued: date, created: datetime) -> None:
    with ctx.db.write() as s:
        doc = s.get(Document, doc_id)
        assert doc is not None
        doc.issue_date, doc.created_at = issued, created


def replace_form(client: TestClient, doc_id: str, **fields: str) -> Any:
    page = client.get(f"/console/receipts/{doc_id}")
    assert page.status_code == 200, page.text[:400]
    current = service.current_payer(document(client.app.state.ctx, doc_id))  # type: ignore[attr-defined]
    body = {**current, "csrf": csrf_of(page.text), "lang": "vi", **fields}
    return client.post(f"/console/receipts/{doc_id}/replace", data=body, follow_redirects=False)


def test_filters_narrow_the_list_and_pages_keep_them(
    client: TestClient, api: Api, make_staff: MakeStaff, agencies: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    a = receipt(api, "HS-2026-001", {"name": "Trần Thị Bình", "tax_code": "0312345678"})
    b = receipt(api, "HS-2026-002", {"name": "Lê Văn Cường"})
    c = receipt(api, "XY-77", {"name": "Phạm Dũng"})
    other = receipt(api, "HS-B-1", agency="AGC-B")
    set_dates(api.ctx, a, date(2026, 12, 2), datetime(2026, 12, 2, 3, 0, tzinfo=UTC))
    set_dates(api.ctx, b, date(2026, 12, 3), datetime(2026, 12, 2, 17, 30, tzinfo=UTC))
    set_dates(api.ctx, c, date(2026, 12, 5), datetime(2026, 12, 5, 1, 0, tzinfo=UTC))
    set_dates(api.ctx, other, date(2026, 12, 4), datetime(2026, 12, 4, 1, 0, tzinfo=UTC))
    with api.ctx.db.write() as s:
        message = s.exec(select(TaxMessage).where(TaxMessage.document_id == b)).one()
        message.status = TaxMessageStatus.acknowledged
        for row in s.exec(select(TaxMessage).where(TaxMessage.document_id == c)).all():
            s.delete(row)
    da, db = (document(api.ctx, d) for d in (a, b))
    sign_in(client, make_staff, "finance")
    assert ids(client.get("/console/receipts")) == [c, b, a]  # newest first, its own agency only
    cases = {
        f"number={da.number}": [a],
        f"number={da.template}{da.series}-{da.number:08d}": [a],
        f"number={da.series}-{db.number}": [b],
        f"series={da.series}": [c, b, a],
        "series=K99TZZ": [],
        "dossier=HS-2026-001": [a],
        "dossier=HS-2026*": [b, a],
        "payer=b%C3%ACnh": [a],
        "payer=0312345": [a],
        "from=2026-12-03": [c, b],
        "to=2026-12-02": [a],
        "from=2026-12-03&to=2026-12-03": [b],
        "kind=original": [c, b, a],
        "kind=replacement": [],
        "transmission=acknowledged": [b],
        "transmission=queued": [a],
        "transmission=none": [c],
    }
    for query, expected in cases.items():
        assert ids(client.get(f"/console/receipts?{query}")) == expected, query
    for bad in (
        "number=abc",
        "from=2026-02-30",
        "kind=draft",
        "transmission=lost",
        "series=%01",
        "before=zz",
        "payer=" + "x" * 401,
    ):
        assert client.get(f"/console/receipts?{bad}").status_code == 400, bad
    assert client.get("/console/receipts?agency=AGC-B").status_code == 404
    province = TestClient(client.app)
    sign_in(province, make_staff, "province_admin")
    assert ids(province.get("/console/receipts")) == [c, other, b, a]
    assert ids(province.get("/console/receipts?agency=AGC-B")) == [other]
    assert ids(province.get("/console/receipts?agency=&kind=original")) == [c, other, b, a]  # "all agencies"

    monkeypatch.setattr(service, "PAGE_SIZE", 2)
    first = client.get("/console/receipts?dossier=HS*&lang=en")
    assert ids(first) == [b, a] and "before=" not in first.text
    page = client.get("/console/receipts?lang=en")
    assert ids(page) == [c, b]
    older = re.search(r'href="(/console/receipts\?[^"]*before=[^"]+)"', page.text)
    assert older
    assert "dossier=HS" not in older.group(1)
    filtered = client.get("/console/receipts?series=" + da.series)
    link = re.search(r'href="(/console/receipts\?[^"]*before=[^"]+)"', filtered.text)
    assert link and f"series={da.series}" in link.group(1)  # the next page keeps the filters
    second = client.get(older.group(1).replace("&amp;", "&"))
    assert ids(second) == [a] and 'rel="prev"' in second.text and 'rel="next"' not in second.text
    newer = re.search(r'href="(/console/receipts\?[^"]*after=[^"]+)"', second.text)
    assert newer and ids(client.get(newer.group(1).replace("&amp;", "&"))) == [c, b]


def test_another_agencys_receipt_answers_404_on_every_route(
    client: TestClient, api: Api, make_staff: MakeStaff, agencies: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(api.ctx.settings, "tax_office_code", "10100")
    theirs = receipt(api, "HS-B-1", agency="AGC-B")
    sign_in(client, make_staff, "finance")
    csrf = csrf_of(client.get("/console/receipts/verify").text)
    for doc_id in (theirs, "doc_unknown", "doc_" + "x" * 60):
        for suffix in ("", "/xml", "/pdf", "/notice"):
            assert client.get(f"/console/receipts/{doc_id}{suffix}").status_code == 404, (doc_id, suffix)
        body = {"csrf": csrf, "lang": "vi", "name": "Ai Đó", "reason": "Sai tên"}
        assert client.post(f"/console/receipts/{doc_id}/replace", data=body).status_code == 404
    assert count(api.ctx, "document") == 1
    # A province admin reads any agency's receipt, but replaces none.
    province = TestClient(client.app)
    sign_in(province, make_staff, "province_admin")
    page = province.get(f"/console/receipts/{theirs}")
    assert page.status_code == 200 and 'action="/console/receipts/' not in page.text
    assert province.get(f"/console/receipts/{theirs}/xml").content == document(api.ctx, theirs).xml


def test_a_replacement_is_found_and_listed_by_the_payer_it_corrected(
    client: TestClient, api: Api, make_staff: MakeStaff, agencies: dict[str, str]
) -> None:
    """The dossier keeps the payer first sent; the replacement names the corrected one, and staff look it up by that."""
    doc_id = receipt(api, "HS-9", {"name": "Nguyen Van A", "tax_code": "0312345678"})
    other = receipt(api, "HS-10", {"name": "Lê Thị Hoa", "tax_code": "0319999999"})
    sign_in(client, make_staff, "finance")
    response = replace_form(client, doc_id, name="Nguyễn Văn Ánh", tax_code="0401234567", reason="Sai tên, MST")
    assert response.status_code == 303, response.text[:600]
    match = REPLACED.search(response.headers["location"])
    assert match
    new_id = match.group(1)
    row = document(api.ctx, new_id)
    assert (row.buyer_name, row.buyer_tax_code) == ("Nguyễn Văn Ánh", "0401234567")
    assert (document(api.ctx, doc_id).buyer_name, document(api.ctx, other).buyer_name) == (None, None)
    cases = {
        "payer=V%C4%83n%20%C3%81nh": [new_id],  # the corrected name: the replacement only
        "payer=Nguyen%20Van%20A": [doc_id],  # the name first sent: the receipt it replaced
        "payer=0401234": [new_id],
        "payer=0312345": [doc_id],
        "payer=hoa": [other],
    }
    for query, expected in cases.items():
        assert ids(client.get(f"/console/receipts?{query}")) == expected, query
    listed = client.get("/console/receipts?kind=replacement").text
    assert "Nguyễn Văn Ánh" in listed and "Nguyen Van A" not in listed

    # Replacements issued before the row kept the payer get it from their XML when the schema is upgraded.
    with api.ctx.db.write() as s:
        s.execute(update(Document).values(buyer_name=None, buyer_tax_code=None))
        assert _migration("0020_document_buyer").backfill(s.connection()) == 1
    assert (document(api.ctx, new_id).buyer_name, document(api.ctx, new_id).buyer_tax_code) == (
        "Nguyễn Văn Ánh",
        "0401234567",
    )
    assert document(api.ctx, doc_id).buyer_name is None


def _migration(name: str) -> Any:
    spec = importlib.util.spec_from_file_location(name, MIGRATIONS / "versions" / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("role", ["viewer", "approver"])
def test_readers_get_no_replace_form_and_403_on_a_direct_post(
    client: TestClient, api: Api, make_staff: MakeStaff, agencies: dict[str, str], role: str
) -> None:
    doc_id = receipt(api, "HS-1")
    sign_in(client, make_staff, role)
    page = client.get(f"/console/receipts/{doc_id}")
    assert page.status_code == 200 and f"/console/receipts/{doc_id}/replace" not in page.text
    body = {"csrf": csrf_of(page.text), "lang": "vi", "name": "Trần Thị Bình", "reason": "Sai tên"}
    response = client.post(f"/console/receipts/{doc_id}/replace", data=body)
    assert response.status_code == 403 and "<main>" in response.text
    assert count(api.ctx, "document") == 1


def test_finance_replaces_a_receipt_with_its_notice_and_audit_row(
    client: TestClient, api: Api, make_staff: MakeStaff, agencies: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(api.ctx.settings, "tax_office_code", "10100")
    doc_id = receipt(api, "HS-1", {"name": "Nguyen Van A", "email": "an@example.com"})
    sign_in(client, make_staff, "finance")
    page = client.get(f"/console/receipts/{doc_id}")
    assert page.status_code == 200
    original = document(api.ctx, doc_id)
    assert f'href="/console/payments/{original.payment_id}?lang=vi"' in page.text
    assert original.lookup_code in page.text and "CHƯA tiếp nhận" in page.text  # queued: not yet accepted
    assert client.get(f"/console/receipts/{doc_id}/xml").content == original.xml
    pdf = client.get(f"/console/receipts/{doc_id}/pdf")
    assert pdf.status_code == 200 and pdf.content.startswith(b"%PDF")
    payment_page = client.get(f"/console/payments/{original.payment_id}")
    assert f'href="/console/receipts/{doc_id}?lang=vi"' in payment_page.text

    response = replace_form(client, doc_id, name="Nguyễn Văn An", reason="Sai tên người nộp")
    assert response.status_code == 303, response.text[:600]
    match = REPLACED.search(response.headers["location"])
    assert match
    new_id = match.group(1)
    new = document(api.ctx, new_id)
    assert new.purpose is DocumentPurpose.replacement and new.related_document_id == doc_id
    assert new.reason == "Sai tên người nộp" and service.current_payer(new)["name"] == "Nguyễn Văn An"
    shown = client.get(response.headers["location"])
    assert "Đã lập biên lai thay thế" in shown.text and f"/console/receipts/{new_id}/notice" in shown.text

    notice = client.get(f"/console/receipts/{new_id}/notice")
    assert notice.status_code == 200 and notice.headers["content-type"].startswith("application/xml")
    certificate = api.ctx.signers.for_agency(api.agency_code, "0100000001", "x").certificate
    data = verify_notice(notice.content, pinned(certificate)).signed_data
    assert data.findtext("DSHDon/HDon/SHDon") == str(original.number)
    assert data.findtext("DSHDon/HDon/TCTBao") == "3" and data.findtext("DSHDon/HDon/LDo") == "Sai tên người nộp"
    # The replaced receipt links to its replacement and offers the same notice.
    old_page = client.get(f"/console/receipts/{doc_id}")
    assert f'href="/console/receipts/{new_id}?lang=vi"' in old_page.text
    assert f"/console/receipts/{doc_id}/replace" not in old_page.text
    assert client.get(f"/console/receipts/{doc_id}/notice").content == notice.content

    with api.ctx.db.read() as s:
        # The notice names the receipt it reports, so the page finds it by that and not by reading notices.
        (message,) = s.exec(select(TaxMessage).where(TaxMessage.kind == TaxMessageKind.notice)).all()
        assert message.document_id == doc_id
        (row,) = s.exec(select(AuditLog).where(AuditLog.action == "receipt.replaced")).all()
        assert verify_chain(s).broken is None
    assert row.target == doc_id and row.before is not None and row.after is not None
    assert row.before["payer"]["name"] == "Nguyen Van A" and row.after["payer"]["name"] == "Nguyễn Văn An"
    assert row.after["replacement_id"] == new_id and row.after["reason"] == "Sai tên người nộp"

    # An agency admin may replace too: the replacement, now the receipt in force.
    admin = TestClient(client.app)
    sign_in(admin, make_staff, "agency_admin")
    assert f"/console/receipts/{new_id}/replace" in admin.get(f"/console/receipts/{new_id}").text


def test_a_replacement_is_refused_clearly_and_changes_nothing(
    client: TestClient, api: Api, make_staff: MakeStaff, agencies: dict[str, str]
) -> None:
    doc_id = receipt(api, "HS-1", {"name": "Nguyen Van A", "email": "an@example.com"})
    sign_in(client, make_staff, "finance")
    refusals = [
        ({"name": "Nguyễn Văn An", "reason": ""}, 400, "Cần ghi lý do"),
        ({"name": "Nguyễn Văn An", "reason": "x" * 256}, 400, "Lý do quá dài"),
        ({"reason": "Sai tên"}, 400, "Chưa có thông tin nào được sửa"),
        ({"name": "", "reason": "Sai tên"}, 400, "Không thể để trống"),
        ({"email": "not an email", "reason": "Sai email"}, 400, "không hợp lệ"),
        ({"tax_code": "12AB", "reason": "Sai MST"}, 400, "không hợp lệ"),
    ]
    for fields, status, text in refusals:
        response = replace_form(client, doc_id, **fields)
        assert response.status_code == status, (fields, response.status_code)
        assert text in response.text, fields
    assert count(api.ctx, "document") == 1 and replacements_audited(api.ctx) == 0

    page = client.get(f"/console/receipts/{doc_id}")
    body = {**service.current_payer(document(api.ctx, doc_id)), "csrf": csrf_of(page.text), "lang": "vi"}
    body |= {"name": "Nguyễn Văn An", "reason": "Sai tên"}
    assert client.post(f"/console/receipts/{doc_id}/replace", data=body, follow_redirects=False).status_code == 303
    # The same form sent again (a second tab, a double click): refused, one replacement only.
    again = client.post(f"/console/receipts/{doc_id}/replace", data=body | {"name": "Nguyễn Văn Ân"})
    assert again.status_code == 409 and "đã được thay thế" in again.text
    assert count(api.ctx, "document") == 2 and replacements_audited(api.ctx) == 1


def test_a_receipt_with_an_adjustment_and_the_adjustment_itself_are_not_replaced(
    client: TestClient, api: Api, make_staff: MakeStaff, agencies: dict[str, str]
) -> None:
    adjusted = receipt(api, "HS-2")
    original = document(api.ctx, adjusted)
    with api.ctx.db.write() as s:
        # A refund's adjustment as the outbox issues it: the same payment, naming the receipt.
        fields = original.model_dump(exclude={"id", "number", "lookup_code", "purpose", "related_document_id"})
        s.add(
            Document(
                **fields,
                number=99_999_999,  # out of the way of the numbers the next receipts take
                lookup_code="ADJUSTMENT01",
                purpose=DocumentPurpose.adjustment,
                related_document_id=adjusted,
            )
        )
    sign_in(client, make_staff, "finance")
    page = client.get(f"/console/receipts/{adjusted}?lang=en")
    assert f"/console/receipts/{adjusted}/replace" not in page.text and "Adjustment:" in page.text
    body = {"csrf": csrf_of(page.text), "lang": "en", "name": "Someone Else", "reason": "Wrong name"}
    response = client.post(f"/console/receipts/{adjusted}/replace", data=body)
    assert response.status_code == 409 and "has an adjustment (a refund)" in response.text

    doc_id = receipt(api, "HS-1")
    with api.ctx.db.write() as s:
        doc = s.get(Document, doc_id)
        assert doc is not None
        doc.purpose = DocumentPurpose.adjustment
    page = client.get(f"/console/receipts/{doc_id}")
    assert f"/console/receipts/{doc_id}/replace" not in page.text
    body = {"csrf": csrf_of(page.text), "lang": "en", "name": "Someone Else", "reason": "Wrong name"}
    response = client.post(f"/console/receipts/{doc_id}/replace", data=body)
    assert response.status_code == 409 and "An adjustment is not replaced" in response.text
    assert count(api.ctx, "document") == 3 and replacements_audited(api.ctx) == 0


def _verify(client: TestClient, content: bytes, name: str = "receipt.xml") -> Any:
    csrf = csrf_of(client.get("/console/receipts/verify").text)
    files = {"file": (name, content, "application/xml")}
    return client.post("/console/receipts/verify", data={"csrf": csrf, "lang": "en"}, files=files)


def test_verify_says_what_a_file_is_or_exactly_why_not_and_stores_nothing(
    client: TestClient, api: Api, make_staff: MakeStaff, agencies: dict[str, str]
) -> None:
    doc_id = receipt(api, "HS-1", {"name": "Trần Thị Bình"})
    doc = document(api.ctx, doc_id)
    sign_in(client, make_staff, "viewer")
    before = {t: count(api.ctx, t) for t in ("document", "tax_message")}

    valid = _verify(client, doc.xml)
    assert valid.status_code == 200 and "The receipt is VALID" in valid.text
    assert "AGC-A · Agency AGC-A" in valid.text and f"{doc.template}{doc.series}-{doc.number:08d}" in valid.text
    assert f'href="/console/receipts/{doc_id}?lang=en"' in valid.text  # issued here, byte for byte

    tampered = _verify(client, doc.xml.replace("Trần Thị Bình".encode(), "Trần Thị Bính".encode()))
    assert tampered.status_code == 400 and "The content was changed after it was signed" in tampered.text

    not_xml = _verify(client, b"%PDF-1.7 not a receipt", "receipt.pdf")
    assert not_xml.status_code == 400 and "not readable XML" in not_xml.text

    too_large = _verify(client, b"<a>" + b" " * MAX_XML_BYTES + b"</a>")
    assert too_large.status_code == 413 and "too large" in too_large.text and "<main>" in too_large.text

    huge = _verify(client, b"<a>" + b" " * (3 * MAX_XML_BYTES) + b"</a>")
    assert huge.status_code == 413 and huge.headers["content-type"].startswith("text/html")

    empty = client.post("/console/receipts/verify", data={"csrf": csrf_of(valid.text), "lang": "en"})
    assert empty.status_code == 400 and "Choose an XML file" in empty.text
    assert {t: count(api.ctx, t) for t in before} == before
    # No session, no token: refused before the file is read.
    assert TestClient(client.app).post("/console/receipts/verify", files={"file": ("a", b"<a/>")}).status_code == 403


def test_the_search_reads_the_newest_message_of_each_document(
    client: TestClient, api: Api, make_staff: MakeStaff, agencies: dict[str, str]
) -> None:
    doc_id = receipt(api, "HS-1")
    with api.ctx.db.write() as s:
        first = s.exec(select(TaxMessage).where(TaxMessage.document_id == doc_id)).one()
        first.status = TaxMessageStatus.rejected
        first.error = "Sai định dạng"
        s.add(
            TaxMessage(
                agency_id=first.agency_id,
                document_id=doc_id,
                kind=TaxMessageKind.document,
                message_type=first.message_type,
                mtdiep=first.mtdiep[:-1] + "Z",
                status=TaxMessageStatus.coded,
                xml=first.xml,
                mccqt="M1-26-ABCDE-00000000001",
                created_at=datetime(2099, 1, 1, tzinfo=UTC),
            )
        )
    sign_in(client, make_staff, "finance")
    assert ids(client.get("/console/receipts?transmission=coded")) == [doc_id]
    assert ids(client.get("/console/receipts?transmission=rejected")) == []
    page = client.get(f"/console/receipts/{doc_id}?lang=en")
    assert "The tax authority has accepted this receipt" in page.text
    assert "Sai định dạng" in page.text and "M1-26-ABCDE-00000000001" in page.text


def test_hostile_input_on_a_real_receipt_answers_a_page_below_500(
    client: TestClient, api: Api, make_staff: MakeStaff, agencies: dict[str, str]
) -> None:
    # The console fuzz test walks these routes with ids that name nothing; this one sends the same input at a
    # receipt that exists, as the user allowed to replace it.
    doc_id = receipt(api, "HS-1")
    sign_in(client, make_staff, "finance")
    csrf = csrf_of(client.get(f"/console/receipts/{doc_id}").text)
    for value in HOSTILE:
        for path in ("/console/receipts", f"/console/receipts/{doc_id}", "/console/receipts/verify"):
            query = {"lang": "en", **dict.fromkeys(("number", "series", "dossier", "payer", "from", "kind"), value)}
            page_below_500(client.get(path, params=query), f"GET {path} {value!r}")
        body = {"csrf": csrf, "lang": "en", **dict.fromkeys(FIELDS, value)}
        page_below_500(client.post(f"/console/receipts/{doc_id}/replace", data=body), f"replace {value!r}")
        files = {"file": ("x.xml", value.encode(), "application/xml")}
        page_below_500(client.post("/console/receipts/verify", data=body, files=files), f"verify {value!r}")
    assert count(api.ctx, "document") == 1


def test_two_replacements_at_once_issue_one(api: Api, make_staff: MakeStaff, agencies: dict[str, str]) -> None:
    doc_id = receipt(api, "HS-1", {"name": "Nguyen Van A"})
    makers = [make_staff(f"ketoan{n}@agc-a.gov.vn", role="finance") for n in (1, 2)]
    with api.ctx.db.read() as s:
        users = [s.get(StaffUser, m.id) for m in makers]
    barrier = threading.Barrier(2)
    outcomes: list[str] = []

    def run(user: StaffUser | None, name: str) -> None:
        assert user is not None
        barrier.wait()
        try:
            with api.ctx.db.write() as s:
                service.replace(s, api.ctx, user, doc_id, {"name": name, "reason": "Sai tên"}, "127.0.0.1")
            outcomes.append("replaced")
        except service.Refused as exc:
            outcomes.append(exc.key)

    names = ("Nguyễn Văn An", "Nguyễn Văn Ân")
    threads = [threading.Thread(target=run, args=pair) for pair in zip(users, names, strict=True)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert sorted(outcomes) == ["receipts_replace_already", "replaced"]
    assert count(api.ctx, "document") == 2 and replacements_audited(api.ctx) == 1


def test_the_console_pdf_carries_the_agency_logo_as_the_api_s_does(
    client: TestClient, api: Api, make_staff: MakeStaff, agencies: dict[str, str]
) -> None:
    from payments.agency.models import AgencyLogo
    from tests.invoices.test_lookup import _pdf_images
    from tests.invoices.test_render import png

    doc_id = receipt(api, "HS-LOGO", {"name": "Nguyen Van A"})
    with api.ctx.db.write() as s:
        s.add(
            AgencyLogo(
                agency_id=document(api.ctx, doc_id).agency_id, content_type="image/png", data=png(40, 20), sha256="-"
            )
        )
    sign_in(client, make_staff, "viewer")
    assert _pdf_images(client.get(f"/console/receipts/{doc_id}/pdf").content) == [(40, 20)]
