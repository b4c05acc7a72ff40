"""axe-core over the pages in Debian's Chromium: no critical or serious violation (WCAG 2.1 A/AA and best practice).

Each page is checked in Vietnamese and in English, at a phone's width and at an office screen's."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from playwright.sync_api import Browser, sync_playwright

from console.staff.service import create_staff, use_token
from tests.axe import violations
from tests.conftest import LiveServer
from tests.test_browser import CHROMIUM, FLAGS, _pay_url

SCREENS = {"phone": {"width": 390, "height": 844}, "office": {"width": 1366, "height": 768}}


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        yield b
        b.close()


@pytest.mark.parametrize("screen", list(SCREENS))
def test_payer_and_console_pages_have_no_serious_violation(
    live_server: LiveServer, browser: Browser, screen: str
) -> None:
    with live_server.ctx.db.write() as s:
        _, token = create_staff(s, email="ketoan@agc-a.gov.vn", role="agency_admin", agency_code="AGC-A")
    with live_server.ctx.db.write() as s:
        use_token(s, token, "a long enough password")
    context = browser.new_context(bypass_csp=True, viewport=SCREENS[screen])  # type: ignore[arg-type]
    page = context.new_page()
    found: dict[str, list[dict[str, object]]] = {}
    pay = _pay_url(live_server, f"HS-AXE-{screen}")
    for lang in ("vi", "en"):
        page.goto(f"{pay}?lang={lang}")
        found[f"pay {lang}"] = violations(page)
        page.goto(f"{live_server.url}/console/login?lang={lang}")
        found[f"login {lang}"] = violations(page)
    page.fill("#email", "ketoan@agc-a.gov.vn")
    page.fill("#password", "a long enough password")
    page.get_by_role("button", name="Sign in").click()
    for name in ("", "keys", "audit"):
        for lang in ("vi", "en"):
            page.goto(f"{live_server.url}/console/{name}?lang={lang}")
            assert "/login" not in page.url and page.locator('nav[class="main"]').count() == 1
            found[f"console/{name} {lang}"] = violations(page)
    context.close()
    assert {page: v for page, v in found.items() if v} == {}
