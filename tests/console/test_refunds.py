"""Refunds with maker-checker: a finance user requests, an approver of the same agency (never the requester)
approves or rejects, and only an approval creates the refund through the payment core's path, so the gateway is
asked and the adjustment document follows. Roles, agency isolation, CSRF, hostile input, the remainder shared with
pending requests, concurrent approvals and the audit rows are each checked on both databases."""

from __future__ import annotations

import re
import threading
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from console.audit.models import AuditLog
from console.audit.service import verify
from console.refunds import pages, service
from console.refunds.models import RefundRequest, RequestStatus
from console.staff.models import StaffUser
from invoices.tables import Document, DocumentPurpose
from lephi.container import Container
from lephi.jobs import HANDLERS
from payments.core.types import utcnow
from payments.outbox.worker import Worker
from payments.payment.models import Payment, Refund, RefundStatus
from tests.conftest import Api
from tests.console.conftest import MakeStaff, count, csrf_of, login, sql
from tests.factories import dossier_body, payment_body, sandbox_outcome

REQUEST_URL = re.compile(r"/console/refunds/(rrq_[0-9a-f]+)")


def paid(api: Api, outcome: str = "success", receipt: bool = False) -> dict[str, Any]:
    """A sandbox payment of AGC-A, settled; with ``receipt``, its receipt issued by the worker."""
    code = api.post("/v1/dossiers", dossier_body(copies=3)).json()["code"]
    payment = api.post("/v1/payments", payment_body(code)).json()
    if outcome:
        sandbox_outcome(api.client, api.ctx.settings, payment["gateway_reference"], outcome)
    if receipt:
        Worker(api.ctx, HANDLERS).run_once()
    with api.ctx.db.read() as s:
        row = s.get(Payment, payment["id"])
        assert row is not None
        return {"id": row.id, "amount": row.amount, "status": row.status.value}


def new_client(client: TestClient) -> TestClient:
    # Another browser: its own cookies, the same app.
    return TestClient(client.app, raise_server_exceptions=False)


def signed_in(client: TestClient, make_staff: MakeStaff, email: str, role: str, agency: str | None = "AGC-A") -> str:
    staff = make_staff(email, role=role, agency=agency)
    response = login(client, staff.email, staff.password)
    assert response.status_code == 303, response.text
    return staff.id


def session_csrf(client: TestClient) -> str:
    page = client.get("/console/")
    assert page.status_code == 200
    return csrf_of(page.text)


def html(response: Any, status: int) -> str:
    assert response.status_code == status, (response.status_code, response.text[:800])
    assert response.headers["content-type"].startswith("text/html")
    assert "<main>" in response.text
    return str(response.text)


def main_of(page: str) -> str:
    return page[page.index("<main>") :]


def ask(client: TestClient, payment_id: str, amount: str, reason: str = "Hồ sơ bị trả lại", **extra: str) -> Any:
    data = {"amount": amount, "reason": reason, "csrf": session_csrf(client), "lang": "en", **extra}
    return client.post(f"/console/refunds/new?payment={payment_id}", data=data, follow_redirects=False)


def requested(client: TestClient, payment_id: str, amount: int) -> str:
    response = ask(client, payment_id, str(amount))
    assert response.status_code == 303, response.text[:800]
    match = REQUEST_URL.search(response.headers["location"])
    assert match
    return match.group(1)


def decide(client: TestClient, request_id: str, action: str, note: str = "", csrf: str | None = None) -> Any:
    data = {"note": note, "csrf": session_csrf(client) if csrf is None else csrf, "lang": "en"}
    return client.post(f"/console/refunds/{request_id}/{action}", data=data, follow_redirects=False)


def request_row(ctx: Container, request_id: str) -> RefundRequest:
    with ctx.db.read() as s:
        row = s.get(RefundRequest, request_id)
        assert row is not None
        return row


def audit(ctx: Container, action: str) -> list[AuditLog]:
    with ctx.db.read() as s:
        return list(s.execute(select(AuditLog).where(AuditLog.action == action)).scalars())


def refunds(ctx: Container) -> list[Refund]:
    with ctx.db.read() as s:
        return list(s.execute(select(Refund)).scalars())


