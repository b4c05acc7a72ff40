"""API keys held in memory (payments/auth/cache.py): a key is read from the database once per process, and a key
revoked by any process stops working on every other within the check interval (0.5 s; promised: 1 s).

Two "processes" are two Database objects with engines of their own on one database, each with its own cache."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import event

from lephi.settings import Settings
from payments.auth.cache import CHECK_SECONDS, ApiKeyCache
from payments.auth.models import Scope
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


class Process:
    """One process's database engine and key cache, counting the statements it sends."""

    def __init__(self, settings: Settings, clock: Clock) -> None:
        self.db = Database(make_engine(settings.effective_database_url, settings))
        self.cache = ApiKeyCache(self.db, clock=clock)
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
