"""In Chromium: the sign-in's second step (a code computed with pyotp, typed into the page), the staff page, an
account's page, the security page (enrolled, and enrolling with its QR code) and the forgotten-password page, in
both languages at a phone's width and the staff list at an office screen's: no serious or critical axe violation."""

from __future__ import annotations

import time

import pyotp
from playwright.sync_api import sync_playwright

from console.staff.models import StaffUser
from console.staff.service import create_staff, use_token
from payments.core.types import utcnow
from tests.axe import violations
from tests.conftest import LiveServer
from tests.test_browser import CHROMIUM, FLAGS

PASSWORD = "a long enough password"
PHONE = {"width": 390, "height": 844}


def _account(server: LiveServer, email: str, role: str, secret: str | None = None) -> str:
    with server.ctx.db.write() as s:
        user, token = create_staff(s, email=email, role=role, agency_code="AGC-A")
    with server.ctx.db.write() as s:
        use_token(s, token, PASSWORD)
        if secret:
            row = s.get(StaffUser, user.id)
            assert row
            row.totp_secret, row.totp_enabled_at = secret, utcnow()
            s.add(row)
    return user.id


def test_second_step_and_staff_pages_have_no_serious_violation(live_server: LiveServer) -> None:
    secret = pyotp.random_base32()
    admin = _account(live_server, "quantri@agc-a.gov.vn", "agency_admin", secret)
    _account(live_server, "ketoan@agc-a.gov.vn", "finance")
    url = live_server.url
    found: dict[str, object] = {}
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        page = browser.new_context(bypass_csp=True, viewport=PHONE).new_page()  # type: ignore[arg-type]
        for lang in ("vi", "en"):
            page.goto(f"{url}/console/forgot?lang={lang}")
            found[f"forgot {lang}"] = violations(page)
        page.goto(f"{url}/console/login?lang=en")
        page.fill("#email", "quantri@agc-a.gov.vn")
        page.fill("#password", PASSWORD)
        page.get_by_role("button", name="Sign in").click()
        page.wait_for_url("**/console/login/code**")
        found["code en"] = violations(page)
        page.goto(f"{url}/console/login/code?lang=vi")
        found["code vi"] = violations(page)
        page.fill("#code", pyotp.TOTP(secret).at(time.time() + 30))
        page.get_by_role("button", name="Xác nhận").click()
        page.wait_for_url("**/console/?lang=vi")
        for path in ("staff", f"staff/{admin}", "account"):
            for lang in ("vi", "en"):
                page.goto(f"{url}/console/{path}?lang={lang}")
                assert "/login" not in page.url
                found[f"{path} {lang}"] = violations(page)
        page.set_viewport_size({"width": 1366, "height": 768})
        page.goto(f"{url}/console/staff?lang=en")
        found["staff office"] = violations(page)

        enrolling = browser.new_context(bypass_csp=True, viewport=PHONE).new_page()  # type: ignore[arg-type]
        enrolling.goto(f"{url}/console/login?lang=vi")
        enrolling.fill("#email", "ketoan@agc-a.gov.vn")
        enrolling.fill("#password", PASSWORD)
        enrolling.get_by_role("button", name="Đăng nhập").click()
        for lang in ("vi", "en"):
            enrolling.goto(f"{url}/console/account?lang={lang}")
            assert enrolling.locator("svg[role=img]").count() == 1
            found[f"account enrolling {lang}"] = violations(enrolling)
        browser.close()
    assert {name: v for name, v in found.items() if v} == {}
