"""API keys held in memory, so that authenticating a request costs no database transaction.

Every process keeps the keys it has seen, with the number of the ``api_key_version`` row they were read under. Key
creation and revocation raise that number in their own transaction; each process reads it at most once per
``check_seconds`` (one single-row SELECT) and forgets every key when it moved. A revoked key therefore stops working
on every process within ``check_seconds`` plus one request, whichever process revoked it.

Unknown keys are not remembered: anyone can send random keys, and a new key must work at once.

When each key was last used is noted in memory (a dictionary assignment, no I/O) and written at most once per
``flush_seconds``, all keys in one UPDATE, from ``load``: a worker thread that does database I/O anyway, and runs at
least every ``check_seconds`` while requests come. The UPDATE only moves a timestamp forward, so that processes
writing in any order never move it back. A process that stops loses at most its last interval's notes unless it
calls ``flush``.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from datetime import datetime, timedelta

from sqlalchemy import bindparam, or_, update

from payments.auth.models import ApiKey
from payments.auth.service import Principal, authenticate, hash_key, key_version
from payments.core.db import Database, table_of
from payments.core.logging import get_logger
from payments.core.types import utcnow

log = get_logger(__name__)

CHECK_SECONDS = 0.5
FLUSH_SECONDS = 60.0
MAX_KEYS = 10_000

_KEYS = table_of(ApiKey)
# Forward only: another process may already have written a later use.
_TOUCH = (
    update(_KEYS)
    .where(_KEYS.c.id == bindparam("key_id"))
    .where(or_(_KEYS.c.last_used_at.is_(None), _KEYS.c.last_used_at < bindparam("used_at")))
    .values(last_used_at=bindparam("used_at"))
)


class ApiKeyCache:
    def __init__(
        self,
        db: Database,
        check_seconds: float = CHECK_SECONDS,
        clock: Callable[[], float] = time.monotonic,
        max_keys: int = MAX_KEYS,
        flush_seconds: float = FLUSH_SECONDS,
        wall: Callable[[], datetime] = utcnow,
    ) -> None:
        self._db = db
        self._check_seconds = check_seconds
        self.clock = clock
        self.wall = wall
        self._max_keys = max_keys
        self._flush_seconds = flush_seconds
        self._lock = threading.Lock()
        self._flush_lock = threading.Lock()
        self._version: int | None = None
        self._checked_at = float("-inf")
        self._keys: dict[str, Principal] = {}
        # Key id -> clock reading of its last use in this process, and of the use last written. Entries are never
        # removed, so a note made while a flush runs is not lost; only valid keys get one, so they are few.
        self._used: dict[str, float] = {}
        self._written: dict[str, float] = {}
        self._flushed_at = clock()

    def cached(self, raw: str) -> Principal | None:
        """The key's principal without touching the database, or None when the database must be asked (the key is
        not held, or the version is due for a check): then call ``load``."""
        now = self.clock()
        if now - self._checked_at >= self._check_seconds:
            return None
        principal = self._keys.get(hash_key(raw))
        if principal is not None:
            self._used[principal.key_id] = now
        return principal

    def load(self, raw: str) -> Principal:
        """Check the version if it is due, then the key (from memory, else from the database); blocking I/O, for a
        worker thread. Raises Unauthenticated for an unknown or revoked key."""
        digest = hash_key(raw)
        if self.clock() - self._flushed_at >= self._flush_seconds:
            self.flush()
        if self.clock() - self._checked_at >= self._check_seconds:
            with self._db.read() as s:
                self._settle(key_version(s))
        held = self._keys.get(digest)
        if held is None:
            with self._db.read() as s:
                # The version first: a key read as valid after it cannot have been revoked before it.
                version = key_version(s)
                held = authenticate(s, raw)
            with self._lock:
                self._settle_locked(version)
                if version == self._version and len(self._keys) < self._max_keys:
                    self._keys[digest] = held
        self._used[held.key_id] = self.clock()
        return held

    def flush(self) -> None:
        """Write the uses noted since the last flush, in one statement; nothing when there are none. A failure is
        logged and the notes kept for the next flush: it must not refuse a valid key."""
        if not self._flush_lock.acquire(blocking=False):
            return  # another thread is writing them
        try:
            now = self.clock()
            self._flushed_at = now
            noted = dict(self._used)
            due = {key_id: at for key_id, at in noted.items() if self._written.get(key_id) != at}
            if not due:
                return
            # A clock reading becomes a time of day by its age now: the injected clock need not be the wall's.
            wall = self.wall()
            rows = [{"key_id": k, "used_at": wall - timedelta(seconds=now - at)} for k, at in due.items()]
            try:
                with self._db.write() as s:
                    s.connection().execute(_TOUCH, rows)
            except Exception:
                log.warning("auth.last_used_not_written", keys=len(rows), exc_info=True)
                return
            self._written.update(due)
        finally:
            self._flush_lock.release()

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
