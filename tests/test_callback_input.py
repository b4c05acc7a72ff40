"""Hostile or malformed gateway callbacks get the gateway's own "invalid message" reply (never a 5xx) and store
nothing; a refused message does not use up its event id."""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import pytest
from sqlalchemy import func, select

from adapters import vietqr
from adapters.base import GatewayContext
from adapters.sandbox import SIGNATURE_HEADER, sign
from adapters.vnpay import sign_params
from lephi.tables import metadata
from payments.core.context import AppContext
from payments.webhooks import service as webhooks
from tests.conftest import Api, agency_api
from tests.factories import dossier_body, payment_body

NOTIFY_SECRET = "bank-notification-secret-0123456789"
VNP_SECRET = "vnpay-hash-secret-0123456789"
GATEWAYS = f"""
[agencies."AGC-H".vietqr]
bank_bin = "970436"
account_number = "0011001234567"
account_name = "SO TU PHAP TINH DEMO"
reference_secret = "reference-secret-0123456789abcdef"
notification_secret = "{NOTIFY_SECRET}"
[agencies."AGC-H".vnpay]
tmn_code = "TEST_TMN_CODE"
hash_secret = "{VNP_SECRET}"
"""
# The reply each gateway's protocol gives a message it cannot verify.
UNVERIFIED = {
    "stripe": (400, {"error": "invalid signature"}),
    "vnpay": (200, {"RspCode": "97", "Message": "Invalid signature"}),
    "momo": (401, None),
    "zalopay": (200, {"return_code": -1, "return_message": "mac not equal"}),
    "vietqr": (401, {"result": "invalid_signature"}),
    "sandbox": (401, {"result": "invalid_signature"}),
}


@pytest.fixture
def hapi(database_url: str, tmp_path: Path) -> Iterator[Api]:
    with agency_api(database_url, tmp_path, "AGC-H", ["vietqr", "vnpay", "sandbox"], GATEWAYS) as api:
        yield api


def count_rows(ctx: AppContext) -> dict[str, int]:
    with ctx.db.read() as s:
        return {
            t.name: int(s.execute(select(func.count()).select_from(t)).scalar_one()) for t in metadata.sorted_tables
        }


def assert_unverified(r: Any, gateway: str) -> None:
    status, body = UNVERIFIED[gateway]
    assert r.status_code == status, f"{gateway}: {r.status_code} {r.text}"
    if body is not None:
        assert r.json() == body


def _pay(api: Api, method: str) -> dict[str, Any]:
    code = api.post("/v1/dossiers", dossier_body()).json()["code"]
    r = api.post("/v1/payments", payment_body(code, method=method))
    assert r.status_code == 201, r.text
    return dict(r.json())


def _sandbox(api: Api, fields: dict[str, Any], path: str = "/v1/gateways/sandbox/callback") -> Any:
    body = json.dumps(fields).encode()
    header = sign(api.ctx.settings.sandbox_secret, body, int(time.time()))
    return api.client.post(path, content=body, headers={SIGNATURE_HEADER: header})


def _sandbox_event(payment: dict[str, Any], **changes: Any) -> dict[str, Any]:
    return {
        "event_id": "evt_1",
        "transaction_id": payment["gateway_reference"],
        "merchant_reference": payment["id"],
        "status": "succeeded",
        "amount": payment["amount"],
        "currency": "VND",
        **changes,
    }


def _credit(api: Api, path: str = "/v1/gateways/vietqr/callback/AGC-H", **changes: Any) -> Any:
    fields = {
        "transaction_id": "FT0001",
        "bank_bin": "970436",
        "account_number": "0011001234567",
        "amount": 150000,
        "currency": "VND",
        "description": "CK LP3X7KQ9ABCDEF",
        "booked_at": "2026-11-27T09:00:00+07:00",
        **changes,
    }
    body = json.dumps(fields).encode()
    headers = {vietqr.SIGNATURE_HEADER: sign(NOTIFY_SECRET, body, int(time.time()))}
    return api.client.post(path, content=body, headers=headers)


# --- callback addresses that name no account ---------------------------------------------------------------------
@pytest.mark.parametrize("gateway", ["stripe", "vnpay", "momo", "zalopay", "vietqr"])
@pytest.mark.parametrize("agency", [None, "AGC-A", "NO-SUCH-AGENCY"], ids=["default", "no-settings", "unknown"])
def test_a_callback_address_without_an_account_gets_the_gateways_invalid_reply(
    api: Api, gateway: str, agency: str | None
) -> None:
    before = count_rows(api.ctx)
    path = f"/v1/gateways/{gateway}/callback" + (f"/{agency}" if agency else "")
    for method in ("POST", "GET"):
        r = api.client.request(method, path, content=b'{"id": "e"}', headers={"stripe-signature": "t=1,v1=00"})
        assert_unverified(r, gateway)
    assert count_rows(api.ctx) == before


