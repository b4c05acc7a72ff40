"""Shared response helpers for endpoints that run under an Idempotency-Key."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Header
from fastapi.responses import JSONResponse

from payments.core.http import PROBLEM_JSON
from payments.idempotency.service import Outcome

# Optional here only so that a missing key is the stable 400 ``idempotency_key_missing`` rather than a generic 422; the
# OpenAPI document marks it required, with its format (payments/openapi.py).
IdempotencyKey = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        description="Unique per intended operation (a UUID). Retrying with the same key is safe; "
        "see docs/api.md for the exact semantics.",
        examples=["8e03978e-40d5-43e8-bc93-6894a57f9324"],
    ),
]

PROBLEM: dict[str, Any] = {"content": {PROBLEM_JSON: {}}, "description": "RFC 9457 problem details"}


def problems(*codes: int) -> dict[int | str, dict[str, Any]]:
    return {code: PROBLEM for code in codes}


def respond(outcome: Outcome) -> JSONResponse:
    headers = dict(outcome.headers)
    if outcome.replayed:
        headers["Idempotent-Replayed"] = "true"
    media = PROBLEM_JSON if outcome.status >= 400 else "application/json"
    return JSONResponse(outcome.body, status_code=outcome.status, headers=headers, media_type=media)
