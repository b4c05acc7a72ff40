"""Rate limits shared through Redis (LEPHI_REDIS_URL): two instances of the service count against one limit; without
Redis each counts for itself; with Redis unreachable, hanging or restarted, the API goes on (one warning, not one per
request) and the public lookups are refused with a clear 503 until Redis answers again.

The limiters have nothing to do with the database, so these run on SQLite only. Each test counts under a key prefix
of its own in the machine's Redis (and deletes it), or in a throwaway redis-server of its own."""

from __future__ import annotations

import asyncio
import shutil
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import pytest
import redis
from fastapi.testclient import TestClient
from structlog.testing import capture_logs

from lephi.app import create_app
from lephi.container import Container, build_container
from payments.auth.service import create_key
from payments.core.ratelimit import LimiterUnavailable, RateLimiter, RedisLimiter, RedisStore
from tests.conftest import ALL_SCOPES, make_settings
from tests.factories import page_form, seed_agency

SHARED_REDIS = "redis://127.0.0.1:6379/0"
UNKNOWN_CODE = "AAAAAAAAAAAA"  # well-formed, matches no receipt: 404 when the lookup is allowed


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def sqlite_url(tmp_path: Path, sqlite_template: Path) -> str:
    path = tmp_path / "lephi.db"
    shutil.copy(sqlite_template, path)
    return f"sqlite:///{path}"


@pytest.fixture
def prefix() -> Iterator[str]:
    """A key prefix of this test's own in the shared Redis, removed afterwards."""
    name = f"lephi:test:{uuid.uuid4().hex}"
    yield name
    with redis.Redis.from_url(SHARED_REDIS) as r:
        keys = list(r.scan_iter(f"{name}:*"))
        if keys:
            r.delete(*keys)


class Instance:
    """One running service: its own container and app, sharing the database (and maybe Redis) with the others."""

    def __init__(self, client: TestClient, ctx: Container, key: str) -> None:
        self.client, self.ctx, self.key = client, ctx, key

    def api(self) -> int:
        return self.client.get("/v1/payments", headers={"Authorization": f"Bearer {self.key}"}).status_code

    def lookup(self) -> int:
        return self.client.get(f"/r/{UNKNOWN_CODE}").status_code


@contextmanager
def instances(
    database_url: str, tmp_path: Path, count: int, prefix: str = "", **overrides: object
) -> Iterator[list[Instance]]:
    settings = make_settings(database_url, tmp_path, **overrides)
    with build_container(settings).db.write() as s:
        seed_agency(s, "AGC-A")
        _, key = create_key(s, "AGC-A", "test", ALL_SCOPES)
    with ExitStack() as stack:
        running = []
        for _ in range(count):
            ctx = build_container(settings)
            stack.callback(ctx.close)
            for limiter in (ctx.api_limiter, ctx.lookup_limiter):
                if isinstance(limiter, RedisLimiter):
                    limiter.store.prefix = prefix
                    limiter.retry_seconds = 0  # ask Redis again on every request: the tests step through outages
            client = stack.enter_context(TestClient(create_app(settings, ctx), raise_server_exceptions=False))
            running.append(Instance(client, ctx, key))
        yield running


def _warnings(logs: list[dict[str, object]]) -> list[dict[str, object]]:
    return [e for e in logs if e["event"] == "ratelimit.redis_unavailable"]


def test_with_redis_two_instances_share_one_limit(sqlite_url: str, tmp_path: Path, prefix: str) -> None:
    with instances(
        sqlite_url, tmp_path, 2, prefix, redis_url=SHARED_REDIS, api_rate_per_minute=3, lookup_rate_per_minute=2
    ) as (a, b):
        assert [a.api(), b.api(), a.api(), b.api(), a.api()] == [200, 200, 200, 429, 429]
        refused = b.client.get("/v1/payments", headers={"Authorization": f"Bearer {b.key}"})
        assert refused.json()["code"] == "rate_limited"
        assert 58 <= int(refused.headers["retry-after"]) <= 60  # the same window as the in-process limiter's
        assert [a.lookup(), b.lookup(), a.lookup(), b.lookup()] == [404, 404, 429, 429]
        page = a.client.get(f"/r/{UNKNOWN_CODE}")
        assert "Bạn đã tra cứu quá nhiều lần" in page.text and int(page.headers["retry-after"]) >= 1
    with redis.Redis.from_url(SHARED_REDIS) as r:
        keys = sorted(k.decode() for k in r.scan_iter(f"{prefix}:*"))
        assert [k.rsplit(":", 2)[1] for k in keys] == ["api", "lookup"]
        assert all(0 < r.pttl(k) <= 60_000 for k in keys)  # idle clients leave nothing behind


def test_without_redis_each_instance_counts_for_itself(sqlite_url: str, tmp_path: Path) -> None:
    with instances(sqlite_url, tmp_path, 2, api_rate_per_minute=2, lookup_rate_per_minute=1) as (a, b):
        assert isinstance(a.ctx.api_limiter, RateLimiter) and isinstance(a.ctx.lookup_limiter, RateLimiter)
        assert [a.api(), a.api(), a.api(), b.api(), b.api(), b.api()] == [200, 200, 429, 200, 200, 429]
        assert [a.lookup(), a.lookup(), b.lookup(), b.lookup()] == [404, 429, 404, 429]


