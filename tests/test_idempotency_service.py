"""The Idempotency-Key service called directly (payments/idempotency/service.py): which record each outcome leaves
behind (released, lease ended, answer kept), the key's format, the fingerprint, replays, leases and expiry.
tests/test_idempotency.py checks the same rules through the API; these pin each branch cheaply, so that the mutation
run (scripts/mutate idempotency) takes minutes.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlmodel import Session, select

from payments.core.db import Database, make_engine
from payments.core.errors import (
    IdempotencyKeyInProgress,
    IdempotencyKeyInvalid,
    IdempotencyKeyMissing,
    IdempotencyKeyReused,
    LephiError,
    NotFound,
    RateLimited,
)
from payments.core.types import clock_at
from payments.idempotency.models import IdempotencyRecord, IdempotencyState
from payments.idempotency.service import Claim, Idempotency, Outcome, check_key, route_fingerprint
from tests.conftest import make_settings

T0 = datetime(2026, 12, 3, 3, 0, tzinfo=UTC)
LEASE = timedelta(seconds=60)
TTL = timedelta(hours=24)


@pytest.fixture
def db(database_url: str, tmp_path: Path) -> Iterator[Database]:
    settings = make_settings(database_url, tmp_path)
    database = Database(make_engine(settings.effective_database_url, settings))
    yield database
    database.dispose()


@pytest.fixture
def idem(db: Database, database_url: str, tmp_path: Path) -> Idempotency:
    settings = make_settings(database_url, tmp_path, idempotency_lease_seconds=60, idempotency_ttl_hours=24)
    return Idempotency(db, settings)


def records(db: Database) -> list[IdempotencyRecord]:
    with db.read() as s:
        return list(s.exec(select(IdempotencyRecord).order_by(IdempotencyRecord.id)).all())  # type: ignore[arg-type]


def only(db: Database) -> IdempotencyRecord:
    found = records(db)
    assert len(found) == 1, found
    return found[0]


class Op:
    """An operation that counts its runs and answers, raises, or attaches a resource first."""

    def __init__(self, answer: tuple[int, dict[str, Any]] = (201, {"id": "pay_1"}), error: BaseException | None = None):
        self.answer = answer
        self.error = error
        self.attach: str | None = None
        self.db: Database | None = None
        self.claims: list[tuple[int, str | None]] = []

    def __call__(self, claim: Claim) -> tuple[int, dict[str, Any]]:
        self.claims.append((claim.record_id, claim.resource_id))
        if self.attach is not None:
            assert self.db is not None
            with self.db.write() as s:
                claim.attach(s, self.attach)
        if self.error is not None:
            raise self.error
        return self.answer


def _bystander(idem: Idempotency) -> None:
    """Another request's key, still running: a failure must leave its record alone."""
    idem._claim("client", "bystander", "fp", None)


# --- the key and the fingerprint ---------------------------------------------------------------------------------
@pytest.mark.parametrize("key", ["a", "x" * 255, "!", "~", "550e8400-e29b-41d4-a716-446655440000"])
def test_printable_ascii_keys_of_1_to_255_characters_are_accepted(key: str) -> None:
    assert check_key(key) == key


@pytest.mark.parametrize("key", ["", "x" * 256, "a b", "a\tb", "ä", "\x7f", "a\n", "\na"])
def test_other_keys_are_invalid(key: str) -> None:
    with pytest.raises(IdempotencyKeyInvalid) as raised:
        check_key(key)
    assert raised.value.detail == "the Idempotency-Key must be 1 to 255 printable ASCII characters"


def test_no_key_is_missing() -> None:
    with pytest.raises(IdempotencyKeyMissing) as raised:
        check_key(None)
    assert raised.value.detail == ("send an Idempotency-Key header (a unique string such as a UUID) with this request")


def test_the_fingerprint_is_the_sha256_of_the_canonical_request() -> None:
    when = datetime(2026, 1, 2, tzinfo=UTC)
    canonical = '["POST","/v1/x/{id}",{"id":"a"},{"a":1,"b":"2026-01-02 00:00:00+00:00"}]'
    expected = hashlib.sha256(canonical.encode()).hexdigest()
    assert route_fingerprint("POST", "/v1/x/{id}", {"id": "a"}, {"b": when, "a": 1}) == expected


