"""The console's pages in a browser's shoes: sign-in and its cookie, one answer for every wrong credential, the
throttle, idle and absolute timeouts, CSRF on every form, sign-out ending the session on the server, one agency's
staff seeing only their agency, one-time links, and hostile input answered by a 4xx page, never a 500."""

from __future__ import annotations

from datetime import timedelta, timezone

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from console.audit.models import AuditLog
from console.staff.models import LoginFailure, StaffSession, StaffToken
from console.staff.service import create_staff, issue_reset, sign_in
from lephi.container import Container
from payments.core.types import utcnow
from tests.console.conftest import PASSWORD, MakeStaff, count, counts, csrf_of, login, sql


def signed_in(client: TestClient, make_staff: MakeStaff, email: str = "kt@agc-a.gov.vn", **kw: str) -> str:
    staff = make_staff(email, **kw)
    response = login(client, staff.email, staff.password)
    assert response.status_code == 303, response.text
    return staff.id


def home_csrf(client: TestClient) -> str:
    page = client.get("/console/", follow_redirects=False)
    assert page.status_code == 200, page.status_code
    return csrf_of(page.text)


def test_sign_in_sets_a_strict_cookie_and_shows_home(
    client: TestClient, ctx: Container, make_staff: MakeStaff, agencies: dict[str, str]
) -> None:
    staff = make_staff("Ke.Toan@agc-a.gov.vn")
    response = login(client, "KE.TOAN@agc-a.gov.vn", staff.password)
    assert response.status_code == 303 and response.headers["location"] == "/console/?lang=vi"
    cookie = next(h for h in response.headers.get_list("set-cookie") if h.startswith("lephi_staff="))
    attributes = {part.strip().split("=")[0].lower() for part in cookie.split(";")}
    assert {"httponly", "path", "samesite"} <= attributes and "secure" not in attributes
    assert "Path=/console" in cookie and "SameSite=lax" in cookie
    raw = cookie.split(";")[0].split("=", 1)[1]
    with ctx.db.read() as s:
        session = s.execute(select(StaffSession)).scalars().one()
    assert session.id != raw and len(session.id) == 64  # only the SHA-256 is stored
    home = client.get("/console/")
    assert home.status_code == 200
    assert 'lang="vi"' in home.text and "<main>" in home.text
    assert "ke.toan@agc-a.gov.vn" in home.text and "Kế toán" in home.text and "Agency AGC-A" in home.text
    english = client.get("/console/?lang=en")
    assert 'lang="en"' in english.text and "Finance" in english.text and "Sign out" in english.text


def test_https_public_url_makes_the_cookie_secure(
    ctx: Container, make_staff: MakeStaff, agencies: dict[str, str]
) -> None:
    from dataclasses import replace

    from lephi.app import create_app

    settings = ctx.settings.model_copy(update={"public_url": "https://lephi.example.vn"})
    app = create_app(settings, replace(ctx, settings=settings))
    staff = make_staff("secure@agc-a.gov.vn")
    with TestClient(app, base_url="https://lephi.example.vn", raise_server_exceptions=False) as client:
        response = login(client, staff.email, staff.password)
    cookie = next(h for h in response.headers.get_list("set-cookie") if h.startswith("lephi_staff="))
    assert "Secure" in cookie


def test_unauthenticated_home_redirects_to_sign_in(client: TestClient) -> None:
    response = client.get("/console/?lang=en", follow_redirects=False)
    assert response.status_code == 303 and response.headers["location"] == "/console/login?lang=en"
    page = client.get("/console/login")
    for field in ("email", "password"):
        assert f'<label for="{field}">' in page.text and f'id="{field}"' in page.text


def test_wrong_password_and_unknown_email_get_the_same_answer(
    client: TestClient, ctx: Container, make_staff: MakeStaff, agencies: dict[str, str]
) -> None:
    staff = make_staff("kt@agc-a.gov.vn")
    wrong = login(client, staff.email, "not the password at all")
    unknown = login(client, "nobody@agc-a.gov.vn", "not the password at all")
    assert wrong.status_code == unknown.status_code == 401
    assert "Email hoặc mật khẩu không đúng." in wrong.text and "Email hoặc mật khẩu không đúng." in unknown.text
    assert count(ctx, "staff_session") == 0
    with ctx.db.read() as s:
        rows = s.execute(select(AuditLog).where(AuditLog.action == "staff.sign_in_failed")).scalars().all()
    assert {(r.agency_id, r.target) for r in rows} == {(staff.agency_id, staff.id), (None, None)}
    assert all("not the password" not in str(r.model_dump()) for r in rows)


