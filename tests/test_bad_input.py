"""Bad input is refused with a 4xx problem+json, never a 5xx, and stores nothing.

Every case below asserts:

* a 4xx status (never 5xx), ``Content-Type: application/problem+json`` and the RFC 9457 members ``type``, ``title``,
  ``status`` and ``detail``, plus the stable ``code`` the case expects;
* the body does not echo what was sent: the payer's name and e-mail, a refund reason, a return URL or an over-long
  string never appear in it, and field errors carry only ``loc``, ``msg`` and ``type`` (no ``input``). Identifiers
  the client chose (a dossier or procedure code, a method name) may be named in ``detail``: they are not personal;
* the row count of every table is the same before and after.

What the Idempotency-Key stores, precisely (payments/idempotency/service.py):

* Errors found before the endpoint runs (unreadable JSON, schema validation, a missing or invalid Idempotency-Key,
  a body over the size limit) happen before the key is claimed: no ``idempotency_record`` row at all.
* Domain errors raised by the operation itself (an unknown procedure or fee code, a quantity above the schedule's
  maximum, a dossier that owes nothing, an unknown dossier, a method not enabled, ``refund_exceeds_available``) are
  not transient, so the claim is completed with the error as its stored response: exactly one more
  ``idempotency_record`` row, in state ``completed`` with that status and body, and a retry with the same key and
  body replays the same error (``Idempotent-Replayed: true``) without touching anything else. These cases are marked
  ``replayable``.

The sandbox gateway's callback answers in the gateway's own protocol (``{"result": ...}``, chosen by the adapter's
``callback_reply``) rather than in problem+json, by design: a gateway parses its own reply format. Its cases assert
that reply; only errors raised at the HTTP edge before the adapter runs (413, an unknown gateway) are problem+json.
"""

from __future__ import annotations

import base64
import copy
import json
import re
import secrets
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select

from adapters.sandbox import SIGNATURE_HEADER, sign
from lephi.tables import metadata
from payments.core.context import AppContext
from payments.core.errors import PROBLEM_TYPE_BASE
from payments.idempotency.models import IdempotencyRecord, IdempotencyState
from tests.conftest import Api
from tests.factories import PROCEDURE, dossier_body, page_form, payment_body

JSON = "application/json"
PROBLEM_JSON = "application/problem+json"

# Values that must never come back in an error body.
SECRET_NAME = "Phạm Thị Riêng Tư"
SECRET_EMAIL = "rieng.tu.7qx@example.com"
SECRET_REASON = "Lý do hoàn phí riêng tư 7QX"
SECRET_RETURN = "https://portal.example.gov.vn/done/secret-return-7qx"
LONG = ("Z7QX-over-long-input-" * 120)[:2100]
FORBIDDEN = (SECRET_NAME, SECRET_EMAIL, SECRET_REASON, SECRET_RETURN, LONG[:60])


# --- helpers ------------------------------------------------------------------------------------------------------
def count_rows(ctx: AppContext) -> dict[str, int]:
    with ctx.db.read() as s:
        return {
            t.name: int(s.execute(select(func.count()).select_from(t)).scalar_one()) for t in metadata.sorted_tables
        }


def assert_problem(r: Any, status: int, code: str, forbidden: tuple[str, ...] = FORBIDDEN) -> dict[str, Any]:
    assert r.status_code < 500, f"server error {r.status_code}: {r.text}"
    assert r.status_code == status, f"expected {status} {code}, got {r.status_code}: {r.text}"
    assert 400 <= r.status_code < 500
    assert r.headers["content-type"].split(";")[0].strip() == PROBLEM_JSON, r.headers["content-type"]
    body = r.json()
    assert isinstance(body, dict)
    for member in ("type", "title", "status", "detail", "code"):
        assert member in body, f"problem body lacks {member!r}: {body}"
    assert isinstance(body["title"], str) and body["title"]
    assert isinstance(body["detail"], str) and body["detail"]
    assert body["status"] == r.status_code
    assert isinstance(body["code"], str) and re.fullmatch(r"[a-z][a-z0-9_]*", body["code"])
    assert body["code"] == code, f"expected code {code!r}, got {body['code']!r}: {body}"
    assert body["type"] == PROBLEM_TYPE_BASE + code
    for error in body.get("errors", []):
        assert set(error) <= {"loc", "msg", "type"}, f"a field error carries more than loc/msg/type: {error}"
    text = json.dumps(body, ensure_ascii=False)
    for value in forbidden:
        assert value not in r.text and value not in text, f"the problem body echoes {value[:40]!r}: {text[:500]}"
    return body