# --- one run -----------------------------------------------------------------------------------------------------
def test_a_first_request_runs_and_its_answer_is_kept(db: Database, idem: Idempotency) -> None:
    op = Op()
    with clock_at(T0):
        out = idem.run("client", "k", "fp", op)
    assert out == Outcome(201, {"id": "pay_1"}, replayed=False)
    assert out.headers == {}
    rec = only(db)
    assert (rec.client_id, rec.key, rec.fingerprint, rec.state) == ("client", "k", "fp", IdempotencyState.completed)
    assert (rec.response_status, json.loads(rec.response_body or "")) == (201, {"id": "pay_1"})
    assert (rec.locked_until, rec.created_at, rec.expires_at) == (T0 + LEASE, T0, T0 + TTL)
    assert op.claims == [(rec.id, None)]


def test_a_repeat_is_replayed_without_running(db: Database, idem: Idempotency) -> None:
    idem.run("client", "k", "fp", Op())
    op = Op(answer=(200, {"other": True}))
    out = idem.run("client", "k", "fp", op)
    assert out == Outcome(201, {"id": "pay_1"}, replayed=True)
    assert op.claims == []


def test_another_client_with_the_same_key_runs_on_its_own(db: Database, idem: Idempotency) -> None:
    idem.run("client", "k", "fp", Op())
    out = idem.run("other", "k", "fp", Op(answer=(200, {"b": 1})))
    assert out == Outcome(200, {"b": 1})
    assert len(records(db)) == 2
    # Each client's repeat is answered from its own record.
    assert idem.run("other", "k", "fp", Op()) == Outcome(200, {"b": 1}, replayed=True)
    assert idem.run("client", "k", "fp", Op()) == Outcome(201, {"id": "pay_1"}, replayed=True)


def test_the_same_key_with_another_request_is_refused(db: Database, idem: Idempotency) -> None:
    idem.run("client", "k", "fp", Op())
    op = Op()
    with pytest.raises(IdempotencyKeyReused) as raised:
        idem.run("client", "k", "fp-2", op)
    assert raised.value.detail == (
        "this Idempotency-Key was first used with a different request; use a new key for a new request"
    )
    assert op.claims == []


def test_a_key_still_running_is_409_until_its_lease_ends(db: Database, idem: Idempotency) -> None:
    with clock_at(T0):
        claimed = idem._claim("client", "k", "fp", None)
    assert isinstance(claimed, Claim) and claimed.resource_id is None
    for moment in (T0, T0 + LEASE - timedelta(microseconds=1)):
        op = Op()
        with clock_at(moment), pytest.raises(IdempotencyKeyInProgress) as raised:
            idem.run("client", "k", "fp", op)
        assert raised.value.detail == "a request with this Idempotency-Key is still running; retry shortly"
        assert raised.value.headers == {"Retry-After": "1"}
        assert op.claims == []
    # At the end of the lease the retry takes over the same record, with a new lease.
    op = Op()
    with clock_at(T0 + LEASE):
        assert idem.run("client", "k", "fp", op) == Outcome(201, {"id": "pay_1"})
    assert op.claims == [(claimed.record_id, None)]


def test_a_retry_after_the_lease_resumes_with_the_attached_resource(db: Database, idem: Idempotency) -> None:
    with clock_at(T0):
        claimed = idem._claim("client", "k", "fp", None)
    assert isinstance(claimed, Claim)
    with db.write() as s:
        claimed.attach(s, "pay_9")
    assert claimed.resource_id == "pay_9"
    later = T0 + LEASE + timedelta(seconds=5)
    op = Op()
    with clock_at(later):
        claim = idem._claim("client", "k", "fp", None)
        assert isinstance(claim, Claim) and (claim.record_id, claim.resource_id) == (claimed.record_id, "pay_9")
        assert only(db).locked_until == later + LEASE
        idem.run("client", "k2", "fp", op)


def test_an_expired_key_is_claimed_afresh(db: Database, idem: Idempotency) -> None:
    with clock_at(T0):
        idem.run("client", "k", "fp", Op())
    op = Op(answer=(200, {"again": 1}))
    with clock_at(T0 + TTL):
        assert idem.run("client", "k", "fp-other", op) == Outcome(200, {"again": 1})
    rec = only(db)
    assert (rec.fingerprint, rec.created_at, rec.response_status) == ("fp-other", T0 + TTL, 200)
    assert op.claims == [(rec.id, None)]


def test_a_key_not_yet_expired_is_still_replayed(db: Database, idem: Idempotency) -> None:
    with clock_at(T0):
        idem.run("client", "k", "fp", Op())
    with clock_at(T0 + TTL - timedelta(microseconds=1)):
        assert idem.run("client", "k", "fp", Op()).replayed


