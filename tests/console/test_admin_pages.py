"""The API keys and audit log pages: who may open them (table-driven over the five roles), one agency never reaching
another's keys or chain, CSRF on every form, the raw key shown once, a revoked key refused by the API, audit rows in
the transaction of the change, and hostile input answered by a 4xx page."""

from __future__ import annotations

import re
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from console import admin
from console.audit.models import AuditLog
from console.audit.service import verify
from lephi.container import Container
from payments.auth.models import ApiKey
from payments.auth.service import create_key
from payments.pages import fmt
from tests.conftest import Api
from tests.console.conftest import MakeStaff, count, csrf_of, login

ROLES = ["province_admin", "agency_admin", "finance", "approver", "viewer"]
ALLOWED = {"province_admin", "agency_admin"}
KEY_RAW = re.compile(r"lephi_[A-Za-z0-9_-]{20,}")


def sign_in(client: TestClient, make_staff: MakeStaff, role: str, agency: str | None = "AGC-A") -> str:
    if role == "province_admin":
        agency = None
    email = f"{role}.{agency or 'tinh'}@gov.vn".lower()
    staff = make_staff(email, role=role, agency=agency)  # type: ignore[arg-type]
    response = login(client, staff.email, staff.password)
    assert response.status_code == 303, response.text
    return staff.id


def session_csrf(client: TestClient) -> str:
    page = client.get("/console/")
    assert page.status_code == 200
    return csrf_of(page.text)


def b_key(ctx: Container, code: str = "AGC-B") -> tuple[str, str]:
    with ctx.db.write() as s:
        key, raw = create_key(s, code, "client of " + code, ["payments:read"])
    return key.id, raw


def keys_of(ctx: Container) -> dict[str, ApiKey]:
    with ctx.db.read() as s:
        return {k.id: k for k in s.execute(select(ApiKey)).scalars()}


def audit_rows(ctx: Container, action: str) -> list[AuditLog]:
    with ctx.db.read() as s:
        return list(s.execute(select(AuditLog).where(AuditLog.action == action)).scalars())


def html(response: Any, status: int) -> None:
    assert response.status_code == status, (response.status_code, response.text[:500])
    assert response.headers["content-type"].startswith("text/html")
    assert "<main>" in response.text


def test_unauthenticated_get_redirects_and_post_is_refused(
    client: TestClient, ctx: Container, agencies: dict[str, str]
) -> None:
    key_id, _ = b_key(ctx, "AGC-A")
    for path in ("/console/keys", "/console/audit", f"/console/keys/{key_id}/revoke"):
        response = client.get(path + "?lang=en", follow_redirects=False)
        assert response.status_code == 303 and response.headers["location"] == "/console/login?lang=en", path
    before = (count(ctx, "api_key"), count(ctx, "audit_log"))
    posts = {
        "/console/keys": {"name": "x", "scope": "payments:read", "csrf": "x", "agency": "AGC-A"},
        f"/console/keys/{key_id}/revoke": {"csrf": "x"},
    }
    for path, data in posts.items():
        html(client.post(path, data=data, follow_redirects=False), 403)
    assert (count(ctx, "api_key"), count(ctx, "audit_log")) == before
    assert keys_of(ctx)[key_id].revoked_at is None