def snapshot(ctx: Container) -> tuple[int, int, int]:
    return count(ctx, "refund_request"), count(ctx, "refund"), count(ctx, "audit_log")


@pytest.fixture
def finance(client: TestClient, make_staff: MakeStaff, agencies: dict[str, str]) -> str:
    return signed_in(client, make_staff, "ketoan@agc-a.gov.vn", "finance")


@pytest.fixture
def approver(client: TestClient, make_staff: MakeStaff, agencies: dict[str, str]) -> tuple[TestClient, str]:
    other = new_client(client)
    return other, signed_in(other, make_staff, "duyet@agc-a.gov.vn", "approver")


def test_finance_requests_an_approver_approves_the_gateway_refunds_and_the_adjustment_follows(
    api: Api, client: TestClient, finance: str, approver: tuple[TestClient, str]
) -> None:
    payment = paid(api, receipt=True)
    form = html(client.get(f"/console/refunds/new?payment={payment['id']}&lang=en"), 200)
    assert "Still requestable" in form and f"{payment['amount']:,}" in form
    request_id = requested(client, payment["id"], 40_000)
    page = html(client.get(f"/console/refunds/{request_id}?lang=en&done=requested"), 200)
    assert "Pending" in page and "awaits an approver" in page
    assert f'href="/console/payments/{payment["id"]}?lang=en"' in page
    assert "/approve" not in page and "/cancel" in page  # the requester may cancel, never approve
    assert refunds(api.ctx) == []  # a request moves no money

    checker, checker_id = approver
    queue = html(checker.get("/console/refunds?lang=en"), 200)
    assert request_id in queue and "ketoan@agc-a.gov.vn" in queue
    assert "/approve" in html(checker.get(f"/console/refunds/{request_id}?lang=en"), 200)
    response = decide(checker, request_id, "approve", "Đồng ý")
    assert response.status_code == 303 and "done=approved" in response.headers["location"]

    row = request_row(api.ctx, request_id)
    assert row.status is RequestStatus.approved and row.decided_by == checker_id and row.decision_note == "Đồng ý"
    (refund,) = refunds(api.ctx)
    assert refund.id == row.refund_id and refund.amount == 40_000 and refund.payment_id == payment["id"]
    assert refund.status is RefundStatus.succeeded  # the sandbox gateway answered at approval
    assert refund.created_by == f"staff:{checker_id}"
    detail = html(checker.get(f"/console/refunds/{request_id}?lang=en"), 200)
    assert "Approved" in detail and refund.id in detail and "Refunded" in detail

    Worker(api.ctx, HANDLERS).run_once()  # the refund.succeeded fact: the adjustment document
    with api.ctx.db.read() as s:
        adjustments = list(s.execute(select(Document).where(Document.purpose == DocumentPurpose.adjustment)).scalars())
        payment_row = s.get(Payment, payment["id"])
    assert [d.refund_id for d in adjustments] == [refund.id]
    assert payment_row is not None and payment_row.refunded_amount == 40_000
    assert payment_row.status.value == "partially_refunded"

    (asked,) = audit(api.ctx, "refund.requested")
    (approved,) = audit(api.ctx, "refund.approved")
    assert asked.actor == finance and asked.target == request_id and asked.after is not None
    assert asked.after["status"] == "pending" and asked.after["amount"] == 40_000
    assert approved.actor == checker_id and approved.before is not None and approved.after is not None
    assert approved.before["status"] == "pending" and approved.after["status"] == "approved"
    assert approved.after["refund_id"] == refund.id and approved.agency_id == api.agency_id
    with api.ctx.db.read() as s:
        assert verify(s).broken is None