def b64(raw: str) -> str:
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def _set(body: Any, path: str, value: Any, delete: bool = False) -> Any:
    keys: list[Any] = [int(k) if k.isdigit() else k for k in path.split(".")]
    node = body
    for key in keys[:-1]:
        node = node[key]
    if delete:
        del node[keys[-1]]
    else:
        node[keys[-1]] = value
    return body


def with_(path: str, value: Any) -> Callable[[Any], Any]:
    return lambda body: _set(body, path, value)


def without(path: str) -> Callable[[Any], Any]:
    return lambda body: _set(body, path, None, delete=True)


def whole(value: Any) -> Callable[[Any], Any]:
    return lambda _body: value


def raw_json(transform: Callable[[str], str]) -> Callable[[Any], bytes]:
    """The valid body serialised, then edited as text (for number spellings json.dumps cannot produce)."""
    return lambda body: transform(json.dumps(body)).encode()


def same(body: Any) -> Any:
    return body


@dataclass(frozen=True)
class Case:
    name: str
    status: int
    code: str
    body: Callable[[Any], Any] | bytes = same
    content_type: str | None = JSON
    headers: dict[str, str | None] = field(default_factory=dict)
    replayable: bool = False


def case_id(case: Case) -> str:
    return case.name


@dataclass
class Target:
    api: Api
    path: str
    base: dict[str, Any]


def payload_of(target: Target, case: Case) -> bytes:
    value = case.body if isinstance(case.body, bytes) else case.body(copy.deepcopy(target.base))
    return value if isinstance(value, bytes) else json.dumps(value).encode()


def send(target: Target, case: Case, key: str) -> Any:
    headers: dict[str, str] = {**target.api.auth, "Idempotency-Key": key}
    if case.content_type:
        headers["Content-Type"] = case.content_type
    for name, value in case.headers.items():
        if value is None:
            headers.pop(name, None)
        else:
            headers[name] = value
    return target.api.client.post(target.path, content=payload_of(target, case), headers=headers)


def check_post(target: Target, case: Case) -> None:
    ctx = target.api.ctx
    before = count_rows(ctx)
    key = "bad-" + secrets.token_hex(8)
    r = send(target, case, key)
    body = assert_problem(r, case.status, case.code)
    after = count_rows(ctx)
    if not case.replayable:
        assert after == before, f"rows changed: {_diff(before, after)}"
        return
    # A domain error is the operation's result: stored under the key, replayed on retry, nothing else written.
    assert after == {**before, "idempotency_record": before["idempotency_record"] + 1}, _diff(before, after)
    with ctx.db.read() as s:
        record = s.execute(select(IdempotencyRecord).where(IdempotencyRecord.key == key)).scalar_one()
        assert record.state is IdempotencyState.completed
        assert record.response_status == r.status_code
        assert json.loads(record.response_body or "null") == body
        assert record.resource_id is None
    again = send(target, case, key)
    assert again.status_code == r.status_code
    assert again.headers.get("idempotent-replayed") == "true"
    assert again.json() == body
    assert again.headers["content-type"].split(";")[0] == PROBLEM_JSON
    assert count_rows(ctx) == after


def _diff(before: dict[str, int], after: dict[str, int]) -> dict[str, tuple[int, int]]:
    return {k: (before[k], after[k]) for k in before if before[k] != after[k]}


def pay(api: Api, outcome: str | None = "success") -> dict[str, Any]:
    """A dossier and its payment, settled through the sandbox page like a payer would (None: left pending)."""
    r = api.post("/v1/dossiers", dossier_body(copies=2))
    assert r.status_code == 201, r.text
    r = api.post("/v1/payments", payment_body(r.json()["code"]))
    assert r.status_code == 201, r.text
    payment = r.json()
    if outcome is not None:
        page = api.client.get(payment["next_url"])
        assert page.status_code == 200, page.text
        action = re.search(r'action="([^"]+)"', page.text)
        assert action
        r = api.client.post(action.group(1), data=page_form(page.text, outcome=outcome), follow_redirects=False)
        assert r.status_code == 303, r.text
    return dict(api.get(f"/v1/payments/{payment['id']}").json())


# --- targets --------------------------------------------------------------------------------------------------------
def dossier_base() -> dict[str, Any]:
    return dossier_body(
        code="HS-BAD-0001",
        copies=2,
        payer={"name": SECRET_NAME, "email": SECRET_EMAIL, "address": "12 Phố Riêng"},
    )


@pytest.fixture
def dossier_target(api: Api) -> Target:
    return Target(api, "/v1/dossiers", dossier_base())


