"""The payer's path in a real browser (Debian's Chromium, driven by Playwright): dossier page -> sandbox gateway ->
back on the dossier page, paid. It must work with JavaScript off as well."""

from __future__ import annotations

import os
from collections.abc import Iterator

import httpx
import pytest
from playwright.sync_api import Browser, sync_playwright

from payments.jobs import HANDLERS
from payments.outbox.worker import Worker
from tests.conftest import LiveServer
from tests.factories import dossier_body

CHROMIUM = os.environ.get("LEPHI_TEST_CHROMIUM", "/usr/bin/chromium")
FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        yield b
        b.close()


def _pay_url(server: LiveServer, code: str) -> str:
    r = httpx.post(
        f"{server.url}/v1/dossiers",
        json=dossier_body(code),
        headers={"Authorization": f"Bearer {server.key}", "Idempotency-Key": code},
    )
    assert r.status_code == 201, r.text
    return str(r.json()["pay_url"])


@pytest.mark.parametrize("javascript", [True, False])
def test_payer_pays_in_a_browser(live_server: LiveServer, browser: Browser, javascript: bool) -> None:
    context = browser.new_context(java_script_enabled=javascript, locale="vi-VN")
    page = context.new_page()
    page.goto(_pay_url(live_server, f"HS-BR-{int(javascript)}"))
    assert page.locator("#total").inner_text() == "110.000 ₫"
    assert page.locator("#dossier-status").inner_text() == "Chưa thanh toán"
    page.get_by_role("button", name="Thanh toán 110.000 ₫").click()
    page.wait_for_url("**/sandbox/pay/**")
    assert "Cổng thanh toán thử nghiệm" in page.content()
    page.get_by_role("button", name="Thanh toán thành công").click()
    page.wait_for_url("**/pay/**")
    assert page.locator("#dossier-status").inner_text() == "Đã thanh toán"
    assert "Thanh toán thành công" in page.locator("#payment-status").inner_text()
    page.get_by_role("link", name="English").click()
    assert page.locator("#dossier-status").inner_text() == "Paid"
    context.close()


def test_payer_declined_can_try_again(live_server: LiveServer, browser: Browser) -> None:
    page = browser.new_page()
    page.goto(_pay_url(live_server, "HS-BR-DECLINE") + "?lang=en")
    page.get_by_role("button", name="Pay 110.000 ₫").click()
    page.get_by_role("button", name="Declined").click()
    page.wait_for_url("**/pay/**")
    assert "did not go through" in page.locator("#payment-status").inner_text()
    page.get_by_role("button", name="Pay 110.000 ₫").click()  # a new attempt is allowed after a decline
    page.get_by_role("button", name="Payment succeeds").click()
    page.wait_for_url("**/pay/**")
    assert page.locator("#dossier-status").inner_text() == "Paid"
    page.close()


def test_payer_opens_the_e_receipt_from_the_dossier_page_and_looks_it_up_by_code(
    live_server: LiveServer, browser: Browser
) -> None:
    context = browser.new_context(locale="vi-VN")
    page = context.new_page()
    page.goto(_pay_url(live_server, "HS-BR-RECEIPT"))
    page.get_by_role("button", name="Thanh toán 110.000 ₫").click()
    page.get_by_role("button", name="Thanh toán thành công").click()
    page.wait_for_url("**/pay/**")
    assert page.locator("#receipt-link").count() == 0  # paid, not yet issued: the page says it will come
    Worker(live_server.ctx, HANDLERS).run_once()  # the outbox worker issues it
    page.reload()
    page.locator("#receipt-link").click()
    page.wait_for_url("**/r/**")
    assert "BIÊN LAI THU PHÍ, LỆ PHÍ" in page.content() and "Nguyễn Văn An" in page.content()
    assert page.locator("svg").count() >= 1  # the QR code
    code = page.url.split("/r/")[1].split("?")[0]
    pdf = context.request.get(f"{live_server.url}/r/{code}.pdf")
    assert pdf.status == 200 and pdf.body().startswith(b"%PDF")
    # A payer who has only the printed code types it into the lookup form, spaced as printed.
    page.goto(f"{live_server.url}/r")
    page.fill("#code", f"{code[:4]} {code[4:8]} {code[8:]}".lower())
    page.get_by_role("button", name="Tra cứu").click()
    page.wait_for_url(f"**/r/{code}**")
    assert "Nguyễn Văn An" in page.content()
    context.close()
