"""The OpenAPI document, exported to openapi/openapi.json (a test fails when that file is stale).

FastAPI documents what each route declares; the rules here add, in one place, what every route of a kind answers
whatever it declares: the API key and its 401/403/429, 404 where a path names an object, 422 for invalid input,
400/413 for bodies, the Idempotency-Key's rules, and problem+json for every error. Clients are generated from this
document, so it must say exactly what the service answers.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

from fastapi import FastAPI
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute, iter_route_contexts

from payments.auth.deps import AUTHENTICATING
from payments.core.http import PROBLEM_JSON

SECURITY_SCHEME = "ApiKey"
IDEMPOTENCY_HEADER = "Idempotency-Key"
# Gateway callbacks answer in each gateway's own protocol (status and body), not in problem+json.
CALLBACK_TAG = "gateways"
BODY_METHODS = {"post", "put", "patch"}

PROBLEM_REF = {"$ref": "#/components/schemas/Problem"}
SCHEMAS: dict[str, dict[str, Any]] = {
    "Problem": {
        "title": "Problem",
        "type": "object",
        "description": "RFC 9457 problem details. Branch on `code`, which is stable; some problems carry more "
        "members (`errors`, `field`, `payment_id`, `refundable_amount`, `retry_after`...).",
        "required": ["type", "title", "status", "detail", "code"],
        "properties": {
            "type": {"type": "string", "description": "`urn:lephi:problem:<code>`"},
            "title": {"type": "string"},
            "status": {"type": "integer"},
            "detail": {"type": "string"},
            "code": {"type": "string", "examples": ["validation_error"]},
            "errors": {
                "type": "array",
                "description": "For invalid fields: where and why, never the value sent.",
                "items": {"$ref": "#/components/schemas/ProblemFieldError"},
            },
        },
        "additionalProperties": True,
    },
    "ProblemFieldError": {
        "title": "ProblemFieldError",
        "type": "object",
        "required": ["loc", "msg", "type"],
        "properties": {
            "loc": {"type": "array", "items": {"anyOf": [{"type": "string"}, {"type": "integer"}]}},
            "msg": {"type": "string"},
            "type": {"type": "string"},
        },
    },
}
SECURITY_SCHEMES = {
    SECURITY_SCHEME: {
        "type": "http",
        "scheme": "bearer",
        "bearerFormat": "lephi_<random>",
        "description": "The client system's API key: `Authorization: Bearer <key>`. A key belongs to one agency and "
        "carries scopes; see docs/api.md.",
    }
}
RETRY_AFTER = {"description": "Seconds to wait before retrying.", "schema": {"type": "integer", "minimum": 1}}
REPLAYED = {
    "description": "`true` when this is the stored answer to an earlier request with the same Idempotency-Key.",
    "schema": {"type": "string", "enum": ["true"]},
}
CONTENT_DISPOSITION = {"description": "The file's name, for a file download.", "schema": {"type": "string"}}
WWW_AUTHENTICATE = {"description": "The Bearer challenge.", "schema": {"type": "string"}}
IDEMPOTENCY_SCHEMA = {"type": "string", "minLength": 1, "maxLength": 255, "pattern": "^[\\x21-\\x7e]{1,255}$"}
DESCRIPTIONS = {
    400: "The body is not JSON, or the Idempotency-Key is missing or malformed",
    401: "No API key, or an unknown or revoked one",
    403: "The API key lacks the scope",
    404: "No such object for the caller's agency",
    409: "The request conflicts with the current state, or a request with the same Idempotency-Key is running",
    413: "The body is over the limit",
    422: "Invalid input",
    429: "Too many requests from this API key in a minute",
    503: "A gateway did not answer; retry later",
}
# (producer operation, status) -> links to the operations that take what it returns: stateful testers and readers
# of the document follow an object from where it is created to where it is used.
LINKS: dict[tuple[str, str], dict[str, tuple[str, dict[str, str]]]] = {
    ("put_dossier", "201"): {"GetDossier": ("get_dossier", {"code": "$response.body#/code"})},
    ("post_payment", "201"): {
        "GetPayment": ("get_payment", {"payment_id": "$response.body#/id"}),
        "CancelPayment": ("post_cancel", {"payment_id": "$response.body#/id"}),
        "RefundPayment": ("post_refund", {"payment_id": "$response.body#/id"}),
        "GetRefunds": ("get_refunds", {"payment_id": "$response.body#/id"}),
        "GetReceipts": ("get_receipts", {"payment_id": "$response.body#/id"}),
    },
    ("post_endpoint", "201"): {"DeleteEndpoint": ("delete_endpoint", {"endpoint_id": "$response.body#/id"})},
    ("get_exceptions", "200"): {
        "GetException": ("get_exception_detail", {"exception_id": "$response.body#/data/0/id"}),
        "ResolveException": ("post_resolve", {"exception_id": "$response.body#/data/0/id"}),
        "ReopenException": ("post_reopen", {"exception_id": "$response.body#/data/0/id"}),
    },
    ("get_deliveries", "200"): {"RetryDelivery": ("post_retry", {"delivery_id": "$response.body#/data/0/id"})},
}


def install(app: FastAPI) -> None:
    """Serve the completed document at the app's OpenAPI URL (built once, on first use)."""
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = complete(generate(), app.routes)
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def complete(doc: dict[str, Any], routes: Iterable[Any]) -> dict[str, Any]:
    components = doc.setdefault("components", {})
    schemas = components.setdefault("schemas", {})
    for name in ("HTTPValidationError", "ValidationError"):
        schemas.pop(name, None)
    schemas.update(SCHEMAS)
    components["securitySchemes"] = SECURITY_SCHEMES
    for route in iter_route_contexts(list(routes)):
        api_route = route.original_route
        if isinstance(api_route, APIRoute) and route.include_in_schema:
            for method in sorted((route.methods or set()) - {"HEAD"}):
                op = doc["paths"][route.path_format][method.lower()]
                _complete_operation(op, route.tags, api_route.dependant, method.lower())
    _add_links(doc)
    _describe_bytes(doc)
    return doc


