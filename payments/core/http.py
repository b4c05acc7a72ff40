"""HTTP edge: problem+json rendering for every error, and the request body size limit."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, Response
from fastapi.routing import iter_route_contexts
from sqlalchemy.exc import DBAPIError
from sqlalchemy.exc import OperationalError as SqlOperationalError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from payments.core.errors import (
    PROBLEM_TYPE_BASE,
    DatabaseUnavailable,
    LephiError,
    MalformedRequest,
    PayloadTooLarge,
    ValidationFailed,
)
from payments.core.logging import get_logger

log = get_logger(__name__)
PROBLEM_JSON = "application/problem+json"
# Given the request, the status, the stable code and the headers of an error: the HTML page to answer instead of
# problem+json (a browser on a payer page), or None.
HtmlErrors = Callable[[Request, int, str, Mapping[str, str] | None], Response | None]

_STATUS_CODES = {
    400: "bad_request",
    401: "unauthenticated",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    406: "not_acceptable",
    409: "conflict",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "validation_error",
    429: "rate_limited",
}


def problem_response(err: LephiError) -> JSONResponse:
    # No ``instance`` member: a replayed response under an Idempotency-Key must equal the first one byte for byte.
    return JSONResponse(err.problem(), status_code=err.status, media_type=PROBLEM_JSON, headers=err.headers)


def _clean_errors(errors: Any) -> list[dict[str, Any]]:
    # Never echo the rejected input back: it may hold personal data.
    return [{"loc": list(e.get("loc", ())), "msg": e.get("msg", ""), "type": e.get("type", "")} for e in errors]


def install_error_handlers(app: FastAPI, html: HtmlErrors | None = None) -> None:
    def page(request: Request, status: int, code: str, headers: Mapping[str, str] | None = None) -> Response | None:
        return html(request, status, code, headers) if html is not None else None

    @app.exception_handler(LephiError)
    async def _lephi(request: Request, exc: LephiError) -> Response:
        return page(request, exc.status, exc.code, exc.headers) or problem_response(exc)

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> Response:
        errors = _clean_errors(exc.errors())
        shown = page(request, 422, "validation_error")
        if shown is not None:
            return shown
        if any(e["type"] == "json_invalid" for e in errors):
            return problem_response(MalformedRequest("the body is not valid JSON", errors=errors))
        return problem_response(ValidationFailed("the request has invalid fields", errors=errors))

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> Response:
        if exc.status_code == 400 and isinstance(exc.__cause__, (ValueError, RecursionError)):
            # FastAPI's own "error parsing the body" (bytes that are not UTF-8, nesting or numbers beyond the parser):
            # the same failure as invalid JSON, so the same stable code.
            return problem_response(MalformedRequest("the body is not valid UTF-8 JSON"))
        code = _STATUS_CODES.get(exc.status_code, "http_error")
        headers = exc.headers
        if exc.status_code == 405:
            headers = {**(headers or {}), "Allow": _allowed_methods(request)}
        shown = page(request, exc.status_code, code, headers)
        if shown is not None:
            return shown
        body = {
            "type": PROBLEM_TYPE_BASE + code,
            "title": str(exc.detail),
            "status": exc.status_code,
            "detail": str(exc.detail),
            "code": code,
        }
        return JSONResponse(body, status_code=exc.status_code, media_type=PROBLEM_JSON, headers=headers)

    @app.exception_handler(DBAPIError)
    async def _database(request: Request, exc: DBAPIError) -> Response:
        # A connection dropped by a server restart or failover (the pool then replaces every connection it held), or
        # a server not answering yet. A retry under the same Idempotency-Key finds the request's claim and resumes it,
        # or finds nothing and starts afresh: the client may send it again.
        if not (exc.connection_invalidated or isinstance(exc, SqlOperationalError) or server_unavailable(exc.orig)):
            return await _unexpected(request, exc)
        log.warning("http.database_unavailable", path=request.url.path, error_type=type(exc.orig).__name__)
        err = DatabaseUnavailable()
        err.headers["Retry-After"] = "1"
        return page(request, err.status, err.code, err.headers) or problem_response(err)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> Response:
        log.error("http.unhandled", path=request.url.path, error_type=type(exc).__name__, exc_info=exc)
        try:
            shown = page(request, 500, "internal_error")
        except Exception:  # the page itself failed: the plain answer below still goes out
            shown = None
        if shown is not None:
            return shown
        body = {
            "type": PROBLEM_TYPE_BASE + "internal_error",
            "title": "Internal error",
            "status": 500,
            "detail": "An unexpected error occurred; it has been logged.",
            "code": "internal_error",
        }
        return JSONResponse(body, status_code=500, media_type=PROBLEM_JSON)


# SQLSTATEs of a server that cannot serve now: connection exceptions (class 08), shutting down or starting up (57P01,
# 57P02, 57P03), out of connections (53300). psycopg raises them as OperationalError; asyncpg's adapter as a plain
# DBAPIError, so the state itself is read.
_UNAVAILABLE_STATES = ("57P01", "57P02", "57P03", "53300")


def server_unavailable(error: BaseException | None) -> bool:
    """Whether a driver's error says the database server cannot serve now, rather than that the statement failed."""
    state = getattr(error, "sqlstate", None)
    return isinstance(state, str) and (state.startswith("08") or state in _UNAVAILABLE_STATES)