@pytest.fixture
def payment_target(api: Api) -> Target:
    r = api.post("/v1/dossiers", dossier_body(code="HS-PAY-0001"))
    assert r.status_code == 201, r.text
    return Target(api, "/v1/payments", {**payment_body("HS-PAY-0001"), "return_url": SECRET_RETURN})


@pytest.fixture
def refund_target(api: Api) -> Target:
    payment = pay(api, "success")
    assert payment["status"] == "succeeded" and payment["refundable_amount"] == 110_000
    return Target(api, f"/v1/payments/{payment['id']}/refunds", {"amount": 10_000, "reason": SECRET_REASON})


# --- cases shared by every JSON POST ----------------------------------------------------------------------------
GENERIC = [
    # Unreadable bodies: one code, malformed_request, whatever stage of reading fails.
    Case("malformed-json", 400, "malformed_request", b'{"code": '),
    Case("trailing-comma", 400, "malformed_request", b'{"a": 1,}'),
    Case("single-quoted-json", 400, "malformed_request", b"{'a': 1}"),
    Case("bare-word", 400, "malformed_request", b"hello"),
    Case("truncated-body", 400, "malformed_request", lambda body: json.dumps(body)[:-3].encode()),
    Case("invalid-utf8-bytes", 400, "malformed_request", b'{"reason": "\xff\xfe\xfd"}'),
    Case("latin1-encoded-text", 400, "malformed_request", '{"reason": "José Müller"}'.encode("latin-1")),
    Case("nesting-deeper-than-the-parser", 400, "malformed_request", b"[" * 20_000 + b"]" * 20_000),
    Case("integer-of-5000-digits", 400, "malformed_request", b'{"amount": ' + b"9" * 5000 + b"}"),
    # Valid JSON that is not an object.
    Case("empty-body", 422, "validation_error", b""),
    Case("json-null", 422, "validation_error", whole(None)),
    Case("json-array", 422, "validation_error", whole([])),
    Case("json-array-of-the-body", 422, "validation_error", lambda body: [body]),
    Case("json-string", 422, "validation_error", whole("a string")),
    Case("json-number", 422, "validation_error", whole(42)),
    Case("json-true", 422, "validation_error", whole(True)),
    # A valid body under the wrong content type is not read as JSON; FastAPI hands the raw bytes to validation,
    # which refuses them as "not an object" (the API declares no 415).
    Case("content-type-text-plain", 422, "validation_error", content_type="text/plain"),
    Case("content-type-form", 422, "validation_error", b"code=HS-1&amount=1", "application/x-www-form-urlencoded"),
    Case("content-type-xml", 422, "validation_error", b"<dossier/>", "application/xml"),
    Case("no-content-type", 422, "validation_error", content_type=None),
    # The Idempotency-Key is checked before the key is claimed.
    Case("idempotency-key-missing", 400, "idempotency_key_missing", headers={"Idempotency-Key": None}),
    Case("idempotency-key-too-long", 400, "idempotency_key_invalid", headers={"Idempotency-Key": "k" * 256}),
    Case("idempotency-key-with-space", 400, "idempotency_key_invalid", headers={"Idempotency-Key": "a b"}),
]


def _v(name: str, body: Callable[[Any], Any] | bytes, replayable: bool = False) -> Case:
    """A validation error: 422 validation_error."""
    return Case(name, 422, "validation_error", body, replayable=replayable)


def _unknown_fields(fields: list[str], value: Any = 1) -> list[Case]:
    return [_v(f"unknown-field-{f.replace('.', '-')}", with_(f, value)) for f in fields]


def _quantities(path: str, values: dict[str, Any]) -> list[Case]:
    return [_v(f"{path.rsplit('.', 1)[-1]}-{name}", with_(path, value)) for name, value in values.items()]


BAD_NUMBERS = {
    "negative": -1,
    "fractional-1.5": 1.5,
    "fractional-1.0": 1.0,
    "float-1e3": 1e3,
    "string-1000": "1000",
    "thousands-dot-150.000": "150.000",
    "thousands-comma-150,000": "150,000",
    "absurd-10e15": 10**15,
    "absurd-negative": -(10**15),
    "beyond-int64": 2**64,
    "boolean-true": True,
    "null": None,
    "list": [2],
    "object": {"value": 2},
}