def test_a_user_without_a_password_yet_cannot_sign_in(client: TestClient, ctx: Container, api: object) -> None:
    with ctx.db.write() as s:
        create_staff(s, email="new@agc-a.gov.vn", role="viewer", agency_code="AGC-A")
    assert login(client, "new@agc-a.gov.vn", "").status_code == 401
    assert login(client, "new@agc-a.gov.vn", "anything at all here").status_code == 401


def test_throttle_per_account_says_when(
    client: TestClient, ctx: Container, make_staff: MakeStaff, agencies: dict[str, str]
) -> None:
    staff = make_staff("kt@agc-a.gov.vn")
    for _ in range(5):
        assert login(client, staff.email, "wrong password here", lang="en").status_code == 401
    refused = login(client, staff.email, staff.password, lang="en")  # the right password, not even checked
    assert refused.status_code == 429
    assert "Too many failed sign-ins" in refused.text and "Vietnam time" in refused.text
    with ctx.db.read() as s:
        first = s.execute(select(LoginFailure).order_by(LoginFailure.at)).scalars().first()
    assert first is not None
    until = (first.at + timedelta(minutes=15)).astimezone(timezone(timedelta(hours=7)))
    assert until.strftime("%H:%M") in refused.text
    vi = login(client, staff.email, staff.password)
    assert vi.status_code == 429 and "Đăng nhập sai quá nhiều lần" in vi.text
    assert count(ctx, "staff_session") == 0
    # Once the failures are older than the window, the account opens again.
    sql(ctx, "UPDATE staff_login_failure SET at = :at", at=utcnow() - timedelta(minutes=16))
    assert login(client, staff.email, staff.password).status_code == 303


def test_throttle_per_address(ctx: Container, make_staff: MakeStaff, agencies: dict[str, str]) -> None:
    staff = make_staff("kt@agc-a.gov.vn")
    for i in range(20):
        with ctx.db.write() as s:
            assert type(sign_in(s, f"guess{i}@agc-a.gov.vn", "wrong password", "10.0.0.9", "ua")).__name__ == "Refused"
    with ctx.db.write() as s:
        outcome = sign_in(s, staff.email, staff.password, "10.0.0.9", "ua")
    assert type(outcome).__name__ == "Throttled"
    assert utcnow() + timedelta(minutes=14) < outcome.until <= utcnow() + timedelta(minutes=15)  # type: ignore[union-attr]
    with ctx.db.write() as s:  # another address is not held back
        assert type(sign_in(s, staff.email, staff.password, "10.0.0.10", "ua")).__name__ == "SignedIn"


def test_idle_timeout(client: TestClient, ctx: Container, make_staff: MakeStaff, agencies: dict[str, str]) -> None:
    signed_in(client, make_staff)
    sql(ctx, "UPDATE staff_session SET last_seen_at = :at", at=utcnow() - timedelta(minutes=29))
    assert client.get("/console/", follow_redirects=False).status_code == 200  # and that request counts as activity
    sql(ctx, "UPDATE staff_session SET last_seen_at = :at", at=utcnow() - timedelta(minutes=31))
    response = client.get("/console/", follow_redirects=False)
    assert response.status_code == 303 and response.headers["location"].startswith("/console/login")
    assert count(ctx, "staff_session") == 0


def test_absolute_timeout(client: TestClient, ctx: Container, make_staff: MakeStaff, agencies: dict[str, str]) -> None:
    signed_in(client, make_staff)
    sql(ctx, "UPDATE staff_session SET created_at = :at", at=utcnow() - timedelta(hours=12, minutes=1))
    response = client.get("/console/", follow_redirects=False)
    assert response.status_code == 303 and count(ctx, "staff_session") == 0


def test_csrf_on_sign_out(client: TestClient, ctx: Container, make_staff: MakeStaff, agencies: dict[str, str]) -> None:
    signed_in(client, make_staff)
    csrf = home_csrf(client)
    before = counts(ctx)
    for data in ({}, {"csrf": "wrong"}, {"csrf": csrf + "x"}):
        refused = client.post("/console/logout", data=data, follow_redirects=False)
        assert refused.status_code == 403 and "text/html" in refused.headers["content-type"]
        assert "Không thể gửi biểu mẫu" in refused.text
    cross_site = client.post(
        "/console/logout", data={"csrf": csrf}, headers={"Origin": "https://evil.example"}, follow_redirects=False
    )
    assert cross_site.status_code == 403
    assert counts(ctx) == before
    assert client.get("/console/", follow_redirects=False).status_code == 200


