"""The payer's pages in Chromium: the pending page turns into the paid page, then offers the receipt, without a
reload; "pay another way" from a live attempt; and axe-core finds no moderate, serious or critical violation on any
payer page, in either language, at a phone's width."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from playwright.sync_api import Browser, Page, sync_playwright
from sqlmodel import select

from adapters.sandbox import SandboxGateway
from lephi.jobs import HANDLERS
from payments.agency.models import Agency
from payments.outbox.worker import Worker
from payments.payment.models import Payment
from tests.axe import violations
from tests.conftest import LiveServer
from tests.test_browser import CHROMIUM, FLAGS, _next_url, _pay_url, gateway_pages, localstripe, watch

__all__ = ["gateway_pages", "localstripe"]  # fixtures shared with tests/test_browser.py
IMPACTS = ("critical", "serious", "moderate")
PHONE = {"width": 390, "height": 844}
# What a browser sees does not depend on the database, and a browser test takes seconds: SQLite only. The pages'
# queries run on both databases in tests/test_payer_pages.py.
pytestmark = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)


@pytest.fixture
def browser() -> Iterator[Browser]:
    """One per test, closed before the test's servers stop: a browser's kept-alive connections would hold their
    graceful shutdown."""
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        yield b
        b.close()


def _latest(server: LiveServer) -> Payment:
    with server.ctx.db.read() as s:
        return s.exec(select(Payment).order_by(Payment.created_at.desc())).first()  # type: ignore[attr-defined,no-any-return]


def _contacts(server: LiveServer, code: str) -> None:
    with server.ctx.db.write() as s:
        agency = s.exec(select(Agency).where(Agency.code == code)).one()
        agency.phone, agency.email = "0236 3822 111", "motcua@agc.gov.vn"
        agency.version += 1
        s.add(agency)


def _leave_pending(page: Page, pay_url: str, lang: str) -> None:
    page.goto(f"{pay_url}?lang={lang}")
    page.locator("form button[type=submit]").click()
    page.wait_for_url("**/sandbox/pay/**")
    page.locator("button[value=pending]").click()
    page.wait_for_url("**/pay/**")


def test_the_pending_page_turns_paid_and_offers_the_receipt_without_a_reload(
    live_server: LiveServer, browser: Browser
) -> None:
    context = browser.new_context(locale="en-GB")
    page = context.new_page()
    problems = watch(page)
    _leave_pending(page, _pay_url(live_server, "HS-LIVE-1"), "en")
    assert "Waiting for the payment gateway" in page.locator("#payment-status").inner_text()
    page.evaluate("window.notReloaded = true")
    payment = _latest(live_server)
    SandboxGateway(live_server.ctx.gateways.context("sandbox")).complete(payment.gateway_reference or "", "success")
    page.locator("#paid-summary").wait_for(timeout=15_000)
    assert page.locator("h1").inner_text() == "The dossier fee is paid"
    assert page.locator("#paid-amount").inner_text() == "VND\u00a0110,000"
    assert page.locator("#paid-reference").inner_text() == payment.id
    assert "Payment received" in page.locator("#status-live").inner_text()  # announced in the live region
    assert page.locator("#receipt-waiting").is_visible()
    Worker(live_server.ctx, HANDLERS).run_once()  # the receipt is issued
    page.locator("#receipt-pdf").wait_for(timeout=15_000)
    code = page.locator("#receipt-code").inner_text()
    assert page.locator("#receipt-xml").get_attribute("href") == f"/r/{code}.xml"
    assert page.evaluate("window.notReloaded") is True
    assert problems == []
    context.close()


def test_pay_another_way_cancels_the_live_attempt_in_the_browser(live_server: LiveServer, browser: Browser) -> None:
    page = browser.new_page()
    problems = watch(page)
    _leave_pending(page, _pay_url(live_server, "HS-LIVE-2"), "vi")
    assert page.get_by_role("link", name="Tiếp tục thanh toán").is_visible()
    first = _latest(live_server)
    page.get_by_role("button", name="Thanh toán bằng cách khác").click()
    page.get_by_role("button", name="Thanh toán 110.000 ₫").wait_for()
    with live_server.ctx.db.read() as s:
        cancelled = s.get(Payment, first.id)
    assert cancelled is not None and cancelled.status.value == "cancelled"
    page.get_by_role("button", name="Thanh toán 110.000 ₫").click()  # a new attempt
    page.wait_for_url("**/sandbox/pay/**")
    assert _latest(live_server).id != first.id
    assert problems == []
    page.close()


def _check(page: Page, found: dict[str, Any], name: str, url: str) -> None:
    page.goto(url)
    assert page.locator("main").count() == 1, name
    found[name] = violations(page, IMPACTS)


def test_no_moderate_serious_or_critical_violation_on_any_payer_page(
    live_server: LiveServer, gateway_pages: LiveServer, browser: Browser
) -> None:
    _contacts(live_server, "AGC-A")
    context = browser.new_context(bypass_csp=True, viewport=PHONE)  # type: ignore[arg-type]
    page = context.new_page()
    found: dict[str, Any] = {}
    base = live_server.url
    pay = _pay_url(live_server, "HS-AXE-P")
    paid = _pay_url(live_server, "HS-AXE-R")
    page.goto(paid)
    page.locator("form button[type=submit]").click()
    page.wait_for_url("**/sandbox/pay/**")
    sandbox = page.url.split("?")[0]
    page.locator("button[value=success]").click()
    page.wait_for_url("**/pay/**")
    Worker(live_server.ctx, HANDLERS).run_once()
    qr, card = _next_url(gateway_pages, "vietqr"), _next_url(gateway_pages, "stripe")
    pending = _pay_url(live_server, "HS-AXE-W")
    _leave_pending(page, pending, "vi")
    for lang in ("vi", "en"):
        _check(page, found, f"pay {lang}", f"{pay}?lang={lang}")
        _check(page, found, f"pending {lang}", f"{pending}?lang={lang}")
        _check(page, found, f"paid {lang}", f"{paid}?lang={lang}")
        _check(page, found, f"sandbox {lang}", f"{sandbox}?lang={lang}")
        _check(page, found, f"qr {lang}", f"{qr}?lang={lang}")
        _check(page, found, f"card {lang}", f"{card}?lang={lang}")
        _check(page, found, f"find {lang}", f"{base}/tra-cuu?lang={lang}")
        _check(page, found, f"lookup {lang}", f"{base}/r?lang={lang}")
        _check(page, found, f"error {lang}", f"{base}/pay/no-such-token-0123456789?lang={lang}")
    # The dossier search through the browser: a wrong secret, then nothing else to click.
    page.goto(f"{base}/tra-cuu?lang=en")
    page.get_by_label("Dossier code").fill("HS-AXE-P")
    page.get_by_label("Secret").fill("AAAA-AAAA")
    page.get_by_role("button", name="Find the dossier").click()
    assert "No dossier has this code" in page.locator("#find-error").inner_text()
    found["find error en"] = violations(page, IMPACTS)
    context.close()
    assert {name: v for name, v in found.items() if v} == {}