DOSSIER_CASES = [
    # Wrong types.
    _v("code-int", with_("code", 123)),
    _v("procedure_code-int", with_("procedure_code", 1.001234)),
    _v("payer-string-for-object", with_("payer", SECRET_NAME)),
    _v("payer-list-for-object", with_("payer", [SECRET_NAME])),
    _v("payer-name-int", with_("payer.name", 5)),
    _v("payer-name-object", with_("payer.name", {"first": SECRET_NAME})),
    _v("items-object-for-list", with_("items", {"fee_code": "BAN_SAO", "quantity": 2})),
    _v("items-string-for-list", with_("items", "BAN_SAO")),
    _v("item-string-for-object", with_("items.0", "BAN_SAO")),
    _v("payer-email-invalid", with_("payer.email", "not-an-email " + SECRET_EMAIL)),
    _v("payer-phone-letters", with_("payer.phone", "call " + SECRET_NAME)),
    _v("payer-tax_code-short", with_("payer.tax_code", "12345")),
    # Missing fields.
    *[_v(f"missing-{p.replace('.', '-')}", without(p)) for p in ("code", "procedure_code", "payer", "payer.name")],
    _v("missing-item-fee_code", without("items.0.fee_code")),
    _v("missing-item-quantity", without("items.0.quantity")),
    # Unknown fields, among them a client trying to set what the server computes.
    *_unknown_fields(["amount", "total_amount", "paid_at", "created_at", "agency_code", "pay_url", "id"]),
    _v("unknown-field-status-paid", with_("status", "paid")),
    _v("unknown-field-fee_lines", with_("fee_lines", [{"fee_code": "LE_PHI", "amount": 1}])),
    _v("unknown-field-paid_at-iso", with_("paid_at", "2026-01-01T00:00:00+00:00")),
    *_unknown_fields(["payer.id_number", "items.0.unit_amount", "items.0.amount"]),
    # Item quantities.
    *_quantities("items.0.quantity", BAD_NUMBERS),
    _v("quantity-above-the-schema-maximum-1001", with_("items.0.quantity", 1001)),
    _v("quantity-raw-150.000", raw_json(lambda t: t.replace('"quantity": 2', '"quantity": 150.000'))),
    _v("quantity-raw-1e400-infinity", raw_json(lambda t: t.replace('"quantity": 2', '"quantity": 1e400'))),
    _v("quantity-raw-NaN", raw_json(lambda t: t.replace('"quantity": 2', '"quantity": NaN'))),
    # Over-long and ill-formed strings.
    _v("code-21-chars", with_("code", "HS-" + "9" * 18)),
    _v("code-with-space", with_("code", "HS 0001")),
    _v("code-path-traversal", with_("code", "../../etc/passwd")),
    _v("code-empty", with_("code", "")),
    _v("code-long", with_("code", LONG)),
    _v("procedure_code-41-chars", with_("procedure_code", "1" * 41)),
    _v("payer-name-401-chars", with_("payer.name", LONG[:401])),
    _v("payer-name-2100-chars", with_("payer.name", LONG)),
    _v("payer-name-blank", with_("payer.name", "   ")),
    _v("payer-address-401-chars", with_("payer.address", LONG[:401])),
    _v("payer-email-over-254", with_("payer.email", "a" * 250 + "@example.com")),
    _v("fee_code-41-chars", with_("items.0.fee_code", "F" * 41)),
    _v("items-51-entries", with_("items", [{"fee_code": "BAN_SAO", "quantity": 1}] * 51)),
    # NUL cannot be stored by PostgreSQL and has no place in a name: refused up front, on every backend.
    _v("payer-name-with-nul", with_("payer.name", SECRET_NAME + "\x00")),
    _v("payer-address-with-nul", with_("payer.address", "12 Phố\x00Riêng")),
    # Domain errors, found by the operation: stored under the Idempotency-Key and replayed.
    _v("unknown-procedure", with_("procedure_code", "9.999999"), replayable=True),
    _v("unknown-fee-code", with_("items.0.fee_code", "KHONG_CO"), replayable=True),
    _v("duplicate-fee-code", with_("items", [{"fee_code": "BAN_SAO", "quantity": 1}] * 2), replayable=True),
    _v("quantity-above-schedule-maximum-51", with_("items.0.quantity", 51), replayable=True),
    _v("le_phi-quantity-above-its-maximum-1", with_("items", [{"fee_code": "LE_PHI", "quantity": 2}]), replayable=True),
    _v("quantity-zero-owes-nothing", with_("items", [{"fee_code": "LE_PHI", "quantity": 0}]), replayable=True),
]

