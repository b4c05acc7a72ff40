"""Each agency signs its documents with its own certificate (its tax code in the subject). Keys are loaded once
per process: loading costs far more than signing. In development and tests an agency without a key gets a
self-signed development certificate on first use; in production a missing key is an error."""

from __future__ import annotations

import os
import shutil
import threading
import time
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.serialization import BestAvailableEncryption, Encoding, NoEncryption, pkcs12

from invoices.config import ReceiptSettings
from invoices.errors import MissingSigningKey
from invoices.signing import LocalSigner, Signer, make_dev_certificate
from invoices.verify import Pin, subject_tax_code
from payments.core.config import Environment
from payments.core.locks import file_lock
from payments.core.logging import get_logger

log = get_logger(__name__)
_SHA256 = hashes.SHA256()


CHECK_SECONDS = 1.0


Stamp = tuple[tuple[int, int, int] | None, ...]


class SignerStore:
    """Each agency's signer, loaded once and reloaded when its files change. The files are looked at (three
    ``stat`` calls, no read) at most once per ``CHECK_SECONDS`` per agency, so that a certificate replaced by
    another process is used within a second without re-reading anything per document."""

    def __init__(self, settings: ReceiptSettings, clock: Callable[[], float] = time.monotonic) -> None:
        self._settings = settings
        self._dir = signing_dir(settings)
        self._signers: dict[str, Signer] = {}
        self._seen: dict[str, tuple[Stamp, float]] = {}  # the files' stamp when loaded, and when last looked at
        self._lock = threading.Lock()
        self._clock = clock

    def for_agency(self, code: str, tax_code: str, name: str) -> Signer:
        now = self._clock()
        with self._lock:
            signer = self._signers.get(code)
            seen = self._seen.get(code)
            if signer is not None and seen is not None:
                stamp, checked = seen
                if now - checked < CHECK_SECONDS:
                    return signer
                if self._stamp(code) == stamp:
                    self._seen[code] = (stamp, now)
                    return signer
            try:
                loaded = self._load(code, tax_code, name)
            except (OSError, ValueError, TypeError) as exc:
                if signer is None or seen is None:
                    raise
                # A file being replaced by hand, say: keep signing with the key that worked and look again later.
                log.error("certs.reload_failed", agency=code, error_type=type(exc).__name__)
                self._seen[code] = (seen[0], now)
                return signer
            # The stamp after loading: a development certificate written by the load is part of what was loaded.
            self._signers[code] = loaded
            self._seen[code] = (self._stamp(code), now)
            if signer is not None:
                log.info("certs.reloaded", agency=code)
            return loaded

    def forget(self, code: str) -> None:
        """Reload the agency's signer on its next use (the process that replaced the files calls it)."""
        with self._lock:
            self._signers.pop(code, None)
            self._seen.pop(code, None)

    def _stamp(self, code: str) -> Stamp:
        return tuple(_file_stamp(path) for path in _paths(self._dir, code))

    def _load(self, code: str, tax_code: str, name: str) -> Signer:
        password = self._settings.signing_password.encode() if self._settings.signing_password else None
        p12 = self._dir / f"{code}.p12"
        if p12.exists():
            return LocalSigner.from_pkcs12(p12.read_bytes(), password)
        key, cert = self._dir / f"{code}.key.pem", self._dir / f"{code}.cert.pem"
        if not key.exists() and self._settings.env is not Environment.production:
            ensure_dev_certificate(self._dir, code, tax_code, name)
        if not key.exists():
            raise MissingSigningKey(f"no signing key for agency {code} in {self._dir}")
        key_pem = key.read_bytes()
        # Only an encrypted key takes the password (the development key is written unencrypted).
        return LocalSigner.from_pem(key_pem, cert.read_bytes(), password if b"ENCRYPTED" in key_pem else None)


def signing_dir(settings: ReceiptSettings) -> Path:
    return settings.signing_dir or settings.data_dir / "certs"


def _paths(directory: Path, code: str) -> tuple[Path, Path, Path]:
    return directory / f"{code}.p12", directory / f"{code}.key.pem", directory / f"{code}.cert.pem"


def _file_stamp(path: Path) -> tuple[int, int, int] | None:
    try:
        st = path.stat()
    except FileNotFoundError:
        return None
    # os.replace gives the new file a new inode, so a replacement within the clock's resolution is still noticed.
    return st.st_ino, st.st_mtime_ns, st.st_size


def registered_pins(settings: ReceiptSettings, agencies: Iterable[tuple[str, str]]) -> list[Pin]:
    """Each agency's registered certificates, pinned for that agency's tax code only: the only trust a document
    is verified against. ``agencies`` are (code, tax code) pairs. An agency's certificates are its
    ``<code>.cert.pem`` (several PEM blocks: the current one and earlier ones, so that receipts signed before a
    rotation still verify) and the certificate in its ``<code>.p12``."""
    directory = signing_dir(settings)
    password = settings.signing_password.encode() if settings.signing_password else None
    pins: list[Pin] = []
    for code, tax_code in agencies:
        for certificate in _certificates(directory, code, password):
            if subject_tax_code(certificate) != tax_code:
                # A certificate in another taxpayer's name is never trusted for this agency, whatever the file says.
                log.warning("certs.registration_refused", agency=code, reason="the subject's UID=MST differs")
                continue
            pins.append(Pin(certificate, tax_code, code))
    return pins