def test_an_approved_refund_the_gateway_was_not_asked_about_is_completed_by_its_retry_job(
    api: Api,
    client: TestClient,
    finance: str,
    approver: tuple[TestClient, str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    payment = paid(api, receipt=True)
    request_id = requested(client, payment["id"], 10_000)

    # The call to the gateway after the approval's commit fails in a way the payment core does not expect.
    def vanished(ctx: object, refund_id: str) -> None:
        raise RuntimeError("the gateway's client vanished")

    monkeypatch.setattr(pages, "process_refund", vanished)
    checker, _ = approver
    assert decide(checker, request_id, "approve").status_code == 303
    (refund,) = refunds(api.ctx)
    assert refund.status is RefundStatus.pending
    assert "With the gateway" in html(checker.get(f"/console/refunds/{request_id}?lang=en"), 200)
    sql(api.ctx, "UPDATE outbox SET run_after = :at WHERE kind = 'refund.retry'", at=utcnow())
    Worker(api.ctx, HANDLERS).run_once()  # the retry job asks the gateway
    Worker(api.ctx, HANDLERS).run_once()  # the refund.succeeded fact issues the adjustment
    (refund,) = refunds(api.ctx)
    assert refund.status is RefundStatus.succeeded
    with api.ctx.db.read() as s:
        adjustments = list(s.execute(select(Document).where(Document.purpose == DocumentPurpose.adjustment)).scalars())
    assert [d.refund_id for d in adjustments] == [refund.id]


def test_a_refund_the_gateway_declines_shows_on_the_request_and_releases_its_amount(
    api: Api, client: TestClient, finance: str, approver: tuple[TestClient, str]
) -> None:
    payment = paid(api)
    request_id = requested(client, payment["id"], 10_000)
    # The gateway no longer holds the transaction as paid: it declines the refund.
    sql(api.ctx, "UPDATE sandbox_transaction SET status = 'failed'")
    checker, _ = approver
    assert decide(checker, request_id, "approve").status_code == 303
    (refund,) = refunds(api.ctx)
    assert refund.status is RefundStatus.failed and request_row(api.ctx, request_id).refund_id == refund.id
    page = html(checker.get(f"/console/refunds/{request_id}?lang=en"), 200)
    assert "Declined by the gateway" in page and "not refundable" in page
    with api.ctx.db.read() as s:
        row = s.get(Payment, payment["id"])
        assert row is not None and row.refund_reserved == 0 and row.refunded_amount == 0


def test_self_approval_is_refused_and_changes_nothing(
    api: Api, client: TestClient, finance: str, approver: tuple[TestClient, str]
) -> None:
    payment = paid(api)
    request_id = requested(client, payment["id"], 10_000)
    # The requester later becomes an approver: their own request is still not theirs to decide.
    sql(api.ctx, "UPDATE staff_user SET role = 'approver' WHERE id = :id", id=finance)
    page = html(client.get(f"/console/refunds/{request_id}?lang=en"), 200)
    assert "/approve" not in page and "another approver must decide" in page
    before = snapshot(api.ctx)
    html(decide(client, request_id, "approve"), 403)
    html(decide(client, request_id, "reject", "no"), 403)
    assert snapshot(api.ctx) == before and request_row(api.ctx, request_id).status is RequestStatus.pending


def test_who_opens_the_pages_and_who_may_decide(
    api: Api, client: TestClient, make_staff: MakeStaff, finance: str
) -> None:
    payment = paid(api)
    request_id = requested(client, payment["id"], 10_000)
    # role: (queue and detail, request form)
    pages = {
        "finance": (200, 200),
        "approver": (200, 403),
        "viewer": (200, 403),
        "agency_admin": (200, 403),
        "province_admin": (403, 403),
    }
    for role, (queue, new) in pages.items():
        other = new_client(client)
        signed_in(other, make_staff, f"{role}@agc-a.gov.vn", role, None if role == "province_admin" else "AGC-A")
        html(other.get("/console/refunds?lang=en"), queue)
        html(other.get(f"/console/refunds/{request_id}?lang=en"), queue)
        html(other.get("/console/refunds/new?lang=en"), new)
        html(other.get(f"/console/refunds/new?payment={payment['id']}&lang=en"), new)
        home = html(other.get("/console/?lang=en"), 200)
        assert ('href="/console/refunds?lang=en"' in home) is (queue == 200), role
        if role == "approver":
            continue
        # Everyone but an approver is refused a decision; a finance user who did not ask may not cancel either.
        before = snapshot(api.ctx)
        for action in ("approve", "reject", "cancel"):
            html(decide(other, request_id, action, "note"), 403)
        assert snapshot(api.ctx) == before, role
    assert request_row(api.ctx, request_id).status is RequestStatus.pending


def test_the_amount_never_exceeds_the_remainder_less_pending_requests(
    api: Api, client: TestClient, finance: str
) -> None:
    payment = paid(api)
    total = payment["amount"]
    before = snapshot(api.ctx)
    page = html(ask(client, payment["id"], str(total + 1)), 400)
    assert "more than what can still be requested" in page
    assert snapshot(api.ctx) == before
    first = requested(client, payment["id"], total - 5_000)
    # Together with the pending request, this would exceed the payment.
    before = snapshot(api.ctx)
    html(ask(client, payment["id"], "5001"), 400)
    assert snapshot(api.ctx) == before
    requested(client, payment["id"], 5_000)
    html(ask(client, payment["id"], "1"), 400)
    # Cancelling gives the amount back to what may be requested.
    assert decide(client, first, "cancel").status_code == 303
    assert request_row(api.ctx, first).status is RequestStatus.cancelled
    (cancelled,) = audit(api.ctx, "refund.cancelled")
    assert cancelled.actor == finance and cancelled.after is not None and cancelled.after["status"] == "cancelled"
    requested(client, payment["id"], 1_000)


def test_an_approval_beyond_what_the_payment_still_holds_changes_nothing(
    api: Api, client: TestClient, finance: str, approver: tuple[TestClient, str]
) -> None:
    payment = paid(api)
    request_id = requested(client, payment["id"], payment["amount"])
    # Meanwhile the client system refunded part of it through the API.
    r = api.post(f"/v1/payments/{payment['id']}/refunds", {"amount": 1_000, "reason": "API"})
    assert r.status_code == 201, r.text
    checker, _ = approver
    before = snapshot(api.ctx)
    page = html(decide(checker, request_id, "approve"), 409)
    assert "cannot be approved" in page
    assert snapshot(api.ctx) == before and request_row(api.ctx, request_id).status is RequestStatus.pending


def test_a_payment_that_has_not_succeeded_cannot_be_requested(api: Api, client: TestClient, finance: str) -> None:
    payment = paid(api, outcome="")
    page = html(client.get(f"/console/refunds/new?payment={payment['id']}&lang=en"), 409)
    assert "cannot be refunded" in page and 'name="amount"' not in page
    before = snapshot(api.ctx)
    html(ask(client, payment["id"], "1000"), 400)
    assert snapshot(api.ctx) == before


def test_a_rejection_needs_a_note(api: Api, client: TestClient, finance: str, approver: tuple[TestClient, str]) -> None:
    payment = paid(api)
    request_id = requested(client, payment["id"], 10_000)
    checker, checker_id = approver
    before = snapshot(api.ctx)
    for blank in ("", "   "):
        assert "Give the reason for rejecting" in html(decide(checker, request_id, "reject", blank), 400)
    assert snapshot(api.ctx) == before
    assert decide(checker, request_id, "reject", "Thiếu chứng từ").status_code == 303
    row = request_row(api.ctx, request_id)
    assert row.status is RequestStatus.rejected and row.decision_note == "Thiếu chứng từ" and row.refund_id is None
    assert refunds(api.ctx) == []
    (rejected,) = audit(api.ctx, "refund.rejected")
    assert rejected.actor == checker_id and rejected.before is not None and rejected.after is not None
    assert (rejected.before["status"], rejected.after["status"]) == ("pending", "rejected")
    # Decided: neither the approver nor the requester can change it now.
    html(decide(checker, request_id, "approve"), 409)
    html(decide(client, request_id, "cancel"), 409)
    assert refunds(api.ctx) == []


def test_a_double_submitted_approval_approves_once(
    api: Api, client: TestClient, finance: str, approver: tuple[TestClient, str]
) -> None:
    payment = paid(api)
    request_id = requested(client, payment["id"], 10_000)
    checker, _ = approver
    csrf = session_csrf(checker)
    assert decide(checker, request_id, "approve", csrf=csrf).status_code == 303
    page = html(decide(checker, request_id, "approve", csrf=csrf), 409)
    assert "already decided" in page
    assert len(refunds(api.ctx)) == 1 and len(audit(api.ctx, "refund.approved")) == 1


def test_two_approvers_at_once_make_exactly_one_refund(
    api: Api, client: TestClient, make_staff: MakeStaff, finance: str, approver: tuple[TestClient, str]
) -> None:
    payment = paid(api)
    request_id = requested(client, payment["id"], 10_000)
    first, _ = approver
    second = new_client(client)
    signed_in(second, make_staff, "duyet2@agc-a.gov.vn", "approver")
    tokens = [session_csrf(first), session_csrf(second)]
    barrier = threading.Barrier(2)
    statuses: list[int] = []

    def run(browser: TestClient, csrf: str) -> None:
        barrier.wait()
        statuses.append(decide(browser, request_id, "approve", csrf=csrf).status_code)

    threads = [threading.Thread(target=run, args=pair) for pair in zip([first, second], tokens, strict=True)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert sorted(statuses) == [303, 409]
    assert len(refunds(api.ctx)) == 1 and len(audit(api.ctx, "refund.approved")) == 1
    with api.ctx.db.read() as s:
        row = s.get(Payment, payment["id"])
        assert row is not None and row.refund_reserved == 10_000


def test_another_agencys_request_and_payment_answer_404(
    api: Api, client: TestClient, make_staff: MakeStaff, finance: str
) -> None:
    payment = paid(api)
    request_id = requested(client, payment["id"], 10_000)
    outsider = new_client(client)
    signed_in(outsider, make_staff, "duyet@agc-b.gov.vn", "approver", "AGC-B")
    unknown = html(outsider.get("/console/refunds/rrq_000000000000000000000000?lang=en"), 404)
    theirs = html(outsider.get(f"/console/refunds/{request_id}?lang=en"), 404)
    assert main_of(theirs) == main_of(unknown)
    assert request_id not in html(outsider.get("/console/refunds?lang=en"), 200)
    b_finance = new_client(client)
    signed_in(b_finance, make_staff, "ketoan@agc-b.gov.vn", "finance", "AGC-B")
    before = snapshot(api.ctx)
    for action in ("approve", "reject"):
        html(decide(outsider, request_id, action, "note"), 404)
    html(b_finance.get(f"/console/refunds/new?payment={payment['id']}&lang=en"), 404)
    html(ask(b_finance, payment["id"], "1000"), 404)
    html(decide(b_finance, request_id, "cancel"), 404)
    assert snapshot(api.ctx) == before and request_row(api.ctx, request_id).status is RequestStatus.pending


def test_forms_without_the_sessions_token_are_refused(
    api: Api, client: TestClient, finance: str, approver: tuple[TestClient, str]
) -> None:
    payment = paid(api)
    request_id = requested(client, payment["id"], 10_000)
    checker, _ = approver
    before = snapshot(api.ctx)
    for csrf in ("", "wrong", session_csrf(client)):  # the last: the requester's token, not the approver's
        assert "nothing was done" in html(decide(checker, request_id, "approve", csrf=csrf), 403)
    data = {"amount": "1000", "reason": "x", "lang": "en"}
    html(client.post(f"/console/refunds/new?payment={payment['id']}", data=data), 403)
    html(client.post(f"/console/refunds/new?payment={payment['id']}", data={**data, "csrf": "x"}), 403)
    foreign = {"origin": "https://evil.example"}
    cancel = {"csrf": session_csrf(client), "lang": "en"}
    html(client.post(f"/console/refunds/{request_id}/cancel", data=cancel, headers=foreign), 403)
    assert snapshot(api.ctx) == before and request_row(api.ctx, request_id).status is RequestStatus.pending


HOSTILE = [
    ("abc", "ok"),
    ("-5", "ok"),
    ("0", "ok"),
    ("1e9", "ok"),
    ("99999999999999999999", "ok"),
    ("1000", ""),
    ("1000", "x" * 501),
    ("1000", "x" * 5000),
    ("1000", "line\nbreak"),
    ("1000", "nul\x00"),
    ("10\x00", "ok"),
]


def test_hostile_request_values_get_a_4xx_page_and_store_nothing(api: Api, client: TestClient, finance: str) -> None:
    payment = paid(api)
    before = snapshot(api.ctx)
    for amount, reason in HOSTILE:
        html(ask(client, payment["id"], amount, reason), 400)
    assert snapshot(api.ctx) == before


def test_malformed_requests_and_filters(
    api: Api, client: TestClient, finance: str, approver: tuple[TestClient, str]
) -> None:
    payment = paid(api)
    request_id = requested(client, payment["id"], 10_000)
    checker, _ = approver
    before = snapshot(api.ctx)
    upload = {"note": ("note.txt", b"x" * 100_000, "text/plain")}
    too_big = checker.post(f"/console/refunds/{request_id}/approve", data={"csrf": "x"}, files=upload)
    assert too_big.status_code in (400, 413) and "<main>" in too_big.text
    html(decide(checker, request_id, "reject", "x" * 501), 400)
    html(decide(checker, request_id, "reject", "a\x07b"), 400)
    html(checker.post(f"/console/refunds/{request_id}/approve", data={"csrf": "x", "lang": "xx"}), 400)
    garbage = {"content-type": "application/x-www-form-urlencoded"}
    bad_bytes = checker.post(f"/console/refunds/{request_id}/approve", content=b"note=\xff\xfe&csrf=x", headers=garbage)
    assert bad_bytes.status_code in (400, 403) and "<main>" in bad_bytes.text
    # A NUL anywhere in the address is refused by the service as a whole (422), still with a page.
    for path in ("rrq_x%00y", "a" * 300, "..%2f..%2fetc", "rrq_a%07"):
        html(checker.get(f"/console/refunds/{path}?lang=en"), 422 if "%00" in path else 404)
    html(ask(client, "pay_%00", "1000"), 422)
    html(ask(client, "pay_%07", "1000"), 404)
    html(client.get("/console/refunds/new?payment=" + "p" * 200), 404)
    html(checker.get("/console/refunds?status=%00"), 422)
    for query in ("status=paid", "status=%07", "page=0", "page=abc", "page=99999999", "lang=xx"):
        html(checker.get(f"/console/refunds?{query}"), 400)
    assert snapshot(api.ctx) == before
    listed = html(checker.get("/console/refunds?lang=en&status=pending"), 200)
    assert request_id in listed
    assert request_id not in html(checker.get("/console/refunds?lang=en&status=approved"), 200)


def test_the_queue_shows_pending_first_and_50_a_page(
    api: Api, client: TestClient, finance: str, approver: tuple[TestClient, str]
) -> None:
    payment = paid(api)
    first = requested(client, payment["id"], 100)
    checker, _ = approver
    assert decide(checker, first, "reject", "no").status_code == 303
    ids = [requested(client, payment["id"], 100)]
    # The rest straight through SQL: the page's order and paging are what is tested here.
    for n in range(50):
        sql(
            api.ctx,
            "INSERT INTO refund_request (id, agency_id, payment_id, amount, reason, status, requested_by, "
            "requested_at) VALUES (:id, :agency, :payment, 1, 'r', 'pending', :by, CURRENT_TIMESTAMP)",
            id=f"rrq_{n:024d}",
            agency=api.agency_id,
            payment=payment["id"],
            by=finance,
        )
    page1 = html(checker.get("/console/refunds?lang=en"), 200)
    assert first not in page1 and 'rel="next"' in page1 and 'rel="prev"' not in page1
    page2 = html(checker.get("/console/refunds?lang=en&page=2"), 200)
    assert first in page2 and 'rel="prev"' in page2 and 'rel="next"' not in page2
    assert ids[0] in page1 + page2


def test_two_requests_at_once_cannot_both_take_the_remainder(api: Api, make_staff: MakeStaff) -> None:
    payment = paid(api)
    makers = [make_staff(f"ketoan{n}@agc-a.gov.vn", role="finance") for n in (1, 2)]
    with api.ctx.db.read() as s:
        users = [s.get(StaffUser, m.id) for m in makers]
    share = payment["amount"] * 6 // 10
    barrier = threading.Barrier(2)
    outcomes: list[str] = []

    def run(user: StaffUser | None) -> None:
        assert user is not None
        barrier.wait()
        try:
            with api.ctx.db.write() as s:
                service.request_refund(s, user, payment["id"], share, "Hồ sơ bị trả lại")
            outcomes.append("requested")
        except service.Refused as exc:
            outcomes.append(exc.key)

    threads = [threading.Thread(target=run, args=(user,)) for user in users]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert sorted(outcomes) == ["refunds_amount_over", "requested"]
    assert count(api.ctx, "refund_request") == 1 and len(audit(api.ctx, "refund.requested")) == 1