@pytest.mark.parametrize("role", ROLES)
def test_each_role_allowed_or_refused(
    role: str, client: TestClient, ctx: Container, make_staff: MakeStaff, agencies: dict[str, str]
) -> None:
    sign_in(client, make_staff, role)
    key_id, _ = b_key(ctx, "AGC-A")
    allowed = role in ALLOWED
    home = client.get("/console/?lang=en")
    assert ('href="/console/keys' in home.text) is allowed
    assert ('href="/console/audit' in home.text) is allowed
    for path in ("/console/keys?agency=AGC-A", "/console/audit", f"/console/keys/{key_id}/revoke"):
        response = client.get(path)
        html(response, 200 if allowed else 403)
        if allowed:
            assert ('method="post" action="/console/keys' in response.text) is path.startswith("/console/keys")
        else:
            assert 'method="post"' not in response.text  # a refused role reaches no write form
    csrf = session_csrf(client)
    before = (count(ctx, "api_key"), count(ctx, "audit_log"))
    created = client.post(
        "/console/keys", data={"name": "new", "scope": "payments:read", "csrf": csrf, "agency": "AGC-A"}
    )
    html(created, 200 if allowed else 403)
    revoked = client.post(f"/console/keys/{key_id}/revoke", data={"csrf": csrf}, follow_redirects=False)
    assert revoked.status_code == (303 if allowed else 403)
    if allowed:
        assert count(ctx, "api_key") == before[0] + 1 and keys_of(ctx)[key_id].revoked_at is not None
    else:
        assert (count(ctx, "api_key"), count(ctx, "audit_log")) == before
        assert keys_of(ctx)[key_id].revoked_at is None


def test_agency_admin_never_reaches_another_agency(
    client: TestClient, ctx: Container, make_staff: MakeStaff, agencies: dict[str, str]
) -> None:
    b_id, b_raw = b_key(ctx)
    with ctx.db.write() as s:
        from console.audit.service import record

        record(s, agency_id=agencies["AGC-B"], actor="cli", action="secret.of.b", target="b-target")
    sign_in(client, make_staff, "agency_admin")
    own = client.get("/console/keys")
    html(own, 200)
    assert "client of AGC-B" not in own.text and b_id not in own.text
    html(client.get("/console/keys?agency=AGC-B"), 404)
    html(client.get(f"/console/keys/{b_id}/revoke"), 404)
    csrf = session_csrf(client)
    before = count(ctx, "audit_log")
    html(client.post(f"/console/keys/{b_id}/revoke", data={"csrf": csrf}), 404)
    create_for_b = {"name": "mine now", "scope": "payments:read", "csrf": csrf, "agency": "AGC-B"}
    html(client.post("/console/keys", data=create_for_b), 404)
    assert keys_of(ctx)[b_id].revoked_at is None and count(ctx, "audit_log") == before
    assert len(keys_of(ctx)) == 2  # the api fixture's key and B's
    audit = client.get("/console/audit")
    html(audit, 200)
    assert "secret.of.b" not in audit.text
    for query in ("?agency=AGC-B", "?agency=province", "?agency=NOPE"):
        response = client.get("/console/audit" + query)
        if query == "?agency=province":
            # "province" names the province chain, which an agency admin does not get: they see their own.
            html(response, 200)
            assert "secret.of.b" not in response.text
        else:
            html(response, 404)
    api = client.get("/v1/dossiers/none", headers={"Authorization": f"Bearer {b_raw}"})
    assert api.status_code != 401  # B's key still works


def test_province_admin_any_agency_and_the_province_chain(
    client: TestClient, ctx: Container, make_staff: MakeStaff, agencies: dict[str, str]
) -> None:
    b_id, _ = b_key(ctx)
    actor = sign_in(client, make_staff, "province_admin")
    chooser = client.get("/console/keys?lang=en")
    html(chooser, 200)
    assert "AGC-A" in chooser.text and "AGC-B" in chooser.text
    assert "client of AGC-B" in client.get("/console/keys?agency=AGC-B").text
    html(client.get("/console/keys?agency=NOPE"), 404)
    csrf = session_csrf(client)
    assert client.post(f"/console/keys/{b_id}/revoke", data={"csrf": csrf}, follow_redirects=False).status_code == 303
    (row,) = audit_rows(ctx, "api_key.revoked")
    assert row.agency_id == agencies["AGC-B"] and row.actor == actor and row.target == b_id
    chain_b = client.get("/console/audit?agency=AGC-B&lang=en")
    assert "api_key.revoked" in chain_b.text and "The chain verifies" in chain_b.text
    province = client.get("/console/audit?lang=en")
    assert "staff.created" in province.text and "api_key.revoked" not in province.text


