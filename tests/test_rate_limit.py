"""Rate limits per client system (API key): 429 problem+json with Retry-After beyond the limit, nothing stored for
a refused request, and one client's burst never limits another."""

from __future__ import annotations

from pathlib import Path

import httpx
from sqlalchemy import func
from sqlmodel import select

from lephi.container import build_container
from payments.core.ratelimit import RateLimiter
from payments.dossier.models import Dossier
from payments.idempotency.models import IdempotencyRecord
from tests.conftest import Api, make_settings
from tests.factories import dossier_body


def test_a_client_beyond_its_limit_gets_429_with_retry_after_and_nothing_is_stored(api: Api) -> None:
    api.ctx.api_limiter.per_minute = 3
    assert [api.get("/v1/payments").status_code for _ in range(3)] == [200, 200, 200]
    r = api.post("/v1/dossiers", dossier_body())
    assert r.status_code == 429
    assert r.headers["content-type"] == "application/problem+json"
    assert r.json()["code"] == "rate_limited" and 1 <= int(r.headers["retry-after"]) <= 60
    assert r.json()["retry_after"] == int(r.headers["retry-after"])
    with api.ctx.db.read() as s:
        assert s.exec(select(func.count()).select_from(Dossier)).one() == 0
        assert s.exec(select(func.count()).select_from(IdempotencyRecord)).one() == 0


def test_one_client_does_not_limit_another_and_bad_keys_are_not_counted(api: Api) -> None:
    api.ctx.api_limiter.per_minute = 2
    other = {"Authorization": f"Bearer {api.new_key(['payments:read'])}"}
    for _ in range(5):  # unauthenticated requests are refused before any counting
        assert api.client.get("/v1/payments", headers={"Authorization": "Bearer nope"}).status_code == 401
    assert [api.get("/v1/payments").status_code for _ in range(3)] == [200, 200, 429]
    assert [api.client.get("/v1/payments", headers=other).status_code for _ in range(2)] == [200, 200]


def test_the_limits_and_the_webhook_timeout_come_from_settings(database_url: str, tmp_path: Path) -> None:
    settings = make_settings(
        database_url, tmp_path, api_rate_per_minute=1, lookup_rate_per_minute=2, webhook_timeout_seconds=3.5
    )
    ctx = build_container(settings)
    try:
        assert (ctx.api_limiter.per_minute, ctx.lookup_limiter.per_minute) == (1, 2)
        assert ctx.webhook_http.timeout == httpx.Timeout(3.5)
        assert isinstance(ctx.api_limiter, RateLimiter)
        assert ctx.api_limiter.hit("key") is None and ctx.api_limiter.hit("key") is not None
    finally:
        ctx.close()
