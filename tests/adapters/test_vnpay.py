"""VNPay 2.1.0 adapter: the domain reference's vectors, the pay URL, IPN verification and parsing, the IPN reply, and
QueryDR / refund against a local stand-in (VNPay's servers are not reachable from here).

The IPNs and API answers are signed here with an independent implementation of the published algorithms, not with
the adapter's own functions, so that a shared mistake cannot make both sides agree.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta, timezone
from typing import Any
from urllib.parse import parse_qsl, quote, quote_plus, unquote, urlencode, urlsplit

import httpx
import pytest
import respx
from hypothesis import given
from hypothesis import strategies as st

from adapters.base import (
    CallbackEvent,
    CallbackOutcome,
    CallbackRequest,
    GatewayContext,
    GatewayDeclinedError,
    GatewayStatus,
    GatewayTechnicalError,
    InvalidCallback,
    PaymentGateway,
    RefundOutcome,
    RefundRequest,
    StartPayment,
    StatusQuery,
)
from adapters.money import MAX_AMOUNT
from adapters.vnpay import (
    SANDBOX_API_URL,
    SANDBOX_PAY_URL,
    VNPayGateway,
    ascii_text,
    hash_data,
    pay_url_query,
    sign_fields,
    sign_params,
    txn_ref,
    vnpay_time,
)

SECRET = "test_secret"
TMN = "TEST_TMN_CODE"
API = "https://vnpay.stand-in.test/merchant_webapi/api/transaction"

# domain.md 4.2
PAY_VECTOR = (
    "vnp_Amount=15000000&vnp_Command=pay&vnp_CreateDate=20250101090000&vnp_CurrCode=VND&vnp_ExpireDate=20250101091500"
    "&vnp_IpAddr=127.0.0.1&vnp_Locale=vn&vnp_OrderInfo=Thanh+toan+le+phi+ho+so+HS000123&vnp_OrderType=other"
    "&vnp_ReturnUrl=https%3A%2F%2Fexample.gov.vn%2Freturn&vnp_TmnCode=TEST_TMN_CODE&vnp_TxnRef=HS000123"
    "&vnp_Version=2.1.0"
)
PAY_HASH = (
    "45af2085f1f0dad811c0a0cdc059ed742d392b08c6f7c5ee13b9ba383e93210c"
    "2e36fa74527187c8d7b41c6249900b602fa653de741e746b0e4a602cb3c3d748"
)
QUERYDR_VECTOR = (
    "REQ0001|2.1.0|querydr|TEST_TMN_CODE|HS000123|20250101090000|20250101100000|127.0.0.1|Truy van HS000123"
)
QUERYDR_HASH = (
    "11ef252079e31c06b020dca1f8e157b7b215bfb48d0d229f08d00d00c83e1738"
    "6392c7ebf68fa1815c637858a68abc756d4963b8ffc7b9936341928e7a06027f"
)

QUERYDR_ORDER = [
    "vnp_RequestId",
    "vnp_Version",
    "vnp_Command",
    "vnp_TmnCode",
    "vnp_TxnRef",
    "vnp_TransactionDate",
    "vnp_CreateDate",
    "vnp_IpAddr",
    "vnp_OrderInfo",
]
REFUND_ORDER = [
    "vnp_RequestId",
    "vnp_Version",
    "vnp_Command",
    "vnp_TmnCode",
    "vnp_TransactionType",
    "vnp_TxnRef",
    "vnp_Amount",
    "vnp_TransactionNo",
    "vnp_TransactionDate",
    "vnp_CreateBy",
    "vnp_CreateDate",
    "vnp_IpAddr",
    "vnp_OrderInfo",
]
REFUND_ANSWER_ORDER = [
    "vnp_ResponseId",
    "vnp_Command",
    "vnp_ResponseCode",
    "vnp_Message",
    "vnp_TmnCode",
    "vnp_TxnRef",
    "vnp_Amount",
    "vnp_BankCode",
    "vnp_PayDate",
    "vnp_TransactionNo",
    "vnp_TransactionType",
    "vnp_TransactionStatus",
    "vnp_OrderInfo",
]
QUERYDR_ANSWER_ORDER = [*REFUND_ANSWER_ORDER, "vnp_PromotionCode", "vnp_PromotionAmount"]

CREATED = datetime(2025, 1, 1, 2, 0, tzinfo=UTC)  # 09:00 in GMT+7
NOW = datetime(2025, 1, 1, 3, 0, tzinfo=UTC)  # 10:00 in GMT+7
KEY = "gtk_01JH5Q2M7Y"
REF = txn_ref(KEY, CREATED)


# --- an independent implementation of the published algorithms ----------------------------------------------------
def published_hash(params: dict[str, str], secret: str = SECRET) -> str:
    signed = sorted((k, v) for k, v in params.items() if k not in ("vnp_SecureHash", "vnp_SecureHashType") and v)
    data = "&".join(f"{quote_plus(k)}={quote_plus(v)}" for k, v in signed)
    return hmac.new(secret.encode(), data.encode(), hashlib.sha512).hexdigest()


def pipe_hash(values: list[str], secret: str = SECRET) -> str:
    return hmac.new(secret.encode(), "|".join(values).encode(), hashlib.sha512).hexdigest()


# --- helpers ------------------------------------------------------------------------------------------------------
def make_gateway(**settings: Any) -> VNPayGateway:
    base: dict[str, Any] = {"tmn_code": TMN, "hash_secret": SECRET, "api_url": API}
    gateway = VNPayGateway(GatewayContext("vnpay", "https://lephi.test", "https://lephi.test/cb", {**base, **settings}))
    gateway.now = lambda: NOW
    gateway.sleep = lambda _s: None
    return gateway


@pytest.fixture
def gw() -> VNPayGateway:
    return make_gateway()


def start_request(**changes: Any) -> StartPayment:
    values: dict[str, Any] = {
        "merchant_reference": "pay_1",
        "idempotency_key": KEY,
        "amount": 150000,
        "currency": "VND",
        "description": "Thanh toán lệ phí hồ sơ HS000123",
        "return_url": "https://example.gov.vn/return",
        "callback_url": "https://lephi.test/cb",
        "created_at": CREATED,
        "expires_at": CREATED + timedelta(minutes=15),
        "locale": "vi",
        "client_ip": "127.0.0.1",
    }
    return StartPayment(**{**values, **changes})


def ipn_params(secret: str = SECRET, **changes: str) -> dict[str, str]:
    """An IPN as VNPay sends it, signed; a change given as "" removes the parameter."""
    params = {
        "vnp_Amount": "15000000",
        "vnp_BankCode": "NCB",
        "vnp_BankTranNo": "VNP14226112",
        "vnp_CardType": "ATM",
        "vnp_OrderInfo": "Thanh toan le phi ho so HS000123",
        "vnp_PayDate": "20250101091000",
        "vnp_ResponseCode": "00",
        "vnp_TmnCode": TMN,
        "vnp_TransactionNo": "14226112",
        "vnp_TransactionStatus": "00",
        "vnp_TxnRef": REF,
    }
    params = {k: v for k, v in {**params, **changes}.items() if v != ""}
    return {**params, "vnp_SecureHash": published_hash(params, secret)}


def get_ipn(params: dict[str, str]) -> CallbackRequest:
    # The query as a web framework hands it over: decoded from the URL VNPay calls.
    query = dict(parse_qsl(urlencode(params), keep_blank_values=True))
    return CallbackRequest("GET", {}, query, b"")


def status_query(reference: str | None = REF) -> StatusQuery:
    return StatusQuery("pay_1", reference, KEY, 150000, CREATED)


def refund_request(amount: int = 150000, key: str = "rtk_1", reference: str = REF) -> RefundRequest:
    return RefundRequest("pay_1", reference, key, amount, 150000, "Hoàn lệ phí")


def signed_answer(order: list[str], **fields: str) -> dict[str, str]:
    values = [TMN if k == "vnp_TmnCode" else fields.get(k, "") for k in order]
    return {**fields, "vnp_TmnCode": TMN, "vnp_SecureHash": pipe_hash(values)}


def querydr_answer(code: str = "00", status: str = "00", **extra: str) -> dict[str, str]:
    fields = {
        "vnp_ResponseId": "RESP01",
        "vnp_Command": "querydr",
        "vnp_ResponseCode": code,
        "vnp_Message": "QueryDR Success",
        "vnp_TxnRef": REF,
        "vnp_Amount": "15000000",
        "vnp_BankCode": "NCB",
        "vnp_PayDate": "20250101091000",
        "vnp_TransactionNo": "14226112",
        "vnp_TransactionType": "01",
        "vnp_TransactionStatus": status,
        "vnp_OrderInfo": "Thanh toan le phi ho so HS000123",
        **extra,
    }
    return signed_answer(QUERYDR_ANSWER_ORDER, **fields)


def refund_answer(code: str = "00", message: str = "Refund success") -> dict[str, str]:
    fields = {
        "vnp_ResponseId": "RESP02",
        "vnp_Command": "refund",
        "vnp_ResponseCode": code,
        "vnp_Message": message,
        "vnp_TxnRef": REF,
        "vnp_Amount": "15000000",
        "vnp_BankCode": "NCB",
        "vnp_PayDate": "20250101091000",
        "vnp_TransactionNo": "14226999",
        "vnp_TransactionType": "02",
        "vnp_TransactionStatus": "05",
        "vnp_OrderInfo": "Hoan le phi",
    }
    return signed_answer(REFUND_ANSWER_ORDER, **fields)


class StandIn:
    """VNPay's transaction API, locally: checks each request's checksum, then gives the prepared answers."""

    def __init__(self, *answers: httpx.Response | Exception) -> None:
        self.answers = list(answers)
        self.bodies: list[dict[str, str]] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        order = QUERYDR_ORDER if body["vnp_Command"] == "querydr" else REFUND_ORDER
        assert body["vnp_SecureHash"] == pipe_hash([body[k] for k in order])
        self.bodies.append(body)
        answer = self.answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer


@pytest.fixture
def stand_in() -> Iterator[Callable[..., StandIn]]:
    with respx.mock(assert_all_called=False) as router:

        def install(*answers: httpx.Response | Exception) -> StandIn:
            handler = StandIn(*answers)
            router.post(API).mock(side_effect=handler)
            return handler

        yield install


# --- the domain reference's vectors -------------------------------------------------------------------------------
def test_pay_url_vector_reproduces_exactly() -> None:
    params = dict(parse_qsl(PAY_VECTOR))
    assert hash_data(params) == PAY_VECTOR
    assert sign_params(params, SECRET) == PAY_HASH
    assert pay_url_query(params, SECRET) == f"{PAY_VECTOR}&vnp_SecureHash={PAY_HASH}"


def test_querydr_vector_reproduces_exactly() -> None:
    assert sign_fields(QUERYDR_VECTOR.split("|"), SECRET) == QUERYDR_HASH


def test_signing_drops_empty_values_and_unsigned_or_foreign_keys() -> None:
    params = {
        **dict(parse_qsl(PAY_VECTOR)),
        "vnp_BankCode": "",
        "vnp_SecureHashType": "HmacSHA512",
        "vnp_SecureHash": "x",
        "utm": "1",
    }
    assert sign_params(params, SECRET) == PAY_HASH


def test_query_status_request_reproduces_the_querydr_vector(gw: VNPayGateway, stand_in: Callable[..., StandIn]) -> None:
    server = stand_in(httpx.Response(200, json=querydr_answer(vnp_TxnRef="HS000123")))
    gw.request_id = lambda: "REQ0001"
    gw.query_status(status_query("HS000123"))
    body = server.bodies[0]
    assert "|".join(body[k] for k in QUERYDR_ORDER) == QUERYDR_VECTOR
    assert body["vnp_SecureHash"] == QUERYDR_HASH


# --- start_payment --------------------------------------------------------------------------------------------------
def test_start_payment_builds_the_documented_pay_url(gw: VNPayGateway) -> None:
    result = gw.start_payment(start_request())
    url = urlsplit(result.next_url)
    assert f"{url.scheme}://{url.netloc}{url.path}" == SANDBOX_PAY_URL
    params = dict(parse_qsl(url.query, keep_blank_values=True))
    assert params["vnp_SecureHash"] == published_hash(params)
    assert result.gateway_reference == params["vnp_TxnRef"] == REF
    assert result.status is GatewayStatus.pending
    # Apart from our TxnRef, the attempt is exactly the domain reference's example.
    expected = dict(parse_qsl(PAY_VECTOR))
    assert {k: v for k, v in params.items() if k not in ("vnp_SecureHash", "vnp_TxnRef")} == {
        k: v for k, v in expected.items() if k != "vnp_TxnRef"
    }
    assert sign_params({**params, "vnp_TxnRef": "HS000123"}, SECRET) == PAY_HASH


# How VNPay's published samples form-encode a value (PHP urlencode, Java URLEncoder, .NET WebUtility.UrlEncode,
# Node encodeURIComponent with %20 -> +), next to Python's quote_plus that hash_data uses.
SAMPLE_ENCODERS = {
    "python": lambda v: quote_plus(v, safe=""),
    "php": lambda v: quote_plus(v, safe="").replace("~", "%7E"),
    "java": lambda v: quote_plus(v, safe="*").replace("~", "%7E"),
    "dotnet": lambda v: quote_plus(v, safe="*!()").replace("~", "%7E"),
    "node": lambda v: quote(v, safe="~*!'()").replace("%20", "+"),
}


@pytest.mark.parametrize(
    "return_url",
    [
        "https://example.gov.vn/return",
        "https://portal.example.gov.vn/~so-tu-phap/done",
        "https://portal.example.gov.vn/done?ho_so=A*B&x=(1)!'",
        "https://portal.example.gov.vn/done?q=a%20b+c~d",
    ],
)
def test_the_signed_return_url_encodes_alike_in_every_vnpay_sample(gw: VNPayGateway, return_url: str) -> None:
    params = gw.pay_params(start_request(return_url=return_url))
    signed = {
        name: "&".join(f"{k}={encode(v)}" for k, v in sorted(params.items()))
        for name, encode in SAMPLE_ENCODERS.items()
    }
    assert signed["python"] == hash_data(params)
    assert len(set(signed.values())) == 1, signed
    # The same address: only characters that mean the same percent-encoded were changed.
    assert unquote(params["vnp_ReturnUrl"]) == unquote(return_url)


def test_start_payment_uses_the_configured_pay_url_and_settings() -> None:
    gw = make_gateway(pay_url="https://pay.vnpay.test/vpcpay.html", order_type="billpayment", locale="en")
    params = dict(parse_qsl(urlsplit(gw.start_payment(start_request(locale="fr")).next_url).query))
    assert gw.start_payment(start_request()).next_url.startswith("https://pay.vnpay.test/vpcpay.html?")
    assert params["vnp_OrderType"] == "billpayment"
    assert params["vnp_Locale"] == "en"


@pytest.mark.parametrize(("locale", "expected"), [("vi", "vn"), ("vi-VN", "vn"), ("en", "en"), ("EN-us", "en")])
def test_request_locale_maps_to_vnpay_locale(gw: VNPayGateway, locale: str, expected: str) -> None:
    assert gw.pay_params(start_request(locale=locale))["vnp_Locale"] == expected


def test_same_idempotency_key_gives_the_same_txn_ref_and_url(gw: VNPayGateway) -> None:
    first, again = gw.start_payment(start_request()), gw.start_payment(start_request())
    other = gw.start_payment(start_request(idempotency_key="gtk_01JH5Q2M7Z"))
    assert first == again
    assert other.gateway_reference != first.gateway_reference


def test_txn_ref_is_short_uppercase_alphanumeric_and_carries_the_create_date() -> None:
    refs = {txn_ref(f"gtk_{i}", CREATED) for i in range(1000)}
    assert len(refs) == 1000
    for ref in refs:
        assert len(ref) == 34 and ref.isalnum() and ref.isupper() and ref.endswith("20250101090000")


def test_dates_are_gmt_plus_7() -> None:
    assert vnpay_time(datetime(2024, 12, 31, 20, 30, 5, 999999, tzinfo=UTC)) == "20250101033005"
    assert vnpay_time(datetime(2025, 1, 1, 9, 0, tzinfo=timezone(timedelta(hours=9)))) == "20250101070000"
    assert vnpay_time(datetime(2025, 1, 1, 2, 0)) == "20250101090000"  # naive: UTC, as the service stores it


def test_pay_dates_come_from_the_attempt_in_gmt_plus_7(gw: VNPayGateway) -> None:
    created = datetime(2025, 6, 30, 18, 0, tzinfo=UTC)
    params = gw.pay_params(start_request(created_at=created, expires_at=created + timedelta(minutes=30)))
    assert (params["vnp_CreateDate"], params["vnp_ExpireDate"]) == ("20250701010000", "20250701013000")


def test_order_info_is_ascii_without_diacritics(gw: VNPayGateway) -> None:
    assert ascii_text("Lệ phí đăng ký Đất đai – Hồ sơ #12 | Ưu tiên, “khẩn” ~") == (
        "Le phi dang ky Dat dai Ho so 12 Uu tien, khan"
    )
    assert ascii_text("x" * 300) == "x" * 255
    params = gw.pay_params(start_request(description="Lệ phí cấp Giấy chứng nhận quyền sử dụng đất"))
    assert params["vnp_OrderInfo"] == "Le phi cap Giay chung nhan quyen su dung dat"
    assert gw.pay_params(start_request(description="“ – ”"))["vnp_OrderInfo"] == f"Thanh toan {REF}"


def test_start_refuses_other_currencies(gw: VNPayGateway) -> None:
    with pytest.raises(GatewayDeclinedError):
        gw.start_payment(start_request(currency="USD"))


# --- IPN -------------------------------------------------------------------------------------------------------------
def test_valid_success_ipn_gives_the_event(gw: VNPayGateway) -> None:
    event = gw.parse_callback(get_ipn(ipn_params()))
    assert event == CallbackEvent(
        event_id=f"{REF}:14226112:00:00",
        merchant_reference="",
        gateway_reference=REF,
        status=GatewayStatus.succeeded,
        amount=150000,
        currency="VND",
        raw_code="00",
    )


@pytest.mark.parametrize(
    ("code", "state", "status"),
    [
        ("24", "02", GatewayStatus.cancelled),
        ("51", "02", GatewayStatus.failed),
        ("11", "02", GatewayStatus.failed),
        ("07", "07", GatewayStatus.pending),
        ("00", "01", GatewayStatus.pending),
    ],
)
def test_ipn_outcomes(gw: VNPayGateway, code: str, state: str, status: GatewayStatus) -> None:
    params = ipn_params(vnp_ResponseCode=code, vnp_TransactionStatus=state, vnp_TransactionNo="0")
    event = gw.parse_callback(get_ipn(params))
    assert (event.status, event.raw_code, event.event_id) == (status, code, f"{REF}:0:{code}:{state}")


def test_repeated_ipn_has_the_same_event_id(gw: VNPayGateway) -> None:
    assert gw.parse_callback(get_ipn(ipn_params())).event_id == gw.parse_callback(get_ipn(ipn_params())).event_id


def test_ipn_as_form_post_and_with_hash_type_and_uppercase_hash(gw: VNPayGateway) -> None:
    params = ipn_params(vnp_OrderInfo="Thanh toan: le phi / ho so 1,5")
    params = {**params, "vnp_SecureHashType": "HmacSHA512", "vnp_SecureHash": params["vnp_SecureHash"].upper()}
    body = urlencode(params).encode()
    assert gw.parse_callback(CallbackRequest("POST", {}, {}, body)).status is GatewayStatus.succeeded


@pytest.mark.parametrize(
    "params",
    [
        pytest.param({**ipn_params(), "vnp_Amount": "15000100"}, id="tampered-amount"),
        pytest.param({**ipn_params(), "vnp_ResponseCode": "00", "vnp_TxnRef": "OTHER"}, id="tampered-ref"),
        pytest.param(ipn_params(secret="another_secret"), id="wrong-secret"),
        pytest.param({k: v for k, v in ipn_params().items() if k != "vnp_SecureHash"}, id="missing-hash"),
        pytest.param({**ipn_params(), "vnp_SecureHash": "zz" * 64}, id="malformed-hash"),
        pytest.param(ipn_params(vnp_TmnCode="OTHERTMN"), id="wrong-tmn-code"),
        pytest.param(ipn_params(vnp_TmnCode=""), id="missing-tmn-code"),
        pytest.param(ipn_params(vnp_Amount="15000050"), id="amount-not-whole-vnd"),
        pytest.param(ipn_params(vnp_Amount="1.5e7"), id="amount-not-digits"),
        pytest.param(ipn_params(vnp_Amount="１５０００００"), id="amount-non-ascii-digits"),
        pytest.param(ipn_params(vnp_TxnRef=""), id="missing-txn-ref"),
        pytest.param(ipn_params(vnp_CurrCode="USD"), id="other-currency"),
    ],
)
def test_untrustworthy_ipns_are_rejected(gw: VNPayGateway, params: dict[str, str]) -> None:
    with pytest.raises(InvalidCallback):
        gw.parse_callback(get_ipn(params))


@pytest.mark.parametrize(
    "body", [b"vnp_Amount=1&vnp_Amount=2", b"vnp_OrderInfo=%FF", "vnp_OrderInfo=ả".encode(), b"a=1&" * 200]
)
def test_bad_form_bodies_are_rejected(gw: VNPayGateway, body: bytes) -> None:
    with pytest.raises(InvalidCallback):
        gw.parse_callback(CallbackRequest("POST", {}, {}, body))


def test_previous_secret_is_accepted_during_rotation() -> None:
    old_signed = get_ipn(ipn_params(secret="old_secret"))
    assert make_gateway(previous_hash_secrets=["old_secret"]).parse_callback(old_signed).status is (
        GatewayStatus.succeeded
    )
    with pytest.raises(InvalidCallback):
        make_gateway().parse_callback(old_signed)


@given(st.text(max_size=80))
def test_any_order_info_survives_signing_and_form_transport(info: str) -> None:
    params = ipn_params(vnp_OrderInfo=info or "x")
    event = make_gateway().parse_callback(CallbackRequest("POST", {}, {}, urlencode(params).encode()))
    assert event.amount == 150000


@pytest.mark.parametrize(
    ("outcome", "code", "message"),
    [
        (CallbackOutcome.accepted, "00", "Confirm Success"),
        (CallbackOutcome.duplicate, "02", "Order already confirmed"),
        (CallbackOutcome.already_final, "02", "Order already confirmed"),
        (CallbackOutcome.unknown_order, "01", "Order not found"),
        (CallbackOutcome.amount_mismatch, "04", "Invalid amount"),
        (CallbackOutcome.invalid_signature, "97", "Invalid signature"),
        (CallbackOutcome.error, "99", "Unknown error"),
    ],
)
def test_callback_reply_codes(gw: VNPayGateway, outcome: CallbackOutcome, code: str, message: str) -> None:
    reply = gw.callback_reply(outcome)
    assert (reply.status_code, reply.media_type) == (200, "application/json")
    assert json.loads(reply.body) == {"RspCode": code, "Message": message}


# --- QueryDR ------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("state", "status"),
    [
        ("00", GatewayStatus.succeeded),
        ("01", GatewayStatus.pending),
        ("02", GatewayStatus.failed),
        ("04", GatewayStatus.pending),
        ("05", GatewayStatus.succeeded),
        ("06", GatewayStatus.succeeded),
        ("07", GatewayStatus.pending),
        ("09", GatewayStatus.succeeded),
        ("88", GatewayStatus.pending),
    ],
)
def test_query_status_maps_each_transaction_status(
    gw: VNPayGateway, stand_in: Callable[..., StandIn], state: str, status: GatewayStatus
) -> None:
    stand_in(httpx.Response(200, json=querydr_answer(status=state)))
    result = gw.query_status(status_query())
    assert (result.status, result.gateway_reference, result.amount, result.raw_code) == (status, REF, 150000, state)


def test_query_status_sends_the_documented_request(gw: VNPayGateway, stand_in: Callable[..., StandIn]) -> None:
    server = stand_in(httpx.Response(200, json=querydr_answer()))
    gw.query_status(status_query(reference=None))  # the reference is derived again from the idempotency key
    body = server.bodies[0]
    assert body["vnp_Command"] == "querydr" and body["vnp_Version"] == "2.1.0" and body["vnp_TmnCode"] == TMN
    assert body["vnp_TxnRef"] == REF
    assert (body["vnp_TransactionDate"], body["vnp_CreateDate"]) == ("20250101090000", "20250101100000")
    assert len(body["vnp_RequestId"]) <= 32 and body["vnp_RequestId"].isalnum()


def test_query_request_ids_are_unique(gw: VNPayGateway, stand_in: Callable[..., StandIn]) -> None:
    server = stand_in(*[httpx.Response(200, json=querydr_answer()) for _ in range(2)])
    gw.query_status(status_query())
    gw.query_status(status_query())
    assert server.bodies[0]["vnp_RequestId"] != server.bodies[1]["vnp_RequestId"]


def test_transaction_not_found_is_unknown(gw: VNPayGateway, stand_in: Callable[..., StandIn]) -> None:
    stand_in(httpx.Response(200, json=signed_answer(QUERYDR_ANSWER_ORDER, vnp_ResponseCode="91")))
    assert gw.query_status(status_query()).status is GatewayStatus.unknown


@pytest.mark.parametrize("code", ["02", "03", "94", "97", "99"])
def test_an_unanswered_query_is_a_technical_error(
    gw: VNPayGateway, stand_in: Callable[..., StandIn], code: str
) -> None:
    stand_in(httpx.Response(200, json=signed_answer(QUERYDR_ANSWER_ORDER, vnp_ResponseCode=code)))
    with pytest.raises(GatewayTechnicalError):
        gw.query_status(status_query())


@pytest.mark.parametrize(
    "answer",
    [
        pytest.param({**querydr_answer(status="02"), "vnp_TransactionStatus": "00"}, id="tampered"),
        pytest.param({**querydr_answer(), "vnp_SecureHash": "0" * 128}, id="wrong-hash"),
        pytest.param(querydr_answer(vnp_TxnRef="ANOTHERREF"), id="other-transaction"),
        pytest.param(querydr_answer(vnp_Amount="15000050"), id="bad-amount"),
        pytest.param({**querydr_answer(), "vnp_SecureHash": "é" * 128}, id="non-ascii-hash"),
        pytest.param({**querydr_answer(), "vnp_SecureHash": "0" * 127 + "é"}, id="non-ascii-hash-end"),
        pytest.param(querydr_answer(vnp_Amount="+15000000"), id="signed-amount"),
        pytest.param(querydr_answer(vnp_Amount="15000000.00"), id="decimal-amount"),
        pytest.param(querydr_answer(vnp_Amount="١٥٠٠٠٠٠٠"), id="non-ascii-digits"),
        pytest.param(querydr_answer(vnp_Amount="9" * 30 + "00"), id="huge-amount"),
    ],
)
def test_untrustworthy_query_answers_are_technical_errors(
    gw: VNPayGateway, stand_in: Callable[..., StandIn], answer: dict[str, str]
) -> None:
    stand_in(httpx.Response(200, json=answer))
    with pytest.raises(GatewayTechnicalError):
        gw.query_status(status_query())


def test_answer_without_a_hash_and_with_numbers_is_read(gw: VNPayGateway, stand_in: Callable[..., StandIn]) -> None:
    answer = {"vnp_ResponseCode": "00", "vnp_TxnRef": REF, "vnp_Amount": 15000000, "vnp_TransactionStatus": "00"}
    stand_in(httpx.Response(200, json=answer))
    assert gw.query_status(status_query()).amount == 150000


def test_answer_signed_with_a_previous_secret_verifies_during_rotation(stand_in: Callable[..., StandIn]) -> None:
    answer = querydr_answer()
    values = [TMN if k == "vnp_TmnCode" else answer.get(k, "") for k in QUERYDR_ANSWER_ORDER]
    old_signed = httpx.Response(200, json={**answer, "vnp_SecureHash": pipe_hash(values, "old_secret")})
    stand_in(old_signed, old_signed)
    assert make_gateway(previous_hash_secrets=["old_secret"]).query_status(status_query()).status is (
        GatewayStatus.succeeded
    )
    with pytest.raises(GatewayTechnicalError):
        make_gateway().query_status(status_query())


def test_5xx_twice_then_an_answer_is_retried(gw: VNPayGateway, stand_in: Callable[..., StandIn]) -> None:
    server = stand_in(httpx.Response(503), httpx.Response(502), httpx.Response(200, json=querydr_answer()))
    assert gw.query_status(status_query()).status is GatewayStatus.succeeded
    assert len(server.bodies) == 3


@pytest.mark.parametrize(
    "failure",
    [httpx.ReadTimeout("slow"), httpx.ConnectTimeout("down"), httpx.ConnectError("refused"), httpx.Response(500)],
)
def test_persistent_failures_are_technical_errors(
    gw: VNPayGateway, stand_in: Callable[..., StandIn], failure: httpx.Response | Exception
) -> None:
    server = stand_in(failure, failure, failure)
    with pytest.raises(GatewayTechnicalError):
        gw.query_status(status_query())
    assert len(server.bodies) == 3


@pytest.mark.parametrize(
    "response",
    [httpx.Response(200, text="<html>maintenance</html>"), httpx.Response(200, json=[1]), httpx.Response(404)],
)
def test_unreadable_answers_are_technical_errors(
    gw: VNPayGateway, stand_in: Callable[..., StandIn], response: httpx.Response
) -> None:
    stand_in(response)
    with pytest.raises(GatewayTechnicalError):
        gw.query_status(status_query())


# --- cancel -------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("answer", "status", "raw_code"),
    [
        (querydr_answer(status="00"), GatewayStatus.succeeded, "00"),
        (querydr_answer(status="02"), GatewayStatus.failed, "02"),
        (querydr_answer(status="01"), GatewayStatus.cancelled, "expired-at-lephi"),
        (signed_answer(QUERYDR_ANSWER_ORDER, vnp_ResponseCode="91"), GatewayStatus.cancelled, "expired-at-lephi"),
    ],
)
def test_cancel_reports_a_final_status_or_cancels_at_lephi(
    gw: VNPayGateway, stand_in: Callable[..., StandIn], answer: dict[str, str], status: GatewayStatus, raw_code: str
) -> None:
    stand_in(httpx.Response(200, json=answer))
    result = gw.cancel(status_query())
    assert (result.status, result.raw_code, result.gateway_reference) == (status, raw_code, REF)


# --- refund -------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(("amount", "kind"), [(150000, "02"), (50000, "03")])
def test_refund_sends_the_documented_request(
    gw: VNPayGateway, stand_in: Callable[..., StandIn], amount: int, kind: str
) -> None:
    server = stand_in(httpx.Response(200, json=refund_answer()))
    result = gw.refund(refund_request(amount))
    body = server.bodies[0]
    assert body["vnp_Command"] == "refund" and body["vnp_TransactionType"] == kind
    assert body["vnp_Amount"] == str(amount * 100) and body["vnp_TxnRef"] == REF
    assert (body["vnp_TransactionNo"], body["vnp_CreateBy"]) == ("0", "lephi")
    assert (body["vnp_TransactionDate"], body["vnp_CreateDate"]) == ("20250101090000", "20250101100000")
    assert body["vnp_OrderInfo"] == "Hoan le phi"
    assert result.outcome is RefundOutcome.succeeded and result.gateway_reference == "14226999"


def test_refund_request_id_follows_the_idempotency_key(gw: VNPayGateway, stand_in: Callable[..., StandIn]) -> None:
    server = stand_in(*[httpx.Response(200, json=refund_answer()) for _ in range(3)])
    for key in ("rtk_1", "rtk_1", "rtk_2"):
        gw.refund(refund_request(key=key))
    ids = [b["vnp_RequestId"] for b in server.bodies]
    assert ids[0] == ids[1] != ids[2] and all(len(i) == 32 for i in ids)


def test_refund_already_in_progress_is_pending(gw: VNPayGateway, stand_in: Callable[..., StandIn]) -> None:
    stand_in(httpx.Response(200, json=refund_answer("94", "Refund is being processed")))
    assert gw.refund(refund_request()).outcome is RefundOutcome.pending


@pytest.mark.parametrize("code", ["02", "03", "91", "95", "97"])
def test_refused_refund_is_declined_with_the_message(
    gw: VNPayGateway, stand_in: Callable[..., StandIn], code: str
) -> None:
    stand_in(httpx.Response(200, json=refund_answer(code, "Refused by VNPay")))
    with pytest.raises(GatewayDeclinedError, match="Refused by VNPay"):
        gw.refund(refund_request())


@pytest.mark.parametrize("answer", [httpx.Response(200, json=refund_answer("99")), httpx.Response(503)])
def test_refund_with_an_unknown_outcome_is_technical_and_not_repeated(
    gw: VNPayGateway, stand_in: Callable[..., StandIn], answer: httpx.Response
) -> None:
    server = stand_in(answer, answer, answer)
    with pytest.raises(GatewayTechnicalError):
        gw.refund(refund_request())
    assert len(server.bodies) == 1


def test_refund_answer_with_a_bad_hash_is_not_trusted(gw: VNPayGateway, stand_in: Callable[..., StandIn]) -> None:
    stand_in(httpx.Response(200, json={**refund_answer(), "vnp_ResponseCode": "00", "vnp_Message": "forged"}))
    with pytest.raises(GatewayTechnicalError):
        gw.refund(refund_request())


@pytest.mark.parametrize(
    "request_", [refund_request(amount=0), refund_request(amount=150001), refund_request(reference="HS000123")]
)
def test_refunds_refused_before_calling_vnpay(gw: VNPayGateway, request_: RefundRequest) -> None:
    with respx.mock(assert_all_called=False) as router:
        route = router.post(API)
        with pytest.raises(GatewayDeclinedError):
            gw.refund(request_)
        assert not route.called


# --- settings -----------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("missing", ["tmn_code", "hash_secret"])
def test_missing_required_setting_is_named(missing: str) -> None:
    settings = {"tmn_code": TMN, "hash_secret": SECRET}
    del settings[missing]
    with pytest.raises(ValueError, match=missing):
        VNPayGateway(GatewayContext("vnpay", "", "", settings))


@pytest.mark.parametrize(
    ("key", "value"), [("previous_hash_secrets", "old"), ("previous_hash_secrets", [""]), ("locale", "fr")]
)
def test_bad_optional_setting_is_named(key: str, value: Any) -> None:
    with pytest.raises(ValueError, match=key):
        make_gateway(**{key: value})


def test_defaults_and_protocol() -> None:
    gw = VNPayGateway(GatewayContext("vnpay", "", "", {"tmn_code": TMN, "hash_secret": SECRET}))
    assert (gw.pay_url, gw.api_url, gw.locale, gw.order_type) == (SANDBOX_PAY_URL, SANDBOX_API_URL, "vn", "other")
    assert isinstance(gw, PaymentGateway) and gw.name == "vnpay"


# --- edges and exact texts (the survivors of the mutation run, docs/testing.md) ----------------------------------
def test_ipn_amounts_at_their_bounds() -> None:
    gw = make_gateway()
    event = gw.parse_callback(get_ipn(ipn_params(vnp_Amount="100")))
    assert event.amount == 1 and type(event.amount) is int  # a whole number of VND, not 1.0
    assert gw.parse_callback(get_ipn(ipn_params(vnp_Amount=f"{MAX_AMOUNT}00"))).amount == MAX_AMOUNT
    with pytest.raises(InvalidCallback, match=r"^IPN is missing or has a bad field: the amount must be between "):
        gw.parse_callback(get_ipn(ipn_params(vnp_Amount=f"{MAX_AMOUNT + 1}00")))
    with pytest.raises(InvalidCallback, match=r"^IPN is missing or has a bad field: not a VNPay amount: '15000050'$"):
        gw.parse_callback(get_ipn(ipn_params(vnp_Amount="15000050")))


def test_an_ipn_without_transaction_number_or_status_keeps_them_empty(gw: VNPayGateway) -> None:
    event = gw.parse_callback(get_ipn(ipn_params(vnp_TransactionNo="", vnp_TransactionStatus="")))
    assert (event.event_id, event.status, event.raw_code) == (f"{REF}::00:", GatewayStatus.pending, "00")


@pytest.mark.parametrize(
    ("params", "message"),
    [
        (ipn_params(vnp_TmnCode="OTHERTMN"), "^vnp_TmnCode is not this merchant's$"),
        (ipn_params(vnp_TxnRef=""), "^IPN is missing or has a bad field: 'vnp_TxnRef'$"),
        (ipn_params(vnp_CurrCode="USD"), "^IPN currency is not VND$"),
        (ipn_params(secret="another_secret"), "^vnp_SecureHash does not match$"),
        ({k: v for k, v in ipn_params().items() if k != "vnp_SecureHash"}, "^missing or malformed vnp_SecureHash$"),
        ({**ipn_params(), "vnp_SecureHash": "zz" * 64}, "^missing or malformed vnp_SecureHash$"),
    ],
)
def test_ipn_errors_say_what_is_wrong(gw: VNPayGateway, params: dict[str, str], message: str) -> None:
    with pytest.raises(InvalidCallback, match=message):
        gw.parse_callback(get_ipn(params))


def test_an_ipn_in_vnd_says_so_or_not_at_all(gw: VNPayGateway) -> None:
    assert gw.parse_callback(get_ipn(ipn_params(vnp_CurrCode="VND"))).currency == "VND"
    assert gw.parse_callback(get_ipn(ipn_params())).currency == "VND"


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"vnp_Amount=1&vnp_Amount=2", "^IPN form body repeats a parameter$"),
        (b"vnp_Amount=1&vnp_Amount=", "^IPN form body repeats a parameter$"),  # a blank value is still a value
        (b"vnp_OrderInfo=%FF", "^IPN form body is not valid form data$"),
        ("vnp_OrderInfo=ả".encode(), "^IPN form body is not valid form data$"),
        (b"a=1&" * 101, "^IPN form body is not valid form data$"),
    ],
)
def test_form_body_errors_say_what_is_wrong(gw: VNPayGateway, body: bytes, message: str) -> None:
    with pytest.raises(InvalidCallback, match=message):
        gw.parse_callback(CallbackRequest("POST", {}, {}, body))


def test_a_form_body_of_a_hundred_fields_is_read(gw: VNPayGateway) -> None:
    params = ipn_params()
    filler = {f"f{i}": "1" for i in range(100 - len(params))}  # not vnp_ parameters: not signed
    body = urlencode({**params, **filler}).encode()
    assert gw.parse_callback(CallbackRequest("POST", {}, {}, body)).amount == 150000
    with pytest.raises(InvalidCallback, match=r"^IPN form body is not valid form data$"):
        gw.parse_callback(CallbackRequest("POST", {}, {}, body + b"&f999=1"))


def test_the_ipn_comes_from_the_body_of_any_post_and_from_the_query_otherwise(gw: VNPayGateway) -> None:
    params = ipn_params()
    body = urlencode(params).encode()
    assert gw.parse_callback(CallbackRequest("post", {}, {}, body)).amount == 150000  # the method in any case
    # A POST without a body is read from its query; a GET's body is never read.
    assert gw.parse_callback(CallbackRequest("POST", {}, params, b"")).amount == 150000
    assert gw.parse_callback(CallbackRequest("GET", {}, params, b"vnp_Amount=1")).amount == 150000


def test_start_takes_any_positive_amount_in_vnd(gw: VNPayGateway) -> None:
    url = gw.start_payment(start_request(amount=1)).next_url
    assert dict(parse_qsl(urlsplit(url).query))["vnp_Amount"] == "100"
    for request in (start_request(amount=0), start_request(currency="USD")):
        with pytest.raises(GatewayDeclinedError, match=r"^VNPay takes positive amounts in VND only$"):
            gw.start_payment(request)


def test_order_info_is_cut_then_trimmed() -> None:
    assert ascii_text("a" * 254 + " b") == "a" * 254
    assert ascii_text("a b", limit=2) == "a"


def test_query_answers_without_optional_fields(gw: VNPayGateway, stand_in: Callable[..., StandIn]) -> None:
    stand_in(httpx.Response(200, json={"vnp_ResponseCode": "00"}))
    result = gw.query_status(status_query())
    assert (result.status, result.gateway_reference, result.amount, result.raw_code) == (
        GatewayStatus.pending,
        REF,
        None,
        "",
    )


def test_a_query_not_found_is_unknown_with_its_code(gw: VNPayGateway, stand_in: Callable[..., StandIn]) -> None:
    stand_in(httpx.Response(200, json={"vnp_ResponseCode": "91", "vnp_Amount": "15000000"}))
    result = gw.query_status(status_query())
    assert (result.status, result.gateway_reference, result.amount, result.raw_code) == (
        GatewayStatus.unknown,
        REF,
        None,
        "91",
    )


@pytest.mark.parametrize(
    ("response", "message"),
    [
        (httpx.Response(200, json={}), r"^VNPay querydr did not answer \(\): $"),
        (
            httpx.Response(200, json={"vnp_ResponseCode": "97", "vnp_Message": "Invalid checksum"}),
            r"^VNPay querydr did not answer \(97\): Invalid checksum$",
        ),
        (httpx.Response(200, json=querydr_answer(vnp_TxnRef="ANOTHERREF")), "^VNPay querydr answered about another"),
        (
            httpx.Response(200, json=querydr_answer(vnp_Amount="15000050")),
            "^VNPay querydr answered a bad amount: not a VNPay amount: '15000050'$",
        ),
        (httpx.Response(404), "^VNPay querydr answered HTTP 404$"),
        (httpx.Response(200, text="<html>"), "^VNPay querydr answered with invalid JSON$"),
        (httpx.Response(200, json=[1]), "^VNPay querydr answered with a non-object$"),
        (
            httpx.Response(200, json={**querydr_answer(), "vnp_SecureHash": "é" * 128}),
            "^VNPay answer's vnp_SecureHash is malformed: not trusted$",
        ),
        (
            httpx.Response(200, json={**querydr_answer(), "vnp_SecureHash": "0" * 128}),
            "^VNPay answer's vnp_SecureHash does not match: not trusted$",
        ),
    ],
)
def test_query_errors_say_what_is_wrong(
    gw: VNPayGateway, stand_in: Callable[..., StandIn], response: httpx.Response, message: str
) -> None:
    stand_in(response)
    with pytest.raises(GatewayTechnicalError, match=message):
        gw.query_status(status_query())


def test_signed_answers_are_read_with_any_hash_case_and_null_fields(
    gw: VNPayGateway, stand_in: Callable[..., StandIn]
) -> None:
    answer = querydr_answer()
    # VNPay prints an empty field as null; it is signed as an empty value.
    stand_in(
        httpx.Response(200, json={**answer, "vnp_SecureHash": answer["vnp_SecureHash"].upper()}),
        httpx.Response(200, json={**answer, "vnp_PromotionCode": None}),
    )
    assert gw.query_status(status_query()).status is GatewayStatus.succeeded
    assert gw.query_status(status_query()).status is GatewayStatus.succeeded


def test_an_answer_is_verified_with_our_own_terminal_code(gw: VNPayGateway, stand_in: Callable[..., StandIn]) -> None:
    fields = {k: v for k, v in querydr_answer().items() if k != "vnp_SecureHash"}
    # Signed by whoever holds our secret, but about another terminal: it does not verify.
    values = ["OTHERTMN" if k == "vnp_TmnCode" else fields.get(k, "") for k in QUERYDR_ANSWER_ORDER]
    stand_in(httpx.Response(200, json={**fields, "vnp_TmnCode": "OTHERTMN", "vnp_SecureHash": pipe_hash(values)}))
    with pytest.raises(GatewayTechnicalError, match="does not match"):
        gw.query_status(status_query())


def test_retries_wait_with_the_given_sleep(stand_in: Callable[..., StandIn]) -> None:
    gw = make_gateway()
    waits: list[float] = []
    gw.sleep = waits.append
    stand_in(httpx.Response(503), httpx.Response(200, json=querydr_answer()))
    assert gw.query_status(status_query()).status is GatewayStatus.succeeded
    assert len(waits) == 1


def test_settings_are_used() -> None:
    gw = make_gateway(server_ip="10.0.0.7", timeout_seconds=3, previous_hash_secrets=("old_secret",))
    assert gw._http.timeout.read == 3 and make_gateway()._http.timeout.read == 15
    assert gw.parse_callback(get_ipn(ipn_params(secret="old_secret"))).amount == 150000
    with respx.mock(assert_all_called=False) as router:
        server = StandIn(httpx.Response(200, json=refund_answer()))
        router.post(API).mock(side_effect=server)
        gw.refund(refund_request())
    assert server.bodies[0]["vnp_IpAddr"] == "10.0.0.7"


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"tmn_code": " "}, "^the vnpay gateway needs the setting 'tmn_code'$"),
        ({"hash_secret": None}, "^the vnpay gateway needs the setting 'hash_secret'$"),
        (
            {"previous_hash_secrets": ["a", ""]},
            "^the vnpay setting 'previous_hash_secrets' must be a list of non-empty strings$",
        ),
        ({"previous_hash_secrets": ["a", 5]}, "^the vnpay setting 'previous_hash_secrets' must be a list of "),
        ({"locale": "fr"}, "^the vnpay setting 'locale' must be 'vn' or 'en'$"),
    ],
)
def test_setting_errors_say_what_is_wrong(settings: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        make_gateway(**settings)


def test_refund_amounts_at_their_bounds(gw: VNPayGateway, stand_in: Callable[..., StandIn]) -> None:
    server = stand_in(httpx.Response(200, json=refund_answer()))
    gw.refund(refund_request(amount=1))
    assert (server.bodies[0]["vnp_Amount"], server.bodies[0]["vnp_TransactionType"]) == ("100", "03")
    message = "^refund amount must be positive and at most the amount paid$"
    for amount in (0, 150001):
        with pytest.raises(GatewayDeclinedError, match=message):
            gw.refund(refund_request(amount=amount))
    with pytest.raises(GatewayDeclinedError, match=r"^the reference was not made by this adapter: its transaction"):
        gw.refund(refund_request(reference="HS000123"))


def test_a_refund_without_a_reason_is_described_by_its_reference(
    gw: VNPayGateway, stand_in: Callable[..., StandIn]
) -> None:
    server = stand_in(httpx.Response(200, json=refund_answer()))
    gw.refund(RefundRequest("pay_1", REF, "rtk_1", 150000, 150000, "“ ”"))
    assert server.bodies[0]["vnp_OrderInfo"] == f"Hoan tien {REF}"
    assert server.bodies[0]["vnp_RequestId"] == hashlib.sha256(b"rtk_1").hexdigest()[:32]


@pytest.mark.parametrize(
    ("answer", "outcome", "reference", "detail"),
    [
        (refund_answer("00", "Refund success"), RefundOutcome.succeeded, "14226999", "Refund success"),
        ({"vnp_ResponseCode": "00"}, RefundOutcome.succeeded, None, ""),
        (refund_answer("94", "Refund is being processed"), RefundOutcome.pending, None, "Refund is being processed"),
    ],
)
def test_refund_results_keep_vnpays_reference_and_message(
    gw: VNPayGateway,
    stand_in: Callable[..., StandIn],
    answer: dict[str, str],
    outcome: RefundOutcome,
    reference: str | None,
    detail: str,
) -> None:
    stand_in(httpx.Response(200, json=answer))
    result = gw.refund(refund_request())
    assert (result.outcome, result.gateway_reference, result.detail) == (outcome, reference, detail)


@pytest.mark.parametrize(
    ("answer", "error", "message"),
    [
        (
            refund_answer("99", "System error"),
            GatewayTechnicalError,
            "^VNPay refund failed with an unspecified error: System error$",
        ),
        (
            refund_answer("02", "Refused by VNPay"),
            GatewayDeclinedError,
            r"^VNPay refused the refund \(02\): Refused by VNPay$",
        ),
        ({}, GatewayDeclinedError, r"^VNPay refused the refund \(\): $"),
        (refund_answer("99", "x") | {"vnp_SecureHash": "0" * 128}, GatewayTechnicalError, "^VNPay answer's vnp_Secure"),
    ],
)
def test_refund_errors_say_what_is_wrong(
    gw: VNPayGateway, stand_in: Callable[..., StandIn], answer: dict[str, str], error: type, message: str
) -> None:
    stand_in(httpx.Response(200, json=answer))
    with pytest.raises(error, match=message):
        gw.refund(refund_request())


def test_failed_calls_name_the_call_and_its_attempts(gw: VNPayGateway, stand_in: Callable[..., StandIn]) -> None:
    stand_in(*[httpx.Response(503)] * 4)
    with pytest.raises(GatewayTechnicalError, match=rf"^POST {API} failed after 3 attempts \(HTTP 503\)$"):
        gw.query_status(status_query())
    with pytest.raises(GatewayTechnicalError, match=rf"^POST {API} failed after 1 attempts \(HTTP 503\)$"):
        gw.refund(refund_request())


@pytest.mark.parametrize(
    ("locale", "expected"), [("vi", "vn"), ("vn", "vn"), ("VN-vn", "vn"), ("en", "en"), ("fr", "en")]
)
def test_a_vietnamese_request_is_in_vietnamese_whatever_the_default(locale: str, expected: str) -> None:
    assert make_gateway(locale="en").pay_params(start_request(locale=locale))["vnp_Locale"] == expected


def test_cancel_without_a_reference_names_the_derived_one(gw: VNPayGateway, stand_in: Callable[..., StandIn]) -> None:
    stand_in(httpx.Response(200, json=querydr_answer(status="01")))
    result = gw.cancel(status_query(reference=None))
    assert (result.status, result.gateway_reference, result.raw_code) == (
        GatewayStatus.cancelled,
        REF,
        "expired-at-lephi",
    )


@pytest.fixture
def tokyo_local_time(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """A local zone that is neither UTC nor GMT+7, so reading a naive time as local time gives another answer."""
    monkeypatch.setenv("TZ", "Asia/Tokyo")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


@pytest.mark.usefixtures("tokyo_local_time")
def test_naive_times_are_taken_as_utc_whatever_the_local_zone() -> None:
    assert vnpay_time(datetime(2025, 1, 1, 2, 0)) == "20250101090000"


def test_an_ipn_amount_below_one_dong_is_refused_with_the_bounds(gw: VNPayGateway) -> None:
    bounds = rf"the amount must be between 100 and {MAX_AMOUNT}00$"
    for raw in ("0", "50"):
        with pytest.raises(InvalidCallback, match=rf"^IPN is missing or has a bad field: {bounds}"):
            gw.parse_callback(get_ipn(ipn_params(vnp_Amount=raw)))


@pytest.mark.usefixtures("tokyo_local_time")
def test_the_default_clock_and_sleep_are_real_and_the_services_client_is_used(
    stand_in: Callable[..., StandIn],
) -> None:
    with httpx.Client() as client:
        settings = {"tmn_code": TMN, "hash_secret": SECRET, "api_url": API}
        gw = VNPayGateway(GatewayContext("vnpay", "", "", settings, http=client))
        assert gw._http is client and gw.sleep is time.sleep
        server = stand_in(httpx.Response(200, json=querydr_answer()))
        before = vnpay_time(datetime.now(UTC))
        gw.query_status(status_query())
        after = vnpay_time(datetime.now(UTC))
    assert before <= server.bodies[0]["vnp_CreateDate"] <= after  # now, in GMT+7, whatever the local zone