def test_a_configured_gateway_on_an_unknown_agency_is_not_verified_with_the_defaults(hapi: Api) -> None:
    """The sandbox has a default account; a made-up agency must still not reach it (nor grow the adapter cache)."""
    payment = _pay(hapi, "sandbox")
    before = count_rows(hapi.ctx)
    for agency in ("NO-SUCH-AGENCY", "x" * 300, "AG%C3%89", "AGC-H%20"):
        r = _sandbox(hapi, _sandbox_event(payment), f"/v1/gateways/sandbox/callback/{agency}")
        assert_unverified(r, "sandbox")
    # A NUL anywhere in the path is refused at the edge, before any gateway code runs.
    r = _sandbox(hapi, _sandbox_event(payment), "/v1/gateways/sandbox/callback/AGC%00H")
    assert r.status_code == 422 and r.headers["content-type"].startswith("application/problem+json")
    assert count_rows(hapi.ctx) == before
    assert hapi.get(f"/v1/payments/{payment['id']}").json()["status"] == "pending"


def test_an_adapter_without_a_static_reply_answers_404_problem_json(api: Api, monkeypatch: pytest.MonkeyPatch) -> None:
    def unconfigured(context: GatewayContext) -> Any:
        raise ValueError("the plain gateway needs a secret")

    monkeypatch.setitem(api.ctx.gateways._factories, "plain", unconfigured)
    r = api.client.post("/v1/gateways/plain/callback/AGC-A", content=b"{}")
    assert r.status_code == 404 and r.headers["content-type"].startswith("application/problem+json")
    assert r.json()["code"] == "not_found"


def test_an_adapter_that_lets_a_parsing_error_escape_gets_the_invalid_reply(
    api: Api, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    from adapters.sandbox import SandboxGateway

    def careless(self: SandboxGateway, request: Any) -> Any:
        return json.loads(request.body)["event"]["id"]  # KeyError, TypeError, ValueError...

    monkeypatch.setattr(SandboxGateway, "parse_callback", careless)
    before = count_rows(api.ctx)
    for body in (b"", b"[]", b'{"event": 1}'):
        assert_unverified(api.client.post("/v1/gateways/sandbox/callback", content=body), "sandbox")
    assert count_rows(api.ctx) == before
    assert "gateway.callback.adapter_error" in capfd.readouterr().err


# --- signatures that are not ASCII -------------------------------------------------------------------------------
@pytest.mark.parametrize("signature", ["é", "0" * 63 + "é", "\u0661" * 64])
def test_non_ascii_signatures_are_invalid_not_server_errors(hapi: Api, signature: str) -> None:
    payment = _pay(hapi, "sandbox")
    before = count_rows(hapi.ctx)
    header = f"t={int(time.time())},v1={signature}".encode()
    body = json.dumps(_sandbox_event(payment)).encode()
    r = hapi.client.post("/v1/gateways/sandbox/callback", content=body, headers={SIGNATURE_HEADER: header})
    assert_unverified(r, "sandbox")
    r = hapi.client.post("/v1/gateways/vietqr/callback/AGC-H", content=b"{}", headers={"lephi-bank-signature": header})
    assert_unverified(r, "vietqr")
    assert count_rows(hapi.ctx) == before


@pytest.mark.parametrize("stamp", ["+1700000000", " 1700000000", "1_700_000_000", "\u0661\u0662", "9" * 5000])
def test_timestamps_other_than_ascii_digits_are_invalid(hapi: Api, stamp: str) -> None:
    r = hapi.client.post(
        "/v1/gateways/sandbox/callback", content=b"{}", headers={SIGNATURE_HEADER: f"t={stamp},v1=00".encode()}
    )
    assert_unverified(r, "sandbox")


# --- signed, but not storable ------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "changes",
    [
        {"amount": 2**63},
        {"amount": 10**13},
        {"amount": -150000},
        {"amount": 0},
        {"amount": 150000.0},
        {"amount": "150000"},
        {"amount": True},
        {"transaction_id": "F" * 101},
        {"transaction_id": "FT\u00000001"},
        {"transaction_id": "FT0001é"},
        {"transaction_id": " "},
    ],
    ids=repr,
)
def test_a_signed_credit_that_cannot_be_stored_is_refused_and_stores_nothing(
    hapi: Api, changes: dict[str, Any]
) -> None:
    before = count_rows(hapi.ctx)
    assert_unverified(_credit(hapi, **changes), "vietqr")
    assert count_rows(hapi.ctx) == before


def test_a_credit_memo_with_control_characters_is_kept_readable(hapi: Api) -> None:
    r = _credit(hapi, description="CK\u0000 NGUYEN\tVAN\u001fAN")
    assert r.status_code == 200, r.text
    [credit] = hapi.get("/v1/bank-credits").json()["data"]
    assert credit["memo"] == "CK  NGUYEN VAN AN" and credit["status"] == "unmatched"