def test_csrf_on_sign_in(client: TestClient, ctx: Container, make_staff: MakeStaff, agencies: dict[str, str]) -> None:
    staff = make_staff("kt@agc-a.gov.vn")
    client.get("/console/login")  # the browser has its form cookie
    before = counts(ctx)
    for data in (
        {"email": staff.email, "password": staff.password},
        {"email": staff.email, "password": staff.password, "csrf": "0" * 64},
    ):
        response = client.post("/console/login", data=data, follow_redirects=False)
        assert response.status_code == 403 and "text/html" in response.headers["content-type"]
    assert counts(ctx) == before


def test_csrf_on_set_password(client: TestClient, ctx: Container, api: object) -> None:
    with ctx.db.write() as s:
        _, token = create_staff(s, email="n@agc-a.gov.vn", role="viewer", agency_code="AGC-A")
    client.get(f"/console/set-password/{token}")
    before = counts(ctx)
    response = client.post(
        f"/console/set-password/{token}",
        data={"password": PASSWORD, "confirm": PASSWORD, "csrf": "forged"},
        follow_redirects=False,
    )
    assert response.status_code == 403
    assert counts(ctx) == before
    with ctx.db.read() as s:
        assert s.execute(select(StaffToken)).scalars().one().used_at is None


def test_sign_out_ends_the_session_on_the_server(
    client: TestClient, ctx: Container, make_staff: MakeStaff, agencies: dict[str, str]
) -> None:
    signed_in(client, make_staff)
    old_cookie = client.cookies.get("lephi_staff")
    response = client.post("/console/logout", data={"csrf": home_csrf(client)}, follow_redirects=False)
    assert response.status_code == 303 and "note=signed_out" in response.headers["location"]
    assert count(ctx, "staff_session") == 0
    client.cookies.set("lephi_staff", old_cookie or "", path="/console")
    assert client.get("/console/", follow_redirects=False).status_code == 303
    with ctx.db.read() as s:
        assert s.execute(select(AuditLog).where(AuditLog.action == "staff.signed_out")).scalars().one()


def test_staff_see_only_their_agency(
    client: TestClient, ctx: Container, make_staff: MakeStaff, agencies: dict[str, str]
) -> None:
    a = make_staff("a@agc-a.gov.vn", agency="AGC-A", password="password of agency A")
    make_staff("b@agc-b.gov.vn", agency="AGC-B", password="password of agency B")
    # A's password does not open B's account.
    assert login(client, "b@agc-b.gov.vn", a.password).status_code == 401
    assert login(client, a.email, a.password).status_code == 303
    home = client.get("/console/")
    assert "Agency AGC-A" in home.text and "AGC-B" not in home.text and "b@agc-b.gov.vn" not in home.text
    with ctx.db.read() as s:
        signed = s.execute(select(AuditLog).where(AuditLog.action == "staff.signed_in")).scalars().one()
    assert signed.agency_id == agencies["AGC-A"] and signed.actor == a.id


def test_province_admin_home(client: TestClient, make_staff: MakeStaff, agencies: dict[str, str]) -> None:
    signed_in(client, make_staff, "tinh@province.gov.vn", role="province_admin", agency=None)  # type: ignore[arg-type]
    home = client.get("/console/?lang=en")
    assert "All agencies of the province" in home.text and "Province administrator" in home.text