def _certificates(directory: Path, code: str, password: bytes | None) -> list[x509.Certificate]:
    found: dict[bytes, x509.Certificate] = {}
    pem, p12 = directory / f"{code}.cert.pem", directory / f"{code}.p12"
    try:
        if pem.is_file():
            found.update((c.fingerprint(_SHA256), c) for c in x509.load_pem_x509_certificates(pem.read_bytes()))
        if p12.is_file():
            _key, certificate, _chain = pkcs12.load_key_and_certificates(p12.read_bytes(), password)
            if certificate is not None:
                found[certificate.fingerprint(_SHA256)] = certificate
    except (OSError, ValueError) as exc:
        # One agency's unreadable file must not stop the others' documents from verifying.
        log.error("certs.unreadable", agency=code, error_type=type(exc).__name__)
    return list(found.values())


def write_dev_certificate(
    directory: Path, code: str, tax_code: str, name: str, *, not_before: datetime | None = None
) -> tuple[Path, Path]:
    """A new development key and certificate for the agency, in place of any it had."""
    with file_lock(_creation_lock(directory, code)):
        return _write_dev_certificate(directory, code, tax_code, name, not_before=not_before)


def ensure_dev_certificate(directory: Path, code: str, tax_code: str, name: str) -> None:
    """A development key and certificate for an agency that has none. Processes started together all find the key
    missing: one makes it while the others wait, and then every process loads the one on disk. Without the lock each
    wrote its own, and the receipts signed by all but the last writer's key failed verification."""
    p12, key, _cert = _paths(directory, code)
    with file_lock(_creation_lock(directory, code)):
        if not key.exists() and not p12.exists():
            _write_dev_certificate(directory, code, tax_code, name)


def _creation_lock(directory: Path, code: str) -> Path:
    return directory / f".{code}.lock"


def _write_dev_certificate(
    directory: Path, code: str, tax_code: str, name: str, *, not_before: datetime | None = None
) -> tuple[Path, Path]:
    key_pem, cert_pem = make_dev_certificate(tax_code, name, not_before=not_before)
    directory.mkdir(parents=True, exist_ok=True)
    key, cert = directory / f"{code}.key.pem", directory / f"{code}.cert.pem"
    # A process that does not take the lock (one already running, reloading) looks for the key first: the
    # certificate is in place before the key appears, and neither is ever seen half written.
    _write_atomic(cert, cert_pem)
    _write_atomic(key, key_pem)
    return key, cert


def current_certificate(settings: ReceiptSettings, code: str) -> x509.Certificate | None:
    """The certificate the agency's documents are signed with now (the one ``SignerStore`` loads), or None when it
    has none yet. Raises ValueError or OSError for an unreadable file."""
    directory = signing_dir(settings)
    p12, key, cert = _paths(directory, code)
    if p12.exists():
        password = settings.signing_password.encode() if settings.signing_password else None
        _key, certificate, _chain = pkcs12.load_key_and_certificates(p12.read_bytes(), password)
        return certificate
    if key.exists() and cert.exists():
        return x509.load_pem_x509_certificate(cert.read_bytes())
    return None


def install_certificate(
    settings: ReceiptSettings, code: str, key: rsa.RSAPrivateKey, certificate: x509.Certificate, now: datetime
) -> list[Path]:
    """Make ``key`` and ``certificate`` the agency's signing key, for every process, and return the backups made.

    The key and certificate go into one ``<code>.p12`` (encrypted with LEPHI_SIGNING_PASSWORD when it is set),
    written to a temporary file and moved into place with ``os.replace``: a process reading it sees the old file or
    the new one, never half of one, and never a new key beside an old certificate. ``<code>.cert.pem`` becomes the
    new certificate followed by every earlier one, so receipts signed before still verify (``registered_pins``).
    Each earlier file is kept as ``<file>.<UTC time>.bak``; a separate ``<code>.key.pem`` is moved there, so no
    stale private key remains beside the active one."""
    directory = signing_dir(settings)
    directory.mkdir(parents=True, exist_ok=True)
    p12, key_pem, cert_pem = _paths(directory, code)
    password = settings.signing_password.encode() if settings.signing_password else None
    history = [certificate, *(c for c in _certificates(directory, code, password) if c != certificate)]
    stamp = now.astimezone(UTC).strftime("%Y%m%dT%H%M%S%fZ")
    backups: list[Path] = []
    for path in (p12, cert_pem):
        if path.exists():
            backup = path.with_name(f"{path.name}.{stamp}.bak")
            shutil.copy2(path, backup)
            backup.chmod(0o600)
            backups.append(backup)
    encryption = BestAvailableEncryption(password) if password else NoEncryption()
    # The new certificate is registered before it signs anything: a document it signs verifies at once.
    _write_atomic(cert_pem, b"".join(c.public_bytes(Encoding.PEM) for c in history))
    _write_atomic(p12, pkcs12.serialize_key_and_certificates(code.encode(), key, certificate, None, encryption))
    if key_pem.exists():
        backup = key_pem.with_name(f"{key_pem.name}.{stamp}.bak")
        os.replace(key_pem, backup)
        backups.append(backup)
    return backups


def _write_atomic(path: Path, data: bytes) -> None:
    temporary = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    try:
        descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)
    # The rename itself survives a crash only once the directory is synced.
    directory = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)
