"""Authentication, scopes, isolation between agencies, and the ``lephi apikey`` command line.

* No key, a malformed Authorization header, an unknown key or a revoked key: 401 problem+json with a Bearer
  challenge, on every endpoint, before anything is looked up or stored.
* A key without the endpoint's scope: 403 ``insufficient_scope`` naming the scope; the same key with that scope
  alone gets through.
* Another agency's key sees nothing of agency A: every read, cancel, refund or payment of A's objects answers
  exactly like a missing object (404 ``not_found``), lists hold none of A's rows, and each attempt is logged as
  ``auth.cross_agency_access``. Every route with an id in its path is found from the OpenAPI document and probed.
* Keys are created, listed and revoked with the CLI, printed once, and stored only as a hash.
"""

from __future__ import annotations

import base64
import json
import re
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

import pytest
from click.testing import Result
from sqlalchemy import func, select

from lephi.jobs import HANDLERS
from lephi.tables import metadata
from payments.auth.cache import CHECK_SECONDS
from payments.auth.models import ApiKey, Scope
from payments.auth.service import create_key, revoke_key
from payments.core.context import AppContext
from payments.core.errors import PROBLEM_TYPE_BASE
from payments.outbox.worker import Worker
from payments.payment.models import Payment
from payments.reconcile.models import Category, ReconException
from payments.webhooks.models import DeliveryStatus, WebhookDelivery, WebhookEndpoint, WebhookMessage
from tests.conftest import Api, Cli
from tests.factories import dossier_body, page_form, payment_body, seed_agency

ALL_SCOPES = [s.value for s in Scope]
PROBLEM_JSON = "application/problem+json"
CROSS_AGENCY = "auth.cross_agency_access"


# --- helpers ------------------------------------------------------------------------------------------------------
def count_rows(ctx: AppContext) -> dict[str, int]:
    with ctx.db.read() as s:
        return {
            t.name: int(s.execute(select(func.count()).select_from(t)).scalar_one()) for t in metadata.sorted_tables
        }


def assert_problem(r: Any, status: int, code: str) -> dict[str, Any]:
    assert r.status_code == status, f"expected {status} {code}, got {r.status_code}: {r.text}"
    assert r.headers["content-type"].split(";")[0] == PROBLEM_JSON
    body = r.json()
    assert {"type", "title", "status", "detail", "code"} <= set(body), body
    assert body["status"] == status and body["code"] == code and body["type"] == PROBLEM_TYPE_BASE + code
    return dict(body)


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def _after_key_check(api: Api) -> None:
    """The service's clock moved past its next check of the key version: a key revoked before is refused from
    then on (payments/auth/cache.py; the two-process case is in tests/test_key_cache.py)."""
    clock = api.ctx.api_keys.clock
    api.ctx.api_keys.clock = lambda: clock() + CHECK_SECONDS


def new_key(ctx: AppContext, scopes: list[str], agency: str = "AGC-A") -> tuple[str, str]:
    """(key id, raw key)"""
    with ctx.db.write() as s:
        key, raw = create_key(s, agency, "test", scopes)
        return key.id, raw


def log_events(err: str, name: str) -> list[dict[str, Any]]:
    """The structlog JSON lines on stderr with this event name."""
    found = []
    for line in err.splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if isinstance(record, dict) and record.get("event") == name:
            found.append(record)
    return found


def pay(api: Api, outcome: str | None) -> dict[str, Any]:
    """A dossier and its payment, settled through the sandbox page like a payer would (None: left pending)."""
    r = api.post("/v1/dossiers", dossier_body(copies=2))
    assert r.status_code == 201, r.text
    r = api.post("/v1/payments", payment_body(r.json()["code"]))
    assert r.status_code == 201, r.text
    payment = r.json()
    if outcome is not None:
        page = api.client.get(payment["next_url"])
        action = re.search(r'action="([^"]+)"', page.text)
        assert action, page.text
        r = api.client.post(action.group(1), data=page_form(page.text, outcome=outcome), follow_redirects=False)
        assert r.status_code == 303, r.text
    return dict(api.get(f"/v1/payments/{payment['id']}").json())


@dataclass(frozen=True)
class World:
    """Agency A's objects: a succeeded payment, a pending one, and a dossier with no payment."""

    paid: str
    paid_dossier: str
    pending: str
    unpaid: str
    receipt: str = "doc_000000000000000000000003"


