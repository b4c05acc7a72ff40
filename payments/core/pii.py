"""Personal data sealed at rest: AES-GCM under a keyring of several keys, and a blind index for exact-match search.

A sealed value is text, ``pii1:<key id>:<base64url(nonce | ciphertext | tag)>``, so that rows sealed under an older
key stay readable beside new ones until ``lephi keys rotate-pii`` has re-sealed them. The key id is derived from the
key (the first 8 hex digits of its SHA-256), so no one has to name keys. The column's name is the cipher's
associated data: a value copied from one column to another does not open.

A value without the ``pii1:`` prefix is one written before sealing existed (no e-mail, phone, identity number or
second-factor secret can start with it: none of them may contain a colon); it is read as it is, and the rotation
seals it.

The keyring is process-wide, installed by the service when it builds its container (``install``), because columns
are sealed and opened inside SQLAlchemy's type processing, below any request context. Nothing is ever sealed or
opened without one: ``keyring()`` raises until it is installed."""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from sqlalchemy import String
from sqlalchemy.types import TypeDecorator

from payments.core.config import Environment, PaymentSettings
from payments.core.errors import LephiError
from payments.core.locks import file_lock

PREFIX = "pii1:"
KEY_BYTES = 32
_NONCE = 12
_TAG = 16


class PersonalDataUnreadable(LephiError):
    """A sealed value that no key of the keyring opens: a key missing from the configuration, or damaged data.
    Answered as a problem (never with the value), and transient: the right key configured again makes it readable."""

    status, code = 503, "personal_data_unreadable"
    title = "Stored personal data cannot be read with the keys configured"
    transient = True


class KeyConfigError(ValueError):
    """The configured key is not a base64 AES-256 key."""


def key_id(key: bytes) -> str:
    return hashlib.sha256(key).hexdigest()[:8]


def parse_key(text: str, where: str) -> bytes:
    try:
        key = base64.b64decode(text.strip(), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise KeyConfigError(f"{where}: not base64") from exc
    if len(key) != KEY_BYTES:
        raise KeyConfigError(f"{where}: a key is {KEY_BYTES} bytes (44 base64 characters), not {len(key)}")
    return key


def _index_key(key: bytes) -> bytes:
    # A key of its own for the blind index, so that the index (an HMAC anyone holding it can compute for every
    # 12-digit number) never shares a key with the cipher.
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=b"lephi pii blind index v1").derive(key)


