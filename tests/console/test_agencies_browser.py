"""The agencies and fee schedule pages in Chromium: no serious or critical axe-core violation in either language, at
a phone's width and an office screen's; and a fee schedule imported through the page shows its preview diff."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Browser, sync_playwright

from console.fees.sheet import COLUMNS
from console.staff.service import create_staff, use_token
from tests.axe import violations
from tests.conftest import LiveServer
from tests.factories import PROCEDURE, dossier_body
from tests.test_browser import CHROMIUM, FLAGS

SCREENS = [{"width": 390, "height": 844}, {"width": 1366, "height": 768}]
PAGES = ["agencies", "agencies/new", "agencies/AGC-A", "agencies/AGC-A/edit", "fees?agency=AGC-A"]


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        yield b
        b.close()


def test_agency_and_fee_pages_are_accessible_and_an_import_shows_its_diff(
    live_server: LiveServer, browser: Browser, tmp_path: Path
) -> None:
    with live_server.ctx.db.write() as s:
        _, token = create_staff(s, email="quantri@tinh.gov.vn", role="province_admin", agency_code=None)
    with live_server.ctx.db.write() as s:
        use_token(s, token, "a long enough password")
    context = browser.new_context(bypass_csp=True)
    page = context.new_page()
    page.goto(f"{live_server.url}/console/login?lang=en")
    page.fill("#email", "quantri@tinh.gov.vn")
    page.fill("#password", "a long enough password")
    page.get_by_role("button", name="Sign in").click()
    found: dict[str, list[dict[str, object]]] = {}
    for screen in SCREENS:
        page.set_viewport_size(screen)  # type: ignore[arg-type]
        for name in PAGES:
            for lang in ("vi", "en"):
                joiner = "&" if "?" in name else "?"
                page.goto(f"{live_server.url}/console/{name}{joiner}lang={lang}")
                assert "/login" not in page.url, name
                found[f"{name} {lang} {screen['width']}"] = violations(page)

    sheet = tmp_path / "bieu-phi.csv"
    sheet.write_text(
        ",".join(COLUMNS) + f"\n{PROCEDURE},Thủ tục thử nghiệm,LE_PHI,le_phi,Lệ phí,,130000,hồ sơ,1,1\n",
        encoding="utf-8-sig",
    )
    page.goto(f"{live_server.url}/console/fees?lang=en&agency=AGC-A")
    page.set_input_files("#file", str(sheet))
    page.get_by_role("button", name="Upload and preview").click()
    assert "/console/fees/import/" in page.url
    changed = page.locator("tr.line-changed")
    assert changed.count() == 1 and "130,000" in changed.inner_text()
    assert page.locator("tr.line-removed").count() == 1  # BAN_SAO is not in the new schedule
    found["preview en"] = violations(page)
    page.goto(page.url.replace("lang=en", "lang=vi"))
    found["preview vi"] = violations(page)
    page.get_by_role("button", name="Xác nhận áp dụng").click()
    assert "done=applied" in page.url
    # A dossier of today is priced by the schedule just applied (in force from today), and the payer sees it.
    r = httpx.post(
        f"{live_server.url}/v1/dossiers",
        json=dossier_body("HS-BIEU-PHI-MOI", items=[]),
        headers={"Authorization": f"Bearer {live_server.key}", "Idempotency-Key": "HS-BIEU-PHI-MOI"},
    )
    assert r.status_code == 201, r.text
    assert r.json()["total_amount"] == 130_000
    page.goto(r.json()["pay_url"] + "?lang=vi")
    assert page.locator("#total").inner_text() == "130.000\u00a0₫"
    context.close()
    assert {name: v for name, v in found.items() if v} == {}
