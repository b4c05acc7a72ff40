"""A per-process sliding-window limit on requests per client address, for pages open to anyone (receipt lookup).

Counts live in memory: with several processes each enforces its own limit, which bounds guessing per process; a
shared limit needs the reverse proxy's (documented in docs/operations.md)."""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable


class RateLimiter:
    def __init__(
        self, per_minute: int, clock: Callable[[], float] = time.monotonic, max_clients: int = 100_000
    ) -> None:
        self.per_minute = per_minute
        self._clock = clock
        self._hits: dict[str, deque[float]] = {}
        self._lock = threading.Lock()
        self._max_clients = max_clients

    def check(self, client: str) -> float | None:
        """Count a request; None if allowed, else the seconds to wait before the next one is."""
        now = self._clock()
        with self._lock:
            hits = self._hits.get(client)
            if hits is None:
                if len(self._hits) >= self._max_clients:
                    self._forget_idle(now)
                hits = self._hits[client] = deque()
            while hits and hits[0] <= now - 60:
                hits.popleft()
            if len(hits) >= self.per_minute:
                return max(0.0, hits[0] + 60 - now)
            hits.append(now)
            return None

    def _forget_idle(self, now: float) -> None:
        # Memory stays bounded whatever addresses arrive: clients idle for a minute hold no state worth keeping.
        for client in [c for c, hits in self._hits.items() if not hits or hits[-1] <= now - 60]:
            del self._hits[client]
