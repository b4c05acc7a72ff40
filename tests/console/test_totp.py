"""The TOTP second factor: enrolling from the security page (a server-drawn QR code, confirmed by a code computed
here with pyotp), the sign-in's second step (the password alone opens no page; a wrong, replayed or expired code is
refused; guesses are throttled), and a mandatory second factor sending a user to enrol before anything else."""

from __future__ import annotations

import re
import time
from datetime import timedelta

import pyotp
from fastapi.testclient import TestClient
from sqlalchemy import select

from console.audit.models import AuditLog
from console.staff import totp
from console.staff.models import StaffPolicy, StaffSession, StaffUser
from lephi.container import Container
from payments.core.types import utcnow
from tests.console.conftest import MakeStaff, counts, csrf_of, login, user_row


def actions(ctx: Container) -> list[str]:
    with ctx.db.read() as s:
        return [r.action for r in s.execute(select(AuditLog).order_by(AuditLog.at)).scalars()]


def secret_of(ctx: Container, user_id: str) -> str:
    secret = user_row(ctx, user_id).totp_secret
    assert secret
    return secret


def code(secret: str, offset: int = 0) -> str:
    return pyotp.TOTP(secret).at(time.time() + offset)


def enrol(client: TestClient, ctx: Container, user_id: str) -> str:
    page = client.get("/console/account?lang=en")
    assert page.status_code == 200 and "<svg" in page.text and 'role="img"' in page.text
    assert page.headers["cache-control"] == "no-store"
    secret = secret_of(ctx, user_id)
    assert " ".join(secret[i : i + 4] for i in range(0, len(secret), 4)) in page.text
    wrong = client.post("/console/account/totp", data={"csrf": csrf_of(page.text), "code": "000000", "lang": "en"})
    assert wrong.status_code == 400 and user_row(ctx, user_id).totp_enabled_at is None
    done = client.post(
        "/console/account/totp",
        data={"csrf": csrf_of(page.text), "code": code(secret), "lang": "en"},
        follow_redirects=False,
    )
    assert done.status_code == 303, done.text[:300]
    return secret


def test_enrol_then_sign_in_with_a_code(
    client: TestClient, ctx: Container, make_staff: MakeStaff, agencies: dict[str, str]
) -> None:
    staff = make_staff("ketoan@agc-a.gov.vn")
    assert login(client, staff.email, staff.password).status_code == 303
    secret = enrol(client, ctx, staff.id)
    assert user_row(ctx, staff.id).totp_enabled_at is not None and "staff.totp_enabled" in actions(ctx)
    page = client.get("/console/account?lang=en")
    assert "The second factor is on" in page.text and "<svg" not in page.text and secret not in page.text
    client.post("/console/logout", data={"csrf": csrf_of(page.text)})

    # The password alone: only the code's page opens.
    response = login(client, staff.email, staff.password, "en")
    assert response.status_code == 303 and response.headers["location"] == "/console/login/code?lang=en"  # type: ignore[attr-defined]
    for path in ("/console/", "/console/account", "/console/keys"):
        assert client.get(path, follow_redirects=False).headers["location"].startswith("/console/login")
    form = client.get("/console/login/code?lang=en")
    assert form.status_code == 200
    csrf = csrf_of(form.text)
    before = counts(ctx)
    assert client.post("/console/login/code", data={"csrf": "wrong", "code": code(secret, 30)}).status_code == 403
    assert counts(ctx) == before
    for bad in ("123456", code(secret, -90), "12345", "1" * 2000):
        refused = client.post("/console/login/code", data={"csrf": csrf, "code": bad, "lang": "en"})
        assert refused.status_code in {400, 401}, bad
    assert client.get("/console/", follow_redirects=False).status_code == 303
    next_code = code(secret, 30)
    ok = client.post(
        "/console/login/code", data={"csrf": csrf, "code": next_code, "lang": "en"}, follow_redirects=False
    )
    assert ok.status_code == 303 and ok.headers["location"] == "/console/?lang=en"
    assert client.get("/console/", follow_redirects=False).status_code == 200
    assert user_row(ctx, staff.id).last_sign_in_at is not None
    assert actions(ctx).count("staff.totp_failed") >= 2 and actions(ctx)[-1] == "staff.signed_in"

    # The same code again, in another browser with the right password: refused (replay).
    with TestClient(client.app, raise_server_exceptions=False) as other:
        login(other, staff.email, staff.password)
        csrf = csrf_of(other.get("/console/login/code").text)
        replay = other.post("/console/login/code", data={"csrf": csrf, "code": next_code})
        assert replay.status_code == 401
        assert other.get("/console/", follow_redirects=False).status_code == 303


