"""FastAPI dependencies: the app context, the authenticated client, and scope checks."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated

from fastapi import Depends, Request
from fastapi.concurrency import run_in_threadpool

from payments.auth.models import Scope
from payments.auth.service import Principal
from payments.core.context import AppContext
from payments.core.errors import Forbidden, RateLimited, Unauthenticated
from payments.core.logging import get_logger

log = get_logger(__name__)


async def get_ctx(request: Request) -> AppContext:
    ctx: AppContext = request.app.state.ctx
    return ctx


CtxDep = Annotated[AppContext, Depends(get_ctx)]


async def get_principal(request: Request) -> Principal:
    """The authenticated client, for an endpoint open to every API key."""
    return await principal_of(request, request.app.state.ctx)


_PRINCIPAL = "lephi.principal"


async def principal_of(request: Request, ctx: AppContext) -> Principal:
    """The client the request's API key names, within its rate; once per request, however many dependencies ask.

    Not itself a sub-dependency of the scope checks: FastAPI walks every dependency of every request, and each level
    of the tree costs about as much as an index lookup in the database."""
    known: Principal | None = request.scope.get(_PRINCIPAL)
    if known is not None:
        return known
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        err = Unauthenticated("send the API key as 'Authorization: Bearer <key>'")
        err.headers["WWW-Authenticate"] = "Bearer"
        raise err
    raw = token.strip()
    # A key held in memory costs no database transaction and no thread; the database is asked (off the event loop)
    # only for a key not seen yet or when the key version is due for its check.
    principal = ctx.api_keys.cached(raw)
    if principal is None:
        try:
            principal = await run_in_threadpool(ctx.api_keys.load, raw)
        except Unauthenticated as err:
            err.headers["WWW-Authenticate"] = 'Bearer error="invalid_token"'
            log.info("auth.rejected", path=request.url.path)
            raise
    await _within_rate(ctx, principal)
    request.scope[_PRINCIPAL] = principal
    return principal


async def _within_rate(ctx: AppContext, principal: Principal) -> None:
    """Each client system's requests per minute, so that one runaway client cannot starve the others."""
    limiter = ctx.api_limiter
    # The API's limiter fails open: with its store down this answers None (and the limiter logs it).
    wait = await limiter.check(principal.key_id)
    if wait is not None:
        log.warning("auth.rate_limited", key_id=principal.key_id, agency_id=principal.agency_id)
        err = RateLimited(
            f"more than {limiter.per_minute} requests in a minute from this API key; retry after the pause",
            retry_after=max(1, round(wait)),
        )
        err.headers["Retry-After"] = str(max(1, round(wait)))
        raise err


def require(scope: Scope) -> Callable[[Request], Awaitable[Principal]]:
    async def check(request: Request) -> Principal:
        principal = await principal_of(request, request.app.state.ctx)
        if scope.value not in principal.scopes:
            raise Forbidden(f"this API key lacks the scope {scope.value!r}", required_scope=scope.value)
        return principal

    AUTHENTICATING.add(check)
    return check


# The dependencies that authenticate the request: the API document marks their routes as needing the API key.
AUTHENTICATING: set[Callable[..., Awaitable[Principal]]] = {get_principal}


def actor_of(principal: Principal) -> str:
    return f"api_key:{principal.key_id}"
