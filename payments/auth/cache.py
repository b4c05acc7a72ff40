"""API keys held in memory, so that authenticating a request costs no database transaction.

Every process keeps the keys it has seen, with the number of the ``api_key_version`` row they were read under. Key
creation and revocation raise that number in their own transaction; each process reads it at most once per
``check_seconds`` (one single-row SELECT) and forgets every key when it moved. A revoked key therefore stops working
on every process within ``check_seconds`` plus one request, whichever process revoked it.

Unknown keys are not remembered: anyone can send random keys, and a new key must work at once.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from payments.auth.service import Principal, authenticate, hash_key, key_version
from payments.core.db import Database

CHECK_SECONDS = 0.5
MAX_KEYS = 10_000


class ApiKeyCache:
    def __init__(
        self,
        db: Database,
        check_seconds: float = CHECK_SECONDS,
        clock: Callable[[], float] = time.monotonic,
        max_keys: int = MAX_KEYS,
    ) -> None:
        self._db = db
        self._check_seconds = check_seconds
        self.clock = clock
        self._max_keys = max_keys
        self._lock = threading.Lock()
        self._version: int | None = None
        self._checked_at = float("-inf")
        self._keys: dict[str, Principal] = {}

    def cached(self, raw: str) -> Principal | None:
        """The key's principal without touching the database, or None when the database must be asked (the key is
        not held, or the version is due for a check): then call ``load``."""
        if self.clock() - self._checked_at >= self._check_seconds:
            return None
        return self._keys.get(hash_key(raw))

    def load(self, raw: str) -> Principal:
        """Check the version if it is due, then the key (from memory, else from the database); blocking I/O, for a
        worker thread. Raises Unauthenticated for an unknown or revoked key."""
        digest = hash_key(raw)
        if self.clock() - self._checked_at >= self._check_seconds:
            with self._db.read() as s:
                self._settle(key_version(s))
        held = self._keys.get(digest)
        if held is not None:
            return held
        with self._db.read() as s:
            # The version first: a key read as valid after it cannot have been revoked before it.
            version = key_version(s)
            principal = authenticate(s, raw)
        with self._lock:
            self._settle_locked(version)
            if version == self._version and len(self._keys) < self._max_keys:
                self._keys[digest] = principal
        return principal

    def authenticate(self, raw: str) -> Principal:
        """Both steps, for callers already off the event loop (tests, the CLI)."""
        return self.cached(raw) or self.load(raw)

    def forget(self) -> None:
        """Drop every key and check the version on the next request (after a change made in this process)."""
        with self._lock:
            self._keys = {}
            self._checked_at = float("-inf")

    def _settle(self, version: int) -> None:
        with self._lock:
            self._settle_locked(version)
            self._checked_at = self.clock()

    def _settle_locked(self, version: int) -> None:
        # Only forward: a reader that started before a change must not bring back what the change dropped.
        if self._version is None or version > self._version:
            self._keys = {}
            self._version = version
