"""The reconciliation pages in Chromium: a settlement file uploaded through the form, the day run, one exception
resolved through its page; axe-core finds no serious or critical violation on the pages in either language, at a
phone's width and at an office screen's."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, sync_playwright
from sqlalchemy import select

from console.staff.service import create_staff, use_token
from payments.agency.models import Agency
from payments.reconcile.models import ExceptionStatus, ReconException
from tests.axe import violations
from tests.conftest import LiveServer
from tests.reconcile.test_exceptions_api import DAY, HEADER, _payment, _row
from tests.test_browser import CHROMIUM, FLAGS

PASSWORD = "a long enough password"


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        yield b
        b.close()


def test_upload_run_and_resolve_through_the_pages(live_server: LiveServer, browser: Browser, tmp_path: Path) -> None:
    ctx = live_server.ctx
    with ctx.db.read() as s:
        agency_id = s.execute(select(Agency.id).where(Agency.code == "AGC-A")).scalar_one()
    _payment(ctx, agency_id, "REF-MISMATCH", 70_000)
    with ctx.db.write() as s:
        _, token = create_staff(s, email="ketoan@agc-a.gov.vn", role="finance", agency_code="AGC-A")
    with ctx.db.write() as s:
        use_token(s, token, PASSWORD)
    statement = tmp_path / "vnpay-2026-11-20.csv"
    statement.write_text(HEADER + _row("T2", "REF-MISMATCH", 69_000) + "\n", encoding="utf-8")

    context = browser.new_context(bypass_csp=True, viewport={"width": 390, "height": 844})
    page = context.new_page()
    page.goto(f"{live_server.url}/console/login?lang=en")
    page.fill("#email", "ketoan@agc-a.gov.vn")
    page.fill("#password", PASSWORD)
    page.get_by_role("button", name="Sign in").click()

    found: dict[str, list[dict[str, object]]] = {}
    page.goto(f"{live_server.url}/console/reconcile/imports?lang=en")
    page.select_option("#format", "vnpay_csv")
    page.set_input_files("#file", str(statement))
    page.get_by_role("button", name="Import the file").click()
    # The page's script sends the form and shows the answer in place: wait for it.
    page.get_by_role("heading", name="File imported").wait_for()
    assert "1 lines processed, 1 new" in page.content()
    found["imported"] = violations(page)
    page.goto(f"{live_server.url}/console/reconcile/imports?lang=en")
    page.fill("#business_day", DAY.isoformat())
    page.get_by_role("button", name="Run matching").click()
    assert "Amount mismatch" in page.content()
    found["run"] = violations(page)

    with ctx.db.read() as s:
        exc = s.execute(select(ReconException).where(ReconException.agency_id == agency_id)).scalars().one()
    page.goto(f"{live_server.url}/console/reconcile/exceptions/{exc.id}?lang=en")
    page.fill("#note", "Phí ngân hàng 1.000 đ")
    page.get_by_role("button", name="Mark resolved").click()
    assert "resolved" in page.url
    with ctx.db.read() as s:
        again = s.get(ReconException, exc.id)
        assert again is not None and again.status == ExceptionStatus.resolved

    for name in ("imports", "exceptions", f"exceptions/{exc.id}", "credits"):
        for lang in ("vi", "en"):
            page.goto(f"{live_server.url}/console/reconcile/{name}?lang={lang}")
            assert "/login" not in page.url and page.locator('nav[class="main"]').count() == 1
            found[f"{name} {lang}"] = violations(page)
    # And at an office screen's size.
    page.set_viewport_size({"width": 1366, "height": 768})
    for name in ("imports", "exceptions"):
        page.goto(f"{live_server.url}/console/reconcile/{name}?lang=vi")
        found[f"{name} office"] = violations(page)
    context.close()
    assert {p: v for p, v in found.items() if v} == {}