PAYMENT_CASES = [
    _v("dossier_code-int", with_("dossier_code", 123)),
    _v("dossier_code-list", with_("dossier_code", ["HS-PAY-0001"])),
    _v("method-int", with_("method", 1)),
    _v("method-list", with_("method", ["sandbox"])),
    _v("return_url-int", with_("return_url", 1)),
    _v("return_url-object", with_("return_url", {"href": SECRET_RETURN})),
    *[_v(f"missing-{f}", without(f)) for f in ("dossier_code", "method", "return_url")],
    *_unknown_fields(["amount", "total_amount", "paid_at", "succeeded_at", "currency", "gateway_reference", "id"]),
    _v("unknown-field-status-succeeded", with_("status", "succeeded")),
    _v("unknown-field-amount-1", with_("amount", 1)),
    _v("unknown-field-refunded_amount", with_("refunded_amount", 0)),
    _v("dossier_code-empty", with_("dossier_code", "")),
    _v("dossier_code-21-chars", with_("dossier_code", "HS-" + "9" * 18)),
    _v("dossier_code-long", with_("dossier_code", LONG)),
    _v("method-empty", with_("method", "")),
    _v("method-41-chars", with_("method", "m" * 41)),
    _v("return_url-over-2000-chars", with_("return_url", SECRET_RETURN + "/" + LONG)),
    _v("return_url-javascript", with_("return_url", "javascript:alert(1)")),
    _v("return_url-not-a-url", with_("return_url", "not a url")),
    _v("return_url-ftp", with_("return_url", "ftp://files.example.gov.vn/x")),
    _v("return_url-empty", with_("return_url", "")),
    _v("dossier_code-with-nul", with_("dossier_code", "HS-PAY\x000001")),
    # Domain errors, stored and replayed.
    Case("unknown-dossier", 404, "not_found", with_("dossier_code", "HS-NOPE-0001"), replayable=True),
    Case("method-not-enabled", 422, "method_not_enabled", with_("method", "bogus"), replayable=True),
    Case("method-wrong-case", 422, "method_not_enabled", with_("method", "SANDBOX"), replayable=True),
]

REFUND_CASES = [
    *_quantities("amount", {**BAD_NUMBERS, "zero": 0}),
    _v("amount-raw-150.000", raw_json(lambda t: t.replace('"amount": 10000', '"amount": 150.000'))),
    _v("amount-raw-1e400-infinity", raw_json(lambda t: t.replace('"amount": 10000', '"amount": 1e400'))),
    _v("amount-above-the-schema-maximum", with_("amount", 1_000_000_000_000)),
    *[_v(f"missing-{f}", without(f)) for f in ("amount", "reason")],
    _v("reason-empty", with_("reason", "")),
    _v("reason-blank", with_("reason", "   ")),
    _v("reason-int", with_("reason", 123)),
    _v("reason-list", with_("reason", [SECRET_REASON])),
    _v("reason-501-chars", with_("reason", LONG[:501])),
    _v("reason-2100-chars", with_("reason", LONG)),
    _v("reason-with-nul", with_("reason", SECRET_REASON + "\x00")),
    *_unknown_fields(["status", "payment_id", "paid_at", "refunded_amount", "currency", "id", "completed_at"]),
    _v("unknown-field-status-succeeded", with_("status", "succeeded")),
    # Domain errors, stored and replayed.
    Case("amount-above-refundable", 422, "refund_exceeds_available", with_("amount", 110_001), replayable=True),
    Case(
        "amount-beyond-32-bit",
        422,
        "refund_exceeds_available",
        with_("amount", 2**31),
        replayable=True,
    ),
    Case(
        "amount-at-schema-maximum",
        422,
        "refund_exceeds_available",
        with_("amount", 999_999_999_999),
        replayable=True,
    ),
]


@pytest.mark.parametrize("case", GENERIC + DOSSIER_CASES, ids=case_id)
def test_post_dossier_refuses_bad_input(dossier_target: Target, case: Case) -> None:
    check_post(dossier_target, case)


@pytest.mark.parametrize("case", GENERIC + PAYMENT_CASES, ids=case_id)
def test_post_payment_refuses_bad_input(payment_target: Target, case: Case) -> None:
    check_post(payment_target, case)


@pytest.mark.parametrize("case", GENERIC + REFUND_CASES, ids=case_id)
def test_post_refund_refuses_bad_input(refund_target: Target, case: Case) -> None:
    check_post(refund_target, case)
    with refund_target.api.ctx.db.read() as s:
        assert s.execute(select(func.count()).select_from(metadata.tables["refund"])).scalar_one() == 0


def test_refund_of_an_unknown_payment_is_a_replayable_404(api: Api) -> None:
    target = Target(api, "/v1/payments/pay_000000000000000000000000/refunds", {"amount": 1000, "reason": SECRET_REASON})
    check_post(target, Case("unknown-payment", 404, "not_found", replayable=True))


