"""The committed OpenAPI document matches the code, and documents what clients rely on."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from lephi.app import export
from tests.conftest import Api

COMMITTED = Path(__file__).parent.parent / "openapi" / "openapi.json"
PROBLEM = "#/components/schemas/Problem"


def test_committed_openapi_is_current() -> None:
    assert COMMITTED.read_text() == export(), "openapi/openapi.json is stale: run `make openapi`"


def test_every_operation_is_described_and_posts_take_an_idempotency_key() -> None:
    doc = json.loads(export())
    for path, item in doc["paths"].items():
        for method, op in item.items():
            assert op.get("summary") or op.get("description"), f"{method} {path} has no description"
            # Verification changes nothing, so it needs no key; gateway callbacks follow the gateway's protocol.
            if method == "post" and path.startswith("/v1/") and "callback" not in path and not path.endswith("/verify"):
                names = [p["name"] for p in op.get("parameters", [])]
                assert "Idempotency-Key" in names, f"{method} {path} lacks Idempotency-Key"


def test_request_models_forbid_unknown_fields_and_never_take_amounts_or_status() -> None:
    schemas = json.loads(export())["components"]["schemas"]
    for name in ("DossierIn", "PaymentIn", "RefundIn", "PayerIn", "FeeItemIn"):
        assert schemas[name].get("additionalProperties") is False, name
    for name in ("DossierIn", "PaymentIn"):
        props = set(schemas[name]["properties"])
        assert not props & {"amount", "status", "paid_at", "succeeded_at", "total_amount"}, name


def _operations(doc: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    for path, item in doc["paths"].items():
        for method, op in item.items():
            yield method, path, op


def test_the_idempotency_key_is_required_wherever_it_is_taken() -> None:
    doc = json.loads(export())
    keyed = 0
    for method, path, op in _operations(doc):
        for param in op.get("parameters", []):
            if param["name"] == "Idempotency-Key":
                keyed += 1
                assert param["required"] is True, f"{method} {path}"
                assert param["schema"]["minLength"] == 1 and param["schema"]["maxLength"] == 255, f"{method} {path}"
                assert {"400", "409", "422"} <= set(op["responses"]), f"{method} {path}"
    assert keyed == 12


def test_without_an_idempotency_key_the_answer_is_the_documented_400(api: Api) -> None:
    r = api.post("/v1/reconciliation/runs", {"business_day": "2026-01-02"}, key=False)
    assert r.status_code == 400 and r.headers["content-type"] == "application/problem+json"
    assert r.json()["code"] == "idempotency_key_missing"


def test_authenticated_operations_declare_the_api_key_and_its_answers() -> None:
    doc = json.loads(export())
    scheme = doc["components"]["securitySchemes"]["ApiKey"]
    assert scheme["type"] == "http" and scheme["scheme"] == "bearer"
    for method, path, op in _operations(doc):
        public = not path.startswith("/v1/") or "/callback" in path
        if public:
            assert "security" not in op, f"{method} {path} is public"
            continue
        assert op["security"] == [{"ApiKey": []}], f"{method} {path}"
        assert {"401", "403", "422", "429"} <= set(op["responses"]), f"{method} {path}"
        assert op["responses"]["429"]["headers"]["Retry-After"]["required"] is True
        if "{" in path:
            assert "404" in op["responses"], f"{method} {path} looks an object up"


def test_every_error_is_documented_as_problem_json() -> None:
    doc = json.loads(export())
    assert "HTTPValidationError" not in doc["components"]["schemas"]
    assert {"type", "title", "status", "detail", "code"} <= set(doc["components"]["schemas"]["Problem"]["required"])
    for method, path, op in _operations(doc):
        for status, response in op["responses"].items():
            if status.isdigit() and int(status) >= 400:
                assert response["content"] == {"application/problem+json": {"schema": {"$ref": PROBLEM}}}, (
                    f"{method} {path} {status}"
                )


@pytest.mark.parametrize(
    ("path", "allowed"),
    [
        ("/v1/dossiers", "GET, POST"),
        ("/v1/webhook-endpoints", "GET, POST"),
        ("/v1/receipts/verify", "POST"),
        ("/v1/gateways/sandbox/callback", "GET, POST"),
        ("/v1/payments/pay_x/refunds", "GET, POST"),
    ],
)
def test_a_405_lists_every_method_of_the_resource(api: Api, path: str, allowed: str) -> None:
    r = api.client.request("PATCH", path, headers=api.auth)
    assert r.status_code == 405
    assert r.headers["allow"] == allowed
    assert r.headers["content-type"] == "application/problem+json" and r.json()["code"] == "method_not_allowed"