@dataclass(frozen=True)
class Keyring:
    """``current`` seals; every key (current and older ones) opens."""

    current: bytes
    older: tuple[bytes, ...] = ()
    current_id: str = field(default="", init=False, compare=False)
    _ciphers: dict[str, AESGCM] = field(default_factory=dict, init=False, repr=False, compare=False)
    _index: dict[str, bytes] = field(default_factory=dict, init=False, repr=False, compare=False)
    _sealer: AESGCM | None = field(default=None, init=False, repr=False, compare=False)
    _prefix: str = field(default="", init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        for key in (*self.older, self.current):
            self._ciphers[key_id(key)] = AESGCM(key)
            self._index[key_id(key)] = _index_key(key)
        # Computed once: sealing is on the dossier's hot path.
        current = key_id(self.current)
        object.__setattr__(self, "current_id", current)
        object.__setattr__(self, "_sealer", self._ciphers[current])
        object.__setattr__(self, "_prefix", f"{PREFIX}{current}:")

    @property
    def ids(self) -> tuple[str, ...]:
        return tuple(self._ciphers)

    def seal(self, value: str, column: str) -> str:
        nonce = os.urandom(_NONCE)
        assert self._sealer is not None
        sealed = self._sealer.encrypt(nonce, value.encode(), column.encode())
        return self._prefix + base64.urlsafe_b64encode(nonce + sealed).decode()

    def open(self, stored: str, column: str) -> str:
        if not stored.startswith(PREFIX):
            return stored  # written before sealing existed: the rotation seals it
        kid, _, body = stored[len(PREFIX) :].partition(":")
        cipher = self._ciphers.get(kid)
        if cipher is None:
            raise PersonalDataUnreadable(f"personal data in {column} is sealed under key {kid}, not configured")
        try:
            raw = base64.urlsafe_b64decode(body.encode())
            if len(raw) < _NONCE + _TAG:
                raise ValueError("too short")
            return cipher.decrypt(raw[:_NONCE], raw[_NONCE:], column.encode()).decode()
        except (InvalidTag, ValueError, binascii.Error) as exc:
            raise PersonalDataUnreadable(f"personal data in {column} is damaged: its key does not open it") from exc

    def stored_key_id(self, stored: str) -> str | None:
        """The key a stored value is sealed under; None for a value written before sealing."""
        return stored[len(PREFIX) :].partition(":")[0] if stored.startswith(PREFIX) else None

    def blind_index(self, value: str, kid: str | None = None) -> str:
        """The exact-match index of ``value`` under the current key (or ``kid``): its key id and an HMAC-SHA256."""
        kid = kid or self.current_id
        digest = hmac.new(self._index[kid], value.encode(), hashlib.sha256).hexdigest()
        return f"{kid}:{digest}"

    def blind_indexes(self, value: str) -> list[str]:
        """``value``'s index under every key: rows not yet rotated carry an older key's."""
        return [self.blind_index(value, kid) for kid in self.ids]


def load_keyring(key: str | None, key_file: Path | None, older: Sequence[str], dev_file: Path | None) -> Keyring:
    """The keyring from a base64 key, else a key file (first line: the current key; further lines: older keys still
    readable), else (development only: ``dev_file`` given) a key generated once into ``dev_file``."""
    keys: list[bytes] = []
    if key:
        keys.append(parse_key(key, "LEPHI_PII_KEY"))
    elif key_file is not None:
        try:
            lines = [line for line in key_file.read_text().splitlines() if line.strip()]
        except OSError as exc:
            raise KeyConfigError(f"LEPHI_PII_KEY_FILE: cannot read {key_file}: {exc.strerror}") from exc
        if not lines:
            raise KeyConfigError(f"LEPHI_PII_KEY_FILE: {key_file} holds no key")
        keys.extend(parse_key(line, f"LEPHI_PII_KEY_FILE line {n}") for n, line in enumerate(lines, 1))
    elif dev_file is not None:
        keys.append(ensure_dev_key(dev_file))
    else:
        raise KeyConfigError("LEPHI_PII_KEY or LEPHI_PII_KEY_FILE must be set outside development")
    keys.extend(parse_key(text, "LEPHI_PII_OLD_KEYS") for text in older if text.strip())
    current, *rest = keys
    return Keyring(current, tuple(k for k in rest if k != current))


def ensure_dev_key(path: Path) -> bytes:
    """A development key made once: processes started together find it missing, one writes it while the others wait
    on the lock, and every process then reads the one on disk (each writing its own would leave rows that the
    others cannot open). Written whole under another name, then renamed, so it is never read half written."""
    if not path.exists():
        with file_lock(path.with_name(f".{path.name}.lock")):
            if not path.exists():
                path.parent.mkdir(parents=True, exist_ok=True)
                partial = path.with_name(f".{path.name}.{os.getpid()}.tmp")
                fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
                with os.fdopen(fd, "w") as out:
                    out.write(base64.b64encode(os.urandom(KEY_BYTES)).decode() + "\n")
                    out.flush()
                    os.fsync(out.fileno())
                os.replace(partial, path)
    return parse_key(path.read_text().splitlines()[0], str(path))


def keyring_from_settings(settings: PaymentSettings) -> Keyring:
    older = settings.pii_old_keys.get_secret_value().split(",") if settings.pii_old_keys else []
    dev_file = None if settings.env is Environment.production else settings.data_dir / "pii.key"
    key = settings.pii_key.get_secret_value() if settings.pii_key else None
    return load_keyring(key, settings.pii_key_file, older, dev_file)


_current: Keyring | None = None


def install(ring: Keyring) -> None:
    global _current  # noqa: PLW0603 - one keyring per process, set once at start
    _current = ring


def keyring() -> Keyring:
    if _current is None:
        raise PersonalDataUnreadable("no personal-data key is installed in this process")
    return _current


def sealed_length(plain: int) -> int:
    """The column width a sealed value of at most ``plain`` characters (UTF-8, up to 4 bytes each) needs."""
    raw = _NONCE + plain * 4 + _TAG
    return len(PREFIX) + 9 + 4 * ((raw + 2) // 3)


class Sealed(TypeDecorator[str]):
    """A text column stored sealed; read and written in clear by the code. ``column`` names it to the cipher."""

    impl = String
    cache_ok = True

    def __init__(self, column: str, plain_length: int) -> None:
        super().__init__(sealed_length(plain_length))
        self.column = column
        self.plain_length = plain_length

    def process_bind_param(self, value: Any, dialect: Any) -> str | None:
        if value is None:
            return None
        return keyring().seal(str(value), self.column)

    def process_result_value(self, value: Any, dialect: Any) -> str | None:
        if value is None:
            return None
        return keyring().open(str(value), self.column)

    def copy(self, **kw: Any) -> Sealed:
        return Sealed(self.column, self.plain_length)


def mask(value: str | None, keep: int = 3) -> str | None:
    """``value`` with all but its last ``keep`` characters hidden (an e-mail keeps its first letter and domain)."""
    if not value:
        return value
    if "@" in value:
        local, _, domain = value.partition("@")
        return f"{local[:1]}***@{domain}"
    shown = value[-keep:] if len(value) > keep + 2 else ""
    return "*" * (len(value) - len(shown)) + shown
