"""The receipts pages in Chromium: a finance user finds a receipt, downloads its PDF, replaces it with a reason and
sees the 04/SS-HĐĐT notice that results; axe-core finds no serious or critical violation on the list, the receipt's
page and the verify page, at a phone's width and at 1366x768."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
from playwright.sync_api import Browser, Page, sync_playwright
from sqlmodel import select

from console.staff.service import create_staff, use_token
from invoices.service import issue_receipt
from invoices.tables import Document, DocumentPurpose
from tests.axe import violations
from tests.conftest import LiveServer
from tests.factories import dossier_body, payment_body, sandbox_outcome
from tests.test_browser import CHROMIUM, FLAGS

PASSWORD = "a long enough password"
PHONE = {"width": 390, "height": 844}
LAPTOP = {"width": 1366, "height": 768}


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        yield b
        b.close()


def _receipt(server: LiveServer) -> str:
    with httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {server.key}"}) as http:
        body = dossier_body(payer={"name": "Nguyen Van A", "email": "an@example.com"})
        code = http.post("/v1/dossiers", json=body, headers={"Idempotency-Key": "d1"}).json()["code"]
        payment = http.post("/v1/payments", json=payment_body(code), headers={"Idempotency-Key": "p1"}).json()
        sandbox_outcome(http, server.ctx.settings, payment["gateway_reference"], "success")
    doc_id = issue_receipt(server.ctx, server.ctx.signers, payment["id"])
    assert doc_id is not None
    return doc_id


def _sign_in(page: Page, server: LiveServer, email: str) -> None:
    page.goto(f"{server.url}/console/login?lang=en")
    page.fill("#email", email)
    page.fill("#password", PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    assert "/login" not in page.url


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_finance_downloads_a_receipt_replaces_it_and_sees_the_notice(
    live_server: LiveServer, browser: Browser, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(live_server.ctx.settings, "tax_office_code", "10100")
    with live_server.ctx.db.write() as s:
        _, token = create_staff(s, email="ketoan@agc-a.gov.vn", role="finance", agency_code="AGC-A")
    with live_server.ctx.db.write() as s:
        use_token(s, token, PASSWORD)
    doc_id = _receipt(live_server)
    base = f"{live_server.url}/console/receipts"
    found: dict[str, list[dict[str, object]]] = {}

    context = browser.new_context(bypass_csp=True, viewport=LAPTOP, accept_downloads=True)  # type: ignore[arg-type]
    page = context.new_page()
    _sign_in(page, live_server, "ketoan@agc-a.gov.vn")
    for lang in ("vi", "en"):
        for name, url in (("list", base), ("detail", f"{base}/{doc_id}"), ("verify", f"{base}/verify")):
            page.goto(f"{url}?lang={lang}")
            found[f"laptop {name} {lang}"] = violations(page)
    page.get_by_role("link", name="Receipts", exact=True).first.click()
    page.locator(f'a[href^="/console/receipts/{doc_id}"]').first.click()
    assert f"/console/receipts/{doc_id}" in page.url
    with page.expect_download() as download:
        page.get_by_role("link", name="Download the PDF").click()
    pdf = download.value
    assert pdf.suggested_filename.endswith(".pdf")
    path = pdf.path()
    assert path is not None and path.read_bytes().startswith(b"%PDF")
    context.close()

    context = browser.new_context(bypass_csp=True, viewport=PHONE)  # type: ignore[arg-type]
    page = context.new_page()
    _sign_in(page, live_server, "ketoan@agc-a.gov.vn")
    for name, url in (("list", base), ("verify", f"{base}/verify"), ("detail", f"{base}/{doc_id}")):
        page.goto(f"{url}?lang=en")
        found[f"phone {name}"] = violations(page)
    page.fill("#r-name", "Nguyễn Văn An")
    page.fill("#r-reason", "Sai tên người nộp")
    page.get_by_role("button", name="Issue the replacement").click()
    assert "done=replaced" in page.url
    assert page.get_by_role("status").filter(has_text="The replacement is issued").is_visible()
    assert page.get_by_role("link", name="Download the 04/SS-HĐĐT notice (signed XML)").is_visible()
    found["phone replaced"] = violations(page)
    context.close()

    with live_server.ctx.db.read() as s:
        replacement = s.exec(select(Document).where(Document.purpose == DocumentPurpose.replacement)).one()
    assert replacement.related_document_id == doc_id
    assert {name: v for name, v in found.items() if v} == {}
