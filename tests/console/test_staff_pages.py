"""The staff page: who may open it, one agency never reaching another's accounts, what an agency admin may not do
(create a province admin, raise anyone above agency_admin, demote or deactivate themselves), deactivation ending
sessions at once, links mailed, CSRF, hostile input, an audit row with before/after for every change, and the
forgotten-password form answering the same whatever the address."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from console.audit.models import AuditLog
from console.mail import Mail
from console.staff.models import StaffUser
from lephi.container import Container
from tests.console.conftest import MakeStaff, count, counts, csrf_of, login, user_row

LINK = re.compile(r"http://testserver(/console/set-password/\S+)")


class Outbox:
    def __init__(self) -> None:
        self.mails: list[Mail] = []

    def send(self, mail: Mail) -> None:
        self.mails.append(mail)

    def link(self) -> str:
        found = LINK.search(self.mails[-1].body)
        assert found
        return found.group(1)


@pytest.fixture
def outbox(client: TestClient) -> Outbox:
    box = Outbox()
    client.app.state.console_mailer = box  # type: ignore[attr-defined]
    return box


@pytest.fixture
def browsers(client: TestClient) -> Iterator[list[TestClient]]:
    made: list[TestClient] = []
    yield made
    for c in made:
        c.close()


def browser(client: TestClient, browsers: list[TestClient]) -> TestClient:
    other = TestClient(client.app, raise_server_exceptions=False)
    browsers.append(other)
    return other


def signed_in(client: TestClient, make_staff: MakeStaff, email: str, role: str, agency: str | None) -> str:
    staff = make_staff(email, role=role, agency=agency)
    assert login(client, staff.email, staff.password).status_code == 303
    return staff.id


def page_csrf(client: TestClient, path: str = "/console/staff") -> str:
    page = client.get(path)
    assert page.status_code == 200, page.text[:300]
    return csrf_of(page.text)


def audit(ctx: Container, action: str) -> list[AuditLog]:
    with ctx.db.read() as s:
        return list(s.execute(select(AuditLog).where(AuditLog.action == action)).scalars())


def html(response: Any, status: int) -> None:
    assert response.status_code == status, (response.status_code, response.text[:500])
    assert response.headers["content-type"].startswith("text/html")


def test_roles_that_are_not_admins_are_refused(
    client: TestClient, ctx: Container, make_staff: MakeStaff, agencies: dict[str, str], browsers: list[TestClient]
) -> None:
    target = make_staff("target@agc-a.gov.vn")
    assert client.get("/console/staff?lang=en", follow_redirects=False).status_code == 303
    for role in ("finance", "approver", "viewer"):
        c = browser(client, browsers)
        signed_in(c, make_staff, f"{role}@agc-a.gov.vn", role, "AGC-A")
        html(c.get("/console/staff"), 403)
        html(c.get(f"/console/staff/{target.id}"), 403)
        csrf = page_csrf(c, "/console/")
        before = counts(ctx)
        html(c.post("/console/staff", data={"csrf": csrf, "email": "x@agc-a.gov.vn", "role": "viewer"}), 403)
        html(c.post(f"/console/staff/{target.id}", data={"csrf": csrf, "action": "deactivate"}), 403)
        html(c.post("/console/staff-policy", data={"csrf": csrf, "totp_required": "yes"}), 403)
        assert counts(ctx) == before and user_row(ctx, target.id).active
        assert "/console/staff" not in c.get("/console/").text


def test_agency_admin_creates_and_manages_own_agency_only(
    client: TestClient, ctx: Container, make_staff: MakeStaff, agencies: dict[str, str], outbox: Outbox
) -> None:
    admin_id = signed_in(client, make_staff, "admin@agc-a.gov.vn", "agency_admin", "AGC-A")
    other = make_staff("other@agc-b.gov.vn", agency="AGC-B")
    page = client.get("/console/staff?lang=en")
    html(page, 200)
    assert "admin@agc-a.gov.vn" in page.text and "other@agc-b.gov.vn" not in page.text
    csrf = csrf_of(page.text)
    response = client.post(
        "/console/staff",
        data={"csrf": csrf, "email": "New@AGC-A.gov.vn", "role": "finance", "agency": "AGC-A", "lang": "en"},
        follow_redirects=False,
    )
    assert response.status_code == 303
    with ctx.db.read() as s:
        new = s.execute(select(StaffUser).where(StaffUser.email == "new@agc-a.gov.vn")).scalars().one()
    assert new.agency_id == agencies["AGC-A"]
    [row] = audit(ctx, "staff.created")[-1:]
    assert row.actor == admin_id and row.target == new.id and row.after and row.after["role"] == "finance"
    assert outbox.mails[-1].to == "new@agc-a.gov.vn"
    assert client.get(outbox.link()).status_code == 200
    # Another agency, the province, a province admin: 404 or 400, and nothing stored.
    before = counts(ctx)
    for data, status in (
        ({"email": "x1@agc-b.gov.vn", "role": "finance", "agency": "AGC-B"}, 404),
        ({"email": "x2@agc-a.gov.vn", "role": "province_admin", "agency": "province"}, 404),
        ({"email": "x3@agc-a.gov.vn", "role": "province_admin", "agency": "AGC-A"}, 400),
        ({"email": "x4@agc-a.gov.vn", "role": "overlord", "agency": "AGC-A"}, 400),
        ({"email": "not an email", "role": "finance", "agency": "AGC-A"}, 400),
        ({"email": "new@agc-a.gov.vn", "role": "finance", "agency": "AGC-A"}, 400),
    ):
        html(client.post("/console/staff", data={"csrf": csrf, **data}), status)
    assert counts(ctx) == before
    # Another agency's account answers like an unknown one, and nothing changes.
    for target in (other.id, "stf_unknown", "x" * 300):
        html(client.get(f"/console/staff/{target}"), 404)
        for action in ("deactivate", "role", "send_link", "reset_totp"):
            html(client.post(f"/console/staff/{target}", data={"csrf": csrf, "action": action, "role": "viewer"}), 404)
    html(client.get("/console/staff?agency=AGC-B"), 404)
    html(client.get("/console/staff?agency=province"), 404)
    for scope in ("AGC-B", "province"):
        html(client.post("/console/staff-policy", data={"csrf": csrf, "agency": scope, "totp_required": "yes"}), 404)
    assert counts(ctx) == before and user_row(ctx, other.id).active and len(outbox.mails) == 1


def test_role_changes_and_no_self_demotion_or_deactivation(
    client: TestClient, ctx: Container, make_staff: MakeStaff, agencies: dict[str, str]
) -> None:
    admin_id = signed_in(client, make_staff, "admin@agc-a.gov.vn", "agency_admin", "AGC-A")
    target = make_staff("ketoan@agc-a.gov.vn")
    csrf = page_csrf(client)
    path = f"/console/staff/{target.id}"
    response = client.post(path, data={"csrf": csrf, "action": "role", "role": "agency_admin"}, follow_redirects=False)
    assert response.status_code == 303 and user_row(ctx, target.id).role.value == "agency_admin"
    [row] = audit(ctx, "staff.role_changed")
    assert row.before and row.after and (row.before["role"], row.after["role"]) == ("finance", "agency_admin")
    before = counts(ctx)
    html(client.post(path, data={"csrf": csrf, "action": "role", "role": "province_admin"}), 400)
    html(client.post(path, data={"csrf": csrf, "action": "explode"}), 400)
    own = f"/console/staff/{admin_id}"
    html(client.post(own, data={"csrf": csrf, "action": "role", "role": "viewer"}), 400)
    html(client.post(own, data={"csrf": csrf, "action": "deactivate"}), 400)
    assert counts(ctx) == before
    assert user_row(ctx, admin_id).role.value == "agency_admin" and user_row(ctx, admin_id).active
    assert user_row(ctx, target.id).role.value == "agency_admin"


def test_deactivation_ends_sessions_and_sign_in_then_reactivation(
    client: TestClient, ctx: Container, make_staff: MakeStaff, agencies: dict[str, str], browsers: list[TestClient]
) -> None:
    signed_in(client, make_staff, "admin@agc-a.gov.vn", "agency_admin", "AGC-A")
    target = make_staff("ketoan@agc-a.gov.vn")
    theirs = browser(client, browsers)
    assert login(theirs, target.email, target.password).status_code == 303
    assert theirs.get("/console/", follow_redirects=False).status_code == 200
    csrf = page_csrf(client)
    path = f"/console/staff/{target.id}"
    assert client.post(path, data={"csrf": csrf, "action": "deactivate"}, follow_redirects=False).status_code == 303
    row = user_row(ctx, target.id)
    assert not row.active and row.deactivated_at is not None
    assert theirs.get("/console/", follow_redirects=False).status_code == 303
    assert login(theirs, target.email, target.password).status_code == 401
    [deactivated] = audit(ctx, "staff.deactivated")
    assert deactivated.before and deactivated.before["active"] and deactivated.after and not deactivated.after["active"]
    assert "ketoan@agc-a.gov.vn" in client.get("/console/staff?lang=en").text
    assert client.post(path, data={"csrf": csrf, "action": "reactivate"}, follow_redirects=False).status_code == 303
    assert user_row(ctx, target.id).active and len(audit(ctx, "staff.reactivated")) == 1
    assert login(theirs, target.email, target.password).status_code == 303
    assert user_row(ctx, target.id).last_sign_in_at is not None


def test_send_link_and_reset_second_factor_are_audited(
    client: TestClient, ctx: Container, make_staff: MakeStaff, agencies: dict[str, str], outbox: Outbox
) -> None:
    signed_in(client, make_staff, "admin@agc-a.gov.vn", "agency_admin", "AGC-A")
    target = make_staff("ketoan@agc-a.gov.vn")
    csrf = page_csrf(client)
    path = f"/console/staff/{target.id}"
    assert client.post(path, data={"csrf": csrf, "action": "send_link"}, follow_redirects=False).status_code == 303
    assert outbox.mails[-1].to == target.email and len(audit(ctx, "staff.reset_sent")) == 1
    assert client.get(outbox.link()).status_code == 200
    with ctx.db.write() as s:
        user = s.get(StaffUser, target.id)
        assert user
        user.totp_secret = "JBSWY3DPEHPK3PXP"
        user.totp_enabled_at = user.created_at
        s.add(user)
    assert client.post(path, data={"csrf": csrf, "action": "reset_totp"}, follow_redirects=False).status_code == 303
    row = user_row(ctx, target.id)
    assert row.totp_secret is None and row.totp_enabled_at is None
    [reset] = audit(ctx, "staff.totp_reset")
    assert reset.before and reset.before["totp"] and reset.after and not reset.after["totp"]


def test_csrf_and_hostile_input_change_nothing(
    client: TestClient, ctx: Container, make_staff: MakeStaff, agencies: dict[str, str]
) -> None:
    signed_in(client, make_staff, "admin@agc-a.gov.vn", "agency_admin", "AGC-A")
    target = make_staff("ketoan@agc-a.gov.vn")
    csrf = page_csrf(client)
    path = f"/console/staff/{target.id}"
    before = counts(ctx)
    html(client.post(path, data={"action": "deactivate"}), 403)
    html(client.post(path, data={"csrf": "wrong", "action": "deactivate"}), 403)
    html(
        client.post(path, data={"csrf": csrf, "action": "deactivate"}, headers={"origin": "https://evil.example"}), 403
    )
    html(client.post("/console/staff", data={"csrf": "", "email": "a@agc-a.gov.vn", "role": "viewer"}), 403)
    html(client.post("/console/staff-policy", data={"csrf": "nope", "totp_required": "yes"}), 403)
    for data in (
        {"csrf": csrf, "email": "a" * 5000 + "@agc-a.gov.vn", "role": "viewer"},
        {"csrf": csrf, "email": "a\x00b@agc-a.gov.vn", "role": "viewer"},
        {"csrf": csrf, "email": "a@agc-a.gov.vn\r\nBcc: x@evil.example", "role": "viewer"},
        {"csrf": csrf, "email": "a@agc-a.gov.vn", "role": "viewer", "lang": "xx"},
    ):
        html(client.post("/console/staff", data=data), 400)
    upload = client.post("/console/staff", data={"csrf": csrf}, files={"email": ("a.txt", b"x" * 100_000)})
    assert upload.status_code in {400, 413} and upload.headers["content-type"].startswith("text/html")
    html(client.post("/console/staff-policy", data={"csrf": csrf, "totp_required": "maybe"}), 400)
    for query in ("page=0", "page=-1", "page=abc", "page=" + "9" * 50, "agency=" + "A" * 100, "agency=%01", "lang=xx"):
        html(client.get(f"/console/staff?{query}"), 404 if query.startswith("agency") else 400)
    assert counts(ctx) == before and user_row(ctx, target.id).active


def test_province_admin_manages_province_users_and_any_agency_and_the_policy(
    client: TestClient, ctx: Container, make_staff: MakeStaff, agencies: dict[str, str], outbox: Outbox
) -> None:
    signed_in(client, make_staff, "tinh@stc.gov.vn", "province_admin", None)
    b_user = make_staff("b@agc-b.gov.vn", agency="AGC-B")
    page = client.get("/console/staff?lang=en")
    html(page, 200)
    assert "tinh@stc.gov.vn" in page.text and "AGC-B" in page.text
    csrf = csrf_of(page.text)
    response = client.post(
        "/console/staff",
        data={"csrf": csrf, "email": "tinh2@stc.gov.vn", "role": "province_admin", "agency": "province"},
        follow_redirects=False,
    )
    assert response.status_code == 303 and count(ctx, "staff_user") == 3
    html(
        client.post("/console/staff", data={"csrf": csrf, "email": "c@x.vn", "role": "finance", "agency": "province"}),
        400,
    )
    assert "b@agc-b.gov.vn" in client.get("/console/staff?agency=AGC-B").text
    path = f"/console/staff/{b_user.id}"
    assert (
        client.post(path, data={"csrf": csrf, "action": "role", "role": "viewer"}, follow_redirects=False).status_code
        == 303
    )
    assert user_row(ctx, b_user.id).role.value == "viewer"
    html(client.get("/console/staff?agency=NOPE"), 404)
    for agency, scope in (("AGC-B", agencies["AGC-B"]), ("province", "province")):
        response = client.post(
            "/console/staff-policy",
            data={"csrf": csrf, "agency": agency, "totp_required": "yes"},
            follow_redirects=False,
        )
        assert response.status_code == 303
        [row] = [r for r in audit(ctx, "staff.policy_changed") if r.target == scope]
        assert row.before == {"totp_required": False} and row.after == {"totp_required": True}
    # The province now requires a second factor its admin has not set up: their session ends, and the password
    # alone leads only to enrolment.
    assert client.get("/console/staff", follow_redirects=False).status_code == 303


def test_forgot_password_answers_the_same_and_is_throttled(
    client: TestClient, ctx: Container, make_staff: MakeStaff, agencies: dict[str, str], outbox: Outbox
) -> None:
    staff = make_staff("quen@agc-a.gov.vn")

    def ask(email: str, lang: str = "en") -> Any:
        page = client.get(f"/console/forgot?lang={lang}")
        html(page, 200)
        return client.post(
            "/console/forgot", data={"email": email, "csrf": csrf_of(page.text), "lang": lang}, follow_redirects=True
        )

    known, unknown = ask(staff.email), ask("nobody@agc-a.gov.vn")
    assert known.status_code == unknown.status_code == 200
    assert known.url == unknown.url and "If the account exists" in known.text

    def visible(text: str) -> str:
        # The page without its per-request nonce and form token.
        return re.sub(r'(nonce|value)="[^"]*"', "", text)

    assert visible(known.text) == visible(unknown.text)
    assert [m.to for m in outbox.mails] == [staff.email]
    assert [r.after for r in audit(ctx, "staff.reset_requested")] == [None, {"sent": False}]
    ask(staff.email)
    ask(staff.email)
    fourth = ask(staff.email)
    assert "If the account exists" in fourth.text and len(outbox.mails) == 3
    assert len(audit(ctx, "staff.reset_refused")) == 1
    # The newest link works; the form without its token changes nothing.
    assert client.get(outbox.link()).status_code == 200
    before = counts(ctx)
    html(client.post("/console/forgot", data={"email": staff.email, "csrf": "x", "lang": "en"}), 403)
    html(client.post("/console/forgot", data={"email": "a\x01@b.vn", "csrf": "x"}), 400)
    assert counts(ctx) == before and len(outbox.mails) == 3
