"""The payer's path in a real browser (Debian's Chromium, driven by Playwright): dossier page -> sandbox gateway ->
back on the dossier page, paid. It must work with JavaScript off as well."""

from __future__ import annotations

import os
from collections.abc import Iterator

import httpx
import pytest
from playwright.sync_api import Browser, sync_playwright

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
