"""What administrators do to staff accounts from the console: create, change a role, deactivate and reactivate,
send a set-password or reset link, reset the second factor, and make the second factor mandatory.

Who may touch whom: a province admin any account, an agency admin the accounts of their own agency. The roles an
agency account can be given are the agency roles (agency_admin at most); province_admin is only ever the role of a
province-level account, so nobody is raised above agency_admin through an agency. An administrator cannot
deactivate or demote themselves, so that the last one cannot lock everybody out by mistake. Each change writes its
audit row, with the state before and after, in the caller's transaction."""

from __future__ import annotations

from typing import Any

from sqlalchemy import delete, update
from sqlmodel import Session, col

from console.audit.service import record
from console.staff.models import Role, StaffPolicy, StaffSession, StaffToken, StaffUser
from console.staff.service import StaffError, create_staff, issue_reset, policy_scope
from payments.agency.models import Agency
from payments.core.types import utcnow

# Least power first: the form's default choice is the smallest role.
AGENCY_ROLES = [Role.viewer, Role.approver, Role.finance, Role.agency_admin]


class NotYours(Exception):
    """An account the administrator may not manage, or none: both answer 404."""


def state(user: StaffUser) -> dict[str, Any]:
    # What an audit row keeps of an account: never its password hash or second-factor secret.
    return {
        "email": user.email,
        "role": user.role.value,
        "agency_id": user.agency_id,
        "active": user.active,
        "totp": user.totp_enabled_at is not None,
    }


def may_manage(admin: StaffUser, target: StaffUser) -> bool:
    if admin.role is Role.province_admin:
        return True
    return admin.role is Role.agency_admin and target.agency_id is not None and target.agency_id == admin.agency_id


def target_of(s: Session, admin: StaffUser, user_id: str) -> StaffUser:
    if not user_id or len(user_id) > 40:
        raise NotYours
    user = s.get(StaffUser, user_id)
    if user is None or not may_manage(admin, user):
        raise NotYours
    return user


def roles_for(agency: Agency | None) -> list[Role]:
    """The roles an account of ``agency`` (None: the province) can have."""
    return AGENCY_ROLES if agency is not None else [Role.province_admin]


def create(
    s: Session, admin: StaffUser, agency: Agency | None, email: str, role: str, ip: str
) -> tuple[StaffUser, str]:
    if role not in {r.value for r in roles_for(agency)}:
        raise StaffError("staff_role_invalid")
    if agency is None and admin.role is not Role.province_admin:
        raise NotYours
    return create_staff(s, email=email, role=role, agency_code=agency.code if agency else None, actor=admin.id, ip=ip)


def change_role(s: Session, admin: StaffUser, target: StaffUser, role: str, ip: str) -> bool:
    """False when the role is already the account's (nothing is recorded)."""
    agency = s.get(Agency, target.agency_id) if target.agency_id else None
    if role not in {r.value for r in roles_for(agency)}:
        raise StaffError("staff_role_invalid")
    if target.id == admin.id:
        raise StaffError("staff_not_yourself")
    if target.role.value == role:
        return False
    before = state(target)
    target.role = Role(role)
    target.updated_at = utcnow()
    s.add(target)
    s.flush()
    record(
        s,
        agency_id=target.agency_id,
        actor=admin.id,
        ip=ip,
        action="staff.role_changed",
        target=target.id,
        before=before,
        after=state(target),
    )
    return True


def set_active(s: Session, admin: StaffUser, target: StaffUser, active: bool, ip: str) -> bool:
    """Deactivate (every session of the account ends at once, its open links stop working) or reactivate."""
    if target.id == admin.id:
        raise StaffError("staff_not_yourself")
    if target.active == active:
        return False
    before = state(target)
    now = utcnow()
    target.active = active
    target.deactivated_at = None if active else now
    target.updated_at = now
    s.add(target)
    if not active:
        s.execute(delete(StaffSession).where(col(StaffSession.user_id) == target.id))
        s.execute(
            update(StaffToken)
            .where(col(StaffToken.user_id) == target.id, col(StaffToken.used_at).is_(None))
            .values(used_at=now)
        )
    s.flush()
    action = "staff.reactivated" if active else "staff.deactivated"
    record(
        s,
        agency_id=target.agency_id,
        actor=admin.id,
        ip=ip,
        action=action,
        target=target.id,
        before=before,
        after=state(target),
    )
    return True


def send_link(s: Session, admin: StaffUser, target: StaffUser, ip: str) -> str:
    """The secret of a new set-password (no password yet) or reset link; earlier open links stop working."""
    if not target.active:
        raise StaffError("staff_inactive")
    _, raw = issue_reset(s, target.email, actor=admin.id, ip=ip, action="staff.reset_sent")
    return raw


def reset_totp(s: Session, admin: StaffUser, target: StaffUser, ip: str) -> bool:
    """Turn the account's second factor off: its owner enrols again (at once, if their agency requires one)."""
    if target.totp_secret is None and target.totp_enabled_at is None:
        return False
    before = state(target)
    target.totp_secret = None
    target.totp_enabled_at = None
    target.totp_last_step = None
    target.updated_at = utcnow()
    s.add(target)
    s.flush()
    record(
        s,
        agency_id=target.agency_id,
        actor=admin.id,
        ip=ip,
        action="staff.totp_reset",
        target=target.id,
        before=before,
        after=state(target),
    )
    return True


def policy(s: Session, agency: Agency | None) -> StaffPolicy:
    found = s.get(StaffPolicy, policy_scope(agency.id if agency else None))
    return found or StaffPolicy(scope=policy_scope(agency.id if agency else None))


def set_totp_required(s: Session, admin: StaffUser, agency: Agency | None, required: bool, ip: str) -> bool:
    if agency is None and admin.role is not Role.province_admin:
        raise NotYours
    current = policy(s, agency)
    if current.totp_required == required:
        return False
    before = {"totp_required": current.totp_required}
    current.totp_required = required
    current.updated_at = utcnow()
    s.add(current)
    s.flush()
    record(
        s,
        agency_id=agency.id if agency else None,
        actor=admin.id,
        ip=ip,
        action="staff.policy_changed",
        target=current.scope,
        before=before,
        after={"totp_required": required},
    )
    return True
