"""The Idempotency-Key of a request, with the fingerprint that tells a retry from a different request.

The fingerprint is derived from the route that matched (method, path template, path parameters) and the validated
body, so an endpoint cannot type it wrong or forget a parameter.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Depends, Request
from pydantic import BaseModel

from payments.core.responses import IdempotencyKey
from payments.idempotency.service import route_fingerprint


def request_fingerprint(request: Request, body: BaseModel | None = None) -> str:
    """The fingerprint of this request as its route sees it; ``body`` is the endpoint's validated body, if any."""
    route = request.scope.get("route")
    template = getattr(route, "path_format", None) or request.url.path
    payload: Any = body.model_dump(mode="json") if body is not None else None
    return route_fingerprint(request.method, template, dict(request.path_params), payload)


@dataclass(frozen=True)
class IdempotentRequest:
    key: str | None
    request: Request

    def fingerprint(self, body: BaseModel | None = None) -> str:
        return request_fingerprint(self.request, body)


async def idempotent_request(request: Request, idempotency_key: IdempotencyKey = None) -> IdempotentRequest:
    return IdempotentRequest(idempotency_key, request)


Idempotent = Annotated[IdempotentRequest, Depends(idempotent_request)]