NOWHERE = World("pay_000000000000000000000001", "HS-NONE-1", "pay_000000000000000000000002", "HS-NONE-2")


def build_world(api: Api) -> World:
    paid = pay(api, "success")
    pending = pay(api, None)
    assert paid["status"] == "succeeded" and pending["status"] == "pending"
    r = api.post("/v1/dossiers", dossier_body())
    assert r.status_code == 201, r.text
    Worker(api.ctx, HANDLERS).run_once()  # issues the paid payment's receipt
    (receipt,) = api.get("/v1/receipts", params={"payment_id": paid["id"]}).json()
    return World(paid["id"], paid["dossier_code"], pending["id"], r.json()["code"], receipt["id"])


@dataclass(frozen=True)
class Endpoint:
    name: str
    method: str
    path: str
    scope: str
    body: Callable[[World], Any] | None = None

    def url(self, world: World) -> str:
        return self.path.format(**world.__dict__)

    def call(self, api: Api, world: World, headers: dict[str, str]) -> Any:
        if self.method == "GET":
            return api.client.get(self.url(world), headers=headers)
        headers = {"Idempotency-Key": secrets.token_hex(8), **headers}
        body = self.body(world) if self.body else None
        return api.client.post(self.url(world), json=body, headers=headers)


ENDPOINTS = [
    Endpoint("create-dossier", "POST", "/v1/dossiers", "dossiers:write", lambda w: dossier_body()),
    Endpoint("get-dossier", "GET", "/v1/dossiers/{unpaid}", "dossiers:read"),
    Endpoint("list-dossiers", "GET", "/v1/dossiers", "dossiers:read"),
    Endpoint("create-payment", "POST", "/v1/payments", "payments:write", lambda w: payment_body(w.unpaid)),
    Endpoint("cancel-payment", "POST", "/v1/payments/{pending}/cancel", "payments:write"),
    Endpoint("get-payment", "GET", "/v1/payments/{paid}", "payments:read"),
    Endpoint("list-payments", "GET", "/v1/payments", "payments:read"),
    Endpoint("list-refunds", "GET", "/v1/payments/{paid}/refunds", "payments:read"),
    Endpoint(
        "create-refund",
        "POST",
        "/v1/payments/{paid}/refunds",
        "refunds:write",
        lambda w: {"amount": 10_000, "reason": "Hồ sơ không đủ điều kiện"},
    ),
    Endpoint(
        "replace-receipt",
        "POST",
        "/v1/receipts/{receipt}/replace",
        "receipts:write",
        lambda w: {"reason": "Sai tên người nộp", "payer": {"name": "Trần Thị Bình"}},
    ),
    Endpoint(
        "create-webhook-endpoint",
        "POST",
        "/v1/webhook-endpoints",
        "webhooks:write",
        lambda w: {"url": "https://one-stop.example.gov.vn/events"},
    ),
    Endpoint("list-webhook-endpoints", "GET", "/v1/webhook-endpoints", "webhooks:write"),
    Endpoint("list-webhook-deliveries", "GET", "/v1/webhook-deliveries", "webhooks:write"),
    Endpoint("list-recon-exceptions", "GET", "/v1/reconciliation/exceptions", "reconciliation:read"),
    Endpoint("list-recon-runs", "GET", "/v1/reconciliation/runs", "reconciliation:read"),
    Endpoint("list-recon-imports", "GET", "/v1/reconciliation/imports", "reconciliation:read"),
    Endpoint(
        "daily-close-report", "GET", "/v1/reconciliation/reports/daily?business_day=2026-11-20", "reconciliation:read"
    ),
    Endpoint("province-stats", "GET", "/v1/province/stats?month=2026-11", "province:read"),
    Endpoint("list-receipt-series", "GET", "/v1/receipt-series", "receipts:admin"),
    Endpoint(
        "receipt-usage-report", "GET", "/v1/receipt-series/usage?start=2026-12-01&end=2026-12-31", "receipts:admin"
    ),
    Endpoint(
        "register-receipt-series",
        "POST",
        "/v1/receipt-series",
        "receipts:admin",
        # Next year's: this year's default series may already be open.
        lambda w: {"series": f"K{(datetime.now(UTC).year + 1) % 100:02d}TAB"},
    ),
    Endpoint(
        "run-recon-day",
        "POST",
        "/v1/reconciliation/runs",
        "reconciliation:write",
        lambda w: {"business_day": "2025-06-30"},
    ),
]
BY_NAME = {e.name: e for e in ENDPOINTS}
endpoints = pytest.mark.parametrize("endpoint", ENDPOINTS, ids=lambda e: e.name)


