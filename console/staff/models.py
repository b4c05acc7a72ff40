"""Staff accounts, their one-time links, their sessions and failed sign-ins."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from sqlalchemy import CheckConstraint
from sqlmodel import Field, SQLModel

from payments.core.pii import Sealed
from payments.core.types import UTCDateTime, new_id, str_enum, utcnow


class Role(StrEnum):
    province_admin = "province_admin"
    agency_admin = "agency_admin"
    finance = "finance"
    approver = "approver"
    viewer = "viewer"


class TokenPurpose(StrEnum):
    # What a link is for, not a secret.
    set_password = "set_password"  # noqa: S105
    reset_password = "reset_password"  # noqa: S105


class SessionStage(StrEnum):
    full = "full"
    totp = "totp"
    enrol = "enrol"


class StaffUser(SQLModel, table=True):
    __tablename__ = "staff_user"
    # The service refuses the other combinations; the database holds the rule for any other writer too.
    __table_args__ = (
        CheckConstraint("(role = 'province_admin') = (agency_id IS NULL)", name="ck_staff_user_agency_by_role"),
    )
    id: str = Field(default_factory=lambda: new_id("stf"), primary_key=True, max_length=40)
    # Stored lower-cased, so that the unique index makes addresses unique whatever their case.
    email: str = Field(unique=True, max_length=254)
    # NULL only for a province admin, who acts for every agency.
    agency_id: str | None = Field(default=None, foreign_key="agency.id", index=True, max_length=40)
    role: Role = Field(sa_type=str_enum(Role))
    # NULL until the person sets one through the link printed at creation.
    password_hash: str | None = Field(default=None, max_length=200)
    active: bool = True
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    updated_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    deactivated_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    last_sign_in_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    # The base32 TOTP secret; kept while enrolment waits for its first code, in use once totp_enabled_at is set.
    # Sealed at rest under the personal-data keyring (payments.core.pii): a copy of the database alone does not let
    # anyone compute the codes.
    totp_secret: str | None = Field(default=None, sa_type=Sealed("staff_user.totp_secret", 64))
    totp_enabled_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    # The time step of the last code accepted: a code of that step or an earlier one is never accepted again.
    totp_last_step: int | None = None


class StaffToken(SQLModel, table=True):
    """A one-time link: only the SHA-256 of its secret is kept, so a copy of the database opens no account."""

    __tablename__ = "staff_token"
    id: str = Field(default_factory=lambda: new_id("stt"), primary_key=True, max_length=40)
    user_id: str = Field(foreign_key="staff_user.id", index=True, max_length=40)
    token_hash: str = Field(unique=True, max_length=64)
    purpose: TokenPurpose = Field(sa_type=str_enum(TokenPurpose))
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    expires_at: datetime = Field(sa_type=UTCDateTime)
    used_at: datetime | None = Field(default=None, sa_type=UTCDateTime)


class StaffSession(SQLModel, table=True):
    __tablename__ = "staff_session"
    # The SHA-256 of the cookie's value: a copy of the database signs nobody in.
    id: str = Field(primary_key=True, max_length=64)
    user_id: str = Field(foreign_key="staff_user.id", index=True, max_length=40)
    csrf_token: str = Field(max_length=64)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    last_seen_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    ip: str = Field(default="", max_length=64)
    user_agent: str = Field(default="", max_length=200)
    # ``full`` opens the console; ``totp`` (the password was right, the code is still owed) and ``enrol`` (the
    # agency requires a second factor the user has not set up) open only their own step's page.
    stage: SessionStage = Field(
        default=SessionStage.full, sa_type=str_enum(SessionStage), sa_column_kwargs={"server_default": "full"}
    )


class LoginFailure(SQLModel, table=True):
    """One failed sign-in: counted per account and per client address over a window, in the database so that every
    process of the service sees the same count."""

    __tablename__ = "staff_login_failure"
    id: int | None = Field(default=None, primary_key=True)
    at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime, index=True)
    # The address as typed, lower-cased and cut short: an unknown one is counted like a known one.
    email: str = Field(index=True, max_length=254)
    ip: str = Field(index=True, max_length=64)


class StaffPolicy(SQLModel, table=True):
    """Console rules an administrator sets for the staff of one agency, or (``scope`` = ``province``) for the
    province's own users."""

    __tablename__ = "staff_policy"
    # An agency id, or ``province``: a NULL could not be a primary key.
    scope: str = Field(primary_key=True, max_length=40)
    totp_required: bool = False
    updated_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)


class ResetRequest(SQLModel, table=True):
    """One forgotten-password request from the sign-in page, counted per address typed and per client address so
    that the form cannot be used to flood a mailbox."""

    __tablename__ = "staff_reset_request"
    id: int | None = Field(default=None, primary_key=True)
    at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime, index=True)
    email: str = Field(index=True, max_length=254)
    ip: str = Field(index=True, max_length=64)
