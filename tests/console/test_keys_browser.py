"""An agency admin creates an API key and revokes it, in Chromium: the key is shown once, works on the API, and
stops working once revoked."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
from playwright.sync_api import Browser, sync_playwright

from console.staff.service import create_staff, use_token
from tests.axe import violations
from tests.conftest import LiveServer
from tests.test_browser import CHROMIUM, FLAGS


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        yield b
        b.close()


# What the browser does here does not depend on the database; the key pages are tested on both.
@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_admin_creates_and_revokes_a_key_in_the_browser(live_server: LiveServer, browser: Browser) -> None:
    with live_server.ctx.db.write() as s:
        _, token = create_staff(s, email="quantri@agc-a.gov.vn", role="agency_admin", agency_code="AGC-A")
    with live_server.ctx.db.write() as s:
        use_token(s, token, "a long enough password")
    context = browser.new_context(bypass_csp=True, viewport={"width": 390, "height": 844})
    page = context.new_page()
    page.goto(f"{live_server.url}/console/login?lang=en")
    page.fill("#email", "quantri@agc-a.gov.vn")
    page.fill("#password", "a long enough password")
    page.get_by_role("button", name="Sign in").click()
    page.get_by_role("link", name="API keys", exact=True).click()
    page.fill("#name", "Cổng dịch vụ công")
    page.get_by_label("payments:read").check()
    page.get_by_label("dossiers:read").check()
    page.get_by_role("button", name="Create the key").click()
    raw = page.locator("#raw").input_value()
    assert raw.startswith("lephi_") and violations(page) == []
    headers = {"Authorization": f"Bearer {raw}"}
    assert httpx.get(f"{live_server.url}/v1/payments/pay_none", headers=headers).status_code == 404
    page.goto(f"{live_server.url}/console/keys?lang=en")
    assert raw not in page.content()
    page.get_by_role("link", name="Revoke Cổng dịch vụ công").click()
    page.get_by_role("button", name="Revoke the key").click()
    assert "The key is revoked." in page.locator("[role=status]").inner_text()
    assert httpx.get(f"{live_server.url}/v1/payments/pay_none", headers=headers).status_code == 401
    context.close()