# --- 401 ----------------------------------------------------------------------------------------------------------
@endpoints
def test_missing_authorization_is_401_with_a_bearer_challenge(api: Api, endpoint: Endpoint) -> None:
    before = count_rows(api.ctx)
    r = endpoint.call(api, NOWHERE, {})
    body = assert_problem(r, 401, "unauthenticated")
    assert r.headers["www-authenticate"] == "Bearer"
    assert "Bearer" in body["detail"]
    assert count_rows(api.ctx) == before


def _malformed(key: str) -> dict[str, str]:
    return {
        "basic-x": "Basic x",
        "basic-with-the-key": "Basic " + base64.b64encode(f"{key}:".encode()).decode(),
        "bearer-without-token": "Bearer",
        "bearer-with-blank-token": "Bearer    ",
        "token-scheme": f"Token {key}",
        "key-without-scheme": key,
        "empty-header": "",
    }


@endpoints
def test_malformed_authorization_is_401(api: Api, endpoint: Endpoint) -> None:
    before = count_rows(api.ctx)
    for variant, header in _malformed(api.key).items():
        r = endpoint.call(api, NOWHERE, {"Authorization": header})
        assert r.status_code == 401, f"{variant}: {r.status_code} {r.text}"
        assert_problem(r, 401, "unauthenticated")
        assert r.headers["www-authenticate"].startswith("Bearer"), variant
    assert count_rows(api.ctx) == before


def test_the_scheme_is_case_insensitive(api: Api) -> None:
    """The control for the cases above: the same key, properly sent, is accepted (RFC 9110: schemes ignore case)."""
    for header in (f"Bearer {api.key}", f"bearer {api.key}", f"BEARER {api.key}"):
        assert api.client.get("/v1/payments", headers={"Authorization": header}).status_code == 200, header


@endpoints
def test_unknown_key_is_401(api: Api, endpoint: Endpoint, capsys: pytest.CaptureFixture[str]) -> None:
    before = count_rows(api.ctx)
    unknown = "lephi_" + secrets.token_urlsafe(32)
    for key in (unknown, api.key[:-1], api.key + "x", api.key.upper()):
        r = endpoint.call(api, NOWHERE, bearer(key))
        assert_problem(r, 401, "unauthenticated")
        assert r.headers["www-authenticate"] == 'Bearer error="invalid_token"'
    assert count_rows(api.ctx) == before
    assert unknown not in capsys.readouterr().err  # a rejected key is never logged


@endpoints
def test_revoked_key_is_401(api: Api, endpoint: Endpoint) -> None:
    key_id, raw = new_key(api.ctx, ALL_SCOPES)
    assert api.client.get("/v1/payments", headers=bearer(raw)).status_code == 200
    with api.ctx.db.write() as s:
        revoke_key(s, key_id)
    _after_key_check(api)
    before = count_rows(api.ctx)
    r = endpoint.call(api, NOWHERE, bearer(raw))
    assert_problem(r, 401, "unauthenticated")
    assert r.headers["www-authenticate"] == 'Bearer error="invalid_token"'
    assert count_rows(api.ctx) == before


# --- 403 ----------------------------------------------------------------------------------------------------------
@endpoints
def test_key_without_the_scope_is_403(api: Api, endpoint: Endpoint) -> None:
    world = build_world(api)
    _, lacking = new_key(api.ctx, [s for s in ALL_SCOPES if s != endpoint.scope])
    before = count_rows(api.ctx)
    r = endpoint.call(api, world, bearer(lacking))
    body = assert_problem(r, 403, "insufficient_scope")
    assert body["required_scope"] == endpoint.scope
    assert endpoint.scope in body["detail"]
    assert count_rows(api.ctx) == before
    # The control: that scope alone is enough.
    _, only = new_key(api.ctx, [endpoint.scope])
    r = endpoint.call(api, world, bearer(only))
    assert r.status_code in (200, 201), r.text


