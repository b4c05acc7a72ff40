"""The demo's staff accounts: one per role, passwords kept in the data directory, stable across restarts."""

from __future__ import annotations

from pathlib import Path

from console.demo import DEMO_STAFF, seed_demo_staff
from console.staff.models import Role
from console.staff.service import sign_in
from lephi.container import Container
from tests.conftest import Api


def test_demo_staff_sign_in_and_keep_their_passwords(api: Api, ctx: Container, tmp_path: Path) -> None:
    with ctx.db.write() as s:
        first = seed_demo_staff(s, "AGC-A", tmp_path)
    assert [(u.email, u.role) for u in first] == DEMO_STAFF
    assert (tmp_path / "demo-staff.txt").stat().st_mode & 0o777 == 0o600
    with ctx.db.write() as s:
        again = seed_demo_staff(s, "AGC-A", tmp_path)
    assert again == first  # a restart prints the same passwords
    # A lost file gives new passwords that work, and the old ones stop working.
    (tmp_path / "demo-staff.txt").unlink()
    with ctx.db.write() as s:
        fresh = seed_demo_staff(s, "AGC-A", tmp_path)
    finance = next(u for u in fresh if u.role is Role.finance)
    old = next(u for u in first if u.role is Role.finance)
    assert finance.password != old.password
    with ctx.db.write() as s:
        assert type(sign_in(s, finance.email, finance.password, "127.0.0.1", "t")).__name__ == "SignedIn"
    with ctx.db.write() as s:
        assert type(sign_in(s, old.email, old.password, "127.0.0.1", "t")).__name__ == "Refused"
