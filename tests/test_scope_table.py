"""Every route under /v1, found by walking the app's routes, against a table written here of the scope each needs.

* A route missing from the table (a new one) or in the table but gone fails the suite, so each new route is decided.
* Each route in the table with a scope: no key is a 401 with a Bearer challenge; a key of the same agency holding
  every scope but that one is a 403 ``insufficient_scope`` naming it, and changes nothing; a key holding that scope
  alone gets past the check (the control).
* Routes marked public (the gateways' callbacks, which carry their own signatures, and the OpenAPI document) answer
  an anonymous call without asking for an API key.

Another agency's key on a route naming an object answers 404, exactly like a missing object: that is
tests/test_auth.py (``test_every_route_with_an_id_answers_404_and_logs_for_another_agency``), which finds the
routes the same way.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.routing import APIRoute
from starlette.routing import BaseRoute

from tests.conftest import Api
from tests.factories import dossier_body, payment_body
from tests.test_auth import (
    ALL_SCOPES,
    BODIES,
    _add_objects,
    _path_ids,
    assert_problem,
    bearer,
    build_world,
    count_rows,
    new_key,
)

PUBLIC = None
# "METHOD /path": the scope an API key needs, or PUBLIC. Written out, not read from the code.
SCOPES: dict[str, str | None] = {
    "GET /v1/openapi.json": PUBLIC,
    "GET /v1/gateways/{gateway}/callback": PUBLIC,
    "POST /v1/gateways/{gateway}/callback": PUBLIC,
    "GET /v1/gateways/{gateway}/callback/{agency_code}": PUBLIC,
    "POST /v1/gateways/{gateway}/callback/{agency_code}": PUBLIC,
    "POST /v1/dossiers": "dossiers:write",
    "GET /v1/dossiers": "dossiers:read",
    "GET /v1/dossiers/{code}": "dossiers:read",
    "POST /v1/payments": "payments:write",
    "GET /v1/payments": "payments:read",
    "GET /v1/payments/{payment_id}": "payments:read",
    "POST /v1/payments/{payment_id}/cancel": "payments:write",
    "GET /v1/payments/{payment_id}/refunds": "payments:read",
    "POST /v1/payments/{payment_id}/refunds": "refunds:write",
    "GET /v1/receipts": "payments:read",
    "GET /v1/receipts/{document_id}": "payments:read",
    "GET /v1/receipts/{document_id}.xml": "payments:read",
    "GET /v1/receipts/{document_id}.pdf": "payments:read",
    "GET /v1/receipts/{document_id}.html": "payments:read",
    "POST /v1/receipts/verify": "payments:read",
    "POST /v1/receipts/{document_id}/replace": "receipts:write",
    "GET /v1/receipt-series": "receipts:admin",
    "POST /v1/receipt-series": "receipts:admin",
    "POST /v1/receipt-series/close": "receipts:admin",
    "GET /v1/receipt-series/usage": "receipts:admin",
    "GET /v1/bank-credits": "payments:read",
    "POST /v1/webhook-endpoints": "webhooks:write",
    "GET /v1/webhook-endpoints": "webhooks:write",
    "DELETE /v1/webhook-endpoints/{endpoint_id}": "webhooks:write",
    "GET /v1/webhook-deliveries": "webhooks:write",
    "POST /v1/webhook-deliveries/{delivery_id}/retry": "webhooks:write",
    "GET /v1/reconciliation/exceptions": "reconciliation:read",
    "GET /v1/reconciliation/exceptions/{exception_id}": "reconciliation:read",
    "POST /v1/reconciliation/exceptions/{exception_id}/resolve": "reconciliation:write",
    "POST /v1/reconciliation/exceptions/{exception_id}/reopen": "reconciliation:write",
    "GET /v1/reconciliation/runs": "reconciliation:read",
    "POST /v1/reconciliation/runs": "reconciliation:write",
    "GET /v1/reconciliation/imports": "reconciliation:read",
    "GET /v1/reconciliation/reports/daily": "reconciliation:read",
    "GET /v1/reconciliation/reports/exceptions": "reconciliation:read",
    "GET /v1/province/stats": "province:read",
}
# What a request needs besides the scope to be served (so that the control is not stopped by a 422).
QUERY: dict[str, str] = {
    "GET /v1/receipts": "?payment_id={paid}",
    "GET /v1/receipt-series/usage": "?start=2026-01-01&end=2026-01-31",
    "GET /v1/reconciliation/reports/daily": "?business_day=2026-11-20",
    "GET /v1/reconciliation/reports/exceptions": "?business_day=2026-11-20",
    "GET /v1/province/stats": "?month=2026-11",
}


def _body(route: str, ids: dict[str, Any]) -> Any:
    if route in BODIES:
        return BODIES[route]
    return {
        "POST /v1/dossiers": dossier_body(),
        "POST /v1/payments": payment_body(ids.get("unpaid", "HS-NONE")),
        "POST /v1/reconciliation/runs": {"business_day": "2025-06-30"},
        "POST /v1/receipt-series": {"series": "K27TLP"},
        "POST /v1/receipt-series/close": {"series": "K27TLP"},
        "POST /v1/webhook-endpoints": {"url": "https://one-stop.example.gov.vn/events"},
    }.get(route)


def _walk(routes: list[BaseRoute]) -> Iterator[BaseRoute]:
    for route in routes:
        included = getattr(route, "original_router", None)  # FastAPI keeps an included router whole
        if included is not None:
            yield from _walk(included.routes)
        else:
            yield route


def v1_routes(app: FastAPI) -> set[str]:
    found = set()
    for route in _walk(app.routes):
        path = getattr(route, "path", "")
        if not path.startswith("/v1/"):
            continue
        methods = route.methods if isinstance(route, APIRoute) else getattr(route, "methods", None) or {"GET"}
        found |= {f"{m} {path}" for m in methods if m != "HEAD"}
    return found


def test_every_v1_route_is_in_the_table(api: Api) -> None:
    routes = v1_routes(api.client.app)  # type: ignore[arg-type]
    assert len(routes) >= 30, routes  # the walk found the routes, not nothing
    unknown = routes - set(SCOPES)
    assert not unknown, f"routes without an entry in SCOPES (decide the scope each needs): {sorted(unknown)}"
    gone = set(SCOPES) - routes
    assert not gone, f"entries in SCOPES for routes that no longer exist: {sorted(gone)}"
    assert {s for s in SCOPES.values() if s is not None} == set(ALL_SCOPES)


def _call(api: Api, route: str, ids: dict[str, Any], headers: dict[str, str]) -> Any:
    method, path = route.split(" ", 1)
    url = re.sub(r"\{(\w+)\}", lambda m: str(ids[m.group(1)]), path) + QUERY.get(route, "").format(**ids)
    if method not in ("GET", "DELETE"):
        headers = {"Idempotency-Key": secrets.token_hex(8), **headers}
    return api.client.request(method, url, json=_body(route, ids), headers=headers)


def test_public_routes_ask_for_no_key(api: Api) -> None:
    for route, scope in SCOPES.items():
        if scope is PUBLIC:
            r = _call(api, route, {"gateway": "sandbox", "agency_code": "AGC-A"}, {})
            # A callback with no valid signature may be refused, but never with an API-key challenge.
            assert not r.headers.get("www-authenticate", "").startswith("Bearer"), (route, r.status_code, r.text)
            assert r.status_code < 500, (route, r.status_code, r.text)


@pytest.mark.parametrize("route", [r for r, s in SCOPES.items() if s is not PUBLIC])
def test_each_route_refuses_a_key_without_its_scope(api: Api, route: str) -> None:
    scope = SCOPES[route]
    assert scope is not None
    world = build_world(api)
    objects = _add_objects(api.ctx, api.agency_id, world)
    ids = {**world.__dict__, **_path_ids(world, objects)}

    r = _call(api, route, ids, {})
    assert_problem(r, 401, "unauthenticated")
    assert r.headers["www-authenticate"] == "Bearer"

    _, lacking = new_key(api.ctx, [s for s in ALL_SCOPES if s != scope])
    before = count_rows(api.ctx)
    r = _call(api, route, ids, bearer(lacking))
    body = assert_problem(r, 403, "insufficient_scope")
    assert body["required_scope"] == scope and scope in body["detail"]
    assert count_rows(api.ctx) == before

    # The control: that scope alone gets past the check (the answer is then the route's own).
    _, only = new_key(api.ctx, [scope])
    r = _call(api, route, ids, bearer(only))
    assert r.status_code not in (401, 403), (route, r.status_code, r.text)
    assert r.status_code < 500, (route, r.status_code, r.text)
