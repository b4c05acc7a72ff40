"""Password rules and hashing (argon2id, argon2-cffi's default parameters)."""

from __future__ import annotations

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

MIN_LENGTH = 12
# Far beyond any passphrase, short enough that hashing it costs nothing extra.
MAX_LENGTH = 256

_hasher = PasswordHasher()
# Verified against when the account does not exist, so that an unknown address costs as long as a wrong password.
_DUMMY_HASH = _hasher.hash("not the password of any account")


def password_problem(password: str, email: str) -> str | None:
    """The message key of the rule ``password`` breaks, or None when it may be used."""
    if len(password) < MIN_LENGTH:
        return "password_too_short"
    if len(password) > MAX_LENGTH:
        return "password_too_long"
    if "\x00" in password:
        return "password_invalid"
    if password.strip().lower() == email.strip().lower():
        return "password_is_email"
    return None


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def verify_password(password_hash: str | None, password: str) -> bool:
    """True when ``password`` matches; a missing hash (no password set yet) still costs one verification."""
    try:
        return _hasher.verify(password_hash or _DUMMY_HASH, password) and password_hash is not None
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


def needs_rehash(password_hash: str) -> bool:
    return _hasher.check_needs_rehash(password_hash)