def test_redis_unreachable_the_api_passes_with_one_warning_and_lookups_are_refused_clearly(
    sqlite_url: str, tmp_path: Path
) -> None:
    closed = f"redis://127.0.0.1:{_free_port()}/0"
    with instances(sqlite_url, tmp_path, 1, "lephi:rl", redis_url=closed, api_rate_per_minute=2) as (a,):
        for limiter in (a.ctx.api_limiter, a.ctx.lookup_limiter):
            assert isinstance(limiter, RedisLimiter)
            limiter.retry_seconds = 1.0  # the default: within it requests do not wait on Redis again
        with capture_logs() as logs:
            assert [a.api() for _ in range(6)] == [200] * 6  # beyond the limit of 2: nothing counts them
        warnings = _warnings(logs)
        assert len(warnings) == 1, warnings  # not one line per request
        assert warnings[0]["log_level"] == "warning" and warnings[0]["policy"] == "fail_open"
        assert "Connection" in str(warnings[0]["error"])

        page = a.client.get(f"/r/{UNKNOWN_CODE}")
        assert page.status_code == 503 and page.headers["content-type"].startswith("text/html")
        assert int(page.headers["retry-after"]) >= 1 and page.headers["cache-control"] == "no-store"
        assert "Chức năng tra cứu tạm thời gián đoạn" in page.text
        english = a.client.get(f"/r/{UNKNOWN_CODE}.xml?lang=en")
        assert english.status_code == 503 and "Receipt lookup is briefly unavailable" in english.text

        form = a.client.get("/tra-cuu")
        found = a.client.post("/tra-cuu", data=page_form(form.text, code="HS-1", secret="ABCD-EFGH"))
        assert found.status_code == 503 and int(found.headers["retry-after"]) >= 1
        assert "Chức năng tìm hồ sơ tạm thời gián đoạn" in found.text


def test_a_redis_url_that_is_not_one_stops_the_start(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="LEPHI_REDIS_URL must start with redis://"):
        make_settings("sqlite://", tmp_path, redis_url="http://127.0.0.1:6379")
    with pytest.raises(ValueError, match="not a Redis URL"):
        make_settings("sqlite://", tmp_path, redis_url="redis://127.0.0.1:port/0")


def test_a_hanging_redis_costs_a_request_its_timeout_not_a_stall() -> None:
    # A listening socket nobody accepts from: the connection is made, no reply ever comes.
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(16)
        store = RedisStore(f"redis://127.0.0.1:{silent.getsockname()[1]}/0", timeout_seconds=0.05)
        api = RedisLimiter(store, "api", 1, fail_open=True)
        lookup = RedisLimiter(store, "lookup", 1, fail_open=False, retry_seconds=2.0)

        async def both() -> tuple[float | None, float | None]:
            first = await api.check("key")
            with pytest.raises(LimiterUnavailable) as refused:
                await lookup.check("10.0.0.1")
            await store.aclose()
            return first, refused.value.retry_after

        assert asyncio.run(asyncio.wait_for(both(), 10)) == (None, 2.0)


@contextmanager
def redis_server(port: int) -> Iterator[subprocess.Popen[bytes]]:
    """A throwaway redis-server (installed with the machine's Redis), keeping nothing on disk."""
    proc = subprocess.Popen(
        ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                with redis.Redis(port=port, socket_timeout=1) as r:
                    r.ping()
                break
            except redis.ConnectionError:
                assert time.monotonic() < deadline and proc.poll() is None, "redis-server did not start"
                time.sleep(0.02)
        yield proc
    finally:
        proc.terminate()
        proc.wait(10)


def test_redis_restart_the_api_goes_on_lookups_pause_and_the_limit_returns(sqlite_url: str, tmp_path: Path) -> None:
    port = _free_port()
    url = f"redis://127.0.0.1:{port}/0"
    with ExitStack() as outage:
        outage.enter_context(redis_server(port))
        with instances(
            sqlite_url, tmp_path, 1, "lephi:rl", redis_url=url, api_rate_per_minute=2, lookup_rate_per_minute=1
        ) as (a,):
            assert [a.api(), a.api(), a.api()] == [200, 200, 429]
            assert [a.lookup(), a.lookup()] == [404, 429]

            outage.close()  # Redis stops, its counts with it
            with capture_logs() as logs:
                assert [a.api(), a.api(), a.api()] == [200, 200, 200]
                assert [a.lookup(), a.lookup()] == [503, 503]
            assert {w["policy"] for w in _warnings(logs)} == {"fail_open", "fail_closed"}

            with redis_server(port), capture_logs() as logs:
                # Fresh counts (the restarted server has none, nor the script: it is loaded again).
                assert [a.api(), a.api(), a.api()] == [200, 200, 429]
                assert [a.lookup(), a.lookup()] == [404, 429]
                recovered = [e["limiter"] for e in logs if e["event"] == "ratelimit.redis_recovered"]
                assert sorted(recovered) == ["api", "lookup"]
