"""API keys held in memory (payments/auth/cache.py): a key is read from the database once per process, and a key
revoked by any process stops working on every other within the check interval (0.5 s; promised: 1 s).

Two "processes" are two Database objects with engines of their own on one database, each with its own cache."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import event

from lephi.settings import Settings
from payments.auth.cache import CHECK_SECONDS, FLUSH_SECONDS, ApiKeyCache
from payments.auth.models import ApiKey, Scope
from payments.auth.service import Principal, create_key, key_version, revoke_key
from payments.core.db import Database, make_engine
from payments.core.errors import Unauthenticated
from tests.conftest import make_settings
from tests.factories import seed_agency


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Wall:
    """The time of day that goes with the clock: it starts at 10:00 Vietnam time."""

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self.start = datetime(2026, 12, 3, 3, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.start + timedelta(seconds=self.clock.now - 1000.0)


class Process:
    """One process's database engine and key cache, counting the statements it sends."""

    def __init__(self, settings: Settings, clock: Clock) -> None:
        self.db = Database(make_engine(settings.effective_database_url, settings))
        self.cache = ApiKeyCache(self.db, clock=clock, wall=Wall(clock))
        self.statements = 0

        @event.listens_for(self.db.engine, "before_cursor_execute")
        def _count(*_args: object) -> None:
            self.statements += 1

    def key(self, agency: str = "AGC-A") -> tuple[str, str]:
        with self.db.write() as s:
            key, raw = create_key(s, agency, "client", [Scope.payments_read.value])
        return key.id, raw

    def revoke(self, key_id: str) -> None:
        with self.db.write() as s:
            revoke_key(s, key_id)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def two(database_url: str, tmp_path: Path, clock: Clock) -> Iterator[tuple[Process, Process]]:
    settings = make_settings(database_url, tmp_path)
    a, b = Process(settings, clock), Process(settings, clock)
    with a.db.write() as s:
        seed_agency(s, "AGC-A")
    yield a, b
    a.db.dispose()
    b.db.dispose()


def test_a_held_key_costs_no_statement(two: tuple[Process, Process], clock: Clock) -> None:
    a, _ = two
    key_id, raw = a.key()
    first = a.cache.authenticate(raw)
    assert isinstance(first, Principal) and first.key_id == key_id
    before = a.statements
    for _ in range(50):
        assert a.cache.authenticate(raw) == first
    assert a.statements == before
    # Past the check interval, one look at the version row (the key itself is not read again).
    clock.now += CHECK_SECONDS
    assert a.cache.authenticate(raw) == first
    checked = a.statements - before
    assert 0 < checked <= 3  # BEGIN, the version SELECT, the end of the read transaction
    assert a.cache.cached(raw) == first


def test_a_key_revoked_by_another_process_stops_working_within_the_interval(
    two: tuple[Process, Process], clock: Clock
) -> None:
    a, b = two
    key_id, raw = a.key()
    other_id, other = a.key()
    assert b.cache.authenticate(raw).key_id == key_id
    assert b.cache.authenticate(other).key_id == other_id
    a.revoke(key_id)
    clock.now += CHECK_SECONDS
    with pytest.raises(Unauthenticated):
        b.cache.authenticate(raw)
    # The other keys are read again, once, and still work.
    assert b.cache.authenticate(other).key_id == other_id
    before = b.statements
    assert b.cache.authenticate(other).key_id == other_id
    assert b.statements == before


def test_the_revoking_process_refuses_the_key_too(two: tuple[Process, Process], clock: Clock) -> None:
    a, _ = two
    key_id, raw = a.key()
    a.cache.authenticate(raw)
    a.revoke(key_id)
    clock.now += CHECK_SECONDS
    with pytest.raises(Unauthenticated):
        a.cache.authenticate(raw)


def test_a_new_key_works_at_once_and_unknown_keys_are_not_held(two: tuple[Process, Process]) -> None:
    a, b = two
    b.cache.authenticate(a.key()[1])  # b holds a key and its version
    _, fresh = a.key()
    assert b.cache.authenticate(fresh) is not None  # no interval to wait for a key b never saw
    for _ in range(3):
        with pytest.raises(Unauthenticated):
            b.cache.authenticate("lephi_unknown")
    assert b.cache.cached("lephi_unknown") is None


def test_every_key_change_moves_the_version_in_its_transaction(two: tuple[Process, Process]) -> None:
    a, b = two
    with b.db.read() as s:
        start = key_version(s)
    key_id, _ = a.key()
    with b.db.read() as s:
        created = key_version(s)
    a.revoke(key_id)
    a.revoke(key_id)  # already revoked: nothing changes, the version neither
    with b.db.read() as s:
        revoked = key_version(s)
    assert start < created < revoked == created + 1
    # A change rolled back leaves the version as it was.
    with pytest.raises(RuntimeError), a.db.write() as s:
        create_key(s, "AGC-A", "client", [Scope.payments_read.value])
        raise RuntimeError
    with b.db.read() as s:
        assert key_version(s) == revoked


# When each key was last used: noted in memory, written at most once per flush interval, only forward.
assert FLUSH_SECONDS == 60  # the default the tests below count with


def last_used(process: Process, key_id: str) -> datetime | None:
    with process.db.read() as s:
        key = s.get(ApiKey, key_id)
        assert key is not None
        return key.last_used_at


def test_last_used_is_written_after_the_flush_interval_not_on_every_request(
    two: tuple[Process, Process], clock: Clock
) -> None:
    a, _ = two
    key_id, raw = a.key()
    a.cache.authenticate(raw)
    assert last_used(a, key_id) is None  # not written by the request
    writes = 0

    @event.listens_for(a.db.engine, "before_cursor_execute")
    def _count_updates(_conn: object, _cursor: object, statement: str, *_args: object) -> None:
        nonlocal writes
        writes += statement.lstrip().upper().startswith("UPDATE API_KEY ")

    # Over two minutes of steady use, a request every 0.1 s: the version checks run, the write only twice.
    for _ in range(1250):
        clock.now += 0.1
        a.cache.authenticate(raw)
    assert writes == 2
    used = last_used(a, key_id)
    assert used is not None and used.tzinfo is not None
    # The second write, about two minutes in, carries the time of the use just before it.
    assert Wall(clock)() - timedelta(seconds=6) <= used < Wall(clock)()
    a.cache.flush()
    assert writes == 3
    assert last_used(a, key_id) == Wall(clock)()
    # No use since the last write: the next flush writes nothing.
    clock.now += 120
    a.cache.flush()
    assert writes == 3


def test_last_used_never_goes_backwards(two: tuple[Process, Process], clock: Clock) -> None:
    a, b = two
    key_id, raw = a.key()
    b.cache.authenticate(raw)  # b's use is the older one
    clock.now += 30
    a.cache.authenticate(raw)
    clock.now += 1
    a.cache.flush()
    newer = last_used(a, key_id)
    assert newer == Wall(clock)() - timedelta(seconds=1)
    b.cache.flush()  # b writes later, but a use older than what is stored
    assert last_used(a, key_id) == newer


def test_a_revoked_key_is_refused_although_its_use_is_still_to_be_written(
    two: tuple[Process, Process], clock: Clock
) -> None:
    a, b = two
    key_id, raw = a.key()
    b.cache.authenticate(raw)
    a.revoke(key_id)
    clock.now += 61
    with pytest.raises(Unauthenticated):
        b.cache.authenticate(raw)
    assert last_used(a, key_id) == Wall(clock)() - timedelta(seconds=61)