def test_create_shows_the_key_once_and_revoke_stops_it_on_the_api(
    client: TestClient, ctx: Container, make_staff: MakeStaff, agencies: dict[str, str], api: Api
) -> None:
    actor = sign_in(client, make_staff, "agency_admin")
    csrf = session_csrf(client)
    form = {"name": "Cổng dịch vụ công", "scope": ["payments:read", "dossiers:read"], "csrf": csrf, "lang": "en"}
    created = client.post("/console/keys", data=form)
    html(created, 200)
    assert created.headers["cache-control"] == "no-store"
    assert "It is shown once" in created.text
    raws = set(KEY_RAW.findall(created.text))
    assert len(raws) == 1
    raw = raws.pop()
    (key,) = [k for k in keys_of(ctx).values() if k.name == "Cổng dịch vụ công"]
    assert key.scopes == ["dossiers:read", "payments:read"] and key.agency_id == agencies["AGC-A"]
    # Never again: not on the list, nor the revoke page, nor the audit log.
    for path in ("/console/keys", f"/console/keys/{key.id}/revoke", "/console/audit", "/console/"):
        assert raw not in client.get(path).text, path
    assert raw[:12] in client.get("/console/keys").text
    (row,) = audit_rows(ctx, "api_key.created")
    assert row.actor == actor and row.target == key.id and row.agency_id == agencies["AGC-A"]
    assert row.after is not None and row.after["scopes"] == key.scopes
    assert raw not in str(row.after) and key.key_hash not in str(row.after)
    headers = {"Authorization": f"Bearer {raw}"}
    assert api.client.get("/v1/payments/pay_none", headers=headers).status_code != 401
    revoke = client.post(f"/console/keys/{key.id}/revoke", data={"csrf": csrf, "lang": "en"}, follow_redirects=False)
    assert revoke.status_code == 303
    listing = client.get(revoke.headers["location"])
    assert "The key is revoked." in listing.text and "Revoked" in listing.text
    answer = api.client.get("/v1/payments/pay_none", headers=headers)
    assert answer.status_code == 401
    (row,) = audit_rows(ctx, "api_key.revoked")
    assert row.before is not None and row.before["revoked_at"] is None
    assert row.after is not None and row.after["revoked_at"] is not None
    # Revoking again changes nothing and records nothing.
    client.post(f"/console/keys/{key.id}/revoke", data={"csrf": csrf}, follow_redirects=False)
    assert len(audit_rows(ctx, "api_key.revoked")) == 1
    with ctx.db.read() as s:
        assert verify(s, agencies["AGC-A"], only_scope=True).broken is None
    audit = client.get("/console/audit?lang=en")
    assert "The chain verifies" in audit.text and "api_key.created" in audit.text


def test_csrf_missing_or_wrong_changes_nothing(
    client: TestClient, ctx: Container, make_staff: MakeStaff, agencies: dict[str, str]
) -> None:
    key_id, _ = b_key(ctx, "AGC-A")
    sign_in(client, make_staff, "agency_admin")
    csrf = session_csrf(client)
    before = (count(ctx, "api_key"), count(ctx, "audit_log"))
    for token in (None, "", "wrong", csrf + "x"):
        extra = {} if token is None else {"csrf": token}
        html(client.post("/console/keys", data={"name": "k", "scope": "payments:read", **extra}), 403)
        html(client.post(f"/console/keys/{key_id}/revoke", data=extra), 403)
    foreign = client.post(
        f"/console/keys/{key_id}/revoke", data={"csrf": csrf}, headers={"origin": "https://evil.example"}
    )
    html(foreign, 403)
    assert (count(ctx, "api_key"), count(ctx, "audit_log")) == before
    assert keys_of(ctx)[key_id].revoked_at is None


