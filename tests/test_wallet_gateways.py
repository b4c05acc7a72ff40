"""VNPay and MoMo through the service: the payer is sent to the gateway, the gateway's signed IPN settles the
payment, and each outcome gets the exact reply that gateway expects (VNPay RspCode, MoMo 204)."""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import pytest

from adapters.vnpay import sign_params
from tests.conftest import Api, agency_api
from tests.factories import dossier_body, payment_body

VNP_SECRET = "vnpay-hash-secret-0123456789"
MOMO_SECRET = "K951B6PE1waDMi640xX08PD3vg6EkVlz"
GATEWAYS = f"""
[agencies."AGC-W".vnpay]
tmn_code = "TEST_TMN_CODE"
hash_secret = "{VNP_SECRET}"
[agencies."AGC-W".momo]
partner_code = "MOMO"
access_key = "F8BBA842ECF85"
secret_key = "{MOMO_SECRET}"
endpoint = "https://momo.test"
"""


@pytest.fixture
def wallet_api(database_url: str, tmp_path: Path) -> Iterator[Api]:
    with agency_api(database_url, tmp_path, "AGC-W", ["vnpay", "momo"], GATEWAYS) as api:
        yield api


def _vnpay_payment(api: Api) -> tuple[dict[str, Any], dict[str, str]]:
    code = api.post("/v1/dossiers", dossier_body()).json()["code"]
    r = api.post("/v1/payments", payment_body(code, method="vnpay"))
    assert r.status_code == 201, r.text
    payment = r.json()
    params = dict(parse_qsl(urlsplit(payment["next_url"]).query))
    assert params["vnp_Amount"] == str(110_000 * 100) and params["vnp_TxnRef"] == payment["gateway_reference"]
    return payment, params


def _ipn(api: Api, params: dict[str, str], code: str = "00", amount: int | None = None, txn: str = "14000001") -> Any:
    ipn = {
        "vnp_TmnCode": "TEST_TMN_CODE",
        "vnp_Amount": str((amount if amount is not None else 110_000) * 100),
        "vnp_TxnRef": params["vnp_TxnRef"],
        "vnp_OrderInfo": params["vnp_OrderInfo"],
        "vnp_ResponseCode": code,
        "vnp_TransactionStatus": code,
        "vnp_TransactionNo": txn,
        "vnp_BankCode": "NCB",
        "vnp_PayDate": "20261127090000",
    }
    ipn["vnp_SecureHash"] = sign_params(ipn, VNP_SECRET)
    return api.client.get("/v1/gateways/vnpay/callback/AGC-W", params=ipn)


def test_vnpay_ipn_settles_and_answers_each_rspcode(wallet_api: Api) -> None:
    payment, params = _vnpay_payment(wallet_api)
    assert _ipn(wallet_api, params, amount=1, txn="9").json()["RspCode"] == "04"  # amount checked before state
    r = _ipn(wallet_api, params)
    assert r.status_code == 200 and r.json() == {"RspCode": "00", "Message": "Confirm Success"}
    assert wallet_api.get(f"/v1/payments/{payment['id']}").json()["status"] == "succeeded"
    assert _ipn(wallet_api, params).json()["RspCode"] == "02"  # VNPay retries: already confirmed
    forged = {**params, "vnp_TxnRef": "NOSUCHORDER"}
    assert _ipn(wallet_api, forged, txn="2").json()["RspCode"] == "01"
    bad = _ipn(wallet_api, params, txn="3").request.url.params
    tampered = {**dict(bad), "vnp_Amount": "100"}
    assert wallet_api.client.get("/v1/gateways/vnpay/callback/AGC-W", params=tampered).json()["RspCode"] == "97"


def test_vnpay_cancelled_by_payer(wallet_api: Api) -> None:
    payment, params = _vnpay_payment(wallet_api)
    assert _ipn(wallet_api, params, code="24").json()["RspCode"] == "00"
    assert wallet_api.get(f"/v1/payments/{payment['id']}").json()["status"] == "cancelled"


def _momo_sign(raw: str) -> str:
    return hmac.new(MOMO_SECRET.encode(), raw.encode(), hashlib.sha256).hexdigest()


def test_momo_create_then_ipn_with_204(wallet_api: Api) -> None:
    import respx
    from httpx import Response

    code = wallet_api.post("/v1/dossiers", dossier_body()).json()["code"]
    with respx.mock(assert_all_called=True) as mock:
        route = mock.post("https://momo.test/v2/gateway/api/create").mock(
            side_effect=lambda req: Response(
                200,
                json={
                    "partnerCode": "MOMO",
                    "orderId": json.loads(req.content)["orderId"],
                    "requestId": json.loads(req.content)["requestId"],
                    "amount": 110000,
                    "resultCode": 0,
                    "message": "Thành công.",
                    "payUrl": "https://momo.test/pay/abc",
                    "responseTime": 1,
                },
            )
        )
        r = wallet_api.post("/v1/payments", payment_body(code, method="momo"))
    assert r.status_code == 201 and r.json()["next_url"] == "https://momo.test/pay/abc", r.text
    sent = json.loads(route.calls[0].request.content)
    assert sent["ipnUrl"] == "http://testserver/v1/gateways/momo/callback/AGC-W" and sent["amount"] == 110000
    order_id = r.json()["gateway_reference"]
    ipn = {
        "partnerCode": "MOMO",
        "orderId": order_id,
        "requestId": order_id,
        "amount": 110000,
        "orderInfo": sent["orderInfo"],
        "orderType": "momo_wallet",
        "transId": 4088878653,
        "resultCode": 0,
        "message": "Thành công.",
        "payType": "qr",
        "responseTime": 1721720663942,
        "extraData": "",
    }
    raw = "&".join(
        f"{k}={ipn[k] if k != 'accessKey' else 'F8BBA842ECF85'}"
        for k in [
            "accessKey",
            "amount",
            "extraData",
            "message",
            "orderId",
            "orderInfo",
            "orderType",
            "partnerCode",
            "payType",
            "requestId",
            "responseTime",
            "resultCode",
            "transId",
        ]
    )
    ipn["signature"] = _momo_sign(raw)
    r = wallet_api.client.post("/v1/gateways/momo/callback/AGC-W", json=ipn)
    assert r.status_code == 204 and r.content == b""
    payments = wallet_api.get("/v1/payments", params={"method": "momo"}).json()["data"]
    assert payments[0]["status"] == "succeeded"
    ipn["signature"] = _momo_sign(raw + "x")
    assert wallet_api.client.post("/v1/gateways/momo/callback/AGC-W", json=ipn).status_code == 401
