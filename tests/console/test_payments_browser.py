"""The payments pages in Chromium: the search form used as a clerk would, and axe-core over the list and the detail
page in both languages, at a phone's width and at an office screen's."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
from playwright.sync_api import Browser, sync_playwright

from console.staff.service import create_staff, use_token
from tests.axe import violations
from tests.conftest import LiveServer
from tests.factories import dossier_body, payment_body
from tests.test_browser import CHROMIUM, FLAGS

SCREENS = {"phone": {"width": 390, "height": 844}, "office": {"width": 1366, "height": 768}}
PASSWORD = "a long enough password"


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        yield b
        b.close()


def _payment(server: LiveServer, code: str) -> str:
    auth = {"Authorization": "Bearer " + server.key}
    r = httpx.post(f"{server.url}/v1/dossiers", json=dossier_body(code), headers={**auth, "Idempotency-Key": code})
    assert r.status_code == 201, r.text
    url = server.url
    r = httpx.post(f"{url}/v1/payments", json=payment_body(code), headers={**auth, "Idempotency-Key": code + "p"})
    assert r.status_code == 201, r.text
    return str(r.json()["id"])


# One database is enough here: what the browser sees does not depend on it, and the pages' SQL is tested on both.
@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_payments_pages_in_a_browser(live_server: LiveServer, browser: Browser) -> None:
    with live_server.ctx.db.write() as s:
        _, token = create_staff(s, email="ketoan@agc-a.gov.vn", role="finance", agency_code="AGC-A")
    with live_server.ctx.db.write() as s:
        use_token(s, token, PASSWORD)
    wanted = _payment(live_server, "HS-BROWSER-1")
    _payment(live_server, "HS-OTHER-2")
    found: dict[str, list[dict[str, object]]] = {}
    for screen, viewport in SCREENS.items():
        context = browser.new_context(bypass_csp=True, viewport=viewport)  # type: ignore[arg-type]
        page = context.new_page()
        page.goto(f"{live_server.url}/console/login?lang=en")
        page.fill("#email", "ketoan@agc-a.gov.vn")
        page.fill("#password", PASSWORD)
        page.get_by_role("button", name="Sign in").click()
        page.wait_for_url("**/console/**")
        page.get_by_role("link", name="Payments", exact=True).click()
        page.wait_for_url("**/console/payments?lang=en")
        assert page.locator("tbody tr").count() == 2
        # The search form, as a clerk fills it in.
        page.get_by_label("Dossier code").fill("HS-BROWSER*")
        page.get_by_label("Status").select_option("pending")
        page.get_by_role("button", name="Search").click()
        page.wait_for_url("**/console/payments?*dossier=HS-BROWSER*")
        assert page.locator("tbody tr").count() == 1
        assert page.get_by_label("Dossier code").input_value() == "HS-BROWSER*"
        for lang in ("vi", "en"):
            page.goto(f"{live_server.url}/console/payments?lang={lang}")
            found[f"list {screen} {lang}"] = violations(page)
            page.goto(f"{live_server.url}/console/payments/{wanted}?lang={lang}")
            assert "HS-BROWSER-1" in page.locator("h1").inner_text()
            found[f"detail {screen} {lang}"] = violations(page)
        context.close()
    assert {name: v for name, v in found.items() if v} == {}