def test_scope_matrix_is_complete(api: Api) -> None:
    """Every scope guards an endpoint above, and every /v1/dossiers and /v1/payments route is in the matrix."""
    assert {e.scope for e in ENDPOINTS} == set(ALL_SCOPES)
    paths = api.client.app.openapi()["paths"]  # type: ignore[attr-defined]
    routes = {
        (method.upper(), re.sub(r"\{(\w+)\}", "{x}", path))
        for path, operations in paths.items()
        if path.startswith(("/v1/dossiers", "/v1/payments"))
        for method in operations
    }
    matrix = {(e.method, re.sub(r"\{(\w+)\}", "{x}", e.path)) for e in ENDPOINTS}
    assert routes == {route for route in matrix if route[1].startswith(("/v1/dossiers", "/v1/payments"))}


# --- another agency -----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class AgencyB:
    id: str
    key: str


@pytest.fixture
def agency_b(api: Api) -> AgencyB:
    with api.ctx.db.write() as s:
        agency = seed_agency(s, "AGC-B")
        _, raw = create_key(s, "AGC-B", "agency b", ALL_SCOPES)
    return AgencyB(agency.id, raw)


# (endpoint, the World field the endpoint names, the resource the log line names)
CROSS = [
    ("get-dossier", "unpaid", "dossier"),
    ("get-paid-dossier", "paid_dossier", "dossier"),
    ("get-payment", "paid", "payment"),
    ("list-refunds", "paid", "payment"),
    ("cancel-payment", "pending", "payment"),
    ("create-refund", "paid", "payment"),
    ("create-payment", "unpaid", "dossier"),
]


def _cross_endpoint(name: str) -> Endpoint:
    if name == "get-paid-dossier":
        return Endpoint(name, "GET", "/v1/dossiers/{paid_dossier}", "dossiers:read")
    return BY_NAME[name]


@pytest.mark.parametrize(("name", "target", "resource"), CROSS, ids=[c[0] for c in CROSS])
def test_other_agency_gets_404_and_is_logged(
    api: Api, agency_b: AgencyB, capsys: pytest.CaptureFixture[str], name: str, target: str, resource: str
) -> None:
    endpoint = _cross_endpoint(name)
    world = build_world(api)
    a_payments_before = api.get("/v1/payments").json()
    before = count_rows(api.ctx)
    capsys.readouterr()

    r = endpoint.call(api, world, bearer(agency_b.key))
    body = assert_problem(r, 404, "not_found")

    # Logged, naming the resource and the caller's agency (never agency A's data beyond the identifier).
    events = log_events(capsys.readouterr().err, CROSS_AGENCY)
    assert len(events) == 1, events
    event = events[0]
    assert event["agency_id"] == agency_b.id
    assert event["resource"] == resource
    assert event["resource_id"] == getattr(world, target)
    assert event["level"] == "warning"

    # Nothing of A's changed; a POST stores only B's own replayable 404 under B's Idempotency-Key.
    after = count_rows(api.ctx)
    expected = dict(before)
    if endpoint.method == "POST":
        expected["idempotency_record"] += 1
    assert after == expected
    assert api.get("/v1/payments").json() == a_payments_before
    assert api.get(f"/v1/payments/{world.pending}").json()["status"] == "pending"
    assert api.get(f"/v1/payments/{world.paid}/refunds").json() == []

    # Indistinguishable from an object that does not exist, which is not logged as cross-agency.
    missing = World("pay_ffffffffffffffffffffffff", "HS-MISSING-1", "pay_eeeeeeeeeeeeeeeeeeeeeeee", "HS-MISSING-2")
    r_missing = endpoint.call(api, missing, bearer(agency_b.key))
    missing_body = assert_problem(r_missing, 404, "not_found")
    assert body == json.loads(json.dumps(missing_body).replace(getattr(missing, target), getattr(world, target)))
    assert log_events(capsys.readouterr().err, CROSS_AGENCY) == []


