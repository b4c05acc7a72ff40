"""The refund pages in Chromium at a phone's width: axe-core finds no serious or critical violation on the queue,
the request form and the request's page in either language, and the request and approval forms work in a browser."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
from playwright.sync_api import Browser, Page, sync_playwright
from sqlalchemy import select

from console.refunds.models import RefundRequest, RequestStatus
from console.staff.service import create_staff, use_token
from payments.payment.models import Refund
from tests.axe import violations
from tests.conftest import LiveServer
from tests.factories import dossier_body, payment_body, sandbox_outcome
from tests.test_browser import CHROMIUM, FLAGS

PASSWORD = "a long enough password"
PHONE = {"width": 390, "height": 844}


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        yield b
        b.close()


def _paid(server: LiveServer) -> str:
    with httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {server.key}"}) as http:
        code = http.post("/v1/dossiers", json=dossier_body(), headers={"Idempotency-Key": "d1"}).json()["code"]
        payment = http.post("/v1/payments", json=payment_body(code), headers={"Idempotency-Key": "p1"}).json()
        sandbox_outcome(http, server.ctx.settings, payment["gateway_reference"], "success")
    return str(payment["id"])


def _sign_in(page: Page, server: LiveServer, email: str) -> None:
    page.goto(f"{server.url}/console/login?lang=en")
    page.fill("#email", email)
    page.fill("#password", PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    assert "/login" not in page.url


def test_refund_pages_have_no_serious_violation_and_their_forms_work(live_server: LiveServer, browser: Browser) -> None:
    for email, role in (("ketoan@agc-a.gov.vn", "finance"), ("duyet@agc-a.gov.vn", "approver")):
        with live_server.ctx.db.write() as s:
            _, token = create_staff(s, email=email, role=role, agency_code="AGC-A")
        with live_server.ctx.db.write() as s:
            use_token(s, token, PASSWORD)
    payment_id = _paid(live_server)
    found: dict[str, list[dict[str, object]]] = {}
    base = f"{live_server.url}/console/refunds"

    context = browser.new_context(bypass_csp=True, viewport=PHONE)  # type: ignore[arg-type]
    page = context.new_page()
    _sign_in(page, live_server, "ketoan@agc-a.gov.vn")
    for lang in ("vi", "en"):
        for name, url in (("queue", base), ("pick", f"{base}/new"), ("new", f"{base}/new?payment={payment_id}")):
            page.goto(f"{url}{'&' if '?' in url else '?'}lang={lang}")
            found[f"finance {name} {lang}"] = violations(page)
    page.fill("#amount", "25.000")
    page.fill("#reason", "Hồ sơ bị trả lại")
    page.get_by_role("button", name="Send for approval").click()
    assert "done=requested" in page.url
    found["finance detail en"] = violations(page)
    context.close()

    context = browser.new_context(bypass_csp=True, viewport=PHONE)  # type: ignore[arg-type]
    page = context.new_page()
    _sign_in(page, live_server, "duyet@agc-a.gov.vn")
    with live_server.ctx.db.read() as s:
        (request,) = s.execute(select(RefundRequest)).scalars()
    for lang in ("vi", "en"):
        page.goto(f"{base}?lang={lang}")
        found[f"approver queue {lang}"] = violations(page)
        page.goto(f"{base}/{request.id}?lang={lang}")
        found[f"approver detail {lang}"] = violations(page)
    page.get_by_role("button", name="Approve and refund").click()
    assert "done=approved" in page.url
    found["approved en"] = violations(page)
    context.close()

    with live_server.ctx.db.read() as s:
        decided = s.get(RefundRequest, request.id)
        refunds = list(s.execute(select(Refund)).scalars())
    assert decided is not None and decided.status is RequestStatus.approved and decided.amount == 25_000
    assert [r.id for r in refunds] == [decided.refund_id]
    assert {name: v for name, v in found.items() if v} == {}
