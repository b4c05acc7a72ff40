"""The certificate and gateways pages in Chromium: no serious or critical axe-core violation in either language, at a
phone's width and an office screen's, including the pages a replacement upload and a connection test lead to."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from playwright.sync_api import Browser, sync_playwright

from console.certificate.checks import facts
from console.staff.service import create_staff, use_token
from invoices.keys import current_certificate
from tests.axe import violations
from tests.conftest import LiveServer
from tests.console.test_certificate_pages import certificate, p12, rsa_key
from tests.test_accessibility import SCREENS
from tests.test_browser import CHROMIUM, FLAGS

EMAIL, PASSWORD = "quantri@agc-a.gov.vn", "a long enough password"


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        yield b
        b.close()


def test_certificate_and_gateway_pages_work_and_have_no_serious_violation(
    live_server: LiveServer, browser: Browser
) -> None:
    with live_server.ctx.db.write() as s:
        _, token = create_staff(s, email=EMAIL, role="agency_admin", agency_code="AGC-A")
    with live_server.ctx.db.write() as s:
        use_token(s, token, PASSWORD)
    key = rsa_key()
    new = certificate(key)
    found: dict[str, list[dict[str, object]]] = {}
    for screen, viewport in SCREENS.items():
        context = browser.new_context(bypass_csp=True, viewport=viewport)  # type: ignore[arg-type]
        page = context.new_page()
        page.goto(f"{live_server.url}/console/login?lang=en")
        page.fill("#email", EMAIL)
        page.fill("#password", PASSWORD)
        page.get_by_role("button", name="Sign in").click()
        for name in ("certificate", "gateways"):
            for lang in ("vi", "en"):
                page.goto(f"{live_server.url}/console/{name}?lang={lang}")
                assert "/login" not in page.url and page.locator('nav[class="main"]').count() == 1
                found[f"{name} {lang} {screen}"] = violations(page)
        if screen == "phone":
            page.goto(f"{live_server.url}/console/certificate?lang=en")
            page.set_input_files(
                "#p12", {"name": "agency.p12", "mimeType": "application/x-pkcs12", "buffer": p12(key, new)}
            )
            page.fill("#p12-password", "mat-khau-p12")
            page.get_by_role("button", name="Upload and replace").first.click()
            page.wait_for_url("**done=replaced**")
            assert "The certificate is replaced." in page.content()
            assert facts(new).fingerprint in page.content()
            found[f"replaced {screen}"] = violations(page)
            page.goto(f"{live_server.url}/console/gateways?lang=vi")
            page.get_by_role("button", name="Kiểm tra kết nối tới sandbox").click()
            page.wait_for_selector("#probe-result")
            assert "sandbox" in page.inner_text("#probe-result")
            found[f"tested {screen}"] = violations(page)
        context.close()
    assert current_certificate(live_server.ctx.settings, "AGC-A") == new
    assert {name: v for name, v in found.items() if v} == {}
