"""Cross-site request forgery protection for the pages' forms that change something (pay, the sandbox's outcome).

Each browser gets a random value in an HttpOnly cookie; each form carries an HMAC, under a server key, of that value
and of what the form is about (the dossier's pay token, the sandbox transaction). Another site can make a browser
post a form but can neither read the cookie nor compute the HMAC, and a token taken from one page is refused on
another. A submission that the browser says comes from another site is refused as well: an ``Origin`` other than
the public URL's, or ``Sec-Fetch-Site: cross-site``/``same-site``. ``Origin: null`` proves nothing either way: our
own pages send it, since they ask for no referrer.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

from fastapi import Request
from fastapi.responses import HTMLResponse

from payments.core.config import PaymentSettings
from payments.core.security import origin_of

COOKIE = "lephi_form"
_NEW_COOKIE = "form_cookie"
_PROCESS_KEY = secrets.token_bytes(32)


def _key(settings: PaymentSettings) -> bytes:
    return settings.form_secret.encode() if settings.form_secret else _PROCESS_KEY


def sign(settings: PaymentSettings, browser: str, subject: str) -> str:
    """The token of a form about ``subject`` for the browser whose cookie holds ``browser``."""
    message = f"{subject}\x00{browser}".encode()
    return hmac.new(_key(settings), message, hashlib.sha256).hexdigest()


def form_token(request: Request, settings: PaymentSettings, subject: str) -> str:
    """The token for a form about ``subject``; makes this browser's cookie when it has none (see ``set_cookie``)."""
    browser = request.cookies.get(COOKIE) or getattr(request.state, _NEW_COOKIE, None)
    if not browser:
        browser = secrets.token_urlsafe(24)
        setattr(request.state, _NEW_COOKIE, browser)
    return sign(settings, browser, subject)


def set_cookie(request: Request, settings: PaymentSettings, response: HTMLResponse) -> None:
    browser = getattr(request.state, _NEW_COOKIE, None)
    if browser:
        secure = settings.public_url.lower().startswith("https:")
        response.set_cookie(COOKIE, browser, httponly=True, samesite="lax", secure=secure, path="/")


def foreign_origin(request: Request, settings: PaymentSettings) -> bool:
    """The browser says this request comes from another site."""
    origin = request.headers.get("origin", "null").lower()
    if origin != "null" and origin != origin_of(settings.public_url):
        return True
    return request.headers.get("sec-fetch-site", "same-origin").lower() in {"cross-site", "same-site"}


def refusal(request: Request, settings: PaymentSettings, subject: str, token: str | None) -> str | None:
    """Why this submission is refused, or None if it comes from our own form about ``subject``."""
    if foreign_origin(request, settings):
        return "foreign_origin"
    browser = request.cookies.get(COOKIE)
    if not browser or not token or not hmac.compare_digest(token, sign(settings, browser, subject)):
        return "bad_token"
    return None