# --- failures ----------------------------------------------------------------------------------------------------
def test_a_final_error_is_kept_for_replay(db: Database, idem: Idempotency) -> None:
    error = NotFound("no dossier 'X'")
    with pytest.raises(NotFound):
        idem.run("client", "k", "fp", Op(error=error))
    rec = only(db)
    assert rec.state is IdempotencyState.completed and rec.response_status == 404
    assert json.loads(rec.response_body or "") == error.problem()
    assert idem.run("client", "k", "fp", Op()) == Outcome(404, error.problem(), replayed=True)


def test_a_transient_error_before_any_resource_releases_the_key(db: Database, idem: Idempotency) -> None:
    with clock_at(T0):
        _bystander(idem)
        with pytest.raises(RateLimited):
            idem.run("client", "k", "fp", Op(error=RateLimited("busy")))
    assert [r.key for r in records(db)] == ["bystander"]  # only its own record goes


def test_a_transient_error_after_a_resource_ends_the_lease_and_keeps_the_resource(
    db: Database, idem: Idempotency
) -> None:
    op = Op(error=RateLimited("busy"))
    op.attach, op.db = "pay_7", db
    with clock_at(T0 - timedelta(seconds=1)):
        _bystander(idem)
    with clock_at(T0), pytest.raises(RateLimited):
        idem.run("client", "k", "fp", op)
    bystander, rec = records(db)
    assert bystander.locked_until == T0 - timedelta(seconds=1) + LEASE  # only its own lease ends
    assert (rec.state, rec.resource_id, rec.response_status) == (IdempotencyState.in_progress, "pay_7", None)
    assert rec.locked_until == T0
    retry = Op()
    with clock_at(T0):
        assert idem.run("client", "k", "fp", retry) == Outcome(201, {"id": "pay_1"})
    assert retry.claims == [(rec.id, "pay_7")]


def test_an_unexpected_failure_ends_the_lease_at_once(db: Database, idem: Idempotency) -> None:
    with clock_at(T0 - timedelta(seconds=1)):
        _bystander(idem)
    with clock_at(T0), pytest.raises(KeyboardInterrupt):
        idem.run("client", "k", "fp", Op(error=KeyboardInterrupt()))
    bystander, rec = records(db)
    assert bystander.locked_until == T0 - timedelta(seconds=1) + LEASE
    assert (rec.state, rec.locked_until, rec.response_status) == (IdempotencyState.in_progress, T0, None)


def test_an_operation_that_finished_its_claim_is_not_stored_again(db: Database, idem: Idempotency) -> None:
    def finishing(claim: Claim) -> tuple[int, dict[str, Any]]:
        with db.write() as s:
            claim.finish(s, 202, {"kept": True})
        assert claim.finished
        return 201, {"returned": True}

    assert idem.run("client", "k", "fp", finishing) == Outcome(201, {"returned": True})
    rec = only(db)
    assert (rec.response_status, json.loads(rec.response_body or "")) == (202, {"kept": True})


# --- prepare and run_in_transaction ------------------------------------------------------------------------------
def test_prepare_runs_in_the_claims_transaction_once(db: Database, idem: Idempotency) -> None:
    seen: list[tuple[bool, str | None]] = []

    def prepare(s: Session, claim: Claim) -> None:
        seen.append((s.in_transaction(), claim.resource_id))
        claim.attach(s, "pay_3")

    op = Op()
    assert idem.run("client", "k", "fp", op, prepare) == Outcome(201, {"id": "pay_1"})
    assert seen == [(True, None)]
    assert op.claims[0][1] == "pay_3"
    assert only(db).resource_id == "pay_3"


def test_prepare_is_skipped_when_a_resource_is_attached(db: Database, idem: Idempotency) -> None:
    with clock_at(T0):
        claimed = idem._claim("client", "k", "fp", None)
    assert isinstance(claimed, Claim)
    with db.write() as s:
        claimed.attach(s, "pay_4")
    calls: list[str | None] = []
    with clock_at(T0 + LEASE):
        idem.run("client", "k", "fp", Op(), lambda s, c: calls.append(c.resource_id))
    assert calls == []


