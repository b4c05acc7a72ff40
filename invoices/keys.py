"""Each agency signs its documents with its own certificate (its tax code in the subject). Keys are loaded once
per process: loading costs far more than signing. In development and tests an agency without a key gets a
self-signed development certificate on first use; in production a missing key is an error."""

from __future__ import annotations

import threading
from collections.abc import Iterable
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.serialization import pkcs12

from invoices.config import ReceiptSettings
from invoices.signing import LocalSigner, Signer, make_dev_certificate
from invoices.verify import Pin, subject_tax_code
from payments.core.config import Environment
from payments.core.logging import get_logger

log = get_logger(__name__)
_SHA256 = hashes.SHA256()


class MissingSigningKey(RuntimeError):
    """No key is configured for this agency: documents cannot be issued until one is."""


class SignerStore:
    def __init__(self, settings: ReceiptSettings) -> None:
        self._settings = settings
        self._dir = settings.signing_dir or settings.data_dir / "certs"
        self._signers: dict[str, Signer] = {}
        self._lock = threading.Lock()

    def for_agency(self, code: str, tax_code: str, name: str) -> Signer:
        with self._lock:
            if code not in self._signers:
                self._signers[code] = self._load(code, tax_code, name)
            return self._signers[code]

    def _load(self, code: str, tax_code: str, name: str) -> Signer:
        password = self._settings.signing_password.encode() if self._settings.signing_password else None
        p12 = self._dir / f"{code}.p12"
        if p12.exists():
            return LocalSigner.from_pkcs12(p12.read_bytes(), password)
        key, cert = self._dir / f"{code}.key.pem", self._dir / f"{code}.cert.pem"
        if not key.exists() and self._settings.env is not Environment.production:
            write_dev_certificate(self._dir, code, tax_code, name)
        if not key.exists():
            raise MissingSigningKey(f"no signing key for agency {code} in {self._dir}")
        key_pem = key.read_bytes()
        # Only an encrypted key takes the password (the development key is written unencrypted).
        return LocalSigner.from_pem(key_pem, cert.read_bytes(), password if b"ENCRYPTED" in key_pem else None)


def registered_pins(settings: ReceiptSettings, agencies: Iterable[tuple[str, str]]) -> list[Pin]:
    """Each agency's registered certificates, pinned for that agency's tax code only: the only trust a document
    is verified against. ``agencies`` are (code, tax code) pairs. An agency's certificates are its
    ``<code>.cert.pem`` (several PEM blocks: the current one and earlier ones, so that receipts signed before a
    rotation still verify) and the certificate in its ``<code>.p12``."""
    directory = settings.signing_dir or settings.data_dir / "certs"
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


def write_dev_certificate(directory: Path, code: str, tax_code: str, name: str) -> tuple[Path, Path]:
    key_pem, cert_pem = make_dev_certificate(tax_code, name)
    directory.mkdir(parents=True, exist_ok=True)
    key, cert = directory / f"{code}.key.pem", directory / f"{code}.cert.pem"
    key.write_bytes(key_pem)
    key.chmod(0o600)
    cert.write_bytes(cert_pem)
    return key, cert
