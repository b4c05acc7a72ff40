"""Demo staff for a first run: one account per role, so that a newcomer can sign in to the console at once.

Development only (``lephi serve`` seeds nothing in production). The passwords are random per data directory and kept
in ``<data_dir>/demo-staff.txt`` (mode 600), like the demo API key: printed at start, never in the database."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from pathlib import Path

from sqlmodel import Session

from console.staff.models import Role
from console.staff.passwords import verify_password
from console.staff.service import create_staff, find_by_email, issue_reset, use_token

DEMO_STAFF = [
    ("tinh@demo.gov.vn", Role.province_admin),
    ("quantri@demo.gov.vn", Role.agency_admin),
    ("ketoan@demo.gov.vn", Role.finance),
    ("pheduyet@demo.gov.vn", Role.approver),
    ("xem@demo.gov.vn", Role.viewer),
]
ACTOR = "demo"


@dataclass(frozen=True)
class DemoUser:
    email: str
    role: Role
    password: str


def _saved(path: Path) -> dict[str, str]:
    if not path.exists():
        return {}
    pairs = (line.split(" ", 1) for line in path.read_text().splitlines() if " " in line)
    return {email: password for email, password in pairs}


def seed_demo_staff(s: Session, agency_code: str, data_dir: Path) -> list[DemoUser]:
    """Idempotent: each demo account exists and signs in with the password in the file (a new one if the database or
    the file was reset since)."""
    path = data_dir / "demo-staff.txt"
    saved = _saved(path)
    users: list[DemoUser] = []
    for email, role in DEMO_STAFF:
        user = find_by_email(s, email)
        password = saved.get(email)
        if user is None:
            user, token = create_staff(
                s, email=email, role=role.value, agency_code=None if role is Role.province_admin else agency_code
            )
        elif password is not None and user.password_hash and verify_password(user.password_hash, password):
            users.append(DemoUser(email, role, password))
            continue
        else:
            _, token = issue_reset(s, email, actor=ACTOR)
        password = secrets.token_urlsafe(12)
        use_token(s, token, password)
        users.append(DemoUser(email, role, password))
    data_dir.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(f"{u.email} {u.password}\n" for u in users))
    path.chmod(0o600)
    return users