# Every authenticated route that names an object in its path, found from the app itself so that a new route is
# covered the day it is added. Each path parameter names one of agency A's objects below.
def _path_ids(world: World, extra: ForeignObjects) -> dict[str, str]:
    return {
        "code": world.unpaid,
        "payment_id": world.pending,
        "document_id": world.receipt,
        "endpoint_id": extra.endpoint,
        "delivery_id": extra.delivery,
        "exception_id": extra.exception,
    }


# A valid body for each route that takes one, so that the request reaches the look-up (an invalid one stops at 422).
BODIES: dict[str, Any] = {
    "POST /v1/payments/{payment_id}/refunds": {"amount": 10_000, "reason": "Hồ sơ không đủ điều kiện"},
    "POST /v1/receipts/{document_id}/replace": {"reason": "Sai tên người nộp", "payer": {"name": "Trần Thị Bình"}},
    "POST /v1/reconciliation/exceptions/{exception_id}/resolve": {"note": "đã xử lý"},
    "POST /v1/reconciliation/exceptions/{exception_id}/reopen": {"note": "mở lại"},
}


@dataclass(frozen=True)
class ForeignObjects:
    """Agency A's objects that the API does not create in a few calls: a webhook endpoint, a failed delivery to it,
    a reconciliation exception about the paid payment, and that payment's dossier's id."""

    endpoint: str
    delivery: str
    exception: str
    dossier_id: str


def _add_objects(ctx: AppContext, agency_id: str, world: World) -> ForeignObjects:
    with ctx.db.write() as s:
        dossier_id = s.execute(select(Payment.dossier_id).where(Payment.id == world.paid)).scalar_one()
        endpoint = WebhookEndpoint(agency_id=agency_id, url="https://one-stop.example.gov.vn/events", secret="whsec_x")
        message = WebhookMessage(agency_id=agency_id, event_type="payment.succeeded", body="{}")
        exception = ReconException(
            agency_id=agency_id,
            key="cross-agency-test",
            category=Category.paid_not_settled,
            business_day=date(2026, 11, 20),
            first_run_id="run_x",
            last_run_id="run_x",
            payment_id=world.paid,
            dossier_id=dossier_id,
        )
        s.add_all([endpoint, message, exception])
        s.flush()
        delivery = WebhookDelivery(
            agency_id=agency_id,
            message_id=message.id,
            endpoint_id=endpoint.id,
            event_type=message.event_type,
            status=DeliveryStatus.failed,
            attempts=8,
        )
        s.add(delivery)
        s.flush()
        return ForeignObjects(endpoint.id, delivery.id, exception.id, dossier_id)


def _wants_a_key(anonymous: Any) -> bool:
    """An anonymous call challenged for an API key (a gateway callback may refuse a message, but not this way)."""
    return bool(anonymous.status_code == 401 and anonymous.headers.get("www-authenticate") == "Bearer")


def _routes_with_ids(api: Api) -> list[tuple[str, str, set[str], bool]]:
    """(method, path, path parameters, takes a body) of each route with an id in its path that wants an API key:
    the OpenAPI document lists them, and an anonymous call tells which want a key."""
    found = []
    for path, operations in api.client.app.openapi()["paths"].items():  # type: ignore[attr-defined]
        for method, operation in operations.items():
            params = {p["name"] for p in operation.get("parameters", []) if p["in"] == "path"}
            if not params:
                continue
            if _wants_a_key(api.client.request(method.upper(), re.sub(r"\{(\w+)\}", "x", path))):
                found.append((method.upper(), path, params, "requestBody" in operation))
    return found


def _call(api: Api, method: str, path: str, ids: dict[str, str], key: str) -> Any:
    url = re.sub(r"\{(\w+)\}", lambda m: ids[m.group(1)], path)
    headers = {**bearer(key), **({} if method in ("GET", "DELETE") else {"Idempotency-Key": secrets.token_hex(8)})}
    return api.client.request(method, url, json=BODIES.get(f"{method} {path}"), headers=headers)


