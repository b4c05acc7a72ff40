"""Idempotency-Key handling with Stripe's semantics (see docs/api.md).

A key is claimed in its own committed transaction before any work, so a concurrent request with the same key sees
it and gets 409. The operation may attach the resource it created (a recovery point) in its own transaction: if the
process dies mid-way, a retry after the lease resumes with that resource instead of creating a second one.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from sqlalchemy import bindparam, delete, update
from sqlalchemy import select as core_select
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col

from payments.core.config import PaymentSettings
from payments.core.db import Database, affected, table_of
from payments.core.errors import (
    IdempotencyKeyInProgress,
    IdempotencyKeyInvalid,
    IdempotencyKeyMissing,
    IdempotencyKeyReused,
    LephiError,
)
from payments.core.sql import Prepared, connection, insert_or_nothing
from payments.core.types import utcnow
from payments.idempotency.models import IdempotencyRecord, IdempotencyState

# Core statements on the table: the claim and its answer are on every write request's path.
_RECORD = table_of(IdempotencyRecord)
_ATTACH = Prepared(
    update(_RECORD).where(_RECORD.c.id == bindparam("record_id")).values(resource_id=bindparam("resource"))
)
_FINISH = Prepared(
    update(_RECORD)
    .where(_RECORD.c.id == bindparam("record_id"))
    .values(state=bindparam("new_state"), response_status=bindparam("status"), response_body=bindparam("body"))
)
_KEY_RE = re.compile(r"[\x21-\x7e]{1,255}")


@dataclass
class Outcome:
    status: int
    body: dict[str, Any]
    replayed: bool = False
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class Claim:
    record_id: int
    resource_id: str | None
    finished: bool = False

    def attach(self, session: Session, resource_id: str) -> None:
        """Record the resource created so far, in the caller's transaction."""
        _ATTACH(session, {"record_id": self.record_id, "resource": resource_id})
        self.resource_id = resource_id

    def finish(self, session: Session, status: int, body: dict[str, Any]) -> None:
        """Store the response in the caller's transaction, so the result and its record commit together."""
        _FINISH(
            session,
            {
                "record_id": self.record_id,
                "new_state": IdempotencyState.completed,
                "status": status,
                "body": json.dumps(body),
            },
        )
        self.finished = True


