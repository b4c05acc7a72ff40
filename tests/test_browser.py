"""The payer's path in a real browser (Debian's Chromium, driven by Playwright): dossier page -> sandbox gateway ->
back on the dossier page, paid. It must work with JavaScript off as well, and with every page's
Content-Security-Policy enforced: a violation the browser reports fails the test."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest
import uvicorn
from playwright.sync_api import Browser, ConsoleMessage, Page, sync_playwright
from sqlmodel import select

from invoices.tables import Document
from lephi.app import create_app
from lephi.cli import server_config
from lephi.container import build_container
from lephi.jobs import HANDLERS
from payments.auth.service import create_key
from payments.core.db import Database, make_engine
from payments.outbox.worker import Worker
from tests.adapters.localstripe_server import LocalStripe, run_localstripe
from tests.conftest import ALL_SCOPES, LiveServer, _free_port, make_settings
from tests.factories import dossier_body, payment_body, seed_agency

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


def watch(page: Page) -> list[str]:
    """The policy violations (and script errors) the browser reports on this page, collected as they come."""
    problems: list[str] = []

    def on_console(message: ConsoleMessage) -> None:
        if "Content Security Policy" in message.text or "Content-Security-Policy" in message.text:
            problems.append(message.text)

    page.on("console", on_console)
    page.on("pageerror", lambda error: problems.append(f"page error: {error}"))
    return problems


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
    violations = watch(page)
    page.goto(_pay_url(live_server, f"HS-BR-{int(javascript)}"))
    assert page.locator("#total").inner_text() == "110.000\u00a0₫"
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
    assert violations == []
    context.close()


def test_payer_declined_can_try_again(live_server: LiveServer, browser: Browser) -> None:
    page = browser.new_page()
    violations = watch(page)
    page.goto(_pay_url(live_server, "HS-BR-DECLINE") + "?lang=en")
    page.get_by_role("button", name="Pay VND 110,000").click()
    page.get_by_role("button", name="Declined").click()
    page.wait_for_url("**/pay/**")
    assert "did not go through" in page.locator("#payment-status").inner_text()
    page.get_by_role("button", name="Pay VND 110,000").click()  # a new attempt is allowed after a decline
    page.get_by_role("button", name="Payment succeeds").click()
    page.wait_for_url("**/pay/**")
    assert page.locator("#dossier-status").inner_text() == "Paid"
    assert violations == []
    page.close()


def test_payer_opens_the_e_receipt_from_the_dossier_page_and_looks_it_up_by_code(
    live_server: LiveServer, browser: Browser
) -> None:
    context = browser.new_context(locale="vi-VN")
    page = context.new_page()
    violations = watch(page)
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
    assert violations == []
    context.close()
    # The same document through the API (a client system's staff), with its own page's policy.
    staff = browser.new_context(extra_http_headers={"Authorization": f"Bearer {live_server.key}"})
    page = staff.new_page()
    violations = watch(page)
    with live_server.ctx.db.read() as s:
        receipt_id = s.exec(select(Document.id).where(Document.lookup_code == code)).one()
    page.goto(f"{live_server.url}/v1/receipts/{receipt_id}.html")
    assert "Nguyễn Văn An" in page.content()
    assert page.locator(".receipt").evaluate("e => getComputedStyle(e).maxWidth") != "none"  # the style applied
    assert violations == []
    staff.close()


GATEWAYS = """
[agencies."AGC-W".vietqr]
bank_bin = "970436"
account_number = "0011001234567"
account_name = "SO TU PHAP TINH DEMO"
reference_secret = "reference-secret-0123456789abcdef"
notification_secret = "notification-secret-0123456789"

[agencies."AGC-W".stripe]
secret_key = "{ls.secret_key}"
publishable_key = "{ls.publishable_key}"
webhook_secrets = ["whsec_test_0123456789"]
api_base = "{ls.url}"
js_url = "{ls.js_url}"
send_description = false
"""


@pytest.fixture(scope="module")
def localstripe() -> Iterator[LocalStripe]:
    with run_localstripe() as server:
        yield server


@pytest.fixture
def gateway_pages(database_url: str, tmp_path: Path, localstripe: LocalStripe) -> Iterator[LiveServer]:
    """A live server whose agency pays by VietQR and by card (against localstripe)."""
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    gateways = tmp_path / "gateways.toml"
    gateways.write_text(GATEWAYS.format(ls=localstripe))
    settings = make_settings(database_url, tmp_path, public_url=url, gateways_file=gateways)
    context = build_container(settings, Database(make_engine(settings.effective_database_url, settings)))
    with context.db.write() as s:
        seed_agency(s, "AGC-W", methods=["vietqr", "stripe"])
        _, key = create_key(s, "AGC-W", "test", ALL_SCOPES)
    server = uvicorn.Server(server_config(create_app(settings, context), "127.0.0.1", port))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 15
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    yield LiveServer(url, context, key)
    server.should_exit = True
    thread.join(10)
    context.close()


def _next_url(server: LiveServer, method: str) -> str:
    auth = {"Authorization": f"Bearer {server.key}"}
    dossier = httpx.post(f"{server.url}/v1/dossiers", json=dossier_body(), headers={**auth, "Idempotency-Key": method})
    body = payment_body(dossier.json()["code"], method=method)
    r = httpx.post(f"{server.url}/v1/payments", json=body, headers={**auth, "Idempotency-Key": f"p-{method}"})
    assert r.status_code == 201, r.text
    return str(r.json()["next_url"])


@pytest.mark.parametrize("javascript", [True, False])
def test_qr_and_card_pages_work_under_their_policies(
    gateway_pages: LiveServer, browser: Browser, javascript: bool
) -> None:
    context = browser.new_context(java_script_enabled=javascript, locale="vi-VN")
    page = context.new_page()
    violations = watch(page)
    page.goto(_next_url(gateway_pages, "vietqr"))
    assert page.locator("#qr").evaluate("img => img.naturalWidth") > 0  # the QR image, from our own origin
    page.goto(_next_url(gateway_pages, "stripe"))
    assert page.locator("#amount").inner_text() == "110.000\u00a0₫"
    if javascript:
        # The card gateway's script ran and mounted its card fields: allowed on this page, from its origin.
        page.locator("#card-element input").first.wait_for()
    else:
        assert page.locator("#card-element input").count() == 0
    assert violations == []
    context.close()


def test_docs_work_from_local_assets_only(live_server: LiveServer, browser: Browser) -> None:
    page = browser.new_page()
    violations = watch(page)
    origins: set[str] = set()
    page.on("request", lambda request: origins.add("{0.scheme}://{0.netloc}".format(urlsplit(request.url))))
    page.goto(f"{live_server.url}/docs")
    page.locator(".opblock-summary-path").first.wait_for()
    paths = [p.replace("\u200b", "") for p in page.locator(".opblock-summary-path").all_inner_texts()]
    assert "/v1/dossiers" in paths
    assert origins == {live_server.url}
    assert violations == []
    page.close()