def test_a_failure_after_the_audit_row_leaves_neither(
    client: TestClient, ctx: Container, make_staff: MakeStaff, agencies: dict[str, str], monkeypatch: Any
) -> None:
    key_id, _ = b_key(ctx, "AGC-A")
    sign_in(client, make_staff, "agency_admin")
    csrf = session_csrf(client)
    real = admin.record

    def record_then_fail(*args: Any, **kwargs: Any) -> str:
        real(*args, **kwargs)
        raise RuntimeError("the disk is gone")

    monkeypatch.setattr(admin, "record", record_then_fail)
    before = (count(ctx, "api_key"), count(ctx, "audit_log"))
    assert client.post("/console/keys", data={"name": "k", "scope": "payments:read", "csrf": csrf}).status_code == 500
    assert client.post(f"/console/keys/{key_id}/revoke", data={"csrf": csrf}).status_code == 500
    assert (count(ctx, "api_key"), count(ctx, "audit_log")) == before
    assert keys_of(ctx)[key_id].revoked_at is None
    with ctx.db.read() as s:
        assert verify(s).broken is None


def test_audit_filters_and_pages(
    client: TestClient, ctx: Container, make_staff: MakeStaff, agencies: dict[str, str]
) -> None:
    from console.audit.service import record

    actor = sign_in(client, make_staff, "agency_admin")
    with ctx.db.write() as s:
        for i in range(60):
            record(s, agency_id=agencies["AGC-A"], actor="cli", action="test.bulk", target=f"t-{i:03d}")
        record(s, agency_id=agencies["AGC-A"], actor=actor, action="test.mine", target="mine")
    first = client.get("/console/audit?lang=en")
    html(first, 200)
    assert first.text.count("<tr><td>") == 50
    assert first.text.index("test.mine") < first.text.index("t-059")  # newest first
    assert 'rel="next"' in first.text and 'rel="prev"' not in first.text
    second = client.get("/console/audit?lang=en&page=2")
    assert "t-000" in second.text and 'rel="prev"' in second.text
    only = client.get("/console/audit?action=test.mine")
    assert "mine" in only.text and "t-001" not in only.text
    by_email = client.get("/console/audit?actor=agency_admin.agc-a@gov.vn&action=test.mine")
    assert "test.mine" in by_email.text
    assert "t-001" not in client.get(f"/console/audit?actor={actor}").text
    assert "test.mine" in client.get("/console/audit?from=2000-01-01&to=2999-12-31").text
    assert "test.mine" not in client.get("/console/audit?to=2000-01-01").text


