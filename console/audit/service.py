"""Writing and verifying the audit chains.

Each row's hash is the SHA-256 of a canonical JSON of its fields, the previous row's hash of the same scope among
them (64 zeros for the first row). Changing, removing or reordering any row breaks the chain from there on, and
``verify`` names the first row that no longer matches."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import insert, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlmodel import Session, col

from console.audit.models import PROVINCE, AuditHead, AuditLog
from payments.core.db import table_of
from payments.core.types import new_id, utcnow

GENESIS = "0" * 64
CLI_ACTOR = "cli"


def scope_of(agency_id: str | None) -> str:
    return agency_id or PROVINCE


def row_hash(
    *,
    id: str,
    agency_id: str | None,
    seq: int,
    at: datetime,
    actor: str,
    ip: str,
    action: str,
    target: str | None,
    before: dict[str, Any] | None,
    after: dict[str, Any] | None,
    prev_hash: str,
) -> str:
    fields = {
        "id": id,
        "agency_id": agency_id,
        "seq": seq,
        # Microseconds are what both databases keep: the text hashed at writing is the text read back.
        "at": at.isoformat(timespec="microseconds"),
        "actor": actor,
        "ip": ip,
        "action": action,
        "target": target,
        "before": before,
        "after": after,
        "prev_hash": prev_hash,
    }
    canonical = json.dumps(fields, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()


def _claim_seq(s: Session, scope: str) -> int:
    """The next sequence number of ``scope``, holding its head row's lock until the caller's transaction ends."""
    head = table_of(AuditHead)
    dialect = s.get_bind().dialect.name
    maker = pg_insert if dialect == "postgresql" else sqlite_insert
    # A concurrent first writer of the same scope waits on this insert and then inserts nothing.
    s.execute(maker(head).values(scope=scope, seq=0).on_conflict_do_nothing(index_elements=["scope"]))
    s.execute(update(head).where(head.c.scope == scope).values(seq=head.c.seq + 1))
    return int(s.execute(select(head.c.seq).where(head.c.scope == scope)).scalar_one())


def record(
    s: Session,
    *,
    agency_id: str | None,
    actor: str,
    action: str,
    ip: str = "",
    target: str | None = None,
    before: dict[str, Any] | None = None,
    after: dict[str, Any] | None = None,
) -> str:
    """Append a row to the chain of ``agency_id`` (None: the province) in the caller's transaction; its id."""
    scope = scope_of(agency_id)
    seq = _claim_seq(s, scope)
    table = table_of(AuditLog)
    prev_hash = GENESIS
    if seq > 1:
        prev_hash = s.execute(select(table.c.hash).where(table.c.scope == scope, table.c.seq == seq - 1)).scalar_one()
    values: dict[str, Any] = {
        "id": new_id("aud"),
        "agency_id": agency_id,
        "seq": seq,
        "at": utcnow(),
        "actor": actor[:40],
        "ip": ip[:64],
        "action": action,
        "target": target[:254] if target is not None else None,
        "before": before,
        "after": after,
        "prev_hash": prev_hash,
    }
    values["hash"] = row_hash(**values)
    s.execute(insert(table).values(scope=scope, **values))
    return str(values["id"])


@dataclass(frozen=True)
class Broken:
    id: str
    seq: int
    scope: str
    reason: str


@dataclass(frozen=True)
class Verified:
    rows: int
    scopes: int
    broken: Broken | None


def verify(s: Session, agency_id: str | None = None, *, only_scope: bool = False) -> Verified:
    """Recompute every chain (or, with ``only_scope``, the chain of ``agency_id`` alone) and stop at the first row
    that does not match: its hash, its link to the previous row, or a gap in the numbering."""
    query = select(AuditLog).order_by(col(AuditLog.scope), col(AuditLog.seq))
    if only_scope:
        query = query.where(col(AuditLog.scope) == scope_of(agency_id))
    rows = 0
    scopes: set[str] = set()
    prev: dict[str, tuple[int, str]] = {}
    for row in s.execute(query).scalars():
        rows += 1
        scopes.add(row.scope)
        last_seq, last_hash = prev.get(row.scope, (0, GENESIS))
        problem = None
        if row.scope != scope_of(row.agency_id):
            problem = "scope does not match agency"
        elif row.seq != last_seq + 1:
            problem = f"sequence gap: expected {last_seq + 1}"
        elif row.prev_hash != last_hash:
            problem = "prev_hash does not match the previous row"
        elif row.hash != row_hash(
            id=row.id,
            agency_id=row.agency_id,
            seq=row.seq,
            at=row.at,
            actor=row.actor,
            ip=row.ip,
            action=row.action,
            target=row.target,
            before=row.before,
            after=row.after,
            prev_hash=row.prev_hash,
        ):
            problem = "hash does not match the row's content"
        if problem is not None:
            return Verified(rows, len(scopes), Broken(row.id, row.seq, row.scope, problem))
        prev[row.scope] = (row.seq, row.hash)
    # Rows cut from the end of a chain leave no gap: the head row still counts them.
    heads = select(AuditHead)
    if only_scope:
        heads = heads.where(col(AuditHead.scope) == scope_of(agency_id))
    for head in s.execute(heads).scalars():
        last_seq, _ = prev.get(head.scope, (0, GENESIS))
        if head.seq != last_seq:
            missing = Broken("", last_seq + 1, head.scope, f"rows {last_seq + 1}..{head.seq} are missing")
            return Verified(rows, len(scopes), missing)
    return Verified(rows, len(scopes), None)
