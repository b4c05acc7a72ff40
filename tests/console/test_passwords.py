"""Password rules (12 characters at least, not the email) and argon2id hashes that are upgraded on sign-in when the
hashing parameters change."""

from __future__ import annotations

import pytest
from argon2 import PasswordHasher

from console.staff.passwords import hash_password, needs_rehash, password_problem, verify_password
from console.staff.service import sign_in
from lephi.container import Container
from tests.console.conftest import MakeStaff, user_row

pytestmark = pytest.mark.real_argon2


def test_rules() -> None:
    assert password_problem("short", "a@b.vn") == "password_too_short"
    assert password_problem("x" * 11, "a@b.vn") == "password_too_short"
    assert password_problem("x" * 12, "a@b.vn") is None
    assert password_problem("x" * 257, "a@b.vn") == "password_too_long"
    assert password_problem("long.enough@agency.gov.vn", "Long.Enough@Agency.gov.vn") == "password_is_email"
    assert password_problem("twelve chars\x00", "a@b.vn") == "password_invalid"


def test_hash_is_argon2id_and_verifies() -> None:
    hashed = hash_password("correct horse battery")
    assert hashed.startswith("$argon2id$")
    assert verify_password(hashed, "correct horse battery")
    assert not verify_password(hashed, "wrong horse battery")
    assert not verify_password(None, "correct horse battery")
    assert not verify_password("not a hash", "correct horse battery")


def test_old_parameters_are_rehashed_on_sign_in(
    ctx: Container, make_staff: MakeStaff, agencies: dict[str, str]
) -> None:
    staff = make_staff("rehash@agc-a.gov.vn")
    weak = PasswordHasher(time_cost=1, memory_cost=8 * 1024, parallelism=1).hash(staff.password)
    assert needs_rehash(weak)
    with ctx.db.write() as s:
        user = user_row(ctx, staff.id)
        user.password_hash = weak
        s.add(user)
    with ctx.db.write() as s:
        sign_in(s, staff.email, staff.password, "10.0.0.1", "pytest")
    stored = user_row(ctx, staff.id).password_hash
    assert stored is not None and stored != weak and not needs_rehash(stored)