def test_a_final_prepare_error_rolls_back_and_is_kept_for_replay(db: Database, idem: Idempotency) -> None:
    error = NotFound("no dossier 'X'")

    def prepare(s: Session, claim: Claim) -> None:
        claim.attach(s, "pay_5")
        raise error

    op = Op()
    with clock_at(T0), pytest.raises(NotFound) as raised:
        idem.run("client", "k", "fp", op, prepare)
    assert raised.value is error and raised.value.__cause__ is None and op.claims == []
    rec = only(db)
    assert (rec.client_id, rec.key, rec.fingerprint, rec.state) == ("client", "k", "fp", IdempotencyState.completed)
    assert (rec.response_status, json.loads(rec.response_body or ""), rec.resource_id) == (404, error.problem(), None)
    assert (rec.locked_until, rec.expires_at) == (T0, T0 + TTL)


def test_a_transient_prepare_error_leaves_no_record(db: Database, idem: Idempotency) -> None:
    def prepare(s: Session, claim: Claim) -> None:
        raise RateLimited("busy")

    with pytest.raises(RateLimited):
        idem.run("client", "k", "fp", Op(), prepare)
    assert records(db) == []


def test_a_kept_error_does_not_replace_a_concurrent_answer(db: Database, idem: Idempotency) -> None:
    idem.run("client", "k", "fp", Op(answer=(200, {"first": True})))
    idem._store_new("client", "k", "fp", 404, {"late": True})
    rec = only(db)
    assert (rec.response_status, json.loads(rec.response_body or "")) == (200, {"first": True})


def test_a_change_in_one_transaction_is_stored_with_its_answer(db: Database, idem: Idempotency) -> None:
    calls: list[int] = []

    def change(s: Session) -> tuple[int, dict[str, Any]]:
        calls.append(1)
        return 201, {"done": len(calls)}

    assert idem.run_in_transaction("client", "k", "fp", change) == Outcome(201, {"done": 1})
    assert idem.run_in_transaction("client", "k", "fp", change) == Outcome(201, {"done": 1}, replayed=True)
    assert calls == [1]
    rec = only(db)
    assert (rec.state, rec.response_status) == (IdempotencyState.completed, 201)


def test_a_failed_change_in_one_transaction_leaves_only_its_kept_error(db: Database, idem: Idempotency) -> None:
    def change(s: Session) -> tuple[int, dict[str, Any]]:
        raise NotFound("nothing")

    with pytest.raises(NotFound):
        idem.run_in_transaction("client", "k", "fp", change)
    assert only(db).response_status == 404


# --- a key taken by a concurrent request -------------------------------------------------------------------------
def test_a_key_that_keeps_vanishing_is_409_after_three_tries(
    idem: Idempotency, monkeypatch: pytest.MonkeyPatch
) -> None:
    from payments.idempotency import service

    tries: list[str] = []

    def taken(*args: Any) -> Claim:
        tries.append(args[1])
        raise service._KeyTaken

    monkeypatch.setattr(idem, "_try_claim", taken)
    with pytest.raises(IdempotencyKeyInProgress) as raised:
        idem.run("client", "k", "fp", Op())
    assert tries == ["k", "k", "k"]
    assert raised.value.detail == "a request with this Idempotency-Key is still running; retry shortly"
    assert raised.value.headers == {"Retry-After": "1"}


def test_a_key_taken_once_is_read_again(idem: Idempotency, monkeypatch: pytest.MonkeyPatch) -> None:
    from payments.idempotency import service

    real = idem._try_claim
    tries: list[int] = []

    def once_taken(*args: Any) -> Claim | Outcome:
        tries.append(1)
        if len(tries) < 3:
            raise service._KeyTaken
        return real(*args)

    monkeypatch.setattr(idem, "_try_claim", once_taken)
    assert idem.run("client", "k", "fp", Op()) == Outcome(201, {"id": "pay_1"})
    assert len(tries) == 3


# --- purge -------------------------------------------------------------------------------------------------------
def test_purge_removes_the_expired_records_only(db: Database, idem: Idempotency) -> None:
    for moment, key in ((T0, "old-1"), (T0, "old-2"), (T0 + timedelta(hours=1), "new")):
        with clock_at(moment):
            idem.run("client", key, "fp", Op())
    with clock_at(T0 + TTL):
        assert idem.purge_expired() == 2
    assert [r.key for r in records(db)] == ["new"]
    with clock_at(T0 + TTL):
        assert idem.purge_expired() == 0


def test_the_prepare_failure_carries_the_errors_detail() -> None:
    from payments.idempotency import service

    error: LephiError = NotFound("no such thing")
    failed = service._PrepareFailed(error)
    assert str(failed) == "no such thing" and failed.error is error
