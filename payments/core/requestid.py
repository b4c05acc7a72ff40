"""Request ids: ``X-Request-ID`` in and out, in every log line, and carried by outbox jobs, so that one payment can
be followed from the client's request through the API process to the worker that issues its receipt.

An incoming id is kept when it is 1 to 128 characters of ``A-Z a-z 0-9 . _ : / + = @ -`` (a UUID, a W3C trace id,
a proxy's ``$request_id`` all are); anything else (too long, control characters, non-ASCII) is replaced by a fresh
id and never echoed, as it could forge log lines or response headers."""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator, MutableMapping
from contextlib import contextmanager
from contextvars import ContextVar, Token
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

HEADER = "x-request-id"
PAYLOAD_KEY = "request_id"  # in an outbox job's payload
MAX_LENGTH = 128
_VALID = re.compile(rb"[A-Za-z0-9._:/+=@-]{1,128}")
_VALID_TEXT = re.compile(r"[A-Za-z0-9._:/+=@-]{1,128}")
_HEADER_BYTES = HEADER.encode()

_current: ContextVar[str | None] = ContextVar("lephi_request_id", default=None)


def current() -> str | None:
    """The id of the request (or the job) this code runs for, if any."""
    return _current.get()


def new_id() -> str:
    return uuid.uuid4().hex


def valid(value: object) -> str | None:
    """``value`` if it may be used as a request id as it is, else None."""
    return value if isinstance(value, str) and _VALID_TEXT.fullmatch(value) else None


def bind(request_id: str | None) -> Token[str | None]:
    """Make ``request_id`` current (until ``reset``): log lines and jobs queued meanwhile carry it."""
    return _current.set(request_id)


def reset(token: Token[str | None]) -> None:
    _current.reset(token)


@contextmanager
def bound(value: object) -> Iterator[None]:
    """Bind an id read back from storage (a job's payload), if it is a valid one."""
    token = _current.set(valid(value))
    try:
        yield
    finally:
        _current.reset(token)


def add_to_log(_logger: Any, _method: str, event_dict: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """structlog processor: the current request id on every line written while it is bound."""
    request_id = _current.get()
    if request_id is not None:
        event_dict.setdefault(PAYLOAD_KEY, request_id)
    return event_dict


def _incoming(scope: Scope) -> str:
    for name, value in scope["headers"]:
        if name == _HEADER_BYTES:
            if _VALID.fullmatch(value):
                return str(value.decode("ascii"))
            break
    return new_id()


class RequestIdMiddleware:
    """Binds the request's id for everything the request runs and returns it in ``X-Request-ID``."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = _incoming(scope)
        header = (_HEADER_BYTES, request_id.encode("ascii"))

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", ()), header]
            await send(message)

        token = _current.set(request_id)
        try:
            await self.app(scope, receive, send_with_id)
        finally:
            _current.reset(token)