def test_hostile_input_gets_a_4xx_page(
    client: TestClient, ctx: Container, make_staff: MakeStaff, agencies: dict[str, str]
) -> None:
    key_id, _ = b_key(ctx, "AGC-A")
    sign_in(client, make_staff, "agency_admin")
    csrf = session_csrf(client)
    before = (count(ctx, "api_key"), count(ctx, "audit_log"))
    posts = {
        "10 kB name": {"name": "n" * 10_000, "scope": "payments:read", "csrf": csrf},
        "201 characters": {"name": "n" * 201, "scope": "payments:read", "csrf": csrf},
        "NUL": {"name": "key\x00", "scope": "payments:read", "csrf": csrf},
        "unknown scope": {"name": "k", "scope": "everything:write", "csrf": csrf},
        "no scope": {"name": "k", "csrf": csrf},
        "blank name": {"name": "   ", "scope": "payments:read", "csrf": csrf},
        "bad lang": {"name": "k", "scope": "payments:read", "csrf": csrf, "lang": "../x"},
        "other agency": {"name": "k", "scope": "payments:read", "csrf": csrf, "agency": "AGC-B"},
        "huge agency": {"name": "k", "scope": "payments:read", "csrf": csrf, "agency": "A" * 500},
    }
    for name, data in posts.items():
        response = client.post("/console/keys", data=data)
        assert 400 <= response.status_code < 500, name
        html(response, response.status_code)
    raw = client.post(
        "/console/keys",
        content=b"name=%ff%fe&scope=payments:read&csrf=" + csrf.encode(),
        headers={"content-type": "application/x-www-form-urlencoded"},
    )
    html(raw, 400)
    for bogus in ("nope", "x" * 5000, "key_%00", "..%2F..%2Fetc"):
        # A NUL in the path is refused (422) before any route; every other bogus id is an unknown key.
        for response in (
            client.get(f"/console/keys/{bogus}/revoke"),
            client.post(f"/console/keys/{bogus}/revoke", data={"csrf": csrf}),
        ):
            assert response.status_code == (422 if "%00" in bogus else 404), bogus
            assert response.headers["content-type"].startswith("text/html"), bogus
    for query in (
        "from=yesterday",
        "to=2026-02-30",
        "to=9999-12-31",
        "from=0001-01-01",
        "from=2026-01-01T00:00",
        "from=%00",
        "page=0",
        "page=-1",
        "page=99999999999",
        "page=abc",
        "action=" + "a" * 500,
        "agency=AGC-B",
        "agency=" + "A" * 500,
        "lang=xx",
    ):
        response = client.get("/console/audit?" + query)
        assert 400 <= response.status_code < 500, query
        html(response, response.status_code)
    html(client.get("/console/keys?agency=AGC-B"), 404)
    for query in ("agency=%00", "agency=A%07", "agency=A%0A"):
        for page in ("/console/keys", "/console/audit"):
            response = client.get(f"{page}?{query}")
            assert response.status_code in {404, 422}, (page, query)
            assert response.headers["content-type"].startswith("text/html")
    assert (count(ctx, "api_key"), count(ctx, "audit_log")) == before
    assert keys_of(ctx)[key_id].revoked_at is None


def test_only_a_province_admin_grants_the_province_feed_scope(
    client: TestClient, ctx: Container, make_staff: MakeStaff, agencies: dict[str, str]
) -> None:
    sign_in(client, make_staff, "agency_admin")
    csrf = session_csrf(client)
    assert 'value="province:read"' not in client.get("/console/keys").text
    form = {"name": "province", "scope": ["province:read"], "csrf": csrf, "lang": "en"}
    html(client.post("/console/keys", data=form), 403)
    assert not [k for k in keys_of(ctx).values() if k.name == "province"]
    client.cookies.clear()
    sign_in(client, make_staff, "province_admin")
    csrf = session_csrf(client)
    assert 'value="province:read"' in client.get("/console/keys?agency=AGC-A").text
    form = {"name": "province", "scope": ["province:read"], "agency": "AGC-A", "csrf": csrf, "lang": "en"}
    html(client.post("/console/keys", data=form), 200)
    assert [k.scopes for k in keys_of(ctx).values() if k.name == "province"] == [["province:read"]]


def test_the_keys_page_shows_when_each_key_was_last_used(
    client: TestClient, ctx: Container, make_staff: MakeStaff, agencies: dict[str, str]
) -> None:
    sign_in(client, make_staff, "agency_admin")
    key_id, raw = b_key(ctx, "AGC-A")
    page = client.get("/console/keys?lang=en")
    never = page.text.count("<td>Never</td>")
    assert never >= 1 and "within about a minute" in page.text
    assert client.get("/v1/payments", headers={"Authorization": f"Bearer {raw}"}).status_code == 200
    # The request itself writes nothing; the cache's periodic write does.
    assert keys_of(ctx)[key_id].last_used_at is None
    ctx.api_keys.flush()
    used = keys_of(ctx)[key_id].last_used_at
    assert used is not None
    assert f"<td>{fmt.when(used, 'vi')}</td>" in client.get("/console/keys?lang=vi").text
    assert client.get("/console/keys?lang=en").text.count("<td>Never</td>") == never - 1
