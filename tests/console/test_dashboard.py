"""The home page's dashboard: each figure equal to what the test wrote, for the signed-in user's agency only, the
province's totals and per-agency table for a province admin, links only to pages that are served, and the refund
requests' hook."""

from __future__ import annotations

import re
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta

import pytest
from fastapi.testclient import TestClient

from console.dashboard import page as page_module
from console.dashboard.figures import gather, refund_request_table
from console.dashboard.page import PAGES, served_paths
from invoices.keys import write_dev_certificate
from invoices.tax.tables import TaxMessageStatus
from lephi.container import Container
from payments.agency.models import Agency
from payments.reconcile.models import ExceptionStatus
from payments.transfer.models import CreditStatus
from tests.console.conftest import MakeStaff, login
from tests.console.report_data import (
    exception,
    failed_delivery,
    failed_payment,
    held_credit,
    pay,
    refund,
    tax_message,
)

FIGURE = re.compile(r'data-figure="(\w+)">([^<]*)')


def figures(html: str) -> dict[str, str]:
    table = html[html.index('id="figures"') : html.index("</table>", html.index('id="figures"'))]
    return {name: value.strip() for name, value in FIGURE.findall(table)}


def sign_in(client: TestClient, make_staff: MakeStaff, role: str, agency: str | None) -> None:
    staff = make_staff(f"{role}.{agency or 'tinh'}@gov.vn".lower(), role=role, agency=agency)
    assert login(client, staff.email, staff.password).status_code == 303


def test_figures_are_the_agency_s_own(
    client: TestClient, ctx: Container, make_staff: MakeStaff, agencies: dict[str, str]
) -> None:
    a, b = agencies["AGC-A"], agencies["AGC-B"]
    now = datetime.now(UTC)
    with ctx.db.write() as s:
        p = pay(s, a, 120_000, now - timedelta(minutes=2))
        pay(s, a, 80_000, now - timedelta(minutes=1), method="vnpay", review=True)  # a late success
        pay(s, a, 55_000, now - timedelta(days=2))  # not today
        refund(s, p, 10_000, now)  # a refund changes nothing of today's payments
        failed_payment(s, a, 33_000, now)
        held_credit(s, a, CreditStatus.underpaid)
        held_credit(s, a, CreditStatus.late)
        held_credit(s, a, CreditStatus.matched)  # applied: not held
        held_credit(s, None)  # names no agency: the province's
        exception(s, a, now.date())
        exception(s, a, now.date(), ExceptionStatus.resolved)
        endpoint = failed_delivery(s, a)
        failed_delivery(s, a, endpoint)
        tax_message(s, a, TaxMessageStatus.sent)
        tax_message(s, a, TaxMessageStatus.rejected)
        tax_message(s, a, TaxMessageStatus.coded)  # accepted
        # B's: never in A's figures.
        pay(s, b, 999_000, now - timedelta(minutes=3), review=True)
        held_credit(s, b)
        exception(s, b, now.date())
        failed_delivery(s, b)
        tax_message(s, b, TaxMessageStatus.queued)
    # A's registered signing certificate (the development one: ten years from today).
    write_dev_certificate(ctx.settings.data_dir / "certs", "AGC-A", "0100000001", "Agency AGC-A")

    sign_in(client, make_staff, "finance", "AGC-A")
    page = client.get("/console/?lang=en")
    assert page.status_code == 200
    got = figures(page.text)
    assert got["payments_today"] == "2"
    assert got["amount_today"] == "VND\u00a0200,000"
    assert got["reviews"] == "1" and got["held_credits"] == "2" and got["open_exceptions"] == "1"
    assert got["failed_deliveries"] == "2" and got["failing_endpoints"] == "1"
    assert got["tax_waiting"] == "2" and got["tax_rejected"] == "1"
    assert "days left" in got["certificate"] and "unassigned" not in got
    # Today's payments link to the report of the day (the payments list is another package's page).
    assert 'href="/console/payments?lang=en">Open' in page.text
    assert "999,000" not in page.text and 'id="per-agency"' not in page.text

    sign_in(client, make_staff, "viewer", "AGC-B")
    got_b = figures(client.get("/console/?lang=en").text)
    assert got_b["amount_today"] == "VND\u00a0999,000" and got_b["reviews"] == "1" and got_b["held_credits"] == "1"
    assert got_b["failed_deliveries"] == "1" and got_b["tax_waiting"] == "1" and got_b["tax_rejected"] == "0"
    assert got_b["certificate"] == "No certificate yet"

    sign_in(client, make_staff, "province_admin", None)
    province = client.get("/console/?lang=en").text
    total = figures(province)
    assert total["amount_today"] == "VND\u00a01,199,000" and total["reviews"] == "2" and total["held_credits"] == "3"
    assert total["unassigned"] == "1" and total["open_exceptions"] == "2" and total["tax_waiting"] == "3"
    rows = dict(re.findall(r'<tr data-agency="([^"]+)">(.*?)</tr>', province))
    assert set(rows) == {"AGC-A", "AGC-B"}
    assert "VND\u00a0200,000" in rows["AGC-A"] and "VND\u00a0999,000" in rows["AGC-B"]


def test_refund_requests_hook_and_links_only_to_served_pages(
    client: TestClient, make_staff: MakeStaff, agencies: dict[str, str]
) -> None:
    sign_in(client, make_staff, "approver", "AGC-A")
    page = client.get("/console/?lang=en").text
    served = served_paths(client.app.routes)  # type: ignore[attr-defined]
    assert "/console/reports" in served and "/console/keys" in served
    if refund_request_table() is None:
        assert figures(page)["refund_requests"] == "Not available yet"
    for paths in PAGES.values():
        for path in paths:
            assert (f'href="{path}?lang=en">Open' in page) <= (path in served), path


def test_certificate_expiry_counts_down(ctx: Container, agencies: dict[str, str]) -> None:
    write_dev_certificate(ctx.settings.data_dir / "certs", "AGC-A", "0100000001", "Agency AGC-A")
    with ctx.db.read() as s:
        a = s.get(Agency, agencies["AGC-A"])
        b = s.get(Agency, agencies["AGC-B"])
        assert a is not None and b is not None
        board = gather(s, [a, b], ctx.settings)
        until = board.total.certificate_until
        assert until is not None and board.rows[1][1].certificate_until is None
        soon = gather(s, [a], ctx.settings, now=until - timedelta(days=10, hours=1))
        late = gather(s, [a], ctx.settings, now=until + timedelta(days=1))
    assert soon.total.certificate_days == 10 and late.total.certificate_days is not None
    assert late.total.certificate_days < 0


def test_the_served_paths_are_walked_once_per_app(
    client: TestClient, make_staff: MakeStaff, agencies: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    walks: list[int] = []

    def counted(routes: Iterable[object]) -> set[str]:
        if routes is client.app.routes:  # type: ignore[attr-defined]  # the walk's start, not its recursion
            walks.append(1)
        return served_paths(routes)

    monkeypatch.setattr(page_module, "served_paths", counted)
    sign_in(client, make_staff, "agency_admin", "AGC-A")
    first = client.get("/console/?lang=en").text
    assert client.get("/console/?lang=en").text.count('">Open') == first.count('">Open') > 0
    assert client.get("/console/?lang=vi").status_code == 200
    assert len(walks) <= 1  # none when an earlier request of this app walked them