def test_every_route_with_an_id_answers_404_and_logs_for_another_agency(
    api: Api, agency_b: AgencyB, capsys: pytest.CaptureFixture[str]
) -> None:
    world = build_world(api)
    objects = _add_objects(api.ctx, api.agency_id, world)
    ids = _path_ids(world, objects)
    routes = _routes_with_ids(api)
    assert len(routes) >= 10, routes  # the discovery found the routes, not nothing
    missing_ids = {name: f"{value[:4]}ffffffffffffffffffffffff" for name, value in ids.items()}
    for method, path, params, takes_body in routes:
        label = f"{method} {path}"
        assert params <= set(ids), f"{label}: name one of agency A's objects for {params - set(ids)}"
        assert not takes_body or label in BODIES, f"{label}: give a valid body in BODIES"
        before = count_rows(api.ctx)
        capsys.readouterr()

        r = _call(api, method, path, ids, agency_b.key)
        body = assert_problem(r, 404, "not_found")
        events = log_events(capsys.readouterr().err, CROSS_AGENCY)
        assert len(events) == 1, (label, events)
        assert events[0]["agency_id"] == agency_b.id and events[0]["level"] == "warning", label
        assert events[0]["resource_id"] in {ids[p] for p in params}, label
        after = count_rows(api.ctx)
        stored = after.pop("idempotency_record") - before.pop("idempotency_record")
        assert after == before and stored in (0, 1), label  # at most B's own replayable 404

        # The same answer as for an object that does not exist, which is no cross-agency attempt.
        r_missing = _call(api, method, path, missing_ids, agency_b.key)
        missing_body = assert_problem(r_missing, 404, "not_found")
        for p in params:
            missing_body["detail"] = missing_body["detail"].replace(missing_ids[p], ids[p])
        assert body == missing_body, label
        assert log_events(capsys.readouterr().err, CROSS_AGENCY) == [], label

    # The control: agency A's own key reaches each object (no 404), so B's 404s were about ownership.
    for method, path, _, _ in routes:
        if method == "GET":
            assert _call(api, method, path, ids, api.key).status_code == 200, path


def _id_filters(api: Api) -> list[tuple[str, str]]:
    """(path, query parameter) of each list route wanting an API key whose filter names an object by its id."""
    found = []
    for path, operations in api.client.app.openapi()["paths"].items():  # type: ignore[attr-defined]
        operation = operations.get("get")
        if operation is None or "{" in path or not _wants_a_key(api.client.get(path)):
            continue
        found += [
            (path, p["name"])
            for p in operation.get("parameters", [])
            if p["in"] == "query" and p["name"].endswith("_id")
        ]
    return found


def _rows(body: Any) -> list[Any]:
    return list(body["data"] if isinstance(body, dict) else body)


def test_list_filters_naming_another_agencys_object_find_nothing_and_log(
    api: Api, agency_b: AgencyB, capsys: pytest.CaptureFixture[str]
) -> None:
    world = build_world(api)
    objects = _add_objects(api.ctx, api.agency_id, world)
    ids = {"payment_id": world.paid, "endpoint_id": objects.endpoint, "dossier_id": objects.dossier_id}
    filters = _id_filters(api)
    assert len(filters) >= 3, filters
    for path, name in filters:
        label = f"GET {path}?{name}="
        assert name in ids, f"{label}: name one of agency A's objects for it"
        # The control: A's own filter finds A's rows.
        assert _rows(api.get(path, params={name: ids[name]}).json()), label
        capsys.readouterr()

        r = api.client.get(path, params={name: ids[name]}, headers=bearer(agency_b.key))
        assert r.status_code == 200 and _rows(r.json()) == [], (label, r.text)
        events = log_events(capsys.readouterr().err, CROSS_AGENCY)
        assert len(events) == 1, (label, events)
        assert events[0]["agency_id"] == agency_b.id and events[0]["resource_id"] == ids[name], label

        # As for an object that does not exist, which is not logged.
        missing = f"{ids[name][:4]}ffffffffffffffffffffffff"
        r_missing = api.client.get(path, params={name: missing}, headers=bearer(agency_b.key))
        assert r_missing.status_code == 200 and r_missing.json() == r.json(), label
        assert log_events(capsys.readouterr().err, CROSS_AGENCY) == [], label


