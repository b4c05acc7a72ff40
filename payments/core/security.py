"""Security headers of every response, set in one place.

Every response gets ``X-Content-Type-Options: nosniff`` and ``Referrer-Policy: no-referrer`` (pay links carry the
dossier's token in the URL), and ``Strict-Transport-Security`` when the public URL is https. HTML pages also get a
Content-Security-Policy with a nonce made for this request (templates put it on their few inline scripts and styles),
``frame-ancestors 'none'`` so no other site can frame a pay form, and ``Cache-Control: no-store``: the pages show
payers' names, amounts and receipts, which must not stay in shared or back-button caches.

A page that needs more (the card page loads Stripe.js) adds sources for its own response with ``allow_sources``.
"""

from __future__ import annotations

import secrets
from typing import Any
from urllib.parse import urlsplit

from starlette.datastructures import MutableHeaders
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

NONCE_KEY = "csp_nonce"
EXTRA_KEY = "csp_extra"
HSTS = "max-age=31536000; includeSubDomains"


def nonce(request: Request) -> str:
    """This request's CSP nonce ("" outside the middleware, e.g. a page rendered in a unit test)."""
    return str(getattr(request.state, NONCE_KEY, ""))


def allow_sources(request: Request, directive: str, *sources: str) -> None:
    """Widen one directive of this response's policy (e.g. the card page's script-src for Stripe.js)."""
    extra: dict[str, list[str]] = request.scope.setdefault("state", {}).setdefault(EXTRA_KEY, {})
    extra.setdefault(directive, []).extend(sources)


def content_security_policy(page_nonce: str, extra: dict[str, list[str]] | None = None) -> str:
    directives: dict[str, list[str]] = {
        "default-src": ["'none'"],
        "script-src": [f"'nonce-{page_nonce}'"],
        "style-src": [f"'nonce-{page_nonce}'"],
        "img-src": ["'self'", "data:"],
        "connect-src": ["'self'"],
        "base-uri": ["'none'"],
        "frame-ancestors": ["'none'"],
    }
    for directive, sources in (extra or {}).items():
        current = directives.setdefault(directive, [])
        current.extend(s for s in sources if s not in current)
    return "; ".join(f"{name} {' '.join(sources)}" for name, sources in directives.items())


def _is_html(headers: MutableHeaders) -> bool:
    return headers.get("content-type", "").lower().startswith("text/html")


class SecurityHeadersMiddleware:
    """Makes the request's nonce and adds the headers above to whatever the routes answer."""

    def __init__(self, app: ASGIApp, https: bool) -> None:
        self.app = app
        self.https = https

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        state: dict[str, Any] = scope.setdefault("state", {})
        state[NONCE_KEY] = secrets.token_urlsafe(18)

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                self._add(MutableHeaders(scope=message), state)
            await send(message)

        await self.app(scope, receive, send_with_headers)

    def _add(self, headers: MutableHeaders, state: dict[str, Any]) -> None:
        headers["X-Content-Type-Options"] = "nosniff"
        headers["Referrer-Policy"] = "no-referrer"
        if self.https:
            headers["Strict-Transport-Security"] = HSTS
        if _is_html(headers):
            headers["Content-Security-Policy"] = content_security_policy(state[NONCE_KEY], state.get(EXTRA_KEY))
            headers["X-Frame-Options"] = "DENY"  # browsers that predate frame-ancestors
            headers["Cache-Control"] = "no-store"


def origin_of(url: str) -> str:
    """``scheme://host[:port]`` of a URL, as browsers send it in ``Origin``."""
    parts = urlsplit(url)
    host = (parts.hostname or "").lower()
    if ":" in host:
        host = f"[{host}]"
    default = {"http": 80, "https": 443}.get(parts.scheme)
    port = f":{parts.port}" if parts.port and parts.port != default else ""
    return f"{parts.scheme}://{host}{port}"
