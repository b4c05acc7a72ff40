"""Creating, checking and revoking API keys."""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass

from sqlalchemy.dialects import postgresql, sqlite
from sqlmodel import Session, col, select

from payments.agency.models import Agency
from payments.auth.models import ApiKey, ApiKeyVersion, Scope
from payments.core.db import table_of
from payments.core.errors import NotFound, Unauthenticated, ValidationFailed
from payments.core.types import utcnow

KEY_PREFIX = "lephi_"
_VERSIONS = table_of(ApiKeyVersion)
# An upsert, so that a database whose row went missing (emptied tables) still counts changes.
_BUMP = {
    name: insert(_VERSIONS)
    .values(id=1, version=1)
    .on_conflict_do_update(index_elements=[_VERSIONS.c.id], set_={"version": _VERSIONS.c.version + 1})
    for name, insert in (("postgresql", postgresql.insert), ("sqlite", sqlite.insert))
}
_VERSION = select(_VERSIONS.c.version).where(_VERSIONS.c.id == 1)


@dataclass(frozen=True)
class Principal:
    """The authenticated client: which key, which agency, what it may do."""

    key_id: str
    agency_id: str
    scopes: frozenset[str]


def hash_key(raw: str) -> str:
    # The key carries 256 random bits, so a fast hash is enough: there is nothing to brute-force.
    return hashlib.sha256(raw.encode()).hexdigest()


def parse_scopes(raw: list[str]) -> list[str]:
    valid = {s.value for s in Scope}
    unknown = [s for s in raw if s not in valid]
    if unknown or not raw:
        raise ValidationFailed(f"unknown or missing scopes: {unknown}; valid scopes: {sorted(valid)}")
    return sorted(set(raw))


def create_key(session: Session, agency_code: str, name: str, scopes: list[str]) -> tuple[ApiKey, str]:
    agency = session.exec(select(Agency).where(Agency.code == agency_code)).first()
    if agency is None:
        raise NotFound(f"no agency with code {agency_code!r}")
    raw = KEY_PREFIX + secrets.token_urlsafe(32)
    key = ApiKey(agency_id=agency.id, name=name, prefix=raw[:12], key_hash=hash_key(raw), scopes=parse_scopes(scopes))
    session.add(key)
    session.flush()
    bump_version(session)
    return key, raw


def authenticate(session: Session, raw: str) -> Principal:
    key = session.exec(select(ApiKey).where(ApiKey.key_hash == hash_key(raw))).first()
    if key is None or key.revoked_at is not None:
        raise Unauthenticated("the API key is unknown or revoked")
    return Principal(key_id=key.id, agency_id=key.agency_id, scopes=frozenset(key.scopes))


def revoke_key(session: Session, key_id: str) -> ApiKey:
    key = session.get(ApiKey, key_id)
    if key is None:
        raise NotFound(f"no API key {key_id!r}")
    if key.revoked_at is None:
        key.revoked_at = utcnow()
        session.add(key)
        bump_version(session)
    return key


def bump_version(session: Session) -> None:
    """Tell every process that keeps keys in memory that they changed; committed with the change itself."""
    session.execute(_BUMP[session.get_bind().dialect.name])


def key_version(session: Session) -> int:
    return session.execute(_VERSION).scalar_one_or_none() or 0


def list_keys(session: Session, agency_code: str | None = None) -> list[tuple[ApiKey, str]]:
    query = select(ApiKey, Agency.code).join(Agency)
    if agency_code:
        query = query.where(Agency.code == agency_code)
    return [(k, c) for k, c in session.exec(query.order_by(col(ApiKey.created_at))).all()]
