"""The authentication dependencies and the key service, each called directly (no app, no HTTP): the exact 401, 403
and 429 errors with their headers and log lines, what is handed to the key cache and the limiter, and the key
service's answers. tests/test_auth.py checks the same rules end to end on every endpoint; these pin the details
cheaply, so that the mutation run of payments/auth (scripts/mutate auth-scopes, auth-keys) takes minutes.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Awaitable, Iterator, MutableMapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from sqlalchemy import delete
from sqlmodel import select
from starlette.requests import Request

from payments.agency.models import Agency
from payments.auth import deps
from payments.auth.deps import actor_of, get_ctx, get_principal, principal_of, require
from payments.auth.models import ApiKey, ApiKeyVersion, Scope
from payments.auth.service import (
    Principal,
    authenticate,
    bump_version,
    create_key,
    hash_key,
    key_version,
    list_keys,
    parse_scopes,
    revoke_key,
)
from payments.core.db import Database, make_engine
from payments.core.errors import Forbidden, NotFound, RateLimited, Unauthenticated, ValidationFailed
from tests.conftest import make_settings
from tests.factories import seed_agency

Logs = list[MutableMapping[str, Any]]
PRINCIPAL = Principal(key_id="key-1", agency_id="agency-1", scopes=frozenset({Scope.payments_read.value}))


@dataclass
class Keys:
    """The key cache: ``held`` answers from memory, ``known`` from the database."""

    held: dict[str, Principal] = field(default_factory=dict)
    known: dict[str, Principal] = field(default_factory=dict)
    asked: list[tuple[str, str]] = field(default_factory=list)

    def cached(self, raw: str) -> Principal | None:
        self.asked.append(("cached", raw))
        return self.held.get(raw)

    def load(self, raw: str) -> Principal:
        self.asked.append(("load", raw))
        if raw not in self.known:
            raise Unauthenticated("the API key is unknown or revoked")
        return self.known[raw]


@dataclass
class Limiter:
    wait: float | None = None
    per_minute: int = 60
    clients: list[str] = field(default_factory=list)

    async def check(self, client: str) -> float | None:
        self.clients.append(client)
        return self.wait


def _ctx(keys: Keys | None = None, limiter: Limiter | None = None) -> Any:
    return SimpleNamespace(api_keys=keys or Keys(), api_limiter=limiter or Limiter())


def _request(authorization: str | None, path: str = "/v1/payments") -> Request:
    headers = [] if authorization is None else [(b"authorization", authorization.encode())]
    return Request({"type": "http", "method": "GET", "path": path, "headers": headers, "query_string": b""})


def _principal(authorization: str | None, ctx: Any, path: str = "/v1/payments") -> Principal:
    return asyncio.run(principal_of(_request(authorization, path), ctx))


async def _awaited(value: Awaitable[Principal]) -> Principal:
    return await value


def _run(value: Awaitable[Principal]) -> Principal:
    return asyncio.run(_awaited(value))


class Log:
    """Records what the module logs: structlog may hold a logger configured before the test started."""

    def __init__(self) -> None:
        self.lines: Logs = []

    def info(self, event: str, **fields: Any) -> None:
        self.lines.append({"event": event, **fields, "log_level": "info"})

    def warning(self, event: str, **fields: Any) -> None:
        self.lines.append({"event": event, **fields, "log_level": "warning"})


@pytest.fixture
def logs(monkeypatch: pytest.MonkeyPatch) -> Logs:
    log = Log()
    monkeypatch.setattr(deps, "log", log)
    return log.lines


# --- get_ctx, actor_of --------------------------------------------------------------------------------------------
def test_the_context_is_the_apps() -> None:
    ctx = object()
    request = Request({"type": "http", "app": SimpleNamespace(state=SimpleNamespace(ctx=ctx)), "headers": []})
    assert asyncio.run(get_ctx(request)) is ctx


def test_the_actor_names_the_key() -> None:
    assert actor_of(PRINCIPAL) == "api_key:key-1"


# --- 401 ----------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "header",
    [None, "", "Basic x", "Token lephi_x", "lephi_x", "Bearer", "Bearer ", "Bearer    ", "Bearerlephi_x"],
    ids=repr,
)
def test_no_bearer_key_is_refused_before_the_cache_is_asked(header: str | None) -> None:
    keys = Keys(held={"x": PRINCIPAL, "lephi_x": PRINCIPAL}, known={"x": PRINCIPAL, "lephi_x": PRINCIPAL})
    with pytest.raises(Unauthenticated) as raised:
        _principal(header, _ctx(keys))
    assert raised.value.detail == "send the API key as 'Authorization: Bearer <key>'"
    assert raised.value.headers == {"WWW-Authenticate": "Bearer"}
    assert keys.asked == []


@pytest.mark.parametrize("scheme", ["Bearer", "bearer", "BEARER", "bEaReR"])
def test_the_scheme_ignores_case_and_the_key_is_stripped(scheme: str) -> None:
    keys = Keys(held={"lephi_x": PRINCIPAL})
    assert _principal(f"{scheme} lephi_x  ", _ctx(keys)) is PRINCIPAL
    assert keys.asked == [("cached", "lephi_x")]


def test_a_held_key_is_not_loaded() -> None:
    keys = Keys(held={"lephi_x": PRINCIPAL}, known={})
    assert _principal("Bearer lephi_x", _ctx(keys)) is PRINCIPAL
    assert keys.asked == [("cached", "lephi_x")]


def test_a_key_not_held_is_loaded() -> None:
    keys = Keys(known={"lephi_x": PRINCIPAL})
    assert _principal("Bearer  lephi_x ", _ctx(keys)) is PRINCIPAL
    assert keys.asked == [("cached", "lephi_x"), ("load", "lephi_x")]


def test_an_unknown_key_is_refused_as_an_invalid_token_and_logged_without_the_key(
    logs: Logs,
) -> None:
    with pytest.raises(Unauthenticated) as raised:
        _principal("Bearer lephi_unknown", _ctx(), path="/v1/refunds")
    assert raised.value.detail == "the API key is unknown or revoked"
    assert raised.value.headers == {"WWW-Authenticate": 'Bearer error="invalid_token"'}
    assert logs == [{"event": "auth.rejected", "path": "/v1/refunds", "log_level": "info"}]


# --- 429 ----------------------------------------------------------------------------------------------------------
def test_the_limiter_counts_the_key(logs: Logs) -> None:
    limiter = Limiter(wait=None)
    assert _principal("Bearer lephi_x", _ctx(Keys(held={"lephi_x": PRINCIPAL}), limiter)) is PRINCIPAL
    assert limiter.clients == ["key-1"]
    assert logs == []


@pytest.mark.parametrize(("wait", "retry_after"), [(0.0, 1), (0.2, 1), (1.4, 1), (1.6, 2), (3.6, 4), (59.0, 59)])
def test_over_the_rate_is_429_with_the_pause(wait: float, retry_after: int, logs: Logs) -> None:
    limiter = Limiter(wait=wait, per_minute=120)
    with pytest.raises(RateLimited) as raised:
        _principal("Bearer lephi_x", _ctx(Keys(held={"lephi_x": PRINCIPAL}), limiter))
    err = raised.value
    assert err.detail == "more than 120 requests in a minute from this API key; retry after the pause"
    assert err.extra == {"retry_after": retry_after}
    assert err.headers == {"Retry-After": str(retry_after)}
    assert logs == [{"event": "auth.rate_limited", "key_id": "key-1", "agency_id": "agency-1", "log_level": "warning"}]


# --- 403 ----------------------------------------------------------------------------------------------------------
def _with_app(request: Request, ctx: Any) -> Request:
    request.scope["app"] = SimpleNamespace(state=SimpleNamespace(ctx=ctx))
    return request


def test_a_key_with_the_scope_passes() -> None:
    check = require(Scope.payments_read)
    assert _run(check(_with_app(_request("Bearer lephi_x"), _ctx(Keys(held={"lephi_x": PRINCIPAL}))))) is PRINCIPAL


def test_a_request_is_authenticated_and_rate_counted_once_however_many_dependencies_ask() -> None:
    limiter = Limiter()
    request = _with_app(_request("Bearer lephi_x"), _ctx(Keys(held={"lephi_x": PRINCIPAL}), limiter))
    assert _run(require(Scope.payments_read)(request)) is PRINCIPAL
    assert _run(get_principal(request)) is PRINCIPAL
    assert limiter.clients == ["key-1"]


def test_a_key_without_the_scope_is_403_naming_it() -> None:
    check = require(Scope.refunds_write)
    with pytest.raises(Forbidden) as raised:
        _run(check(_with_app(_request("Bearer lephi_x"), _ctx(Keys(held={"lephi_x": PRINCIPAL})))))
    assert raised.value.detail == "this API key lacks the scope 'refunds:write'"
    assert raised.value.extra == {"required_scope": "refunds:write"}


# --- the key service ----------------------------------------------------------------------------------------------
@pytest.fixture
def db(database_url: str, tmp_path: Path) -> Iterator[Database]:
    settings = make_settings(database_url, tmp_path)
    database = Database(make_engine(settings.effective_database_url, settings))
    with database.write() as s:
        seed_agency(s, "AGC-A")
        seed_agency(s, "AGC-B", tax_code="0100000002")
    yield database
    database.dispose()


def test_the_hash_is_the_keys_sha256() -> None:
    assert hash_key("lephi_x") == hashlib.sha256(b"lephi_x").hexdigest()


@pytest.mark.parametrize(
    ("raw", "parsed"),
    [
        (["payments:read"], ["payments:read"]),
        (["refunds:write", "payments:read", "refunds:write"], ["payments:read", "refunds:write"]),
        ([s.value for s in Scope], sorted(s.value for s in Scope)),
    ],
)
def test_scopes_are_sorted_without_repeats(raw: list[str], parsed: list[str]) -> None:
    assert parse_scopes(raw) == parsed


@pytest.mark.parametrize(("raw", "unknown"), [([], []), (["payments:read", "payments:delete"], ["payments:delete"])])
def test_unknown_or_no_scopes_are_refused(raw: list[str], unknown: list[str]) -> None:
    with pytest.raises(ValidationFailed) as raised:
        parse_scopes(raw)
    valid = sorted(s.value for s in Scope)
    assert raised.value.detail == f"unknown or missing scopes: {unknown}; valid scopes: {valid}"


def test_a_new_key_is_stored_as_a_hash_and_moves_the_version(db: Database) -> None:
    with db.read() as s:
        before = key_version(s)
    with db.write() as s:
        key, raw = create_key(s, "AGC-A", "till 1", ["refunds:write", "payments:read"])
        key_id = key.id
    assert raw.startswith("lephi_") and len(raw) == len("lephi_") + 43  # 32 random bytes, base64url
    with db.read() as s:
        stored = s.get(ApiKey, key_id)
        assert stored is not None
        agency = s.exec(select(Agency).where(Agency.code == "AGC-A")).one()
        assert (stored.agency_id, stored.name, stored.prefix) == (agency.id, "till 1", raw[:12])
        assert stored.key_hash == hash_key(raw) and stored.scopes == ["payments:read", "refunds:write"]
        assert stored.revoked_at is None
        assert key_version(s) == before + 1
        principal = authenticate(s, raw)
    assert principal == Principal(key_id, agency.id, frozenset({"payments:read", "refunds:write"}))


def test_a_key_for_an_unknown_agency_is_refused(db: Database) -> None:
    with db.write() as s, pytest.raises(NotFound) as raised:
        create_key(s, "AGC-NONE", "x", ["payments:read"])
    assert raised.value.detail == "no agency with code 'AGC-NONE'"


def test_an_unknown_or_revoked_key_does_not_authenticate(db: Database) -> None:
    with db.write() as s:
        key, raw = create_key(s, "AGC-A", "x", ["payments:read"])
        key_id = key.id
    for attempt in ("lephi_unknown", raw):
        if attempt == raw:
            with db.write() as s:
                revoke_key(s, key_id)
        with db.read() as s, pytest.raises(Unauthenticated) as raised:
            authenticate(s, attempt)
        assert raised.value.detail == "the API key is unknown or revoked"


def test_revoking_twice_keeps_the_first_time_and_version(db: Database) -> None:
    with db.write() as s:
        key, _ = create_key(s, "AGC-A", "x", ["payments:read"])
        key_id = key.id
    with db.write() as s:
        first = revoke_key(s, key_id).revoked_at
        assert first is not None
    with db.read() as s:
        version = key_version(s)
    with db.write() as s:
        assert revoke_key(s, key_id).revoked_at == first
    with db.read() as s:
        assert key_version(s) == version
        stored = s.get(ApiKey, key_id)
        assert stored is not None and stored.revoked_at == first


def test_revoking_an_unknown_key_is_not_found(db: Database) -> None:
    with db.write() as s, pytest.raises(NotFound) as raised:
        revoke_key(s, "key_none")
    assert raised.value.detail == "no API key 'key_none'"


def test_the_version_starts_at_zero_without_its_row_and_counts_each_bump(db: Database) -> None:
    with db.write() as s:
        s.execute(delete(ApiKeyVersion))
    with db.read() as s:
        assert key_version(s) == 0
    for expected in (1, 2, 3):
        with db.write() as s:
            bump_version(s)
        with db.read() as s:
            assert key_version(s) == expected


def test_keys_are_listed_oldest_first_and_by_agency(db: Database) -> None:
    made: list[str] = []
    for agency, name in (("AGC-A", "a1"), ("AGC-B", "b1"), ("AGC-A", "a2")):
        with db.write() as s:
            key, _ = create_key(s, agency, name, ["payments:read"])
            key.created_at = datetime(2026, 1, 1, tzinfo=UTC) - timedelta(days=len(made))
            s.add(key)
            made.append(key.id)
    with db.read() as s:
        assert [(k.name, c) for k, c in list_keys(s)] == [("a2", "AGC-A"), ("b1", "AGC-B"), ("a1", "AGC-A")]
        assert [(k.name, c) for k, c in list_keys(s, "AGC-A")] == [("a2", "AGC-A"), ("a1", "AGC-A")]
        assert list_keys(s, "AGC-NONE") == []
