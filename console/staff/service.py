"""Staff accounts: creation, one-time links, sign-in with its throttle, and sessions."""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete, func, select, update
from sqlmodel import Session, col

from console.audit.service import CLI_ACTOR, record
from console.staff.models import (
    LoginFailure,
    ResetRequest,
    Role,
    SessionStage,
    StaffPolicy,
    StaffSession,
    StaffToken,
    StaffUser,
    TokenPurpose,
)
from console.staff.passwords import hash_password, needs_rehash, password_problem, verify_password
from payments.agency.models import Agency
from payments.core.db import affected
from payments.core.types import utcnow

SET_PASSWORD_HOURS = 72
RESET_PASSWORD_HOURS = 24
THROTTLE_WINDOW = timedelta(minutes=15)
MAX_FAILURES_PER_ACCOUNT = 5
MAX_FAILURES_PER_ADDRESS = 20
MAX_EMAIL_LENGTH = 254
USER_AGENT_LENGTH = 200
# How long the second step (the code, or enrolling a second factor) may take after the password was accepted.
PENDING_MINUTES = 10
PROVINCE_SCOPE = "province"
# Forgotten-password requests from the sign-in page: per address typed, and per client address, within the window.
RESET_WINDOW = timedelta(hours=1)
MAX_RESETS_PER_ACCOUNT = 3
MAX_RESETS_PER_ADDRESS = 10


class StaffError(Exception):
    """Refused input to a staff operation; the message says why."""


def digest(raw: str) -> str:
    return hashlib.sha256(raw.encode()).hexdigest()


def normalise_email(email: str) -> str:
    return email.strip().lower()


def valid_email(email: str) -> bool:
    local, at, domain = email.partition("@")
    return (
        bool(at and local and "." in domain)
        and len(email) <= MAX_EMAIL_LENGTH
        and email.isprintable()
        and " " not in email
        and "@" not in domain
    )


def find_by_email(s: Session, email: str) -> StaffUser | None:
    return s.execute(select(StaffUser).where(col(StaffUser.email) == normalise_email(email))).scalars().first()


def set_password_url(public_url: str, token: str) -> str:
    return f"{public_url.rstrip('/')}/console/set-password/{token}"


def _issue_token(s: Session, user: StaffUser, purpose: TokenPurpose, hours: int) -> str:
    raw = secrets.token_urlsafe(32)
    now = utcnow()
    # A new link replaces any earlier one still open.
    s.execute(
        update(StaffToken)
        .where(col(StaffToken.user_id) == user.id, col(StaffToken.used_at).is_(None))
        .values(used_at=now)
    )
    s.add(StaffToken(user_id=user.id, token_hash=digest(raw), purpose=purpose, expires_at=now + timedelta(hours=hours)))
    return raw


def create_staff(
    s: Session, *, email: str, role: str, agency_code: str | None, actor: str = CLI_ACTOR, ip: str = ""
) -> tuple[StaffUser, str]:
    """The new account and the secret of its set-password link (valid 72 hours)."""
    try:
        parsed_role = Role(role)
    except ValueError:
        raise StaffError(f"unknown role {role!r}: one of {', '.join(r.value for r in Role)}") from None
    email = normalise_email(email)
    if not valid_email(email):
        raise StaffError("the email address is not valid")
    agency: Agency | None = None
    if parsed_role is Role.province_admin:
        if agency_code is not None:
            raise StaffError("a province_admin acts for every agency: give no --agency")
    else:
        if agency_code is None:
            raise StaffError(f"a {parsed_role.value} belongs to one agency: give --agency CODE")
        agency = s.execute(select(Agency).where(col(Agency.code) == agency_code)).scalars().first()
        if agency is None:
            raise StaffError(f"no agency with code {agency_code!r}")
    if find_by_email(s, email) is not None:
        raise StaffError(f"a staff account with the email {email} already exists")
    user = StaffUser(email=email, role=parsed_role, agency_id=agency.id if agency else None)
    s.add(user)
    s.flush()
    raw = _issue_token(s, user, TokenPurpose.set_password, SET_PASSWORD_HOURS)
    record(
        s,
        agency_id=user.agency_id,
        actor=actor,
        ip=ip,
        action="staff.created",
        target=user.id,
        after={"email": user.email, "role": user.role.value, "agency_id": user.agency_id, "active": True},
    )
    return user, raw


def issue_reset(
    s: Session, email: str, actor: str = CLI_ACTOR, ip: str = "", action: str = "staff.reset_link_issued"
) -> tuple[StaffUser, str]:
    """The secret of a password-reset link (valid 24 hours) for the account with this email."""
    user = find_by_email(s, email)
    if user is None:
        raise StaffError(f"no staff account with the email {normalise_email(email)}")
    if not user.active:
        raise StaffError("the account is deactivated")
    raw = _issue_token(s, user, TokenPurpose.reset_password, RESET_PASSWORD_HOURS)
    record(s, agency_id=user.agency_id, actor=actor, ip=ip, action=action, target=user.id)
    return user, raw