def test_set_password_link_is_single_use(client: TestClient, ctx: Container, api: object) -> None:
    with ctx.db.write() as s:
        _, token = create_staff(s, email="n@agc-a.gov.vn", role="viewer", agency_code="AGC-A")
    page = client.get(f"/console/set-password/{token}")
    assert page.status_code == 200 and "n@agc-a.gov.vn" in page.text
    short = client.post(
        f"/console/set-password/{token}",
        data={"password": "too short", "confirm": "too short", "csrf": csrf_of(page.text)},
    )
    assert short.status_code == 400 and "ít nhất 12 ký tự" in short.text
    mismatch = client.post(
        f"/console/set-password/{token}",
        data={"password": PASSWORD, "confirm": PASSWORD + "!", "csrf": csrf_of(short.text)},
    )
    assert mismatch.status_code == 400 and "không khớp" in mismatch.text
    as_email = client.post(
        f"/console/set-password/{token}",
        data={"password": "n@agc-a.gov.vn", "confirm": "n@agc-a.gov.vn", "csrf": csrf_of(short.text)},
    )
    assert as_email.status_code == 400
    done = client.post(
        f"/console/set-password/{token}",
        data={"password": PASSWORD, "confirm": PASSWORD, "csrf": csrf_of(short.text)},
        follow_redirects=False,
    )
    assert done.status_code == 303 and "note=password_done" in done.headers["location"]
    again = client.get(f"/console/set-password/{token}")
    assert again.status_code == 404 and "không còn hiệu lực" in again.text
    reuse = client.post(
        f"/console/set-password/{token}",
        data={"password": "another password", "confirm": "another password", "csrf": csrf_of(short.text)},
    )
    assert reuse.status_code == 404
    assert login(client, "n@agc-a.gov.vn", PASSWORD).status_code == 303
    with ctx.db.read() as s:
        actions = [r.action for r in s.execute(select(AuditLog).order_by(AuditLog.seq)).scalars()]
    assert actions == ["staff.created", "staff.password_set", "staff.signed_in"]


def test_expired_link_is_refused(client: TestClient, ctx: Container, api: object) -> None:
    with ctx.db.write() as s:
        _, token = create_staff(s, email="n@agc-a.gov.vn", role="viewer", agency_code="AGC-A")
    sql(ctx, "UPDATE staff_token SET expires_at = :at", at=utcnow() - timedelta(seconds=1))
    assert client.get(f"/console/set-password/{token}").status_code == 404


def test_reset_link_sets_a_new_password_and_ends_sessions(
    client: TestClient, ctx: Container, make_staff: MakeStaff, agencies: dict[str, str]
) -> None:
    staff_id = signed_in(client, make_staff)
    with ctx.db.write() as s:
        _, token = issue_reset(s, "kt@agc-a.gov.vn")
    page = client.get(f"/console/set-password/{token}")
    new = "a brand new passphrase"
    client.post(f"/console/set-password/{token}", data={"password": new, "confirm": new, "csrf": csrf_of(page.text)})
    assert count(ctx, "staff_session") == 0
    assert login(client, "kt@agc-a.gov.vn", PASSWORD).status_code == 401
    assert login(client, "kt@agc-a.gov.vn", new).status_code == 303
    with ctx.db.read() as s:
        reset = s.execute(select(AuditLog).where(AuditLog.action == "staff.password_reset")).scalars().one()
    assert reset.target == staff_id


def test_hostile_input_gets_a_4xx_page(
    client: TestClient, ctx: Container, make_staff: MakeStaff, agencies: dict[str, str]
) -> None:
    staff = make_staff("kt@agc-a.gov.vn")
    page = client.get("/console/login")
    csrf = csrf_of(page.text)
    before = counts(ctx)
    form = "application/x-www-form-urlencoded"
    bodies = {
        "10 kB email": {"email": "a" * 10_000 + "@agc-a.gov.vn", "password": "x", "csrf": csrf},
        "NUL": {"email": "kt@agc-a.gov.vn\x00", "password": staff.password, "csrf": csrf},
        "control character": {"email": staff.email, "password": "pass\x07word", "csrf": csrf},
        "bad lang": {"email": staff.email, "password": staff.password, "csrf": csrf, "lang": "../../x"},
    }
    for name, data in bodies.items():
        response = client.post("/console/login", data=data)
        assert 400 <= response.status_code < 500, name
        assert response.headers["content-type"].startswith("text/html"), name
    raw = {
        "not UTF-8": b"email=%ff%fe%fd&password=x&csrf=" + csrf.encode(),
        "huge": b"email=" + b"a" * 200_000 + b"&password=x&csrf=" + csrf.encode(),
    }
    for name, body in raw.items():
        response = client.post("/console/login", content=body, headers={"content-type": form})
        assert 400 <= response.status_code < 500, name
        assert response.headers["content-type"].startswith("text/html"), name
        assert "<main>" in response.text
    multipart = client.post("/console/login", files={"email": ("x.txt", b"file", "text/plain")})
    assert multipart.status_code == 400 and multipart.headers["content-type"].startswith("text/html")
    for path in ("/console/login?lang=../../x", "/console/?lang=../../x", "/console/set-password/x?lang=..%2F..%2Fx"):
        response = client.get(path)
        assert response.status_code == 400 and "Yêu cầu không hợp lệ" in response.text, path
    assert client.get("/console/set-password/" + "x" * 5000).status_code == 404
    assert client.get("/console/nothing-here").status_code == 404
    assert client.get("/console/nothing-here").headers["content-type"].startswith("text/html")
    assert client.get("/console/login?lang=%00").headers["content-type"].startswith("text/html")
    client.cookies.set("lephi_staff", "x" * 5000, path="/console")
    assert client.get("/console/", follow_redirects=False).status_code == 303
    assert counts(ctx) == before