def _describe_bytes(doc: dict[str, Any]) -> None:
    """A body declared by its media type alone (XML, PDF, CSV, XLSX, HTML) is bytes or text: said so, a generated
    client can send and read it."""
    for item in doc["paths"].values():
        for op in item.values():
            contents = [op.get("requestBody", {}).get("content", {})]
            contents += [response.get("content", {}) for response in op["responses"].values()]
            for content in contents:
                for media, body in content.items():
                    if "json" not in media and not body.get("schema"):
                        text = media.startswith("text/")
                        body["schema"] = {"type": "string"} if text else {"type": "string", "format": "binary"}
            for status, response in op["responses"].items():
                files = [
                    m for m in response.get("content", {}) if "json" not in m and m not in ("text/html", "text/plain")
                ]
                if status.startswith("2") and files:
                    response.setdefault("headers", {})["Content-Disposition"] = CONTENT_DISPOSITION


def _complete_operation(op: dict[str, Any], tags: list[str], dependant: Dependant, method: str) -> None:
    responses: dict[str, Any] = op.setdefault("responses", {})
    if CALLBACK_TAG in tags:
        _protocol_replies(responses)
        return
    params = op.get("parameters", [])
    # Every request's path and query are refused with 422 when they hold a NUL, whatever the operation.
    statuses = {422}
    if any(p["in"] == "path" for p in params):
        statuses.add(404)
    if method in BODY_METHODS:
        statuses.add(413)
        if "application/json" in op.get("requestBody", {}).get("content", {}):
            statuses.add(400)
    if _authenticated(dependant):
        op["security"] = [{SECURITY_SCHEME: []}]
        statuses |= {401, 403, 429}
    if any(p["name"] == IDEMPOTENCY_HEADER for p in params):
        _require_idempotency_key(op, responses)
        statuses |= {400, 409, 422}
    for code in statuses:
        responses.setdefault(str(code), {})
    for status, response in responses.items():
        if status.isdigit() and int(status) >= 400:
            _as_problem(int(status), response)


def _as_problem(status: int, response: dict[str, Any]) -> None:
    response["content"] = {PROBLEM_JSON: {"schema": PROBLEM_REF}}
    if not response.get("description") or response["description"] in ("Validation Error", "RFC 9457 problem details"):
        response["description"] = DESCRIPTIONS.get(status, "RFC 9457 problem details")
    headers = response.setdefault("headers", {})
    if status == 401:
        headers["WWW-Authenticate"] = WWW_AUTHENTICATE
    if status == 429:
        headers["Retry-After"] = {**RETRY_AFTER, "required": True}
    if status in (409, 503):
        headers["Retry-After"] = RETRY_AFTER
    if not headers:
        del response["headers"]


def _require_idempotency_key(op: dict[str, Any], responses: dict[str, Any]) -> None:
    """The key is required (400 without it); a replay carries ``Idempotent-Replayed``."""
    for param in op["parameters"]:
        if param["name"] == IDEMPOTENCY_HEADER:
            param["required"] = True
            param["schema"] = {**IDEMPOTENCY_SCHEMA, "title": IDEMPOTENCY_HEADER}
    for status, response in responses.items():
        if status.startswith("2"):
            response.setdefault("headers", {})["Idempotent-Replayed"] = REPLAYED


def _protocol_replies(responses: dict[str, Any]) -> None:
    protocol = {"application/json": {"schema": {}}, "text/plain": {"schema": {"type": "string"}}}
    responses["200"] = {"description": "The gateway's acknowledgement, in its protocol", "content": protocol}
    responses["404"] = {
        "description": DESCRIPTIONS[404].replace("object", "gateway or agency"),
        "content": {PROBLEM_JSON: {"schema": PROBLEM_REF}},
    }
    responses["default"] = {
        "description": "Any other answer the gateway's protocol defines (e.g. 204, or 401 for a bad signature)",
        "content": {**protocol, PROBLEM_JSON: {"schema": PROBLEM_REF}},
    }
    responses.pop("422", None)


def _authenticated(dependant: Dependant) -> bool:
    return any(d.call in AUTHENTICATING for d in _walk(dependant))


def _walk(dependant: Dependant) -> Iterator[Dependant]:
    yield dependant
    for sub in dependant.dependencies:
        yield from _walk(sub)


def _add_links(doc: dict[str, Any]) -> None:
    operations = {op["operationId"]: op for item in doc["paths"].values() for op in item.values()}
    for (producer, status), links in LINKS.items():
        response = operations[producer]["responses"][status]
        response["links"] = {
            name: {"operationId": target, "parameters": params} for name, (target, params) in links.items()
        }
