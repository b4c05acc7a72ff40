"""The dashboard, the report page and the province page in Chromium: no serious or critical axe-core violation in
either language, at a phone's width and an office screen's, nothing wider than a phone's screen, and the report's
filter form used through the browser."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date, timedelta

import pytest
from playwright.sync_api import Browser, sync_playwright

from console.staff.service import create_staff, use_token
from tests.axe import violations
from tests.conftest import LiveServer
from tests.console.report_data import at, exception, fee, pay
from tests.factories import seed_agency
from tests.test_browser import CHROMIUM, FLAGS

SCREENS = {"phone": {"width": 390, "height": 844}, "office": {"width": 1366, "height": 768}}
D1 = date(2026, 11, 2)


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        yield b
        b.close()


# What the browser checks does not depend on the database; the figures are tested on both.
@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_report_pages_have_no_serious_violation(live_server: LiveServer, browser: Browser) -> None:
    with live_server.ctx.db.write() as s:
        from sqlmodel import select

        from payments.agency.models import Agency

        a = s.exec(select(Agency).where(Agency.code == "AGC-A")).one()
        b = seed_agency(s, "AGC-B", tax_code="0100000002")
        pay(s, a.id, 100_000, at(D1, 9))
        pay(s, a.id, 250_000, at(D1 + timedelta(days=1), 9), method="vnpay")
        pay(s, b.id, 70_000, at(D1, 11), method="momo")
        fee(s, a.id, "vnpay", 250_000, 2_750, D1 + timedelta(days=1))
        exception(s, a.id, D1)
        _, token = create_staff(s, email="quantri@tinh.gov.vn", role="province_admin", agency_code=None)
    with live_server.ctx.db.write() as s:
        use_token(s, token, "a long enough password")
    found: dict[str, list[dict[str, object]]] = {}
    period = f"from={D1.isoformat()}&to={(D1 + timedelta(days=1)).isoformat()}"
    for screen, viewport in SCREENS.items():
        context = browser.new_context(bypass_csp=True, viewport=viewport)  # type: ignore[arg-type]
        page = context.new_page()
        page.goto(f"{live_server.url}/console/login?lang=en")
        page.fill("#email", "quantri@tinh.gov.vn")
        page.fill("#password", "a long enough password")
        page.get_by_role("button", name="Sign in").click()
        page.wait_for_url("**/console/?lang=en")
        for path in ("/console/", f"/console/reports?{period}", "/console/province?month=2026-11"):
            for lang in ("vi", "en"):
                page.goto(f"{live_server.url}{path}{'&' if '?' in path else '?'}lang={lang}")
                assert "/login" not in page.url
                found[f"{path} {lang} {screen}"] = violations(page)
                wide = page.evaluate("document.documentElement.scrollWidth")
                assert wide <= viewport["width"], (path, lang, screen, wide)
        context.close()
    assert {name: v for name, v in found.items() if v} == {}

    # The filter form, through the browser: one agency, one day.
    context = browser.new_context(viewport=SCREENS["office"])  # type: ignore[arg-type]
    page = context.new_page()
    page.goto(f"{live_server.url}/console/login?lang=en")
    page.fill("#email", "quantri@tinh.gov.vn")
    page.fill("#password", "a long enough password")
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url("**/console/?lang=en")
    page.goto(f"{live_server.url}/console/reports?lang=en")
    page.select_option("#agency", "AGC-A")
    page.fill("#from", D1.isoformat())
    page.fill("#to", D1.isoformat())
    page.get_by_role("button", name="Show the report").click()
    page.wait_for_url("**agency=AGC-A**")
    summary = page.locator("dl").last.inner_text()
    assert "VND\u00a0100,000" in summary and "250,000" not in summary
    # Under the real CSP the charts are drawn with their styles: the nonce reached them.
    assert page.locator(".chart svg").count() == 2
    fill = page.evaluate("getComputedStyle(document.querySelector('.chart svg .background')).fill")
    assert fill in ("rgb(255, 255, 255)", "#ffffff"), fill
    context.close()
