"""The statement upload's live progress in Chromium, under the console's real Content-Security-Policy: the form goes
through the page's script, whose progress bar reaches 100 % and whose status line says the server is reading the
file, then the page shows the result the plain form post would have shown, without leaving the page. axe-core finds
no serious or critical violation on the form with its progress shown nor on the result."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, sync_playwright

from console.staff.service import create_staff, use_token
from tests.axe import violations
from tests.conftest import LiveServer
from tests.reconcile.test_exceptions_api import HEADER, _row
from tests.test_browser import CHROMIUM, FLAGS

PASSWORD = "a long enough password"
# Records, from before the click, every value the progress bar and the status line take: the upload of a small file
# on this machine is over in a moment, and then the result replaces the form.
WATCH = """() => {
  window.seen = {values: [], texts: [], stayed: true};
  const bar = document.getElementById("upload-progress"), status = document.getElementById("upload-status");
  new MutationObserver(() => window.seen.values.push(bar.value)).observe(bar, {attributes: true});
  new MutationObserver(() => window.seen.texts.push(status.textContent))
    .observe(status, {childList: true, characterData: true, subtree: true});
}"""


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        yield b
        b.close()


def sign_in(page: Page, url: str) -> None:
    page.goto(f"{url}/console/login?lang=vi")
    page.fill("#email", "ketoan@agc-a.gov.vn")
    page.fill("#password", PASSWORD)
    page.get_by_role("button", name="Đăng nhập").click()


def upload(page: Page, url: str, statement: Path) -> None:
    page.goto(f"{url}/console/reconcile/imports?lang=vi")
    page.select_option("#format", "vnpay_csv")
    page.set_input_files("#file", str(statement))
    page.evaluate(WATCH)
    page.get_by_role("button", name="Nhập tệp").click()
    page.get_by_role("heading", name="Đã nhập tệp").wait_for(timeout=120_000)


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_the_upload_shows_its_progress_then_the_result(
    live_server: LiveServer, browser: Browser, tmp_path: Path
) -> None:
    ctx = live_server.ctx
    with ctx.db.write() as s:
        _, token = create_staff(s, email="ketoan@agc-a.gov.vn", role="finance", agency_code="AGC-A")
    with ctx.db.write() as s:
        use_token(s, token, PASSWORD)
    # Big enough for the browser to report the upload in steps.
    rows = "".join(_row(f"T{i}", f"REF-{i}", 10_000 + i) + "\n" for i in range(20_000))
    big = tmp_path / "vnpay-big.csv"
    big.write_text(HEADER + rows, encoding="utf-8")

    # The console's own policy, not bypassed: the script must be allowed by it.
    context = browser.new_context(viewport={"width": 390, "height": 844})
    page = context.new_page()
    refused: list[str] = []
    page.on(
        "console", lambda m: refused.append(page.url + " " + m.text) if "Content Security Policy" in m.text else None
    )
    sign_in(page, live_server.url)
    upload(page, live_server.url, big)
    seen = page.evaluate("window.seen")
    assert seen["stayed"] is True  # the same page, not a navigation: the script sent the form
    assert seen["values"] and seen["values"][-1] == 100 and seen["values"] == sorted(seen["values"])
    assert "Đang tải lên 100 %" in seen["texts"] and seen["texts"][-1] == "Đang đối chiếu…"
    assert "20000 dòng, 20000 dòng mới" in page.content()
    assert page.title().startswith("Đã nhập tệp")
    assert refused == []
    context.close()

    # The accessibility check injects axe-core, which the policy refuses: a context that bypasses it, at an office
    # screen's size; the upload of the same file again answers that it was already imported.
    context = browser.new_context(bypass_csp=True, viewport={"width": 1366, "height": 768})
    page = context.new_page()
    sign_in(page, live_server.url)
    page.goto(f"{live_server.url}/console/reconcile/imports?lang=en")
    page.evaluate("document.getElementById('upload-progress').hidden = false")
    page.evaluate("document.getElementById('upload-status').textContent = 'Uploading 45 %'")
    found = {"form": violations(page)}
    small = tmp_path / "vnpay-small.csv"
    small.write_text(HEADER + _row("S1", "REF-S1", 20_000) + "\n", encoding="utf-8")
    upload(page, live_server.url, small)
    assert page.evaluate("document.activeElement.tagName") == "H1"
    found["result"] = violations(page)
    context.close()
    assert {p: v for p, v in found.items() if v} == {}