def test_other_agency_lists_none_of_a(api: Api, agency_b: AgencyB) -> None:
    world = build_world(api)
    b = bearer(agency_b.key)
    for path in ("/v1/dossiers", "/v1/payments"):
        r = api.client.get(path, headers=b)
        assert r.status_code == 200 and r.json() == {"data": [], "next_cursor": None}, r.text
    for params in (
        {"dossier_code": world.paid_dossier},
        {"status": "succeeded"},
        {"status": "pending"},
        {"method": "sandbox"},
        {"limit": 100},
    ):
        r = api.client.get("/v1/payments", headers=b, params=params)
        assert r.status_code == 200 and r.json()["data"] == [], (params, r.text)
    for params in ({"status": "paid"}, {"status": "unpaid"}, {"procedure_code": "1.001234"}, {"limit": 100}):
        r = api.client.get("/v1/dossiers", headers=b, params=params)
        assert r.status_code == 200 and r.json()["data"] == [], (params, r.text)
    # A sees its own three dossiers and two payments.
    assert len(api.get("/v1/dossiers").json()["data"]) == 3
    assert len(api.get("/v1/payments").json()["data"]) == 2


def test_dossier_codes_are_per_agency(api: Api, agency_b: AgencyB) -> None:
    """B may use the same dossier code as A: it creates and pays B's own dossier and never touches A's."""
    world = build_world(api)
    a_dossier = api.get(f"/v1/dossiers/{world.unpaid}").json()
    b = {**bearer(agency_b.key)}
    r = api.client.post(
        "/v1/dossiers",
        json=dossier_body(code=world.unpaid, copies=5, payer={"name": "Người của B"}),
        headers={**b, "Idempotency-Key": "b-1"},
    )
    assert r.status_code == 201, r.text  # created, not an update of A's
    assert r.json()["agency_code"] == "AGC-B" and r.json()["total_amount"] == 125_000
    r = api.client.post("/v1/payments", json=payment_body(world.unpaid), headers={**b, "Idempotency-Key": "b-2"})
    assert r.status_code == 201, r.text
    b_payment = r.json()
    assert api.get(f"/v1/dossiers/{world.unpaid}").json() == a_dossier
    assert api.get("/v1/payments", params={"dossier_code": world.unpaid}).json()["data"] == []
    assert_problem(api.get(f"/v1/payments/{b_payment['id']}"), 404, "not_found")
    listed = api.client.get("/v1/dossiers", headers=b).json()["data"]
    assert [(d["code"], d["agency_code"]) for d in listed] == [(world.unpaid, "AGC-B")]
    assert [p["id"] for p in api.client.get("/v1/payments", headers=b).json()["data"]] == [b_payment["id"]]


# --- keys are stored only as a hash -------------------------------------------------------------------------------
def assert_nowhere_in_the_database(ctx: AppContext, raw: str) -> None:
    with ctx.db.read() as s:
        for table in metadata.sorted_tables:
            for row in s.execute(select(table)).mappings():
                for column, value in row.items():
                    assert raw not in str(value), f"the raw key is stored in {table.name}.{column}"


def test_keys_are_stored_only_as_a_hash(api: Api) -> None:
    _, raw = new_key(api.ctx, ["payments:read", "dossiers:write"])
    # Use the keys so that every place that records a caller (idempotency records, events) has a row.
    pay(api, "success")
    assert api.client.get("/v1/payments", headers=bearer(raw)).status_code == 200
    r = api.client.post("/v1/dossiers", json=dossier_body(), headers={**bearer(raw), "Idempotency-Key": "h-1"})
    assert r.status_code == 201, r.text
    with api.ctx.db.read() as s:
        rows = s.execute(select(ApiKey)).scalars().all()
        assert len(rows) == 2
        for row in rows:
            assert re.fullmatch(r"[0-9a-f]{64}", row.key_hash)
            assert len(row.prefix) < 20
    for key in (api.key, raw):
        with api.ctx.db.read() as s:
            for row in s.execute(select(metadata.tables["api_key"])).mappings():
                assert all(key not in str(v) for v in row.values()), "raw key in the api_key table"
        assert_nowhere_in_the_database(api.ctx, key)


# --- the CLI ------------------------------------------------------------------------------------------------------
KEY_ID = re.compile(r"\bkey_[0-9a-f]{24}\b")


def _create(cli: Cli, scopes: str, agency: str = "AGC-A") -> tuple[str, str, Result]:
    result = cli("apikey", "create", "--agency", agency, "--scopes", scopes, "--name", "portal")
    assert result.exit_code == 0, result.output
    lines = result.stdout.strip().splitlines()
    raw = lines[-1].strip()
    key_id = KEY_ID.search(result.stdout)
    assert key_id, result.stdout
    return key_id.group(0), raw, result


