"""MoMo adapter against respx stand-ins of MoMo's v2 API (MoMo's servers are not reachable from here).

Signatures in these tests are built by hand from the documented field orders, not with the adapter's helpers, so a
wrong order in the adapter fails them.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import json
import re
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
import respx
from hypothesis import given, settings
from hypothesis import strategies as st

from adapters.base import (
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
    RefundResult,
    StartPayment,
    StatusQuery,
)
from adapters.momo import CREATE_FIELDS, MoMoGateway, momo_id, raw_data, sign

ACCESS_KEY = "F8BBA842ECF85"  # MoMo's public sandbox keys, as in domain.md 4.3
SECRET = "K951B6PE1waDMi640xX08PD3vg6EkVlz"
OLD_SECRET = "retired-secret-still-accepted"
PARTNER = "MOMO"
BASE = "https://momo.test"
CREATE_URL = f"{BASE}/v2/gateway/api/create"
QUERY_URL = f"{BASE}/v2/gateway/api/query"
REFUND_URL = f"{BASE}/v2/gateway/api/refund"
KEY = "gtk_0123456789abcdef01234567"
ORDER_ID = f"pay-{KEY}"
NOW = datetime(2025, 1, 1, 9, 0, tzinfo=UTC)


def hmac_hex(raw: str, secret: str = SECRET) -> str:
    return hmac.new(secret.encode(), raw.encode(), hashlib.sha256).hexdigest()


def make_gateway(client: httpx.Client | None = None, **overrides: Any) -> MoMoGateway:
    settings_ = {
        "partner_code": PARTNER,
        "access_key": ACCESS_KEY,
        "secret_key": SECRET,
        "endpoint": BASE + "/",
        "previous_secret_keys": [OLD_SECRET],
        **overrides,
    }
    context = GatewayContext("momo", "https://lephi.test", "https://lephi.test/cb", settings=settings_, http=client)
    return MoMoGateway(context, sleep=lambda _s: None)


@functools.cache
def shared_gateway() -> MoMoGateway:
    """One instance for property tests, which cannot take function-scoped fixtures (it makes no HTTP call)."""
    return make_gateway()


@pytest.fixture
def gateway() -> Iterator[MoMoGateway]:
    with httpx.Client() as client:
        yield make_gateway(client)


def start_request(key: str = KEY, amount: int = 150000, currency: str = "VND") -> StartPayment:
    return StartPayment(
        merchant_reference="pay_1",
        idempotency_key=key,
        amount=amount,
        currency=currency,
        description="Le phi HS000123",
        return_url="https://example.gov.vn/momo/return",
        callback_url="https://example.gov.vn/momo/ipn",
        created_at=NOW,
        expires_at=NOW + timedelta(minutes=15),
    )


def status_query(reference: str | None = ORDER_ID) -> StatusQuery:
    return StatusQuery("pay_1", reference, KEY, 150000, NOW)


def create_answer(body: dict[str, Any], code: int = 0, signed: bool = True, **extra: Any) -> dict[str, Any]:
    answer = {
        "partnerCode": body["partnerCode"],
        "orderId": body["orderId"],
        "requestId": body["requestId"],
        "amount": body["amount"],
        "responseTime": 1735696800000,
        "message": "Thành công.",
        "resultCode": code,
        "payUrl": f"https://test-payment.momo.vn/pay/{body['orderId']}",
        **extra,
    }
    if signed:
        answer["signature"] = hmac_hex(
            f"accessKey={ACCESS_KEY}&amount={answer['amount']}&orderId={answer['orderId']}"
            f"&partnerCode={answer['partnerCode']}&payUrl={answer['payUrl']}&requestId={answer['requestId']}"
            f"&responseTime={answer['responseTime']}&resultCode={answer['resultCode']}"
        )
    return answer


SENT: list[dict[str, Any]] = []  # request bodies the stand-ins received, in order


def answering(make: Callable[[dict[str, Any]], dict[str, Any]]) -> Callable[[httpx.Request], httpx.Response]:
    """A respx side effect that records request bodies and answers with ``make(body)``."""

    def respond(request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        SENT.append(body)
        return httpx.Response(200, json=make(body))

    return respond


@pytest.fixture(autouse=True)
def _fresh_bodies() -> None:
    SENT.clear()


def bodies() -> list[dict[str, Any]]:
    return SENT


# --- signatures and identifiers -----------------------------------------------------------------------------------
def test_create_signature_reproduces_the_domain_vector() -> None:
    values = {
        "accessKey": ACCESS_KEY,
        "amount": 150000,
        "extraData": "",
        "ipnUrl": "https://example.gov.vn/momo/ipn",
        "orderId": "HS000123-1",
        "orderInfo": "Le phi HS000123",
        "partnerCode": "MOMO",
        "redirectUrl": "https://example.gov.vn/momo/return",
        "requestId": "HS000123-1",
        "requestType": "captureWallet",
    }
    assert raw_data(CREATE_FIELDS, values) == (
        "accessKey=F8BBA842ECF85&amount=150000&extraData=&ipnUrl=https://example.gov.vn/momo/ipn"
        "&orderId=HS000123-1&orderInfo=Le phi HS000123&partnerCode=MOMO"
        "&redirectUrl=https://example.gov.vn/momo/return&requestId=HS000123-1&requestType=captureWallet"
    )
    assert sign(SECRET, CREATE_FIELDS, values) == "5001ff8d79332ae0d31f1d32db4f7f7d660084340e731b135dd77383c9ffeef2"


@pytest.mark.parametrize("key", ["k" * 80, "has spaces", "ends-with-", "é-accent", "a..b!"])
def test_ids_that_do_not_fit_are_hashed_stably_into_momos_alphabet(key: str) -> None:
    made = momo_id("pay-", key)
    assert made == momo_id("pay-", key) and len(made) <= 50
    assert made.startswith("pay-") and all(c.isascii() and (c.isalnum() or c == "-") for c in made)
    assert momo_id("pay-", key) != momo_id("rfd-", key)


def test_the_gateway_satisfies_the_protocol(gateway: MoMoGateway) -> None:
    assert isinstance(gateway, PaymentGateway) and gateway.name == "momo"


@pytest.mark.parametrize("missing", ["partner_code", "access_key", "secret_key"])
def test_a_missing_setting_is_named(missing: str) -> None:
    with pytest.raises(ValueError, match=missing):
        make_gateway(None, **{missing: ""})


# --- start_payment ------------------------------------------------------------------------------------------------
@respx.mock
def test_create_body_is_signed_in_the_documented_order(gateway: MoMoGateway) -> None:
    respx.post(CREATE_URL).mock(side_effect=answering(create_answer))
    result = gateway.start_payment(start_request())
    (body,) = bodies()
    assert body == {
        "partnerCode": PARTNER,
        "requestId": ORDER_ID,
        "amount": 150000,
        "orderId": ORDER_ID,
        "orderInfo": "Le phi HS000123",
        "redirectUrl": "https://example.gov.vn/momo/return",
        "ipnUrl": "https://example.gov.vn/momo/ipn",
        "requestType": "captureWallet",
        "extraData": "",
        "lang": "vi",
        "signature": hmac_hex(
            f"accessKey={ACCESS_KEY}&amount=150000&extraData=&ipnUrl=https://example.gov.vn/momo/ipn"
            f"&orderId={ORDER_ID}&orderInfo=Le phi HS000123&partnerCode={PARTNER}"
            f"&redirectUrl=https://example.gov.vn/momo/return&requestId={ORDER_ID}&requestType=captureWallet"
        ),
    }
    assert result.gateway_reference == ORDER_ID
    assert result.next_url == f"https://test-payment.momo.vn/pay/{ORDER_ID}"
    assert result.status is GatewayStatus.pending


@respx.mock
def test_same_idempotency_key_gives_same_order_and_request_ids(gateway: MoMoGateway) -> None:
    respx.post(CREATE_URL).mock(side_effect=answering(create_answer))
    gateway.start_payment(start_request())
    gateway.start_payment(start_request())
    gateway.start_payment(start_request(key="gtk_another"))
    first, second, other = bodies()
    assert first == second and first["orderId"] == first["requestId"]
    assert other["orderId"] == other["requestId"] != first["orderId"]


@respx.mock
def test_5xx_twice_then_200_is_retried_with_the_same_request(gateway: MoMoGateway) -> None:
    answers = [httpx.Response(500), httpx.Response(503)]

    def respond(request: httpx.Request) -> httpx.Response:
        bodies().append(json.loads(request.content))
        return answers.pop(0) if answers else httpx.Response(200, json=create_answer(bodies()[-1]))

    route = respx.post(CREATE_URL).mock(side_effect=respond)
    assert gateway.start_payment(start_request()).gateway_reference == ORDER_ID
    assert route.call_count == 3 and bodies()[0] == bodies()[1] == bodies()[2]


@respx.mock
def test_timeouts_become_a_technical_error(gateway: MoMoGateway) -> None:
    respx.post(CREATE_URL).mock(side_effect=httpx.ReadTimeout("slow"))
    with pytest.raises(GatewayTechnicalError, match="timeout"):
        gateway.start_payment(start_request())


@respx.mock
@pytest.mark.parametrize("code", [11, 12, 13, 21, 22, 41, 1001])
def test_final_refusals_are_declined_with_code_and_message(gateway: MoMoGateway, code: int) -> None:
    respx.post(CREATE_URL).mock(
        side_effect=answering(lambda b: create_answer(b, code, signed=False, message="Từ chối", payUrl=""))
    )
    with pytest.raises(GatewayDeclinedError, match=rf"resultCode {code} .*Từ chối"):
        gateway.start_payment(start_request())


@respx.mock
@pytest.mark.parametrize("code", [10, 40, 43, 99, 12345])
def test_codes_that_leave_the_order_in_doubt_are_technical(gateway: MoMoGateway, code: int) -> None:
    respx.post(CREATE_URL).mock(side_effect=answering(lambda b: create_answer(b, code, signed=False)))
    with pytest.raises(GatewayTechnicalError, match=str(code)):
        gateway.start_payment(start_request())


@respx.mock
@pytest.mark.parametrize("code", [1000, 7000, 7002, 9000])
def test_processing_codes_on_create_give_a_pending_start(gateway: MoMoGateway, code: int) -> None:
    respx.post(CREATE_URL).mock(side_effect=answering(lambda b: create_answer(b, code)))
    assert gateway.start_payment(start_request()).status is GatewayStatus.pending


@respx.mock
def test_an_unsigned_create_answer_is_accepted_a_missigned_one_is_not(gateway: MoMoGateway) -> None:
    respx.post(CREATE_URL).mock(side_effect=answering(lambda b: create_answer(b, signed=False)))
    assert gateway.start_payment(start_request()).next_url.startswith("https://test-payment.momo.vn/pay/")
    respx.post(CREATE_URL).mock(side_effect=answering(lambda b: {**create_answer(b), "payUrl": "https://evil.test"}))
    with pytest.raises(GatewayTechnicalError, match="not signed"):
        gateway.start_payment(start_request())


@respx.mock
def test_create_answer_signed_with_a_rotated_out_secret_still_verifies(gateway: MoMoGateway) -> None:
    def old_signed(body: dict[str, Any]) -> dict[str, Any]:
        answer = create_answer(body, signed=False)
        raw = (
            f"accessKey={ACCESS_KEY}&amount=150000&orderId={ORDER_ID}&partnerCode={PARTNER}"
            f"&payUrl={answer['payUrl']}&requestId={ORDER_ID}&responseTime={answer['responseTime']}&resultCode=0"
        )
        return {**answer, "signature": hmac_hex(raw, OLD_SECRET)}

    respx.post(CREATE_URL).mock(side_effect=answering(old_signed))
    assert gateway.start_payment(start_request()).gateway_reference == ORDER_ID


@respx.mock
@pytest.mark.parametrize(
    "response",
    [
        httpx.Response(200, text="<html>proxy error</html>"),
        httpx.Response(200, json=["not", "an", "object"]),
        httpx.Response(200, json={"message": "no resultCode"}),
        httpx.Response(400, text="Bad Request"),
    ],
)
def test_answers_without_a_result_code_are_technical(gateway: MoMoGateway, response: httpx.Response) -> None:
    respx.post(CREATE_URL).mock(return_value=response)
    with pytest.raises(GatewayTechnicalError):
        gateway.start_payment(start_request())


@respx.mock
def test_a_success_without_pay_url_or_for_another_order_is_technical(gateway: MoMoGateway) -> None:
    respx.post(CREATE_URL).mock(side_effect=answering(lambda b: create_answer(b, signed=False, payUrl="")))
    with pytest.raises(GatewayTechnicalError, match="payUrl"):
        gateway.start_payment(start_request())
    respx.post(CREATE_URL).mock(side_effect=answering(lambda b: create_answer(b, signed=False, amount=1)))
    with pytest.raises(GatewayTechnicalError, match="another order"):
        gateway.start_payment(start_request())


def test_other_currencies_are_declined_without_a_call(gateway: MoMoGateway) -> None:
    with respx.mock(assert_all_called=False) as mock:
        route = mock.post(CREATE_URL)
        with pytest.raises(GatewayDeclinedError, match="VND"):
            gateway.start_payment(start_request(currency="USD"))
        assert not route.called


# --- IPN ----------------------------------------------------------------------------------------------------------
def ipn(code: int = 0, secret: str = SECRET, **changes: Any) -> dict[str, Any]:
    fields: dict[str, Any] = {
        "partnerCode": PARTNER,
        "orderId": ORDER_ID,
        "requestId": ORDER_ID,
        "amount": 150000,
        "orderInfo": "Le phi HS000123",
        "orderType": "momo_wallet",
        "transId": 4088878653,
        "resultCode": code,
        "message": "Thành công.",
        "payType": "qr",
        "responseTime": 1735696800000,
        "extraData": "",
        **changes,
    }
    raw = (
        f"accessKey={ACCESS_KEY}&amount={fields['amount']}&extraData={fields['extraData']}"
        f"&message={fields['message']}&orderId={fields['orderId']}&orderInfo={fields['orderInfo']}"
        f"&orderType={fields['orderType']}&partnerCode={fields['partnerCode']}&payType={fields['payType']}"
        f"&requestId={fields['requestId']}&responseTime={fields['responseTime']}&resultCode={fields['resultCode']}"
        f"&transId={fields['transId']}"
    )
    return {**fields, "signature": hmac_hex(raw, secret)}


def callback(body: dict[str, Any] | bytes) -> CallbackRequest:
    raw = body if isinstance(body, bytes) else json.dumps(body, ensure_ascii=False).encode()
    return CallbackRequest("POST", {"content-type": "application/json"}, {}, raw)


@pytest.mark.parametrize(
    ("code", "status"),
    [
        (0, GatewayStatus.succeeded),
        (9000, GatewayStatus.pending),
        (1000, GatewayStatus.pending),
        (1006, GatewayStatus.cancelled),
        (1005, GatewayStatus.cancelled),
        (1017, GatewayStatus.cancelled),
        (1001, GatewayStatus.failed),
        (1002, GatewayStatus.failed),
        (4242, GatewayStatus.failed),
    ],
)
def test_a_valid_ipn_becomes_the_right_event(gateway: MoMoGateway, code: int, status: GatewayStatus) -> None:
    event = gateway.parse_callback(callback(ipn(code)))
    assert event.event_id == f"{ORDER_ID}:4088878653:{code}"
    assert (event.merchant_reference, event.gateway_reference) == ("", ORDER_ID)
    assert (event.status, event.amount, event.currency, event.raw_code) == (status, 150000, "VND", str(code))


def test_an_ipn_signed_with_a_previous_secret_is_accepted(gateway: MoMoGateway) -> None:
    assert gateway.parse_callback(callback(ipn(secret=OLD_SECRET))).status is GatewayStatus.succeeded


def test_previous_secrets_may_be_a_comma_separated_string() -> None:
    momo = make_gateway(previous_secret_keys=f"other, {OLD_SECRET}")
    assert momo.parse_callback(callback(ipn(secret=OLD_SECRET))).status is GatewayStatus.succeeded


def _tampered_amount() -> dict[str, Any]:
    return {**ipn(), "amount": 1500}


def _other_partner() -> dict[str, Any]:
    return ipn(partnerCode="MOMOOTHER")  # correctly signed with our secret, for another partner


def _without(key: str) -> dict[str, Any]:
    body = ipn()
    del body[key]
    return body


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(ipn(secret="wrong"), id="wrong-secret"),
        pytest.param(_tampered_amount(), id="tampered-amount"),
        pytest.param(_without("signature"), id="missing-signature"),
        pytest.param({**ipn(), "signature": "é" * 64}, id="non-ascii-signature"),
        pytest.param({**ipn(), "signature": 12345}, id="signature-not-a-string"),
        pytest.param(_other_partner(), id="other-partner"),
        pytest.param(_without("transId"), id="missing-field"),
        pytest.param(ipn(amount=150000.0), id="float-amount"),
        pytest.param(ipn(resultCode=True), id="bool-result-code"),
        pytest.param(ipn(extraData=None), id="null-field"),
        pytest.param(ipn(amount="15e4"), id="amount-not-digits"),
        pytest.param(ipn(orderId=""), id="empty-order-id"),
        pytest.param(b"{not json", id="malformed-json"),
        pytest.param(b"\xff\xfe\x00garbage", id="not-utf8"),
        pytest.param(b"[1, 2, 3]", id="json-array"),
        pytest.param(b"", id="empty-body"),
    ],
)
def test_forged_or_malformed_ipns_are_invalid(gateway: MoMoGateway, body: dict[str, Any] | bytes) -> None:
    with pytest.raises(InvalidCallback):
        gateway.parse_callback(callback(body))


@settings(derandomize=True, max_examples=60, deadline=None)
@given(
    amount=st.integers(min_value=0, max_value=50_000_000),
    code=st.sampled_from([0, 1000, 1005, 1006, 1017, 1001, 9000]),
    info=st.text(max_size=40),
    extra=st.text(alphabet="ABCDEFabcdef0123456789+/=", max_size=20),
)
def test_any_signed_ipn_round_trips(amount: int, code: int, info: str, extra: str) -> None:
    event = shared_gateway().parse_callback(callback(ipn(code, amount=amount, orderInfo=info, extraData=extra)))
    assert (event.amount, event.raw_code) == (amount, str(code))


@pytest.mark.parametrize(
    ("outcome", "status_code"),
    [
        (CallbackOutcome.accepted, 204),
        (CallbackOutcome.duplicate, 204),
        (CallbackOutcome.already_final, 204),
        (CallbackOutcome.unknown_order, 204),
        (CallbackOutcome.amount_mismatch, 204),
        (CallbackOutcome.invalid_signature, 401),
        (CallbackOutcome.error, 500),
    ],
)
def test_callback_replies(gateway: MoMoGateway, outcome: CallbackOutcome, status_code: int) -> None:
    reply = gateway.callback_reply(outcome)
    assert (reply.status_code, reply.body) == (status_code, b"")


# --- query_status and cancel --------------------------------------------------------------------------------------
def query_answer(body: dict[str, Any], code: int = 0, **extra: Any) -> dict[str, Any]:
    return {
        "partnerCode": body["partnerCode"],
        "orderId": body["orderId"],
        "requestId": body["requestId"],
        "extraData": "",
        "amount": 150000,
        "transId": 4088878653,
        "payType": "qr",
        "resultCode": code,
        "refundTrans": [],
        "message": "ok",
        "responseTime": 1735696800000,
        **extra,
    }


def assert_query_signed(body: dict[str, Any], order_id: str = ORDER_ID) -> None:
    assert body["orderId"] == order_id and body["partnerCode"] == PARTNER and body["lang"] == "vi"
    raw = f"accessKey={ACCESS_KEY}&orderId={order_id}&partnerCode={PARTNER}&requestId={body['requestId']}"
    assert body["signature"] == hmac_hex(raw)


@respx.mock
@pytest.mark.parametrize(
    ("code", "status"),
    [
        (0, GatewayStatus.succeeded),
        (1000, GatewayStatus.pending),
        (7000, GatewayStatus.pending),
        (7002, GatewayStatus.pending),
        (9000, GatewayStatus.pending),
        (1006, GatewayStatus.cancelled),
        (1005, GatewayStatus.cancelled),
        (42, GatewayStatus.unknown),
        (1001, GatewayStatus.failed),
        (4100, GatewayStatus.failed),
    ],
)
def test_query_maps_result_codes(gateway: MoMoGateway, code: int, status: GatewayStatus) -> None:
    respx.post(QUERY_URL).mock(side_effect=answering(lambda b: query_answer(b, code)))
    result = gateway.query_status(status_query())
    assert_query_signed(bodies()[0])
    assert (result.status, result.gateway_reference, result.raw_code) == (status, ORDER_ID, str(code))
    assert result.amount == (None if code == 42 else 150000)


@respx.mock
def test_query_uses_a_fresh_request_id_and_derives_the_order_without_a_reference(gateway: MoMoGateway) -> None:
    respx.post(QUERY_URL).mock(side_effect=answering(query_answer))
    gateway.query_status(status_query(reference=None))
    gateway.query_status(status_query(reference=None))
    first, second = bodies()
    assert_query_signed(first)
    assert first["requestId"] != second["requestId"]


@respx.mock
@pytest.mark.parametrize("code", [10, 11, 13, 40, 99])
def test_a_query_refused_for_itself_never_fails_the_payment(gateway: MoMoGateway, code: int) -> None:
    respx.post(QUERY_URL).mock(side_effect=answering(lambda b: query_answer(b, code)))
    with pytest.raises(GatewayTechnicalError, match="status query"):
        gateway.query_status(status_query())


@respx.mock
def test_query_5xx_exhausted_is_technical(gateway: MoMoGateway) -> None:
    route = respx.post(QUERY_URL).mock(return_value=httpx.Response(502))
    with pytest.raises(GatewayTechnicalError, match="HTTP 502"):
        gateway.query_status(status_query())
    assert route.call_count == 3


@respx.mock
@pytest.mark.parametrize("code", [1000, 42])
def test_cancel_of_an_unfinished_order_lets_the_link_expire(gateway: MoMoGateway, code: int) -> None:
    respx.post(QUERY_URL).mock(side_effect=answering(lambda b: query_answer(b, code)))
    result = gateway.cancel(status_query())
    assert (result.status, result.raw_code, result.gateway_reference) == (
        GatewayStatus.cancelled,
        "expired-at-lephi",
        ORDER_ID,
    )


@respx.mock
@pytest.mark.parametrize(
    ("code", "status"),
    [(0, GatewayStatus.succeeded), (1006, GatewayStatus.cancelled), (1001, GatewayStatus.failed)],
)
def test_cancel_of_a_finished_order_reports_it(gateway: MoMoGateway, code: int, status: GatewayStatus) -> None:
    respx.post(QUERY_URL).mock(side_effect=answering(lambda b: query_answer(b, code)))
    result = gateway.cancel(status_query())
    assert (result.status, result.raw_code) == (status, str(code))


# --- refund -------------------------------------------------------------------------------------------------------
REFUND_KEY = "rtk_00112233445566778899aabb"
REFUND_ID = f"rfd-{REFUND_KEY}"


def refund_request(amount: int = 50000) -> RefundRequest:
    return RefundRequest("pay_1", ORDER_ID, REFUND_KEY, amount, 150000, "Hoan phi HS000123")


def refund_answer(body: dict[str, Any], code: int = 0) -> dict[str, Any]:
    return {
        "partnerCode": body["partnerCode"],
        "orderId": body["orderId"],
        "requestId": body["requestId"],
        "amount": body["amount"],
        "transId": 4088900001,
        "resultCode": code,
        "message": "ok",
        "responseTime": 1735700000000,
    }


@respx.mock
def test_refund_queries_for_trans_id_then_posts_a_signed_refund(gateway: MoMoGateway) -> None:
    respx.post(QUERY_URL).mock(side_effect=answering(query_answer))
    respx.post(REFUND_URL).mock(side_effect=answering(refund_answer))
    result = gateway.refund(refund_request())
    query, refund = bodies()
    assert_query_signed(query)
    assert refund == {
        "partnerCode": PARTNER,
        "orderId": REFUND_ID,
        "requestId": REFUND_ID,
        "amount": 50000,
        "transId": 4088878653,
        "lang": "vi",
        "description": "Hoan phi HS000123",
        "signature": hmac_hex(
            f"accessKey={ACCESS_KEY}&amount=50000&description=Hoan phi HS000123&orderId={REFUND_ID}"
            f"&partnerCode={PARTNER}&requestId={REFUND_ID}&transId=4088878653"
        ),
    }
    assert (result.outcome, result.gateway_reference) == (RefundOutcome.succeeded, REFUND_ID)


@respx.mock
@pytest.mark.parametrize(("code", "outcome"), [(0, RefundOutcome.succeeded), (1000, RefundOutcome.pending)])
def test_refund_result_codes(gateway: MoMoGateway, code: int, outcome: RefundOutcome) -> None:
    respx.post(QUERY_URL).mock(side_effect=answering(query_answer))
    respx.post(REFUND_URL).mock(side_effect=answering(lambda b: refund_answer(b, code)))
    assert gateway.refund(refund_request()).outcome is outcome


@respx.mock
@pytest.mark.parametrize("code", [1080, 1081, 21, 11])
def test_refund_refusals_are_declined(gateway: MoMoGateway, code: int) -> None:
    respx.post(QUERY_URL).mock(side_effect=answering(query_answer))
    respx.post(REFUND_URL).mock(side_effect=answering(lambda b: refund_answer(b, code)))
    with pytest.raises(GatewayDeclinedError, match=str(code)):
        gateway.refund(refund_request())


@respx.mock
@pytest.mark.parametrize("code", [40, 41, 10, 99])
def test_refund_in_doubt_is_technical(gateway: MoMoGateway, code: int) -> None:
    respx.post(QUERY_URL).mock(side_effect=answering(query_answer))
    respx.post(REFUND_URL).mock(side_effect=answering(lambda b: refund_answer(b, code)))
    with pytest.raises(GatewayTechnicalError, match="in doubt"):
        gateway.refund(refund_request())


@respx.mock
@pytest.mark.parametrize("code", [1000, 1006, 42])
def test_refund_of_an_unpaid_order_is_declined_without_posting(gateway: MoMoGateway, code: int) -> None:
    respx.post(QUERY_URL).mock(side_effect=answering(lambda b: query_answer(b, code)))
    route = respx.post(REFUND_URL)
    with pytest.raises(GatewayDeclinedError, match="not a paid payment"):
        gateway.refund(refund_request())
    assert not route.called


@respx.mock
def test_a_refund_already_listed_at_momo_is_not_posted_again(gateway: MoMoGateway) -> None:
    listed = [{"orderId": REFUND_ID, "amount": 50000, "resultCode": 0, "transId": 4088900001}]
    respx.post(QUERY_URL).mock(side_effect=answering(lambda b: query_answer(b, refundTrans=listed)))
    route = respx.post(REFUND_URL)
    result = gateway.refund(refund_request())
    assert (result.outcome, result.gateway_reference) == (RefundOutcome.succeeded, REFUND_ID)
    assert not route.called


# --- edges the mutation run found untested (docs/testing.md, "Mutation testing") ----------------------------------
def test_an_id_of_exactly_fifty_characters_is_kept_a_longer_one_is_hashed() -> None:
    fits, too_long = "k" * 46, "k" * 47
    assert momo_id("pay-", fits) == "pay-" + fits
    assert momo_id("pay-", too_long) == "pay-" + hashlib.sha256(too_long.encode()).hexdigest()[:40]


def test_settings_for_request_type_language_and_a_bad_retired_secret_list_are_read() -> None:
    with respx.mock:
        respx.post(CREATE_URL).mock(side_effect=answering(create_answer))
        make_gateway(request_type="payWithMethod", lang="en").start_payment(start_request())
    (body,) = bodies()
    assert (body["requestType"], body["lang"]) == ("payWithMethod", "en")
    with pytest.raises(ValueError, match=r"^the MoMo setting 'previous_secret_keys' must be a list"):
        make_gateway(previous_secret_keys=5)


def test_the_timeout_setting_applies_to_the_adapters_own_client_only() -> None:
    assert make_gateway()._http.timeout.read == 30.0
    assert make_gateway(timeout_seconds=5)._http.timeout.read == 5.0
    seen: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.method)
        return httpx.Response(200, json=query_answer(json.loads(request.content)))

    with httpx.Client(transport=httpx.MockTransport(handler)) as given:
        assert make_gateway(given).query_status(status_query()).status is GatewayStatus.succeeded
    assert seen == ["POST"]


@respx.mock
def test_an_unknown_create_code_without_a_message_is_described_in_full(gateway: MoMoGateway) -> None:
    def answer(body: dict[str, Any]) -> dict[str, Any]:
        made = create_answer(body, 12345, signed=False)
        del made["message"]
        return made

    respx.post(CREATE_URL).mock(side_effect=answering(answer))
    with pytest.raises(GatewayTechnicalError, match=r"^MoMo resultCode 12345 \(unknown result code\): $"):
        gateway.start_payment(start_request())


@respx.mock
def test_create_answers_may_leave_out_order_amount_and_unsigned_fields(gateway: MoMoGateway) -> None:
    def without_order(body: dict[str, Any]) -> dict[str, Any]:
        made = create_answer(body, signed=False)
        del made["orderId"], made["amount"]
        return made

    def signed_without_time(body: dict[str, Any]) -> dict[str, Any]:
        made = create_answer(body, signed=False)
        del made["responseTime"]
        raw = (
            f"accessKey={ACCESS_KEY}&amount=150000&orderId={ORDER_ID}&partnerCode={PARTNER}"
            f"&payUrl={made['payUrl']}&requestId={ORDER_ID}&responseTime=&resultCode=0"
        )
        return {**made, "signature": hmac_hex(raw)}

    for make in (without_order, signed_without_time):
        respx.post(CREATE_URL).mock(side_effect=answering(make))
        assert gateway.start_payment(start_request()).gateway_reference == ORDER_ID


@respx.mock
@pytest.mark.parametrize(
    ("make", "message"),
    [
        (
            lambda b: {**create_answer(b), "payUrl": "https://evil.test"},
            "MoMo's create answer is not signed with our secret",
        ),
        (
            lambda b: create_answer(b, signed=False, orderId="pay-x"),
            "MoMo's create answer is for another order or amount",
        ),
        (lambda b: create_answer(b, signed=False, amount=1), "MoMo's create answer is for another order or amount"),
        (lambda b: create_answer(b, signed=False, payUrl=""), "MoMo's create answer has no payUrl"),
    ],
)
def test_create_answer_errors_say_what_is_wrong(
    gateway: MoMoGateway, make: Callable[[dict[str, Any]], dict[str, Any]], message: str
) -> None:
    respx.post(CREATE_URL).mock(side_effect=answering(make))
    with pytest.raises(GatewayTechnicalError, match=f"^{re.escape(message)}$"):
        gateway.start_payment(start_request())


@respx.mock
@pytest.mark.parametrize(
    ("response", "message"),
    [
        (httpx.Response(200, text="<html/>"), "MoMo answered HTTP 200 without JSON"),
        (httpx.Response(200, json={"message": "?"}), "MoMo answered HTTP 200 without a resultCode"),
    ],
)
def test_answers_without_a_result_code_say_so(gateway: MoMoGateway, response: httpx.Response, message: str) -> None:
    respx.post(CREATE_URL).mock(return_value=response)
    with pytest.raises(GatewayTechnicalError, match=f"^{message}$"):
        gateway.start_payment(start_request())


@respx.mock
def test_retries_wait_with_the_injected_sleep() -> None:
    waits: list[float] = []
    with httpx.Client() as client:
        context = GatewayContext(
            "momo",
            "https://lephi.test",
            "https://lephi.test/cb",
            settings={
                "partner_code": PARTNER,
                "access_key": ACCESS_KEY,
                "secret_key": SECRET,
                "endpoint": BASE,
            },
            http=client,
        )
        momo = MoMoGateway(context, sleep=waits.append)
        respx.post(QUERY_URL).mock(return_value=httpx.Response(502))
        with pytest.raises(GatewayTechnicalError):
            momo.query_status(status_query())
    assert len(waits) == 2


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (ipn(secret="wrong"), "IPN signature does not match"),
        (ipn(partnerCode="MOMOOTHER"), "IPN is for another MoMo partner"),
        (b"{not json", "IPN body is not JSON"),
        (b"[1, 2, 3]", "IPN body is not a JSON object"),
        ({**ipn(), "signature": ""}, "IPN has no signature"),
        (_without("transId"), "IPN lacks transId"),
        (ipn(amount=150000.0), "IPN field has a wrong type: unexpected float"),
        (ipn(resultCode="０"), "IPN number field is malformed: '０' is not a whole number"),
        (ipn(orderId=""), "IPN has an empty orderId"),
    ],
)
def test_refused_ipns_say_why(gateway: MoMoGateway, body: dict[str, Any] | bytes, message: str) -> None:
    with pytest.raises(InvalidCallback, match=f"^{re.escape(message)}$"):
        gateway.parse_callback(callback(body))


def test_an_ipn_with_a_malformed_amount_names_the_amount_problem(gateway: MoMoGateway) -> None:
    with pytest.raises(InvalidCallback, match=r"^IPN number field is malformed: \S"):
        gateway.parse_callback(callback(ipn(amount="15e4")))


@respx.mock
def test_cancel_keeps_the_amount_momo_reported(gateway: MoMoGateway) -> None:
    respx.post(QUERY_URL).mock(side_effect=answering(lambda b: query_answer(b, 1000, amount=120000)))
    assert gateway.cancel(status_query()).amount == 120000


@respx.mock
def test_a_bad_amount_in_a_status_answer_is_named(gateway: MoMoGateway) -> None:
    respx.post(QUERY_URL).mock(side_effect=answering(lambda b: query_answer(b, amount="lots")))
    with pytest.raises(GatewayTechnicalError, match=r"^MoMo answered a bad amount: \S"):
        gateway.query_status(status_query())


@respx.mock
@pytest.mark.parametrize(
    ("extra", "error", "message"),
    [
        ({"resultCode": 13}, GatewayTechnicalError, "before the refund: 13 (merchant authentication failed)"),
        ({"resultCode": 1000}, GatewayDeclinedError, f"MoMo order {ORDER_ID} is not a paid payment"),
        ({"transId": "4088878653"}, GatewayDeclinedError, "is not a paid payment"),
        ({"transId": True}, GatewayDeclinedError, "is not a paid payment"),
    ],
)
def test_a_refund_needs_a_paid_order_with_an_integer_trans_id(
    gateway: MoMoGateway, extra: dict[str, Any], error: type[Exception], message: str
) -> None:
    respx.post(QUERY_URL).mock(side_effect=answering(lambda b: query_answer(b, **extra)))
    route = respx.post(REFUND_URL)
    with pytest.raises(error, match=re.escape(message)):
        gateway.refund(refund_request())
    assert not route.called


@respx.mock
@pytest.mark.parametrize(
    "listed",
    [None, {"orderId": REFUND_ID, "resultCode": 0}, [{"orderId": "rfd-another", "resultCode": 0}]],
)
def test_only_this_refund_listed_at_momo_stops_a_new_post(gateway: MoMoGateway, listed: object) -> None:
    respx.post(QUERY_URL).mock(side_effect=answering(lambda b: query_answer(b, refundTrans=listed)))
    route = respx.post(REFUND_URL).mock(side_effect=answering(refund_answer))
    assert gateway.refund(refund_request()).outcome is RefundOutcome.succeeded
    assert route.call_count == 1


@respx.mock
def test_refund_results_carry_their_reference_and_note(gateway: MoMoGateway) -> None:
    respx.post(QUERY_URL).mock(side_effect=answering(query_answer))
    answers = iter([0, 1000])
    respx.post(REFUND_URL).mock(side_effect=answering(lambda b: refund_answer(b, next(answers))))
    assert gateway.refund(refund_request()) == RefundResult(
        RefundOutcome.succeeded, REFUND_ID, "MoMo transId 4088900001"
    )
    assert gateway.refund(refund_request()) == RefundResult(
        RefundOutcome.pending, REFUND_ID, "initiated, waiting for the payer to confirm"
    )


@respx.mock
@pytest.mark.parametrize(("message", "tail"), [("Đã hoàn", " Đã hoàn"), (None, " ")])
def test_a_refused_refund_quotes_momos_message(gateway: MoMoGateway, message: str | None, tail: str) -> None:
    def answer(body: dict[str, Any]) -> dict[str, Any]:
        made = refund_answer(body, 1081)
        del made["message"]
        return made if message is None else {**made, "message": message}

    respx.post(QUERY_URL).mock(side_effect=answering(query_answer))
    respx.post(REFUND_URL).mock(side_effect=answering(answer))
    expected = (
        f"MoMo refused refund {REFUND_ID}: resultCode 1081 (refund rejected: already refunded or more than refundable)"
    )
    with pytest.raises(GatewayDeclinedError) as refused:
        gateway.refund(refund_request())
    assert str(refused.value) == expected + tail


@respx.mock
def test_a_refund_answer_without_trans_id_leaves_the_note_bare(gateway: MoMoGateway) -> None:
    def answer(body: dict[str, Any]) -> dict[str, Any]:
        made = refund_answer(body)
        del made["transId"]
        return made

    respx.post(QUERY_URL).mock(side_effect=answering(query_answer))
    respx.post(REFUND_URL).mock(side_effect=answering(answer))
    assert gateway.refund(refund_request()).detail == "MoMo transId "