@pytest.mark.parametrize(
    "changes",
    [
        {"amount": "110000"},
        {"amount": 110000.99},
        {"amount": 2**63},
        {"amount": -110000},
        {"amount": False},
        {"event_id": "e" * 201},
        {"event_id": ""},
        {"event_id": "evt\u00001"},
        {"transaction_id": "sbx_" + "x" * 100},
        {"merchant_reference": "pay_\u0000"},
        {"currency": "VN\u0000"},
    ],
    ids=repr,
)
def test_a_signed_sandbox_callback_that_is_not_well_formed_changes_nothing(hapi: Api, changes: dict[str, Any]) -> None:
    payment = _pay(hapi, "sandbox")
    before = count_rows(hapi.ctx)
    assert_unverified(_sandbox(hapi, _sandbox_event(payment, **changes)), "sandbox")
    assert count_rows(hapi.ctx) == before
    assert hapi.get(f"/v1/payments/{payment['id']}").json()["status"] == "pending"


def test_an_event_id_as_long_as_its_column_is_accepted(hapi: Api) -> None:
    payment = _pay(hapi, "sandbox")
    r = _sandbox(hapi, _sandbox_event(payment, event_id="e" * 200))
    assert r.status_code == 200 and r.json()["result"] == "accepted"


# --- a refused message does not use up its event id --------------------------------------------------------------
def _vnpay_ipn(api: Api, params: dict[str, str], amount: int) -> Any:
    ipn = {
        "vnp_TmnCode": "TEST_TMN_CODE",
        "vnp_Amount": str(amount * 100),
        "vnp_TxnRef": params["vnp_TxnRef"],
        "vnp_OrderInfo": params["vnp_OrderInfo"],
        "vnp_ResponseCode": "00",
        "vnp_TransactionStatus": "00",
        "vnp_TransactionNo": "14000001",
        "vnp_BankCode": "NCB",
        "vnp_PayDate": "20261127090000",
    }
    ipn["vnp_SecureHash"] = sign_params(ipn, VNP_SECRET)
    return api.client.get("/v1/gateways/vnpay/callback/AGC-H", params=ipn)


def test_a_vnpay_ipn_with_a_wrong_amount_does_not_block_the_right_one(hapi: Api) -> None:
    payment = _pay(hapi, "vnpay")
    params = dict(parse_qsl(urlsplit(payment["next_url"]).query))
    assert _vnpay_ipn(hapi, params, payment["amount"] - 1).json()["RspCode"] == "04"
    assert _vnpay_ipn(hapi, params, payment["amount"]).json()["RspCode"] == "00"
    assert hapi.get(f"/v1/payments/{payment['id']}").json()["status"] == "succeeded"
    assert _vnpay_ipn(hapi, params, payment["amount"]).json()["RspCode"] == "02"


def test_a_sandbox_callback_refused_for_its_amount_or_order_does_not_block_the_right_one(hapi: Api) -> None:
    payment = _pay(hapi, "sandbox")
    refused = _sandbox(hapi, _sandbox_event(payment, amount=payment["amount"] + 1))
    assert refused.status_code == 422 and refused.json()["result"] == "amount_mismatch"
    other = _sandbox(hapi, _sandbox_event(payment, merchant_reference="pay_unknown"))
    assert other.status_code == 422 and other.json()["result"] == "unknown_order"
    accepted = _sandbox(hapi, _sandbox_event(payment))
    assert accepted.status_code == 200 and accepted.json()["result"] == "accepted"
    assert _sandbox(hapi, _sandbox_event(payment)).json()["result"] == "duplicate"
    kinds = [e["kind"] for e in hapi.get(f"/v1/payments/{payment['id']}").json()["events"]]
    assert "gateway.amount_mismatch" in kinds  # the refusal is still on record


# --- the reference receiver documented for client systems ----------------------------------------------------------
@pytest.mark.parametrize(
    "changes",
    [
        {"webhook-signature": "v1,é"},
        {"webhook-signature": "v1,\u0661\u0662"},
        {"webhook-timestamp": "\u0661\u0662"},
        {"webhook-timestamp": " 1700000000"},
        {"webhook-timestamp": "9" * 5000},
    ],
    ids=repr,
)
def test_the_reference_webhook_verifier_refuses_hostile_headers_without_raising(changes: dict[str, str]) -> None:
    secret = "whsec_" + base64.b64encode(b"k" * 32).decode()
    now = datetime.now(UTC)
    stamp = int(now.timestamp())
    headers = {
        "webhook-id": "msg_1",
        "webhook-timestamp": str(stamp),
        "webhook-signature": webhooks.sign(secret, "msg_1", stamp, "{}"),
    }
    assert webhooks.verify(secret, headers, "{}", now=now)
    assert not webhooks.verify(secret, {**headers, **changes}, "{}", now=now)