def test_cli_creates_a_key_printed_once_as_the_last_line(api: Api, cli: Cli) -> None:
    before = count_rows(api.ctx)["api_key"]
    key_id, raw, result = _create(cli, "payments:read")
    assert raw.startswith("lephi_") and len(raw) >= 40 and " " not in raw
    assert result.stdout.count(raw) == 1
    assert count_rows(api.ctx)["api_key"] == before + 1
    with api.ctx.db.read() as s:
        key = s.get(ApiKey, key_id)
        assert key is not None and key.scopes == ["payments:read"] and key.name == "portal"
        assert key.revoked_at is None
    # It authenticates, with exactly its scope.
    assert api.client.get("/v1/payments", headers=bearer(raw)).status_code == 200
    r = api.client.get("/v1/dossiers", headers=bearer(raw))
    assert_problem(r, 403, "insufficient_scope")
    assert_nowhere_in_the_database(api.ctx, raw)


def test_cli_accepts_several_scopes(api: Api, cli: Cli) -> None:
    key_id, raw, _ = _create(cli, " dossiers:read , payments:read,dossiers:read ")
    with api.ctx.db.read() as s:
        key = s.get(ApiKey, key_id)
        assert key is not None and key.scopes == ["dossiers:read", "payments:read"]
    assert api.client.get("/v1/dossiers", headers=bearer(raw)).status_code == 200


@pytest.mark.parametrize(
    ("agency", "scopes"),
    [
        ("AGC-A", "payments:read,payments:delete"),
        ("AGC-A", "admin"),
        ("AGC-A", "PAYMENTS:READ"),
        ("AGC-A", ""),
        ("AGC-A", " , "),
        ("AGC-NOPE", "payments:read"),
    ],
    ids=["one-unknown-scope", "unknown-scope", "wrong-case", "empty", "blank", "unknown-agency"],
)
def test_cli_refuses_bad_scopes_and_creates_nothing(api: Api, cli: Cli, agency: str, scopes: str) -> None:
    before = count_rows(api.ctx)
    result = cli("apikey", "create", "--agency", agency, "--scopes", scopes)
    assert result.exit_code == 2, result.output
    assert result.stderr.startswith("error: "), result.stderr  # our message, not a usage error
    assert "lephi_" not in result.output
    assert count_rows(api.ctx) == before


def test_cli_list_never_prints_a_key(api: Api, cli: Cli) -> None:
    key_id, raw, _ = _create(cli, "payments:read,refunds:write")
    result = cli("apikey", "list")
    assert result.exit_code == 0, result.output
    assert key_id in result.stdout and "AGC-A" in result.stdout
    for key in (raw, api.key):
        assert key not in result.output
        assert key[:16] not in result.output  # at most the short prefix that tells keys apart
    line = next(line for line in result.stdout.splitlines() if key_id in line)
    assert "active" in line and "payments:read,refunds:write" in line
    # Filtered by agency.
    result = cli("apikey", "list", "--agency", "AGC-NONE")
    assert result.exit_code == 0 and result.stdout.strip() == ""


def test_cli_revoke_makes_the_key_fail(api: Api, cli: Cli) -> None:
    key_id, raw, _ = _create(cli, "payments:read")
    assert api.client.get("/v1/payments", headers=bearer(raw)).status_code == 200
    result = cli("apikey", "revoke", key_id)
    assert result.exit_code == 0, result.output
    _after_key_check(api)
    r = api.client.get("/v1/payments", headers=bearer(raw))
    assert_problem(r, 401, "unauthenticated")
    assert r.headers["www-authenticate"] == 'Bearer error="invalid_token"'
    line = next(line for line in cli("apikey", "list").stdout.splitlines() if key_id in line)
    assert "revoked" in line
    # Revoking again is harmless; an unknown id is refused.
    assert cli("apikey", "revoke", key_id).exit_code == 0
    assert api.client.get("/v1/payments", headers=bearer(api.key)).status_code == 200  # other keys unaffected
    unknown = cli("apikey", "revoke", "key_000000000000000000000000")
    assert unknown.exit_code == 2 and unknown.stderr.startswith("error: ")