def _allowed_methods(request: Request) -> str:
    """Every method the resource supports. Starlette names only those of the first route whose path matched; where
    templates overlap (``/v1/receipts/verify`` and ``/v1/receipts/{document_id}``) the most literal one names the
    resource, as a client reading the API document would expect."""
    matched: dict[str, set[str]] = {}
    for route in iter_route_contexts(request.app.router.routes):
        match, _ = route.matches(request.scope)
        if match is not Match.NONE and route.path_format is not None:
            matched.setdefault(route.path_format, set()).update(route.methods or ())
    if not matched:
        return ""
    resource = min(matched, key=lambda template: template.count("{"))
    return ", ".join(sorted(matched[resource]))


class RequestLimitsMiddleware:
    """Refuses NUL in the path or query, buffers the body up to the route's limit and answers 413 beyond it.

    ``limit`` applies to every path but those in ``per_path`` (exact paths: the operations with a limit of their
    own have no path parameters). Under the ``html_prefixes`` (pages used in a browser) the refusal is a short page
    in both languages instead of problem+json."""

    def __init__(
        self,
        app: ASGIApp,
        limit: int,
        per_path: dict[str, int] | None = None,
        html_prefixes: tuple[str, ...] = (),
    ) -> None:
        self.app = app
        self.default = limit
        self.per_path = per_path or {}
        self.html_prefixes = html_prefixes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if "\x00" in scope["path"] or b"%00" in scope["query_string"]:
            err = ValidationFailed("the request path or query contains a NUL character")
            await self._refuse(err, scope, receive, send)
            return
        limit = self.per_path.get(scope["path"], self.default)
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > limit):
            await self._reject(limit, scope, receive, send)
            return
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                await self._reject(limit, scope, receive, send)
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        sent = False

        async def replay() -> Message:
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)

    async def _reject(self, limit: int, scope: Scope, receive: Receive, send: Send) -> None:
        err = PayloadTooLarge(f"the body is larger than {limit} bytes")
        await self._refuse(err, scope, receive, send)

    async def _refuse(self, err: LephiError, scope: Scope, receive: Receive, send: Send) -> None:
        if str(scope["path"]).startswith(self.html_prefixes):
            await HTMLResponse(_REFUSED_PAGE, status_code=err.status)(scope, receive, send)
            return
        await problem_response(err)(scope, receive, send)


# Static (no template, no language choice): the request was refused before anything in it could be read.
_REFUSED_PAGE = """<!doctype html>
<html lang="vi"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>Yêu cầu không hợp lệ · Invalid request</title></head>
<body><main>
<h1>Yêu cầu không hợp lệ</h1>
<p>Dữ liệu gửi lên quá lớn hoặc chứa ký tự không cho phép, nên chưa có thao tác nào được thực hiện.
Vui lòng quay lại trang trước và thử lại.</p>
<h2 lang="en">Invalid request</h2>
<p lang="en">What was sent is too large or contains characters that are not allowed, so nothing was done.
Please go back and try again.</p>
</main></body></html>
"""