def test_console_root_and_old_failures(client: TestClient, ctx: Container, api: object) -> None:
    response = client.get("/console?lang=en", follow_redirects=False)
    assert response.status_code == 303 and response.headers["location"] == "/console/?lang=en"
    sql(
        ctx,
        "INSERT INTO staff_login_failure (at, email, ip) VALUES (:at, 'old@x.vn', '1.2.3.4')",
        at=utcnow() - timedelta(hours=1),
    )
    assert login(client, "someone@agc-a.gov.vn", "wrong password here").status_code == 401
    with ctx.db.read() as s:
        assert [f.email for f in s.execute(select(LoginFailure)).scalars()] == ["someone@agc-a.gov.vn"]


def test_timeouts_come_from_the_settings(ctx: Container, make_staff: MakeStaff, agencies: dict[str, str]) -> None:
    from dataclasses import replace

    from lephi.app import create_app

    settings = ctx.settings.model_copy(update={"staff_idle_minutes": 5, "staff_session_hours": 1})
    staff = make_staff("kt@agc-a.gov.vn")
    with TestClient(create_app(settings, replace(ctx, settings=settings)), raise_server_exceptions=False) as client:
        assert login(client, staff.email, staff.password).status_code == 303
        sql(ctx, "UPDATE staff_session SET last_seen_at = :at", at=utcnow() - timedelta(minutes=6))
        assert client.get("/console/", follow_redirects=False).status_code == 303
        assert login(client, staff.email, staff.password).status_code == 303
        sql(ctx, "UPDATE staff_session SET created_at = :at", at=utcnow() - timedelta(minutes=61))
        assert client.get("/console/", follow_redirects=False).status_code == 303


def test_console_catalogs_refuse_a_key_defined_twice_or_in_one_language() -> None:
    from console.i18n import _merge

    core = {"vi": {"a": "A"}, "en": {"a": "A"}}
    assert _merge(core, [{"vi": {"b": "B"}, "en": {"b": "B"}}])["en"] == {"a": "A", "b": "B"}
    with pytest.raises(RuntimeError, match="twice"):
        _merge(core, [{"vi": {"a": "X"}, "en": {"a": "X"}}])
    with pytest.raises(RuntimeError, match="one language"):
        _merge(core, [{"vi": {"c": "C"}, "en": {}}])
    with pytest.raises(RuntimeError, match="languages"):
        _merge(core, [{"vi": {"d": "D"}}])


def test_the_menu_lists_only_the_pages_a_role_may_open(
    client: TestClient, make_staff: MakeStaff, agencies: dict[str, str]
) -> None:
    signed_in(client, make_staff, "ketoan@agc-a.gov.vn", role="finance")
    home = client.get("/console/?lang=en")
    assert 'aria-current="page">Home' in home.text and "/console/keys" not in home.text
    client.cookies.clear()
    signed_in(client, make_staff, "admin@agc-a.gov.vn", role="agency_admin")
    keys = client.get("/console/keys?lang=en")
    assert 'href="/console/keys?lang=en" aria-current="page"' in keys.text and "/console/audit?lang=en" in keys.text
    assert 'action="/console/logout"' in keys.text  # sign-out on every signed-in page
    # No menu before sign-in.
    client.cookies.clear()
    assert "/console/keys" not in client.get("/console/login?lang=en").text


def test_the_language_link_keeps_the_page_s_filters(
    client: TestClient, make_staff: MakeStaff, agencies: dict[str, str]
) -> None:
    signed_in(client, make_staff, "admin@agc-a.gov.vn", role="agency_admin")
    page = client.get("/console/audit", params={"action": "api_key.created", "lang": "en", "from": "2026-01-01"})
    assert 'href="/console/audit?action=api_key.created&amp;from=2026-01-01&amp;lang=vi" lang="vi"' in page.text
    hostile = client.get("/console/audit", params={"action": '"><script>', "lang": "en"})
    assert "<script>" not in hostile.text.split("<main>")[0]
