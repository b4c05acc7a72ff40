"""The TOTP second factor (RFC 6238, 30-second steps, 6 digits, pyotp): enrolment and checking a code.

A code is accepted for the current step and one step either side (clocks drift), and only for a step later than
the last one accepted for the account, so that a code seen over someone's shoulder cannot be used again."""

from __future__ import annotations

import hmac
import io
import time

import pyotp
import segno
from sqlalchemy import or_, update
from sqlmodel import Session, col

from console.audit.service import record
from console.staff.models import StaffUser
from payments.core.db import affected
from payments.core.types import utcnow

ISSUER = "Lephi"
STEP_SECONDS = 30
WINDOW = 1


def new_secret() -> str:
    return pyotp.random_base32()


def uri(secret: str, email: str) -> str:
    return pyotp.TOTP(secret).provisioning_uri(name=email, issuer_name=ISSUER)


def qr_svg(text: str, label: str) -> str:
    """The QR code of ``text`` as an inline SVG element, drawn on the server (no script, no image request)."""
    out = io.BytesIO()
    segno.make(text, error="m").save(out, kind="svg", scale=5, border=4, xmldecl=False, svgns=True, omitsize=False)
    svg = out.getvalue().decode()
    # Read out as one image by a screen reader; ``label`` is our own text, escaped like any attribute value.
    escaped = label.replace("&", "&amp;").replace('"', "&quot;").replace("<", "&lt;")
    return svg.replace("<svg ", f'<svg role="img" aria-label="{escaped}" ', 1)


def well_formed(code: str) -> bool:
    return len(code) == 6 and code.isascii() and code.isdigit()


def matching_step(secret: str, code: str, last_step: int | None, now: float | None = None) -> int | None:
    """The step whose code ``code`` is, within the window and after ``last_step``; None otherwise."""
    if not well_formed(code):
        return None
    totp = pyotp.TOTP(secret)
    current = int((time.time() if now is None else now) // STEP_SECONDS)
    found = None
    for step in range(current - WINDOW, current + WINDOW + 1):
        # Every step is compared, whichever matches, so the time taken says nothing about which one did.
        if hmac.compare_digest(totp.generate_otp(step), code) and (last_step is None or step > last_step):
            found = step
    return found


def spend(s: Session, user: StaffUser, step: int) -> bool:
    """Record ``step`` as the account's last accepted one; False when a concurrent request already spent it."""
    spent = s.execute(
        update(StaffUser)
        .where(
            col(StaffUser.id) == user.id,
            or_(col(StaffUser.totp_last_step).is_(None), col(StaffUser.totp_last_step) < step),
        )
        .values(totp_last_step=step)
    )
    if affected(spent) != 1:
        return False
    user.totp_last_step = step
    return True


def start_enrolment(s: Session, user: StaffUser) -> str:
    """The secret the user is enrolling with: kept across page loads until confirmed."""
    if user.totp_secret is None or user.totp_enabled_at is not None:
        user.totp_secret = new_secret()
        user.totp_enabled_at = None
        user.totp_last_step = None
        user.updated_at = utcnow()
        s.add(user)
    return user.totp_secret


def confirm_enrolment(s: Session, user: StaffUser, code: str, ip: str) -> bool:
    """Turn the second factor on when ``code`` comes from the secret being enrolled."""
    if user.totp_secret is None or user.totp_enabled_at is not None:
        return False
    step = matching_step(user.totp_secret, code, user.totp_last_step)
    if step is None or not spend(s, user, step):
        return False
    user.totp_enabled_at = utcnow()
    user.updated_at = user.totp_enabled_at
    s.add(user)
    record(
        s,
        agency_id=user.agency_id,
        actor=user.id,
        ip=ip,
        action="staff.totp_enabled",
        target=user.id,
        before={"totp": False},
        after={"totp": True},
    )
    return True


def check(s: Session, user: StaffUser, code: str) -> bool:
    """True, and the code spent, when ``code`` is the enrolled account's current code."""
    if user.totp_secret is None or user.totp_enabled_at is None:
        return False
    step = matching_step(user.totp_secret, code, user.totp_last_step)
    return step is not None and spend(s, user, step)
