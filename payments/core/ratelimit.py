"""Sliding-window limits on requests per client (an API key, or an address for the pages open to anyone): at most
``per_minute`` requests in any 60 seconds; the next one is refused with the seconds until the oldest counted leaves the
window.

Two implementations with the same numbers: ``RateLimiter`` counts in memory, so with several processes each enforces
its own limit; ``RedisLimiter`` counts in Redis (``LEPHI_REDIS_URL``), so the limit holds across all processes. When
Redis cannot be reached the Redis limiter follows its policy (docs/operations.md): fail open (count nothing, log a
warning) where refusing would stop paying clients, fail closed (``LimiterUnavailable``) where the limit is what keeps
codes from being guessed."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any, Protocol

from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError, RedisError

from payments.core.logging import get_logger

log = get_logger(__name__)

WINDOW_SECONDS = 60


class LimiterUnavailable(Exception):
    """The count could not be made and the policy is to refuse: ask again after ``retry_after`` seconds."""

    def __init__(self, retry_after: float) -> None:
        super().__init__(f"the rate limit store is unreachable; retry after {retry_after:g} s")
        self.retry_after = retry_after


class Limiter(Protocol):
    per_minute: int

    async def check(self, client: str) -> float | None:
        """Count a request; None if allowed, else the seconds to wait before the next one is. Raises
        ``LimiterUnavailable`` when the count cannot be made and the limiter fails closed."""

    async def aclose(self) -> None: ...


class RateLimiter:
    """Per process, in memory."""

    def __init__(
        self, per_minute: int, clock: Callable[[], float] = time.monotonic, max_clients: int = 100_000
    ) -> None:
        self.per_minute = per_minute
        self._clock = clock
        self._hits: dict[str, deque[float]] = {}
        self._lock = threading.Lock()
        self._max_clients = max_clients

    async def check(self, client: str) -> float | None:
        return self.hit(client)

    async def aclose(self) -> None:
        return None

    def hit(self, client: str) -> float | None:
        """``check`` for callers outside the event loop."""
        now = self._clock()
        with self._lock:
            hits = self._hits.get(client)
            if hits is None:
                if len(self._hits) >= self._max_clients:
                    self._forget_idle(now)
                hits = self._hits[client] = deque()
            while hits and hits[0] <= now - WINDOW_SECONDS:
                hits.popleft()
            if len(hits) >= self.per_minute:
                return max(0.0, hits[0] + WINDOW_SECONDS - now)
            hits.append(now)
            return None

    def _forget_idle(self, now: float) -> None:
        # Memory stays bounded whatever addresses arrive: clients idle for a minute hold no state worth keeping.
        for client in [c for c, hits in self._hits.items() if not hits or hits[-1] <= now - WINDOW_SECONDS]:
            del self._hits[client]


# The same sliding log as RateLimiter, one sorted set per client scored in microseconds of the Redis server's clock
# (so that the processes' clocks need not agree), made atomic by running as one script. The key expires with the
# window, so idle clients cost nothing. Returns -1 when counted, else the microseconds to wait.
_SLIDING_LOG = """
local key = KEYS[1]
local limit = tonumber(ARGV[1])
local window = tonumber(ARGV[2])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
redis.call('ZREMRANGEBYSCORE', key, '-inf', now - window)
if redis.call('ZCARD', key) >= limit then
  local oldest = redis.call('ZRANGE', key, 0, 0, 'WITHSCORES')
  return math.max(0, tonumber(oldest[2]) + window - now)
