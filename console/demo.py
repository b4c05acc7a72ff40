"""Demo staff for a first run: one account per role, so that a newcomer can sign in to the console at once.

Development only (``lephi serve`` seeds nothing in production). The passwords are random per data directory and kept
in ``<data_dir>/demo-staff.txt`` (mode 600), like the demo API key: printed at start, never in the database."""

from __future__ import annotations

import secrets
from contextlib import nullcontext
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from sqlmodel import Session

from console.staff.models import Role
from console.staff.passwords import verify_password
from console.staff.service import create_staff, find_by_email, issue_reset, use_token
from payments.core.types import clock_at

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


def seed_demo_staff(s: Session, agency_code: str, data_dir: Path, since: datetime | None = None) -> list[DemoUser]:
    """Idempotent: each demo account exists and signs in with the password in the file (a new one if the database or
    the file was reset since). An account made now is made at ``since`` when given: the demo's history, written
    after it, starts later, and the audit log, a chain in the order it is written, then also runs forward in time."""
    path = data_dir / "demo-staff.txt"
    saved = _saved(path)
    users: list[DemoUser] = []
    for email, role in DEMO_STAFF:
        user = find_by_email(s, email)
        saved_password = saved.get(email, "")
        hashed = user.password_hash if user is not None else None
        if hashed and saved_password and verify_password(hashed, saved_password):
            users.append(DemoUser(email, role, saved_password))
            continue
        password = secrets.token_urlsafe(12)
        if user is None:
            with clock_at(since) if since is not None else nullcontext():
                _, token = create_staff(
                    s, email=email, role=role.value, agency_code=None if role is Role.province_admin else agency_code
                )
                use_token(s, token, password)
        else:
            _, token = issue_reset(s, email, actor=ACTOR)
            use_token(s, token, password)
        users.append(DemoUser(email, role, password))
    data_dir.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(f"{u.email} {u.password}\n" for u in users))
    path.chmod(0o600)
    return users