def test_valid_bodies_of_the_matrix_are_accepted(dossier_target: Target, payment_target: Target) -> None:
    """The control: the base bodies the cases above spoil are themselves accepted."""
    r = dossier_target.api.post(dossier_target.path, dossier_target.base)
    assert r.status_code == 201, r.text
    # Zero copies of a per-copy fee is a valid order (the fixed fee is still owed); zero in total is not (see above).
    r = dossier_target.api.post(dossier_target.path, dossier_body(copies=0))
    assert r.status_code == 201 and r.json()["total_amount"] == 100_000, r.text
    r = payment_target.api.post(payment_target.path, payment_target.base)
    assert r.status_code == 201, r.text


# --- the body size limit --------------------------------------------------------------------------------------------
def _padded(size: int) -> bytes:
    """A JSON object of exactly ``size`` bytes holding an over-long string."""
    head, tail = b'{"reason": "', b'"}'
    filler = (LONG.encode() * (size // len(LONG) + 1))[: size - len(head) - len(tail)]
    return head + filler + tail


def _chunks(data: bytes, size: int = 4096) -> Iterator[bytes]:
    for i in range(0, len(data), size):
        yield data[i : i + size]


@pytest.fixture(params=["dossiers", "payments", "refunds", "callback"])
def any_post_path(request: pytest.FixtureRequest, api: Api) -> str:
    if request.param == "dossiers":
        return "/v1/dossiers"
    if request.param == "payments":
        return "/v1/payments"
    if request.param == "refunds":
        return f"/v1/payments/{pay(api)['id']}/refunds"
    return "/v1/gateways/sandbox/callback"


@pytest.mark.parametrize("mode", ["content-length", "chunked"])
def test_body_over_the_limit_is_413(api: Api, any_post_path: str, mode: str) -> None:
    limit = api.ctx.settings.max_body_bytes
    assert limit == 64 * 1024
    data = _padded(limit + 1)
    before = count_rows(api.ctx)
    headers = {**api.auth, "Idempotency-Key": secrets.token_hex(8), "Content-Type": JSON}
    content: bytes | Iterator[bytes] = data if mode == "content-length" else _chunks(data)
    r = api.client.post(any_post_path, content=content, headers=headers)
    if mode == "content-length":
        assert r.request.headers["content-length"] == str(limit + 1)
    else:  # streamed: no length announced, the limit is enforced while reading
        assert "content-length" not in r.request.headers
        assert r.request.headers["transfer-encoding"] == "chunked"
    assert_problem(r, 413, "payload_too_large")
    assert count_rows(api.ctx) == before


@pytest.mark.parametrize("mode", ["content-length", "chunked"])
def test_body_at_the_limit_is_read(api: Api, mode: str) -> None:
    """The boundary: exactly max_body_bytes is read (and refused for its content), one byte more is 413."""
    limit = api.ctx.settings.max_body_bytes
    before = count_rows(api.ctx)
    headers = {**api.auth, "Idempotency-Key": secrets.token_hex(8), "Content-Type": JSON}
    data = _padded(limit)
    r = api.client.post("/v1/dossiers", content=data if mode == "content-length" else _chunks(data), headers=headers)
    assert_problem(r, 422, "validation_error")
    assert count_rows(api.ctx) == before


# --- list endpoints: query parameters -------------------------------------------------------------------------------
LIST_COMMON: list[tuple[str, dict[str, Any]]] = [
    ("limit-0", {"limit": 0}),
    ("limit-negative", {"limit": -1}),
    ("limit-101", {"limit": 101}),
    ("limit-10e9", {"limit": 10**9}),
    ("limit-10e30", {"limit": 10**30}),
    ("limit-abc", {"limit": "abc"}),
    ("limit-fractional", {"limit": "1.5"}),
    ("limit-empty", {"limit": ""}),
    ("cursor-garbage", {"cursor": "!!not-a-cursor!!"}),
    ("cursor-not-base64-json", {"cursor": b64("not json")}),
    ("cursor-wrong-shape-list", {"cursor": b64("[1, 2, 3]")}),
    ("cursor-wrong-shape-object", {"cursor": b64('{"a": 1, "b": 2}')}),
    ("cursor-json-string", {"cursor": b64('"x"')}),
    ("cursor-null-date", {"cursor": b64('[null, "x"]')}),
    ("cursor-201-chars", {"cursor": "A" * 201}),
    ("cursor-naive-datetime", {"cursor": b64('["2026-01-01T00:00:00", "pay_x"]')}),
    ("cursor-date-only", {"cursor": b64('["2026-01-01", "pay_x"]')}),
    ("cursor-datetime-out-of-utc-range", {"cursor": b64('["0001-01-01T00:00:00+01:00", "pay_x"]')}),
    ("created_from-naive", {"created_from": "2026-01-01T00:00:00"}),
    ("created_from-date-only", {"created_from": "2026-01-01"}),
    ("created_from-garbage", {"created_from": "abc"}),
    ("created_from-month-13", {"created_from": "2026-13-01T00:00:00Z"}),
    ("created_from-before-year-1-in-utc", {"created_from": "0001-01-01T00:00:00+01:00"}),
    ("created_to-after-year-9999-in-utc", {"created_to": "9999-12-31T23:59:59-01:00"}),
    ("created_to-naive", {"created_to": "2026-01-01T00:00:00"}),
    ("status-unknown", {"status": "bogus"}),
    ("status-wrong-case", {"status": "PAID"}),
]
LIST_SPECIFIC: dict[str, list[tuple[str, dict[str, Any]]]] = {
    "/v1/dossiers": [
        ("procedure_code-41-chars", {"procedure_code": LONG[:41]}),
        ("procedure_code-with-nul", {"procedure_code": "1.00\x001234"}),
    ],
    "/v1/payments": [
        ("dossier_code-21-chars", {"dossier_code": LONG[:21]}),
        ("method-41-chars", {"method": LONG[:41]}),
        ("dossier_code-with-nul", {"dossier_code": "HS\x000001"}),
        ("method-with-nul", {"method": "sand\x00box"}),
    ],
}
LIST_CASES = [
    pytest.param(path, params, id=f"{path.rsplit('/', 1)[-1]}-{name}")
    for path in ("/v1/dossiers", "/v1/payments")
    for name, params in LIST_COMMON + LIST_SPECIFIC[path]
]


@pytest.mark.parametrize(("path", "params"), LIST_CASES)
def test_list_refuses_bad_query(api: Api, path: str, params: dict[str, Any]) -> None:
    before = count_rows(api.ctx)
    r = api.get(path, params=params)
    assert_problem(r, 422, "validation_error")
    assert count_rows(api.ctx) == before


def test_list_accepts_the_boundaries(api: Api) -> None:
    """The control: limit 1 and 100, an aware created_from and a cursor the API returned are all accepted."""
    pay(api, "success")
    pay(api, "decline")
    for path in ("/v1/dossiers", "/v1/payments"):
        for params in ({"limit": 1}, {"limit": 100}, {"created_from": "2000-01-01T00:00:00+07:00"}):
            r = api.get(path, params=params)
            assert r.status_code == 200, r.text
        first = api.get(path, params={"limit": 1}).json()
        assert first["next_cursor"]
        r = api.get(path, params={"limit": 1, "cursor": first["next_cursor"]})
        assert r.status_code == 200 and len(r.json()["data"]) == 1


# --- the sandbox gateway's callback --------------------------------------------------------------------------------
CALLBACK = "/v1/gateways/sandbox/callback"


def _event(**changes: Any) -> dict[str, Any]:
    event: dict[str, Any] = {
        "event_id": "evt_" + secrets.token_hex(8),
        "transaction_id": "sbx_" + secrets.token_hex(12),
        "merchant_reference": "pay_" + secrets.token_hex(12),
        "status": "succeeded",
        "amount": 110_000,
        "currency": "VND",
    }
    event.update(changes)
    return {k: v for k, v in event.items() if v is not ...}


def _raw(value: Any) -> bytes:
    return value if isinstance(value, bytes) else json.dumps(value, separators=(",", ":")).encode()


# (name, body, how to sign: "none", "good", "wrong-secret", "stale", "future", "garbage", "other-body")
CALLBACK_CASES: list[tuple[str, Any, str]] = [
    ("unsigned-malformed-json", b"{", "none"),
    ("unsigned-well-formed-event", _event(), "none"),
    ("unsigned-non-utf8", b'{"event_id": "\xff"}', "none"),
    ("wrong-secret", _event(), "wrong-secret"),
    ("stale-timestamp", _event(), "stale"),
    ("future-timestamp", _event(), "future"),
    ("garbage-signature-header", _event(), "garbage"),
    ("signature-of-another-body", _event(), "other-body"),
    ("signed-malformed-json", b'{"event_id": ', "good"),
    ("signed-non-utf8", b'{"event_id": "\xff\xfe"}', "good"),
    ("signed-json-array", [], "good"),
    ("signed-json-string", "event", "good"),
    ("signed-missing-amount", _event(amount=...), "good"),
    ("signed-missing-merchant_reference", _event(merchant_reference=...), "good"),
    ("signed-amount-thousands-separator", _event(amount="150.000"), "good"),
    ("signed-amount-object", _event(amount={"value": 1}), "good"),
    ("signed-unknown-status", _event(status="paid-maybe"), "good"),
]


def _signature(ctx: AppContext, body: bytes, how: str) -> dict[str, str]:
    secret, now = ctx.settings.sandbox_secret, int(time.time())
    signatures = {
        "none": None,
        "good": sign(secret, body, now),
        "wrong-secret": sign("not-the-secret", body, now),
        "stale": sign(secret, body, now - 3600),
        "future": sign(secret, body, now + 3600),
        "garbage": "t=abc,v1=zz",
        "other-body": sign(secret, body + b" ", now),
    }
    value = signatures[how]
    return {SIGNATURE_HEADER: value} if value else {}


@pytest.mark.parametrize(("body", "how"), [pytest.param(b, h, id=n) for n, b, h in CALLBACK_CASES])
def test_callback_refuses_what_it_cannot_verify(api: Api, body: Any, how: str) -> None:
    payment = pay(api, None)  # a live payment an attacker would like to settle
    if isinstance(body, dict) and "merchant_reference" in body:
        body = {**body, "merchant_reference": payment["id"]}
    data = _raw(body)
    before = count_rows(api.ctx)
    r = api.client.post(CALLBACK, content=data, headers={"Content-Type": JSON, **_signature(api.ctx, data, how)})
    assert r.status_code == 401, r.text
    assert r.headers["content-type"].split(";")[0] == JSON
    assert r.json() == {"result": "invalid_signature"}
    assert count_rows(api.ctx) == before
    assert api.get(f"/v1/payments/{payment['id']}").json()["status"] == "pending"


def test_callback_for_an_unknown_order_is_recorded_and_refused(api: Api) -> None:
    """Verified but about no payment of ours: 422 unknown_order, and nothing stored (its event id stays free)."""
    before = count_rows(api.ctx)
    data = _raw(_event())
    r = api.client.post(CALLBACK, content=data, headers={"Content-Type": JSON, **_signature(api.ctx, data, "good")})
    assert r.status_code == 422 and r.json() == {"result": "unknown_order"}
    assert count_rows(api.ctx) == before


def test_callback_with_a_wrong_amount_changes_no_status(api: Api) -> None:
    """Verified, for a real payment, but the amount differs: refused, noted on the payment, never applied; the
    event id is not used up, so the gateway's corrected message can still be applied."""
    payment = pay(api, None)
    before = count_rows(api.ctx)
    data = _raw(_event(merchant_reference=payment["id"], transaction_id=payment["gateway_reference"], amount=1))
    r = api.client.post(CALLBACK, content=data, headers={"Content-Type": JSON, **_signature(api.ctx, data, "good")})
    assert r.status_code == 422 and r.json() == {"result": "amount_mismatch"}
    after = count_rows(api.ctx)
    assert after == {**before, "payment_event": before["payment_event"] + 1}
    current = api.get(f"/v1/payments/{payment['id']}").json()
    assert current["status"] == "pending"
    assert current["events"][-1]["kind"] == "gateway.amount_mismatch"


def test_callback_to_an_unknown_gateway_is_a_problem(api: Api) -> None:
    before = count_rows(api.ctx)
    r = api.client.post("/v1/gateways/nope/callback", content=b"{}", headers={"Content-Type": JSON})
    assert_problem(r, 404, "unknown_gateway")
    assert count_rows(api.ctx) == before


# --- whatever the body, never a 5xx ----------------------------------------------------------------------------------
_json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=50),
    lambda children: st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=20), children, max_size=5),
    max_leaves=20,
)
_dossier_like = st.fixed_dictionaries(
    {},
    optional={
        "code": _json_values | st.from_regex(r"\A[A-Za-z0-9][A-Za-z0-9._/-]{0,25}\Z"),
        "procedure_code": _json_values | st.just(PROCEDURE),
        "payer": _json_values | st.fixed_dictionaries({"name": _json_values}),
        "items": _json_values
        | st.lists(
            st.fixed_dictionaries({"fee_code": st.sampled_from(["BAN_SAO", "LE_PHI"]), "quantity": _json_values})
        ),
        "amount": _json_values,
    },
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=_json_values | _dossier_like)
def test_random_dossier_bodies_never_cause_a_server_error(dossier_target: Target, body: Any) -> None:
    api = dossier_target.api
    before = count_rows(api.ctx)
    r = api.post("/v1/dossiers", content=json.dumps(body).encode(), headers={"Content-Type": JSON})
    assert r.status_code < 500, r.text
    if r.status_code >= 400:
        assert r.headers["content-type"].split(";")[0] == PROBLEM_JSON
        assert {"type", "title", "status", "detail", "code"} <= set(r.json())
        after = count_rows(api.ctx)
        extra = after["idempotency_record"] - before["idempotency_record"]
        assert extra in (0, 1)  # 1 only for a domain error stored under the key
        assert after == {**before, "idempotency_record": before["idempotency_record"] + extra}
