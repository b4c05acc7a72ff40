"""Schemathesis over the whole OpenAPI document against the app, with every phase the command line runs (examples,
coverage, fuzzing, stateful sequences along the document's links) and every built-in check: no 5xx, every answer
(status, media type, body, headers, ``Allow``) is one the document describes, schema-valid input is accepted and
invalid input refused. Bounded and seeded, so it runs in CI in about a minute and fails the same way twice."""

from __future__ import annotations

import re
import secrets

import schemathesis
from schemathesis.config import SchemathesisConfig
from schemathesis.engine import Status, events, from_schema
from starlette.types import ASGIApp, Receive, Scope, Send

from tests.conftest import Api

VALID_KEY = re.compile(rb"^[\x21-\x7e]{1,255}$")


def config(api: Api) -> SchemathesisConfig:
    return SchemathesisConfig.from_dict(
        {
            "seed": 20261202,
            "workers": 1,
            # Derandomized and without an example database: the same run every time, on every machine.
            "generation": {"max-examples": 25, "deterministic": True, "database": "none"},
            "auth": {"openapi": {"ApiKey": {"bearer": api.key}}},
            "checks": {
                # Input the schema allows but the service refuses on its meaning (a cursor it never issued, an XML
                # document that does not verify, a business day still to come) is 422: well-formed, not acceptable.
                "positive_data_acceptance": {"expected-statuses": ["2XX", "3XX", 401, 403, 404, 409, 422, 429]}
            },
        }
    )


class FreshIdempotencyKeys:
    """Gives every request that carries a well-formed Idempotency-Key a new one: generated data repeats values, and a
    key reused with another body is answered 422 ``idempotency_key_reused``, which says nothing of the operation.
    Malformed or missing keys pass unchanged, so their refusal is still tested."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            scope = {**scope, "headers": [self._fresh(name, value) for name, value in scope["headers"]]}
        await self.app(scope, receive, send)

    @staticmethod
    def _fresh(name: bytes, value: bytes) -> tuple[bytes, bytes]:
        if name.lower() == b"idempotency-key" and VALID_KEY.match(value):
            return name, secrets.token_hex(16).encode()
        return name, value


def run(api: Api) -> tuple[set[str], list[str], int, set[str]]:
    """The distinct failures (operation, code, title), the engine's errors, how many checks passed, and the
    operations tested."""
    app = FreshIdempotencyKeys(api.client.app)
    schema = schemathesis.openapi.from_asgi("/v1/openapi.json", app, config=config(api))
    failures: set[str] = set()
    errors: list[str] = []
    passed = 0
    tested: set[str] = set()
    for event in from_schema(schema).execute():
        if isinstance(event, events.NonFatalError | events.FatalError):
            errors.append(str(getattr(event, "info", event)))
        if isinstance(event, events.ScenarioFinished | events.FuzzScenarioFinished):
            tested.add(event.recorder.label)
            for check in (c for checks in event.recorder.checks.values() for c in checks):
                if check.failure_info is None:
                    passed += check.status is Status.SUCCESS
                    continue
                failure = check.failure_info.failure
                failures.add(f"{failure.operation}: [{failure.code}] {failure.title}\n{failure.message}")
        if isinstance(event, events.EngineFinished):
            failures |= {f"{f.operation}: [{f.code}] {f.title}\n{f.message}" for f in event.failures}
    return failures, errors, passed, tested


def test_every_operation_answers_as_the_document_says(api: Api) -> None:
    failures, errors, passed, tested = run(api)
    document = api.client.get("/v1/openapi.json").json()
    operations = {f"{method.upper()} {path}" for path, item in document["paths"].items() for method in item}
    assert operations <= tested, f"not tested: {sorted(operations - tested)}"
    assert not errors, "\n\n".join(errors)
    assert not failures, f"{len(failures)} failures:\n\n" + "\n\n".join(sorted(failures))
    assert passed > 20 * len(operations), "the run checked too little to mean anything"