end
redis.call('ZADD', key, now, ARGV[3])
redis.call('PEXPIRE', key, math.ceil(window / 1000))
return -1
"""


class RedisStore:
    """One Redis connection pool for the limiters of a process, made for the event loop that uses it (a pool's
    connections belong to one loop) and remade if another loop asks."""

    def __init__(self, url: str, timeout_seconds: float, prefix: str = "lephi:rl") -> None:
        self.url = url
        self.prefix = prefix
        self.timeout_seconds = timeout_seconds
        self._client: Redis | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._sha: str | None = None
        self._lock = threading.Lock()
        self._sequence = itertools.count()
        self._process = os.urandom(6).hex()

    def client(self) -> Redis:
        loop = asyncio.get_running_loop()
        with self._lock:
            if self._client is None or self._loop is not loop:
                # A short timeout on connecting and on each reply, so a hanging Redis costs a request that much
                # and no more; one immediate retry on a dropped connection only (a restarted Redis), never on a
                # timeout.
                self._client = Redis.from_url(
                    self.url,
                    socket_timeout=self.timeout_seconds,
                    socket_connect_timeout=self.timeout_seconds,
                    retry=Retry(NoBackoff(), 1, (RedisConnectionError,)),
                    health_check_interval=0,
                )
                self._loop = loop
            return self._client

    def member(self) -> str:
        # Unique within a client's sorted set across processes, so two requests in the same microsecond both count.
        return f"{self._process}:{next(self._sequence)}"

    async def run(self, key: str, per_minute: int) -> Any:
        """The script by its digest (loaded once; loaded again if the server lost it, e.g. after a restart)."""
        client = self.client()
        args = (per_minute, WINDOW_SECONDS * 1_000_000, self.member())
        async with asyncio.timeout(self.timeout_seconds * 3):
            if self._sha is not None:
                try:
                    return await client.evalsha(self._sha, 1, key, *args)
                except NoScriptError:
                    pass
            self._sha = await client.script_load(_SLIDING_LOG)
            return await client.evalsha(self._sha, 1, key, *args)

    async def aclose(self) -> None:
        client, self._client, self._loop = self._client, None, None
        if client is not None:
            # A pool of a closed event loop, or a Redis already gone, has nothing left to close.
            with contextlib.suppress(RedisError, OSError, RuntimeError):
                await client.aclose()


class RedisLimiter:
    """Counts in Redis under ``<prefix>:<name>:<client>``, shared by every process using the same Redis."""

    def __init__(
        self,
        store: RedisStore,
        name: str,
        per_minute: int,
        *,
        fail_open: bool,
        retry_seconds: float = 1.0,
        log_every_seconds: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.store = store
        self.name = name
        self.per_minute = per_minute
        self.fail_open = fail_open
        self.retry_seconds = retry_seconds
        self.log_every_seconds = log_every_seconds
        self._clock = clock
        # While Redis is known to be down, requests do not each wait for a timeout: it is asked again after
        # retry_seconds, and the first answer after that ends the outage.
        self._down_until = 0.0
        self._down = False
        self._logged_at: float | None = None
        self._unlogged = 0

    async def check(self, client: str) -> float | None:
        if self._down and self._clock() < self._down_until:
            return self._unavailable(None)
        try:
            result = await self.store.run(f"{self.store.prefix}:{self.name}:{client}", self.per_minute)
        except (RedisError, OSError, TimeoutError) as exc:
            self._down, self._down_until = True, self._clock() + self.retry_seconds
            return self._unavailable(exc)
        if self._down:
            self._down, self._logged_at, self._unlogged = False, None, 0
            # At the outage's own level, so that whoever watches the warnings sees it end.
            log.warning("ratelimit.redis_recovered", limiter=self.name)
        wait = int(result)
        return None if wait < 0 else wait / 1_000_000

    async def aclose(self) -> None:
        await self.store.aclose()

    def _unavailable(self, exc: BaseException | None) -> float | None:
        now = self._clock()
        # A dead Redis must not write a line per request: one warning per log_every_seconds, with the count of the
        # requests since the last one.
        if self._logged_at is None or now - self._logged_at >= self.log_every_seconds:
            log.warning(
                "ratelimit.redis_unavailable",
                limiter=self.name,
                policy="fail_open" if self.fail_open else "fail_closed",
                error=repr(exc) if exc is not None else "still down",
                requests_since_last_warning=self._unlogged,
            )
            self._logged_at, self._unlogged = now, 0
        else:
            self._unlogged += 1
        if self.fail_open:
            return None
        raise LimiterUnavailable(max(1.0, self.retry_seconds))