def test_code_guesses_are_throttled_and_the_step_expires(
    client: TestClient, ctx: Container, make_staff: MakeStaff, agencies: dict[str, str]
) -> None:
    staff = make_staff("ketoan@agc-a.gov.vn")
    secret = pyotp.random_base32()
    with ctx.db.write() as s:
        user = s.get(StaffUser, staff.id)
        assert user
        user.totp_secret, user.totp_enabled_at = secret, utcnow()
        s.add(user)
    login(client, staff.email, staff.password)
    csrf = csrf_of(client.get("/console/login/code").text)
    for _ in range(5):
        assert client.post("/console/login/code", data={"csrf": csrf, "code": "000000"}).status_code == 401
    throttled = client.post("/console/login/code", data={"csrf": csrf, "code": code(secret)})
    assert throttled.status_code == 429 and client.get("/console/", follow_redirects=False).status_code == 303
    # A right password does not clear the count of wrong codes.
    login(client, staff.email, staff.password)
    csrf = csrf_of(client.get("/console/login/code").text)
    assert client.post("/console/login/code", data={"csrf": csrf, "code": code(secret)}).status_code == 429
    with ctx.db.write() as s:
        for session in s.execute(select(StaffSession)).scalars():
            session.created_at = utcnow() - timedelta(minutes=11)
    expired = client.get("/console/login/code?lang=en", follow_redirects=False)
    assert expired.status_code == 303 and "note=code_expired" in expired.headers["location"]


def test_window_and_replay_rules() -> None:
    secret = pyotp.random_base32()
    now = 1_800_000_015.0
    step = int(now // 30)
    totp_at = pyotp.TOTP(secret)
    assert totp.matching_step(secret, totp_at.at(now), None, now) == step
    assert totp.matching_step(secret, totp_at.at(now - 30), None, now) == step - 1
    assert totp.matching_step(secret, totp_at.at(now + 30), None, now) == step + 1
    assert totp.matching_step(secret, totp_at.at(now - 60), None, now) is None
    assert totp.matching_step(secret, totp_at.at(now), step, now) is None
    assert totp.matching_step(secret, totp_at.at(now + 30), step, now) == step + 1
    assert totp.matching_step(secret, "٣٣٣٣٣٣", None, now) is None


def test_mandatory_second_factor_sends_the_user_to_enrol_first(
    client: TestClient, ctx: Container, make_staff: MakeStaff, agencies: dict[str, str]
) -> None:
    staff = make_staff("ketoan@agc-a.gov.vn")
    other_agency = make_staff("b@agc-b.gov.vn", agency="AGC-B")
    assert login(client, staff.email, staff.password).status_code == 303
    assert client.get("/console/", follow_redirects=False).status_code == 200
    with ctx.db.write() as s:
        s.add(StaffPolicy(scope=agencies["AGC-A"], totp_required=True))
    # The open session ends at its next request; the password now leads to enrolment only.
    assert client.get("/console/", follow_redirects=False).status_code == 303
    response = login(client, staff.email, staff.password, "en")
    assert response.headers["location"] == "/console/account?lang=en"  # type: ignore[attr-defined]
    for path in ("/console/", "/console/keys", "/console/login/code"):
        assert client.get(path, follow_redirects=False).status_code == 303
    page = client.get("/console/account?lang=en")
    assert "Your agency requires a second factor" in page.text and 'class="main"' not in page.text
    enrol(client, ctx, staff.id)
    assert client.get("/console/", follow_redirects=False).status_code == 200
    assert "staff.totp_enabled" in actions(ctx) and actions(ctx)[-1] == "staff.signed_in"
    # Another agency's staff are not concerned.
    with TestClient(client.app, raise_server_exceptions=False) as b:
        assert login(b, other_agency.email, other_agency.password).headers["location"] == "/console/?lang=vi"  # type: ignore[attr-defined]


def test_security_page_needs_a_session_and_its_form_a_token(
    client: TestClient, ctx: Container, make_staff: MakeStaff, agencies: dict[str, str]
) -> None:
    assert client.get("/console/account", follow_redirects=False).status_code == 303
    assert client.post("/console/account/totp", data={"csrf": "x", "code": "123456"}).status_code == 403
    staff = make_staff("ketoan@agc-a.gov.vn")
    login(client, staff.email, staff.password)
    page = client.get("/console/account")
    secret = secret_of(ctx, staff.id)
    before = counts(ctx)
    for data in ({"code": code(secret)}, {"csrf": "nope", "code": code(secret)}):
        assert client.post("/console/account/totp", data=data).status_code == 403
    hostile = client.post("/console/account/totp", data={"csrf": csrf_of(page.text), "code": "1\x002345"})
    assert hostile.status_code == 400
    assert counts(ctx) == before and user_row(ctx, staff.id).totp_enabled_at is None
    assert re.search(r"otpauth|<svg", page.text)
