"""What an uploaded replacement must be before it may sign an agency's receipts.

Each refusal is a :class:`Refused` with a reason; the page turns the reason into a sentence. Nothing here touches
the signing directory: the files are installed only after every check has passed."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat, load_pem_private_key, pkcs12

from invoices.verify import subject_tax_code

MAX_FILE = 64 * 1024
MIN_RSA_BITS = 2048
WARN_DAYS = 30


class Refused(Exception):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class Candidate:
    key: rsa.RSAPrivateKey
    certificate: x509.Certificate


@dataclass(frozen=True)
class Facts:
    """What the page shows of a certificate, and what the audit row keeps of it."""

    subject: str
    tax_code: str
    issuer: str
    serial: str
    not_before: datetime
    not_after: datetime
    fingerprint: str

    def days_left(self, now: datetime) -> int:
        return (self.not_after - now).days

    def state(self, now: datetime) -> str:
        if now >= self.not_after:
            return "expired"
        if now < self.not_before:
            return "not_yet_valid"
        return "expiring" if self.days_left(now) < WARN_DAYS else "valid"

    def audit(self) -> dict[str, str]:
        return {
            "fingerprint_sha256": self.fingerprint,
            "subject": self.subject,
            "serial": self.serial,
            "not_before": self.not_before.isoformat(),
            "not_after": self.not_after.isoformat(),
        }


def facts(certificate: x509.Certificate) -> Facts:
    digest = hashlib.sha256(certificate.public_bytes(Encoding.DER)).hexdigest().upper()
    return Facts(
        subject=certificate.subject.rfc4514_string(),
        tax_code=subject_tax_code(certificate) or "",
        issuer=certificate.issuer.rfc4514_string(),
        serial=format(certificate.serial_number, "X"),
        not_before=certificate.not_valid_before_utc,
        not_after=certificate.not_valid_after_utc,
        fingerprint=":".join(digest[i : i + 2] for i in range(0, len(digest), 2)),
    )


def from_pkcs12(data: bytes, password: str) -> Candidate:
    _size(data)
    try:
        key, certificate, _chain = pkcs12.load_key_and_certificates(data, password.encode() or None)
    except (ValueError, TypeError) as exc:
        # cryptography says "invalid password or PKCS12 data" for both; a DER structure is most likely the file
        # staff meant, opened with the wrong password.
        raise Refused("wrong_password" if _looks_like_der(data) else "not_certificate") from exc
    if key is None or certificate is None:
        raise Refused("p12_incomplete")
    return _candidate(key, certificate)


def from_pem(certificate_pem: bytes, key_pem: bytes, password: str) -> Candidate:
    _size(certificate_pem)
    _size(key_pem)
    try:
        certificate = x509.load_pem_x509_certificate(certificate_pem)
    except ValueError as exc:
        raise Refused("not_certificate") from exc
    try:
        key = load_pem_private_key(key_pem, password.encode() or None)
    except TypeError as exc:
        # A password for a key that has none, or none for a key that needs one.
        raise Refused("wrong_password") from exc
    except ValueError as exc:
        encrypted = b"ENCRYPTED" in key_pem[:200]
        raise Refused("wrong_password" if encrypted else "not_key") from exc
    except Exception as exc:  # unsupported key types and the parsers' own errors have no common base class
        raise Refused("not_key") from exc
    return _candidate(key, certificate)


def check(candidate: Candidate, tax_code: str, now: datetime) -> Facts:
    """Raise :class:`Refused` unless the certificate may sign for the agency with ``tax_code`` now."""
    found = facts(candidate.certificate)
    if found.tax_code != tax_code:
        raise Refused("wrong_tax_code")
    if now >= found.not_after:
        raise Refused("expired")
    if now < found.not_before:
        raise Refused("not_yet_valid")
    return found


def _candidate(key: object, certificate: x509.Certificate) -> Candidate:
    if not isinstance(key, rsa.RSAPrivateKey):
        raise Refused("not_rsa")  # receipts are signed with rsa-sha256 (domain.md 3.4)
    if key.key_size < MIN_RSA_BITS:
        raise Refused("weak_key")
    if _spki(key.public_key()) != _spki(certificate.public_key()):
        raise Refused("key_mismatch")
    return Candidate(key, certificate)


def _spki(public_key: object) -> bytes:
    try:
        return public_key.public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)  # type: ignore[attr-defined,no-any-return]
    except (AttributeError, ValueError):
        return b""


def _size(data: bytes) -> None:
    if not data:
        raise Refused("file_missing")
    if len(data) > MAX_FILE:
        raise Refused("too_large")


def _looks_like_der(data: bytes) -> bool:
    # PKCS#12 is a DER SEQUENCE: tag 0x30, then a long-form length.
    return len(data) > 4 and data[0] == 0x30 and data[1] in (0x80, 0x81, 0x82, 0x83)