def open_token(s: Session, raw: str) -> tuple[StaffToken, StaffUser] | None:
    """The link and its account while the link is unused, unexpired and the account active."""
    token = s.execute(select(StaffToken).where(col(StaffToken.token_hash) == digest(raw))).scalars().first()
    if token is None or token.used_at is not None or token.expires_at <= utcnow():
        return None
    user = s.get(StaffUser, token.user_id)
    if user is None or not user.active:
        return None
    return token, user


def use_token(s: Session, raw: str, password: str, ip: str = "") -> StaffUser:
    """Set the password through a one-time link; the link is spent and every open session of the account ends."""
    opened = open_token(s, raw)
    if opened is None:
        raise StaffError("link_invalid")
    token, user = opened
    problem = password_problem(password, user.email)
    if problem is not None:
        raise StaffError(problem)
    now = utcnow()
    # Compare-and-set: of two submissions of one link, one wins.
    spent = s.execute(
        update(StaffToken).where(col(StaffToken.id) == token.id, col(StaffToken.used_at).is_(None)).values(used_at=now)
    )
    if affected(spent) != 1:
        raise StaffError("link_invalid")
    user.password_hash = hash_password(password)
    user.updated_at = now
    s.add(user)
    s.execute(delete(StaffSession).where(col(StaffSession.user_id) == user.id))
    action = "staff.password_set" if token.purpose is TokenPurpose.set_password else "staff.password_reset"
    record(s, agency_id=user.agency_id, actor=user.id, ip=ip, action=action, target=user.id)
    return user


@dataclass(frozen=True)
class SignedIn:
    user: StaffUser
    session_token: str
    # ``full`` opens the console; ``totp`` and ``enrol`` only the second step's page.
    stage: SessionStage = SessionStage.full


@dataclass(frozen=True)
class Throttled:
    until: datetime


@dataclass(frozen=True)
class Refused:
    """Wrong address or wrong password: the same answer for both."""


def _throttled_until(s: Session, email: str, ip: str, now: datetime) -> datetime | None:
    since = now - THROTTLE_WINDOW
    for column, value, limit in (
        (LoginFailure.email, email, MAX_FAILURES_PER_ACCOUNT),
        (LoginFailure.ip, ip, MAX_FAILURES_PER_ADDRESS),
    ):
        count = s.execute(
            select(func.count()).select_from(LoginFailure).where(col(column) == value, col(LoginFailure.at) > since)
        ).scalar_one()
        if count >= limit:
            # The newest ``limit`` failures hold the door shut until the oldest of them leaves the window.
            times = (
                s.execute(
                    select(col(LoginFailure.at))
                    .where(col(column) == value, col(LoginFailure.at) > since)
                    .order_by(col(LoginFailure.at).desc())
                    .limit(limit)
                )
                .scalars()
                .all()
            )
            oldest: datetime = min(times)
            return oldest + THROTTLE_WINDOW
    return None


def sign_in(s: Session, email: str, password: str, ip: str, user_agent: str) -> SignedIn | Throttled | Refused:
    now = utcnow()
    key = normalise_email(email)[:MAX_EMAIL_LENGTH]
    user = find_by_email(s, key) if valid_email(key) else None
    scope = user.agency_id if user else None
    actor = user.id if user else "unknown"
    until = _throttled_until(s, key, ip, now)
    if until is not None:
        record(s, agency_id=scope, actor=actor, ip=ip, action="staff.sign_in_refused", after={"reason": "throttled"})
        return Throttled(until)
    ok = verify_password(user.password_hash if user else None, password)
    if not ok or user is None or not user.active:
        count_failure(s, key, ip)
        record(s, agency_id=scope, actor=actor, ip=ip, action="staff.sign_in_failed", target=user.id if user else None)
        return Refused()
    assert user.password_hash is not None
    if needs_rehash(user.password_hash):
        user.password_hash = hash_password(password)
        user.updated_at = now
        s.add(user)
    if user.totp_enabled_at is not None:
        stage = SessionStage.totp
    elif totp_required(s, user):
        stage = SessionStage.enrol
    else:
        return SignedIn(user, full_sign_in(s, user, ip, user_agent))
    # The account's failures stay counted: the code guessed next is throttled with them.
    raw = _new_session(s, user, ip, user_agent, stage)
    record(s, agency_id=user.agency_id, actor=user.id, ip=ip, action="staff.password_accepted", target=user.id)
    return SignedIn(user, raw, stage)


def _new_session(s: Session, user: StaffUser, ip: str, user_agent: str, stage: SessionStage) -> str:
    raw = secrets.token_urlsafe(32)
    now = utcnow()
    s.add(
        StaffSession(
            id=digest(raw),
            user_id=user.id,
            csrf_token=secrets.token_urlsafe(32),
            created_at=now,
            last_seen_at=now,
            ip=ip[:64],
            user_agent=user_agent[:USER_AGENT_LENGTH],
            stage=stage,
        )
    )
    return raw