def route_fingerprint(method: str, route: str, path_params: dict[str, Any], payload: Any) -> str:
    """What makes two requests the same request: the route (its path template, so that a request differs from
    another route's by more than its parameters), the values of its path parameters, and the body."""
    canonical = json.dumps([method, route, path_params, payload], sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()


def check_key(key: str | None) -> str:
    if key is None:
        raise IdempotencyKeyMissing("send an Idempotency-Key header (a unique string such as a UUID) with this request")
    if not _KEY_RE.fullmatch(key):
        raise IdempotencyKeyInvalid("the Idempotency-Key must be 1 to 255 printable ASCII characters")
    return key


Prepare = Callable[[Session, "Claim"], None]


class _KeyTaken(Exception):
    """A concurrent request inserted the same key first."""


class _PrepareFailed(Exception):
    def __init__(self, error: LephiError) -> None:
        super().__init__(error.detail)
        self.error = error


class Idempotency:
    def __init__(self, db: Database, settings: PaymentSettings) -> None:
        self._db = db
        self._settings = settings

    def run(
        self,
        client_id: str,
        key: str | None,
        fp: str,
        operation: Callable[[Claim], tuple[int, dict[str, Any]]],
        prepare: Prepare | None = None,
    ) -> Outcome:
        """Run ``operation`` once per key. ``prepare`` runs inside the transaction that claims the key, so the first
        write of the operation (e.g. the payment row and its recovery point) commits together with the claim."""
        key = check_key(key)
        try:
            claim_or_replay = self._claim(client_id, key, fp, prepare)
        except _PrepareFailed as failed:
            # Everything prepare wrote, the claim included, was rolled back; a final answer is still kept for replay.
            if not failed.error.transient:
                self._store_new(client_id, key, fp, failed.error.status, failed.error.problem())
            raise failed.error from None
        if isinstance(claim_or_replay, Outcome):
            return claim_or_replay
        claim = claim_or_replay
        try:
            status, body = operation(claim)
        except LephiError as exc:
            if exc.transient and claim.resource_id is None:
                self._release(claim)
            elif exc.transient:
                self._expire_lease(claim)  # the retry resumes with the resource already created
            else:
                self._store(claim, exc.status, exc.problem())
            raise
        except BaseException:
            # Unknown outcome: let a retry take over at once, from the recovery point if one was attached.
            self._expire_lease(claim)
            raise
        if not claim.finished:
            self._store(claim, status, body)
        return Outcome(status, body)

    def run_in_transaction(
        self, client_id: str, key: str | None, fp: str, change: Callable[[Session], tuple[int, dict[str, Any]]]
    ) -> Outcome:
        """Run ``change`` once per key, for an operation that is one database transaction: the change, the key's
        claim and the stored answer commit together, so there is never a half-done request to resume."""
        answer: list[tuple[int, dict[str, Any]]] = []

        def prepare(s: Session, claim: Claim) -> None:
            answer.append(change(s))
            claim.finish(s, *answer[0])

        return self.run(client_id, key, fp, lambda _claim: answer[0], prepare)

    def _claim(self, client_id: str, key: str, fp: str, prepare: Prepare | None) -> Claim | Outcome:
        for _ in range(3):
            try:
                return self._try_claim(client_id, key, fp, prepare)
            except _KeyTaken:
                continue  # read what the concurrent request stored
        err = IdempotencyKeyInProgress("a request with this Idempotency-Key is still running; retry shortly")
        err.headers["Retry-After"] = "1"
        raise err

    def _try_claim(self, client_id: str, key: str, fp: str, prepare: Prepare | None) -> Claim | Outcome:
        with self._db.write() as s:
            found = self._claim_in(s, client_id, key, fp)
            if isinstance(found, Claim) and prepare is not None and found.resource_id is None:
                try:
                    prepare(s, found)
                except LephiError as exc:
                    raise _PrepareFailed(exc) from exc
            return found

    def _claim_in(self, s: Session, client_id: str, key: str, fp: str) -> Claim | Outcome:
        now = utcnow()
        lease = now + timedelta(seconds=self._settings.idempotency_lease_seconds)
        new = {
            "client_id": client_id,
            "key": key,
            "fingerprint": fp,
            "state": IdempotencyState.in_progress,
            "locked_until": lease,
            "created_at": now,
            "expires_at": now + timedelta(hours=self._settings.idempotency_ttl_hours),
        }
        # The first request with a key inserts it; on PostgreSQL a concurrent one waits here for the first to finish,
        # then finds its row below.
        conn = connection(s)
        claim = insert_or_nothing(s, _RECORD, ["client_id", "key"], ["id"])
        record_id = claim(conn, new).scalar()
        if record_id is not None:
            return Claim(record_id, None)
        rec = conn.execute(
            core_select(
                _RECORD.c.id,
                _RECORD.c.fingerprint,
                _RECORD.c.state,
                _RECORD.c.resource_id,
                _RECORD.c.response_status,
                _RECORD.c.response_body,
                _RECORD.c.locked_until,
                _RECORD.c.expires_at,
            ).where(_RECORD.c.client_id == bindparam("client_id"), _RECORD.c.key == bindparam("key")),
            {"client_id": client_id, "key": key},
        ).first()
        if rec is None:
            raise _KeyTaken  # removed between the two statements; claim again
        if rec.expires_at <= now:
            conn.execute(delete(_RECORD).where(_RECORD.c.id == rec.id))
            record_id = claim(conn, new).scalar()
            if record_id is None:
                raise _KeyTaken
            return Claim(record_id, None)
        if rec.fingerprint != fp:
            raise IdempotencyKeyReused(
                "this Idempotency-Key was first used with a different request; use a new key for a new request"
            )
        if rec.state is IdempotencyState.completed:
            assert rec.response_status is not None and rec.response_body is not None
            return Outcome(rec.response_status, json.loads(rec.response_body), replayed=True)
        if rec.locked_until > now:
            err = IdempotencyKeyInProgress("a request with this Idempotency-Key is still running; retry shortly")
            err.headers["Retry-After"] = "1"
            raise err
        conn.execute(update(_RECORD).where(_RECORD.c.id == rec.id).values(locked_until=lease))
        return Claim(rec.id, rec.resource_id)

    def _store_new(self, client_id: str, key: str, fp: str, status: int, body: dict[str, Any]) -> None:
        now = utcnow()
        try:
            with self._db.write() as s:
                s.add(
                    IdempotencyRecord(
                        client_id=client_id,
                        key=key,
                        fingerprint=fp,
                        state=IdempotencyState.completed,
                        response_status=status,
                        response_body=json.dumps(body),
                        locked_until=now,
                        expires_at=now + timedelta(hours=self._settings.idempotency_ttl_hours),
                    )
                )
        except IntegrityError:
            pass  # a concurrent request with the same key got there first; its answer stands

    def _store(self, claim: Claim, status: int, body: dict[str, Any]) -> None:
        with self._db.write() as s:
            claim.finish(s, status, body)

    def _release(self, claim: Claim) -> None:
        with self._db.write() as s:
            s.execute(delete(IdempotencyRecord).where(col(IdempotencyRecord.id) == claim.record_id))

    def _expire_lease(self, claim: Claim) -> None:
        try:
            with self._db.write() as s:
                s.execute(
                    update(IdempotencyRecord)
                    .where(col(IdempotencyRecord.id) == claim.record_id)
                    .values(locked_until=utcnow())
                )
        except Exception:  # noqa: S110 - the lease then simply runs out on its own
            pass

    def purge_expired(self) -> int:
        with self._db.write() as s:
            result = s.execute(delete(IdempotencyRecord).where(col(IdempotencyRecord.expires_at) <= utcnow()))
            return affected(result)
