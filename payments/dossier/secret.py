"""The dossier's lookup secret: what a payer without the pay link types, with the dossier code, at ``/tra-cuu``.

It is not stored: it is derived from the dossier's pay token (random, 192 bits, known only to this service and to
whoever holds the pay link), so it exists for every dossier, old ones included, and says nothing that the pay link
does not. Eight characters from the receipt lookup codes' alphabet (no 0/O, 1/I/L): about 40 bits, which the public
lookup limit (a few tries a minute per address) puts far beyond guessing. The client system prints it on the
one-stop receipt from ``pay_secret`` in the dossier's API answer."""

from __future__ import annotations

import hashlib
import hmac
import re

from sqlmodel import Session, select

from payments.dossier.models import Dossier

ALPHABET = "23456789ABCDEFGHJKMNPQRSTUVWXYZ"
LENGTH = 8
CODE_MAX = 20  # the dossier table's code column
_SECRET = re.compile(f"[{ALPHABET}]{{{LENGTH}}}")


def pay_secret(pay_token: str) -> str:
    """``ABCD-EFGH``: printed in two groups, typed in any case, with or without the dash."""
    digest = hashlib.sha256(b"lephi-dossier-lookup\x00" + pay_token.encode()).digest()
    letters = "".join(ALPHABET[b % len(ALPHABET)] for b in digest[:LENGTH])
    return f"{letters[:4]}-{letters[4:]}"


def normalise(secret: str) -> str:
    return re.sub(r"[\s-]", "", secret).upper()


def find_by_secret(s: Session, code: str, secret: str) -> Dossier | None:
    """The dossier with this code whose secret this is; None for anything else (the caller says the same thing for
    an unknown code, a wrong secret and a malformed one)."""
    code = code.strip()
    typed = normalise(secret)
    if not 0 < len(code) <= CODE_MAX or not code.isprintable() or not _SECRET.fullmatch(typed):
        return None
    found = None
    # A code is unique within an agency only: every agency's dossier with it is checked, each in constant time.
    for dossier in s.exec(select(Dossier).where(Dossier.code == code)).all():
        if hmac.compare_digest(normalise(pay_secret(dossier.pay_token)), typed):
            found = dossier
    return found
