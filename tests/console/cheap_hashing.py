"""A pytest fixture that makes argon2 cheap for the tests that create and sign in many accounts: on a loaded
two-core machine each default-cost hash takes about a second, and these tests are about pages, not hashing (the
hashing parameters have their own tests)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from argon2 import PasswordHasher

from console.staff import passwords


@pytest.fixture(autouse=True)
def cheap_hashing(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    cheap = PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)
    monkeypatch.setattr(passwords, "_hasher", cheap)
    monkeypatch.setattr(passwords, "_DUMMY_HASH", cheap.hash("not the password of any account"))
    yield
