"""Each agency signs its documents with its own certificate (its tax code in the subject). Keys are loaded once
per process: loading costs far more than signing. In development and tests an agency without a key gets a
self-signed development certificate on first use; in production a missing key is an error."""

from __future__ import annotations

import threading
from pathlib import Path

from cryptography import x509

from invoices.signing import LocalSigner, Signer, make_dev_certificate
from payments.core.config import Environment, Settings


class MissingSigningKey(RuntimeError):
    """No key is configured for this agency: documents cannot be issued until one is."""


class SignerStore:
    def __init__(self, settings: Settings) -> None:
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


def registered_certificates(settings: Settings) -> list[x509.Certificate]:
    """The agencies' certificates registered with this service: the only ones a document is verified against."""
    directory = settings.signing_dir or settings.data_dir / "certs"
    return [x509.load_pem_x509_certificate(p.read_bytes()) for p in sorted(directory.glob("*.cert.pem"))]


def write_dev_certificate(directory: Path, code: str, tax_code: str, name: str) -> tuple[Path, Path]:
    key_pem, cert_pem = make_dev_certificate(tax_code, name)
    directory.mkdir(parents=True, exist_ok=True)
    key, cert = directory / f"{code}.key.pem", directory / f"{code}.cert.pem"
    key.write_bytes(key_pem)
    key.chmod(0o600)
    cert.write_bytes(cert_pem)
    return key, cert