def full_sign_in(s: Session, user: StaffUser, ip: str, user_agent: str, after: dict[str, object] | None = None) -> str:
    """A session that opens the console, once every step has passed; the account's failures are forgotten."""
    user.last_sign_in_at = utcnow()
    s.add(user)
    s.execute(delete(LoginFailure).where(col(LoginFailure.email) == user.email))
    raw = _new_session(s, user, ip, user_agent, SessionStage.full)
    record(s, agency_id=user.agency_id, actor=user.id, ip=ip, action="staff.signed_in", target=user.id, after=after)
    return raw


def policy_scope(agency_id: str | None) -> str:
    return agency_id or PROVINCE_SCOPE


def totp_required(s: Session, user: StaffUser) -> bool:
    policy = s.get(StaffPolicy, policy_scope(user.agency_id))
    return policy is not None and policy.totp_required


def count_failure(s: Session, email: str, ip: str) -> None:
    now = utcnow()
    # Failures older than the window count for nothing any more; dropping them here keeps the table small.
    s.execute(delete(LoginFailure).where(col(LoginFailure.at) <= now - THROTTLE_WINDOW))
    s.add(LoginFailure(at=now, email=email, ip=ip))


def throttled_until(s: Session, email: str, ip: str) -> datetime | None:
    return _throttled_until(s, email, ip, utcnow())


def current_session(
    s: Session, raw: str, idle_minutes: int, session_hours: int
) -> tuple[StaffSession, StaffUser] | None:
    """The live session behind a cookie, its last-seen time moved to now; an expired one is deleted."""
    session = s.get(StaffSession, digest(raw))
    if session is None or session.stage is not SessionStage.full:
        # A session still owing its second step opens no page but that step's (``pending_session``).
        return None
    now = utcnow()
    user = s.get(StaffUser, session.user_id)
    expired = (
        now - session.last_seen_at > timedelta(minutes=idle_minutes)
        or now - session.created_at > timedelta(hours=session_hours)
        or user is None
        or not user.active
        # Made mandatory after this session began: the user enrols at their next sign-in.
        or (user.totp_enabled_at is None and totp_required(s, user))
    )
    if expired:
        s.delete(session)
        return None
    assert user is not None
    session.last_seen_at = now
    s.add(session)
    return session, user


def sign_out(s: Session, session: StaffSession, user: StaffUser, ip: str) -> None:
    s.execute(delete(StaffSession).where(col(StaffSession.id) == session.id))
    record(s, agency_id=user.agency_id, actor=user.id, ip=ip, action="staff.signed_out", target=user.id)


def pending_session(s: Session, raw: str, stage: SessionStage) -> tuple[StaffSession, StaffUser] | None:
    """The session behind a cookie while it waits for ``stage`` and is younger than ``PENDING_MINUTES``."""
    session = s.get(StaffSession, digest(raw))
    if session is None or session.stage is not stage:
        return None
    user = s.get(StaffUser, session.user_id)
    if utcnow() - session.created_at > timedelta(minutes=PENDING_MINUTES) or user is None or not user.active:
        s.delete(session)
        return None
    return session, user


def request_reset(s: Session, email: str, ip: str) -> tuple[StaffUser, str] | None:
    """A reset link for the sign-in page's "forgot password" form, or None when the address has no active account or
    the request is over its throttle. The caller answers the same in every case, so the form tells nobody whether an
    address has an account."""
    now = utcnow()
    key = normalise_email(email)[:MAX_EMAIL_LENGTH]
    since = now - RESET_WINDOW
    s.execute(delete(ResetRequest).where(col(ResetRequest.at) <= since))
    over = any(
        s.execute(
            select(func.count()).select_from(ResetRequest).where(col(column) == value, col(ResetRequest.at) > since)
        ).scalar_one()
        >= limit
        for column, value, limit in (
            (ResetRequest.email, key, MAX_RESETS_PER_ACCOUNT),
            (ResetRequest.ip, ip[:64], MAX_RESETS_PER_ADDRESS),
        )
    )
    user = find_by_email(s, key) if valid_email(key) else None
    scope, actor = (user.agency_id, user.id) if user else (None, "unknown")
    if over:
        record(s, agency_id=scope, actor=actor, ip=ip, action="staff.reset_refused", after={"reason": "throttled"})
        return None
    s.add(ResetRequest(at=now, email=key, ip=ip[:64]))
    if user is None or not user.active:
        record(s, agency_id=scope, actor=actor, ip=ip, action="staff.reset_requested", after={"sent": False})
        return None
    user, raw = issue_reset(s, key, actor=user.id, ip=ip, action="staff.reset_requested")
    return user, raw
