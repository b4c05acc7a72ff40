"""ZaloPay adapter against respx stand-ins of ZaloPay's API v2 (ZaloPay's servers are not reachable from here).

Every mac in these tests is computed here with ``hmac`` from the string ZaloPay's pages document, never with the
adapter's helpers, so a wrong field order or key in the adapter fails them. The one published vector found (the
callback sample of ZaloPay's "callback" spec page, signed with the public sandbox key2 of app 2553) is reproduced.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from typing import Any
from urllib.parse import parse_qsl

import httpx
import pytest
import respx

from adapters.base import (
    CallbackOutcome,
    CallbackRequest,
    GatewayContext,
    GatewayDeclinedError,
    GatewayStatus,
    GatewayTechnicalError,
    IgnoredEvent,
    InvalidCallback,
    PaymentGateway,
    RefundOutcome,
    RefundRequest,
    StartPayment,
    StatusQuery,
)
from adapters.zalopay import ZaloPayGateway, epoch_ms, vn_day
from console.gateways import probe

APP_ID = 2553  # ZaloPay's public sandbox app and keys, as its documentation and samples publish them
KEY1 = "PcY4iZIKFCIdgZvA6ueMcMHHUbRLYjPL"
KEY2 = "kLtgPl8HHhfvMuDHPwKfgfsY4Ydm9eIz"
OLD_KEY2 = "retired-key2-still-accepted"
BASE = "https://zalopay.test"
KEY = "gtk_0123456789abcdef01234567"
# 18:30 UTC on 1 January is 01:30 on 2 January in Vietnam: the ids carry the Vietnamese day.
CREATED = datetime(2025, 1, 1, 18, 30, tzinfo=UTC)
NOW = datetime(2025, 1, 3, 2, 0, tzinfo=UTC)  # 09:00 on 3 January in Vietnam

# The callback sample published on ZaloPay's "callback" spec page (beta-docs.zalopay.vn/docs/specs/callback-api),
# byte for byte, with its mac.
PUBLISHED_CALLBACK = (
    rb'{"data":"{\"app_id\":2553,\"app_trans_id\":\"200904_2553_1598435687208\",\"app_time\":1599189392817,'
    rb"\"app_user\":\"demo\",\"amount\":10000,\"embed_data\":\"{\\\"merchantinfo\\\":\\\"embeddata123\\\","
    rb"\\\"promotioninfo\\\":\\\"\\\"}\",\"item\":\"[{\\\"itemid\\\":\\\"knb\\\",\\\"itemname\\\":\\\"kim nguyen bao"
    rb"\\\",\\\"itemprice\\\":198400,\\\"itemquantity\\\":1}]\",\"zp_trans_id\":200904000000389,\"server_time\":"
    rb"1599189413498,\"channel\":38,\"merchant_user_id\":\"7ZMSl3nEg5sOUJzOLSoUFT8xKNQVaLOLXHB--8Eytqc\","
    rb'\"user_fee_amount\":0,\"discount_amount\":0}","mac":"d8d33baf449b31d7f9b94fa50d7c942c08cd4d83f28fa185557da2'
    rb'1acb104f67","type":1}'
)


def hmac_hex(key: str, data: str) -> str:
    return hmac.new(key.encode(), data.encode(), hashlib.sha256).hexdigest()


def make_gateway(client: httpx.Client | None = None, **overrides: Any) -> ZaloPayGateway:
    settings = {"app_id": str(APP_ID), "key1": KEY1, "key2": KEY2, "endpoint": BASE + "/", **overrides}
    settings.setdefault("previous_key2", [OLD_KEY2])
    context = GatewayContext("zalopay", "https://lephi.test", "https://lephi.test/cb", settings=settings, http=client)
    return ZaloPayGateway(context, sleep=lambda _s: None, clock=lambda: NOW)


@pytest.fixture
def gateway() -> Iterator[ZaloPayGateway]:
    with httpx.Client() as client:
        yield make_gateway(client)


def form(request: httpx.Request) -> dict[str, str]:
    assert request.headers["content-type"].startswith("application/x-www-form-urlencoded")
    return dict(parse_qsl(request.content.decode(), keep_blank_values=True))


def answer(code: int, sub: int = 1, **more: Any) -> httpx.Response:
    return httpx.Response(200, json={"return_code": code, "return_message": "", "sub_return_code": sub, **more})


def start_request(**changes: Any) -> StartPayment:
    values: dict[str, Any] = {
        "merchant_reference": "pay_1",
        "idempotency_key": KEY,
        "amount": 150000,
        "currency": "VND",
        "description": "Le phi HS000123",
        "return_url": "https://lephi.test/return",
        "callback_url": "https://lephi.test/v1/gateways/zalopay/callback/AGC-A",
        "created_at": CREATED,
        "expires_at": CREATED + timedelta(minutes=15),
        **changes,
    }
    return StartPayment(**values)


def trans_id() -> str:
    return "250102_" + hashlib.sha256(KEY.encode()).hexdigest()[:24]


# --- vectors ---------------------------------------------------------------------------------------------------------
def test_the_published_callback_sample_verifies_with_the_sandbox_key2(gateway: ZaloPayGateway) -> None:
    event = gateway.parse_callback(CallbackRequest("POST", {}, {}, PUBLISHED_CALLBACK))
    assert (event.gateway_reference, event.amount, event.status) == (
        "200904_2553_1598435687208",
        10000,
        GatewayStatus.succeeded,
    )
    assert event.event_id == "200904_2553_1598435687208:200904000000389" and event.merchant_reference == ""
    # One byte of the data changed (10000 -> 10001) and the same mac no longer verifies.
    with pytest.raises(InvalidCallback, match="mac"):
        gateway.parse_callback(CallbackRequest("POST", {}, {}, PUBLISHED_CALLBACK.replace(b"10000", b"10001")))


def test_create_mac_is_key1_over_the_documented_string(gateway: ZaloPayGateway) -> None:
    with respx.mock(assert_all_mocked=True, assert_all_called=False) as mock:
        route = mock.post(f"{BASE}/v2/create").mock(
            return_value=answer(1, order_url="https://qcgateway.zalopay.vn/openinapp?order=abc", zp_trans_token="t")
        )
        result = gateway.start_payment(start_request())
    sent = form(route.calls.last.request)
    app_time = str(int(CREATED.timestamp() * 1000))
    embed = json.dumps({"redirecturl": "https://lephi.test/return"}, separators=(",", ":"))
    assert sent["app_trans_id"] == trans_id() and sent["app_time"] == app_time and sent["amount"] == "150000"
    assert (sent["app_user"], sent["item"], sent["embed_data"]) == ("lephi", "[]", embed)
    assert sent["callback_url"] == "https://lephi.test/v1/gateways/zalopay/callback/AGC-A"
    assert sent["expire_duration_seconds"] == "900" and sent["description"] == "Le phi HS000123"
    documented = f"{APP_ID}|{trans_id()}|lephi|150000|{app_time}|{embed}|[]"
    assert sent["mac"] == hmac_hex(KEY1, documented)
    assert result.gateway_reference == trans_id()
    assert result.next_url == "https://qcgateway.zalopay.vn/openinapp?order=abc"
    assert result.status is GatewayStatus.pending


def test_a_retried_create_is_the_same_order(gateway: ZaloPayGateway) -> None:
    with respx.mock(assert_all_mocked=True, assert_all_called=False) as mock:
        route = mock.post(f"{BASE}/v2/create").mock(
            side_effect=[httpx.Response(503), httpx.Response(502), answer(1, order_url="https://zp.test/o")]
        )
        gateway.start_payment(start_request())
    assert route.call_count == 3
    assert len({c.request.content for c in route.calls}) == 1  # byte for byte the same request, app_time included


def test_the_order_lifetime_is_kept_in_zalopays_bounds(gateway: ZaloPayGateway) -> None:
    for lifetime, sent_value in ((timedelta(seconds=30), "300"), (timedelta(days=90), "2592000")):
        with respx.mock(assert_all_mocked=True, assert_all_called=False) as mock:
            route = mock.post(f"{BASE}/v2/create").mock(return_value=answer(1, order_url="https://zp.test/o"))
            gateway.start_payment(start_request(expires_at=CREATED + lifetime))
        assert form(route.calls.last.request)["expire_duration_seconds"] == sent_value


@pytest.mark.parametrize(
    ("response", "error"),
    [
        (answer(2, -401), GatewayDeclinedError),  # our parameters refused: retrying will not help
        (answer(2, -402), GatewayDeclinedError),
        (answer(2, -500), GatewayTechnicalError),  # ZaloPay did not decide: the order may exist
        (answer(2, -503), GatewayTechnicalError),
        (answer(2, -68), GatewayTechnicalError),  # app_trans_id already used: query later
        (answer(1), GatewayTechnicalError),  # success without a page to send the payer to
        (answer(1, order_url="javascript:alert(1)"), GatewayTechnicalError),
        (answer(7), GatewayTechnicalError),
        (httpx.Response(200, text="<html>"), GatewayTechnicalError),
        (httpx.Response(200, json={"return_code": "1"}), GatewayTechnicalError),
        (httpx.Response(200, json=[1]), GatewayTechnicalError),
    ],
)
def test_create_refusals_and_doubts(gateway: ZaloPayGateway, response: httpx.Response, error: type) -> None:
    with respx.mock(assert_all_mocked=True, assert_all_called=False) as mock:
        mock.post(f"{BASE}/v2/create").mock(return_value=response)
        with pytest.raises(error):
            gateway.start_payment(start_request())


def test_other_currencies_are_declined_without_a_call(gateway: ZaloPayGateway) -> None:
    with respx.mock(assert_all_mocked=True, assert_all_called=False), pytest.raises(GatewayDeclinedError):
        gateway.start_payment(start_request(currency="USD"))


def test_the_gateway_satisfies_the_protocol(gateway: ZaloPayGateway) -> None:
    assert isinstance(gateway, PaymentGateway) and gateway.queries_status and not gateway.starts_offline


@pytest.mark.parametrize("missing", ["app_id", "key1", "key2"])
def test_a_missing_setting_is_named(missing: str) -> None:
    with pytest.raises(ValueError, match=missing):
        make_gateway(**{missing: ""})


def test_a_non_numeric_app_id_is_refused() -> None:
    with pytest.raises(ValueError, match="app_id"):
        make_gateway(app_id="25x3")


# --- callbacks -------------------------------------------------------------------------------------------------------
def callback_body(key: str = KEY2, *, kind: Any = 1, **changes: Any) -> bytes:
    data = json.dumps(
        {
            "app_id": APP_ID,
            "app_trans_id": trans_id(),
            "app_time": 1735756200000,
            "app_user": "lephi",
            "amount": 150000,
            "embed_data": "{}",
            "item": "[]",
            "zp_trans_id": 250102000000389,
            "server_time": 1735756260000,
            "channel": 38,
            "merchant_user_id": "u",
            "user_fee_amount": 0,
            "discount_amount": 0,
            **changes,
        }
    )
    return json.dumps({"data": data, "mac": hmac_hex(key, data), "type": kind}).encode()


def parse(gateway: ZaloPayGateway, body: bytes) -> Any:
    return gateway.parse_callback(CallbackRequest("POST", {"content-type": "application/json"}, {}, body))


def test_a_valid_callback_is_a_success_event(gateway: ZaloPayGateway) -> None:
    event = parse(gateway, callback_body())
    assert (event.gateway_reference, event.amount, event.currency) == (trans_id(), 150000, "VND")
    assert event.event_id == f"{trans_id()}:250102000000389" and event.status is GatewayStatus.succeeded


def test_a_callback_signed_with_a_previous_key2_is_accepted(gateway: ZaloPayGateway) -> None:
    assert parse(gateway, callback_body(OLD_KEY2)).amount == 150000
    rotated = make_gateway(previous_key2=f" {OLD_KEY2} ,other")
    assert parse(rotated, callback_body(OLD_KEY2)).amount == 150000


def test_a_callback_signed_with_key1_is_refused(gateway: ZaloPayGateway) -> None:
    with pytest.raises(InvalidCallback, match="mac"):
        parse(gateway, callback_body(KEY1))


def test_an_agreement_callback_is_acknowledged_and_ignored(gateway: ZaloPayGateway) -> None:
    with pytest.raises(IgnoredEvent):
        parse(gateway, callback_body(kind=2))


@pytest.mark.parametrize(
    "body",
    [
        callback_body("not-key2"),
        callback_body(app_id=2554),  # signed, but for another ZaloPay app
        callback_body(app_id="2554"),
        callback_body(kind=3),
        callback_body(kind="1"),
        callback_body(kind=True),
        callback_body(amount=150000.0),
        callback_body(amount="150000"),
        callback_body(amount=True),
        callback_body(amount=-1),
        callback_body(amount=10**20),
        callback_body(zp_trans_id="250102000000389"),
        callback_body(zp_trans_id=0),
        callback_body(zp_trans_id=None),
        callback_body(app_trans_id=""),
        callback_body(app_trans_id="x" * 41),
        callback_body(app_trans_id=123),
        b"",
        b"not json",
        b"[]",
        b'{"data": 1, "mac": "00", "type": 1}',
        b'{"data": "", "mac": "00", "type": 1}',
        b'{"data": "{}", "type": 1}',
        b'{"data": "{}", "mac": ["00"], "type": 1}',
        b'{"data": "{}", "mac": "\xc3\xa9", "type": 1}',
        b"[" * 100_000,
    ],
)
def test_forged_or_malformed_callbacks_are_invalid(gateway: ZaloPayGateway, body: bytes) -> None:
    with pytest.raises(InvalidCallback):
        parse(gateway, body)


@pytest.mark.parametrize("data", ["not json", "[1]", '"text"', "[" * 100_000])
def test_signed_data_that_is_not_a_json_object_is_invalid(gateway: ZaloPayGateway, data: str) -> None:
    body = json.dumps({"data": data, "mac": hmac_hex(KEY2, data), "type": 1}).encode()
    with pytest.raises(InvalidCallback, match="data"):
        parse(gateway, body)


@pytest.mark.parametrize(
    ("outcome", "code"),
    [
        (CallbackOutcome.accepted, 1),
        (CallbackOutcome.duplicate, 2),
        (CallbackOutcome.already_final, 2),
        (CallbackOutcome.unknown_order, -1),
        (CallbackOutcome.amount_mismatch, -1),
        (CallbackOutcome.invalid_signature, -1),
        (CallbackOutcome.error, 0),  # the one outcome ZaloPay should send again
    ],
)
def test_callback_replies(outcome: CallbackOutcome, code: int) -> None:
    reply = ZaloPayGateway.callback_reply(outcome)
    assert reply.status_code == 200 and reply.media_type == "application/json"
    assert json.loads(reply.body)["return_code"] == code
    if outcome is CallbackOutcome.accepted:
        assert reply.body == b'{"return_code":1,"return_message":"success"}'  # domain.md 4.4, byte for byte


# --- status query, cancel ----------------------------------------------------------------------------------------
def status_query(reference: str | None = None) -> StatusQuery:
    return StatusQuery("pay_1", reference, KEY, 150000, CREATED)


@pytest.mark.parametrize(
    ("response", "status", "amount"),
    [
        (answer(1, amount=150000, zp_trans_id=250102000000389, is_processing=False), GatewayStatus.succeeded, 150000),
        (answer(3, is_processing=True), GatewayStatus.pending, None),
        (answer(2, -101), GatewayStatus.unknown, None),  # never reached ZaloPay: nothing to fail
        (answer(2, -54), GatewayStatus.cancelled, None),  # the order expired unpaid
        (answer(2, -117), GatewayStatus.failed, None),
    ],
)
def test_query_maps_return_codes(
    gateway: ZaloPayGateway, response: httpx.Response, status: GatewayStatus, amount: int | None
) -> None:
    with respx.mock(assert_all_mocked=True, assert_all_called=False) as mock:
        route = mock.post(f"{BASE}/v2/query").mock(return_value=response)
        result = gateway.query_status(status_query())  # no reference: derived from the key and creation day
    sent = form(route.calls.last.request)
    assert sent["app_trans_id"] == trans_id() and sent["app_id"] == str(APP_ID)
    assert sent["mac"] == hmac_hex(KEY1, f"{APP_ID}|{trans_id()}|{KEY1}")  # the key ends the signed string
    assert (result.status, result.amount, result.gateway_reference) == (status, amount, trans_id())


@pytest.mark.parametrize("sub", [-401, -402, -500, -503])
def test_a_query_refused_for_itself_never_fails_the_payment(gateway: ZaloPayGateway, sub: int) -> None:
    with respx.mock(assert_all_mocked=True, assert_all_called=False) as mock:
        mock.post(f"{BASE}/v2/query").mock(return_value=answer(2, sub))
        with pytest.raises(GatewayTechnicalError):
            gateway.query_status(status_query(trans_id()))


def test_a_success_with_a_bad_amount_is_not_trusted(gateway: ZaloPayGateway) -> None:
    with respx.mock(assert_all_mocked=True, assert_all_called=False) as mock:
        mock.post(f"{BASE}/v2/query").mock(return_value=answer(1, amount=1.5))
        with pytest.raises(GatewayTechnicalError, match="amount"):
            gateway.query_status(status_query(trans_id()))


def test_cancel_lets_an_unpaid_order_expire_and_reports_a_paid_one(gateway: ZaloPayGateway) -> None:
    with respx.mock(assert_all_mocked=True, assert_all_called=False) as mock:
        route = mock.post(f"{BASE}/v2/query").mock(return_value=answer(3, is_processing=True))
        pending = gateway.cancel(status_query(trans_id()))
        route.mock(return_value=answer(1, amount=150000, zp_trans_id=9))
        paid = gateway.cancel(status_query(trans_id()))
    assert (pending.status, pending.raw_code) == (GatewayStatus.cancelled, "expired-at-lephi")
    assert paid.status is GatewayStatus.succeeded


# --- refunds -----------------------------------------------------------------------------------------------------
def refund_request(amount: int = 50000) -> RefundRequest:
    return RefundRequest("pay_1", trans_id(), "rtk_0123456789", amount, 150000, "Hoan tien mot phan")


def refund_id(day: str) -> str:
    digits = int(hashlib.sha256(b"rtk_0123456789").hexdigest(), 16) % 10**15
    return f"{day}_{APP_ID}_{digits:015d}"


class RefundStandIn:
    """What ZaloPay knows of refunds: unknown ids answer 2/-101; a refund sent is in progress (3)."""

    def __init__(self, mock: respx.MockRouter, paid: httpx.Response) -> None:
        self.known: dict[str, int] = {}
        self.status = mock.post(f"{BASE}/v2/query_refund").mock(side_effect=self._status)
        self.query = mock.post(f"{BASE}/v2/query").mock(return_value=paid)
        self.refund = mock.post(f"{BASE}/v2/refund").mock(side_effect=self._refund)

    def _status(self, request: httpx.Request) -> httpx.Response:
        sent = form(request)
        assert sent["mac"] == hmac_hex(KEY1, f"{APP_ID}|{sent['m_refund_id']}|{sent['timestamp']}")
        code = self.known.get(sent["m_refund_id"])
        return answer(2, -101) if code is None else answer(code)

    def _refund(self, request: httpx.Request) -> httpx.Response:
        sent = form(request)
        self.known[sent["m_refund_id"]] = 3
        return answer(3, refund_id=1234567)


def test_refund_asks_first_then_sends_one_signed_refund_and_a_retry_reads_its_status(
    gateway: ZaloPayGateway,
) -> None:
    with respx.mock(assert_all_mocked=True, assert_all_called=False) as mock:
        zalo = RefundStandIn(mock, answer(1, amount=150000, zp_trans_id=250102000000389))
        first = gateway.refund(refund_request())
        # The ids of today and of the days before were looked up, in that order, before anything was sent.
        asked = [form(c.request)["m_refund_id"] for c in zalo.status.calls]
        assert asked == [refund_id("250103"), refund_id("250102"), refund_id("250101")]
        sent = form(zalo.refund.calls.last.request)
        assert sent["m_refund_id"] == refund_id("250103") and sent["zp_trans_id"] == "250102000000389"
        stamp = str(int(NOW.timestamp() * 1000))
        assert sent["timestamp"] == stamp and sent["amount"] == "50000"
        documented = f"{APP_ID}|250102000000389|50000|Hoan tien mot phan|{stamp}"
        assert sent["mac"] == hmac_hex(KEY1, documented)
        assert first.outcome is RefundOutcome.pending and first.gateway_reference == refund_id("250103")

        zalo.known[refund_id("250103")] = 1  # ZaloPay has finished it
        again = gateway.refund(refund_request())
    assert again.outcome is RefundOutcome.succeeded
    assert zalo.refund.call_count == 1  # never sent twice


def test_a_refund_sent_before_midnight_is_found_the_next_day(gateway: ZaloPayGateway) -> None:
    with respx.mock(assert_all_mocked=True, assert_all_called=False) as mock:
        zalo = RefundStandIn(mock, answer(1, amount=150000, zp_trans_id=5))
        zalo.known[refund_id("250102")] = 3
        assert gateway.refund(refund_request()).outcome is RefundOutcome.pending
    assert zalo.refund.call_count == 0 and zalo.query.call_count == 0


@pytest.mark.parametrize("paid", [answer(3, is_processing=True), answer(2, -117), answer(1, zp_trans_id=0)])
def test_refund_of_an_unpaid_order_is_declined_without_sending(gateway: ZaloPayGateway, paid: httpx.Response) -> None:
    with respx.mock(assert_all_mocked=True, assert_all_called=False) as mock:
        zalo = RefundStandIn(mock, paid)
        with pytest.raises(GatewayDeclinedError):
            gateway.refund(refund_request())
    assert zalo.refund.call_count == 0


@pytest.mark.parametrize(
    ("response", "expected"),
    [
        (answer(1, refund_id=77), RefundOutcome.succeeded),
        (answer(3), RefundOutcome.pending),
        (answer(2, -13), GatewayDeclinedError),
        (answer(2, -402), GatewayTechnicalError),
        (answer(2, -500), GatewayTechnicalError),
        (answer(9), GatewayTechnicalError),
        (httpx.Response(503), GatewayTechnicalError),
    ],
)
def test_refund_answers(gateway: ZaloPayGateway, response: httpx.Response, expected: Any) -> None:
    with respx.mock(assert_all_mocked=True, assert_all_called=False) as mock:
        zalo = RefundStandIn(mock, answer(1, amount=150000, zp_trans_id="250102000000389"))
        zalo.refund.mock(return_value=response, side_effect=None)
        if isinstance(expected, RefundOutcome):
            assert gateway.refund(refund_request()).outcome is expected
        else:
            with pytest.raises(expected):
                gateway.refund(refund_request())


def test_a_refund_status_refused_for_itself_sends_nothing(gateway: ZaloPayGateway) -> None:
    with respx.mock(assert_all_mocked=True, assert_all_called=False) as mock:
        zalo = RefundStandIn(mock, answer(1, zp_trans_id=5))
        zalo.status.mock(return_value=answer(2, -402), side_effect=None)
        with pytest.raises(GatewayTechnicalError):
            gateway.refund(refund_request())
    assert zalo.refund.call_count == 0


# --- the console's connection test ---------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("response", "outcome"),
    [
        (answer(2, -101), "ok"),  # ZaloPay checked our mac and does not know the order: address and keys work
        (answer(2, -402), "error"),  # reached, but our mac was refused
        (httpx.Response(503), "error"),
    ],
)
def test_the_connection_test_asks_zalopay_about_an_order_that_does_not_exist(
    response: httpx.Response, outcome: str
) -> None:
    settings = {"app_id": str(APP_ID), "key1": KEY1, "key2": KEY2, "endpoint": BASE}
    context = GatewayContext("zalopay", "https://lephi.test", "https://lephi.test/cb", settings=settings)
    with respx.mock(assert_all_mocked=True) as mock:
        route = mock.post(f"{BASE}/v2/query").mock(return_value=response)
        assert probe.probe("zalopay", ZaloPayGateway, context).outcome == outcome
    assert form(route.calls[0].request)["app_id"] == str(APP_ID)


def test_the_connection_test_names_missing_settings() -> None:
    context = GatewayContext("zalopay", "https://lephi.test", "https://lephi.test/cb", settings={"app_id": "1"})
    assert probe.probe("zalopay", ZaloPayGateway, context).outcome == "not_configured"


# --- edges and exact texts (the survivors of the first mutation run, docs/testing.md) -----------------------------
@pytest.fixture
def tokyo_local_time(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """A local zone that is neither UTC nor GMT+7, so reading a naive time as local time gives another answer."""
    monkeypatch.setenv("TZ", "Asia/Tokyo")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


@pytest.mark.usefixtures("tokyo_local_time")
def test_naive_times_are_taken_as_utc() -> None:
    # 18:30 UTC on 1 January is 2 January in Vietnam; read as Tokyo time it would still be 1 January.
    assert vn_day(datetime(2025, 1, 1, 18, 30)) == "250102"
    assert vn_day(datetime(2025, 1, 1, 16, 59)) == "250101"
    assert epoch_ms(datetime(2025, 1, 1, 18, 30)) == 1735756200000 == epoch_ms(CREATED)
    assert epoch_ms(datetime(2025, 1, 1, 18, 30, 0, 250000)) == 1735756200250


@pytest.mark.parametrize(
    "changes",
    [{"zp_trans_id": 1}, {"app_trans_id": "2" * 40}, {"amount": 0}],
)
def test_callback_values_at_their_bounds_are_accepted(gateway: ZaloPayGateway, changes: dict[str, Any]) -> None:
    event = parse(gateway, callback_body(**changes))
    assert event.status is GatewayStatus.succeeded and event.raw_code == "1"
    assert event.event_id == f"{changes.get('app_trans_id', trans_id())}:{changes.get('zp_trans_id', 250102000000389)}"
    assert event.amount == changes.get("amount", 150000)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (callback_body("not-key2"), "^callback mac does not match$"),
        (callback_body(app_id=2554), "^callback is for another ZaloPay app$"),
        (callback_body(kind=3), "^unknown ZaloPay callback type 3$"),
        (callback_body(kind="1"), "^callback type is not an integer$"),
        (callback_body(zp_trans_id=-5), "^callback data has no valid zp_trans_id$"),
        (callback_body(zp_trans_id=0), "^callback data has no valid zp_trans_id$"),
        (callback_body(app_trans_id="x" * 41), "^callback data has no valid app_trans_id$"),
        (callback_body(amount=-1), "^callback amount is malformed: "),
        (b"not json", "^callback body is not JSON$"),
        (b"[]", "^callback body is not a JSON object$"),
        (b'{"data": "", "mac": "00", "type": 1}', "^callback has no data string$"),
        (b'{"data": "{}", "type": 1}', "^callback has no mac$"),
    ],
)
def test_callback_errors_say_what_is_wrong(gateway: ZaloPayGateway, body: bytes, message: str) -> None:
    with pytest.raises(InvalidCallback, match=message):
        parse(gateway, body)


def test_an_agreement_callback_says_why_it_is_ignored(gateway: ZaloPayGateway) -> None:
    with pytest.raises(IgnoredEvent, match=r"^ZaloPay agreement callback: not a payment Lephi tracks$"):
        parse(gateway, callback_body(kind=2))


@pytest.mark.parametrize(
    ("data", "message"),
    [("not json", "^callback data is not JSON$"), ("[1]", "^callback data is not a JSON object$")],
)
def test_signed_data_errors_say_what_is_wrong(gateway: ZaloPayGateway, data: str, message: str) -> None:
    body = json.dumps({"data": data, "mac": hmac_hex(KEY2, data), "type": 1}).encode()
    with pytest.raises(InvalidCallback, match=message):
        parse(gateway, body)


@pytest.mark.parametrize(
    ("response", "raw_code"),
    [
        (answer(1, amount=150000), "1/1"),
        (httpx.Response(200, json={"return_code": 1, "amount": 150000}), "1"),
        (answer(3), "3/1"),
        (answer(2, -101), "2/-101"),
        (answer(2, -54), "2/-54"),
        (answer(2, -117), "2/-117"),
        (httpx.Response(200, json={"return_code": 2}), "2"),
    ],
)
def test_status_results_keep_zalopays_codes(gateway: ZaloPayGateway, response: httpx.Response, raw_code: str) -> None:
    with respx.mock(assert_all_mocked=True, assert_all_called=False) as mock:
        mock.post(f"{BASE}/v2/query").mock(return_value=response)
        assert gateway.query_status(status_query(trans_id())).raw_code == raw_code


def test_status_errors_say_what_is_wrong(gateway: ZaloPayGateway) -> None:
    with respx.mock(assert_all_mocked=True, assert_all_called=False) as mock:
        route = mock.post(f"{BASE}/v2/query").mock(return_value=answer(2, -402))
        with pytest.raises(
            GatewayTechnicalError, match=r"^ZaloPay refused the status query: return_code 2, sub_return_code -402$"
        ):
            gateway.query_status(status_query(trans_id()))
        route.mock(return_value=answer(1, amount=1.5))
        with pytest.raises(GatewayTechnicalError, match=r"^ZaloPay answered a bad amount: "):
            gateway.query_status(status_query(trans_id()))
        route.mock(return_value=httpx.Response(200, text="<html>"))
        with pytest.raises(GatewayTechnicalError, match=r"^ZaloPay answered HTTP 200 without JSON$"):
            gateway.query_status(status_query(trans_id()))
        route.mock(return_value=httpx.Response(200, json={"return_code": "1"}))
        with pytest.raises(GatewayTechnicalError, match=r"^ZaloPay answered HTTP 200 without a return_code$"):
            gateway.query_status(status_query(trans_id()))


@pytest.mark.parametrize(
    ("response", "error", "message"),
    [
        (answer(2, -401), GatewayDeclinedError, "^ZaloPay create: return_code 2, sub_return_code -401: $"),
        (answer(2, -500), GatewayTechnicalError, "^ZaloPay create: return_code 2, sub_return_code -500: $"),
        (
            httpx.Response(200, json={"return_code": 2, "sub_return_code": -401}),  # no return_message at all
            GatewayDeclinedError,
            "^ZaloPay create: return_code 2, sub_return_code -401: $",
        ),
        (answer(1), GatewayTechnicalError, "^ZaloPay's create answer has no order_url$"),
    ],
)
def test_create_errors_say_what_is_wrong(
    gateway: ZaloPayGateway, response: httpx.Response, error: type, message: str
) -> None:
    with respx.mock(assert_all_mocked=True, assert_all_called=False) as mock:
        mock.post(f"{BASE}/v2/create").mock(return_value=response)
        with pytest.raises(error, match=message):
            gateway.start_payment(start_request())
    with pytest.raises(GatewayDeclinedError, match=r"^ZaloPay takes only VND, not USD$"):
        gateway.start_payment(start_request(currency="USD"))


def test_setting_errors_say_what_is_wrong() -> None:
    with pytest.raises(ValueError, match=r"^the ZaloPay gateway needs the setting 'key1'$"):
        make_gateway(key1=None)
    with pytest.raises(ValueError, match=r"^the ZaloPay setting 'app_id' must be a whole number$"):
        make_gateway(app_id="25x3")
    with pytest.raises(ValueError, match=r"^the ZaloPay setting 'previous_key2' must be a list or a comma-separated"):
        make_gateway(previous_key2=5)


def test_app_user_and_timeout_settings_are_used() -> None:
    with httpx.Client() as client:
        gateway = make_gateway(client, app_user="agc-lam-dong")
        with respx.mock(assert_all_mocked=True, assert_all_called=False) as mock:
            route = mock.post(f"{BASE}/v2/create").mock(return_value=answer(1, order_url="https://zp.test/o"))
            gateway.start_payment(start_request())
    sent = form(route.calls.last.request)
    assert sent["app_user"] == "agc-lam-dong"
    app_time = str(int(CREATED.timestamp() * 1000))
    embed = json.dumps({"redirecturl": "https://lephi.test/return"}, separators=(",", ":"))
    assert sent["mac"] == hmac_hex(KEY1, f"{APP_ID}|{trans_id()}|agc-lam-dong|150000|{app_time}|{embed}|[]")
    # Without the service's client the adapter makes its own, with the timeout asked for (15 s by default).
    assert make_gateway()._http.timeout.read == 15
    assert make_gateway(timeout_seconds=3)._http.timeout.read == 3


def test_a_refund_without_a_reason_gets_the_default_description(gateway: ZaloPayGateway) -> None:
    with respx.mock(assert_all_mocked=True, assert_all_called=False) as mock:
        zalo = RefundStandIn(mock, answer(1, amount=150000, zp_trans_id=250102000000389))
        gateway.refund(RefundRequest("pay_1", trans_id(), "rtk_0123456789", 50000, 150000, ""))
    sent = form(zalo.refund.calls.last.request)
    assert sent["description"] == "Hoan tien le phi"
    assert sent["mac"] == hmac_hex(KEY1, f"{APP_ID}|250102000000389|50000|Hoan tien le phi|{sent['timestamp']}")


@pytest.mark.parametrize(
    ("paid", "error", "message"),
    [
        (answer(2, -500), GatewayTechnicalError, "^ZaloPay refused the status query before the refund: "),
        (answer(2, -402), GatewayTechnicalError, "sub_return_code -402$"),
        (
            answer(2, -117),
            GatewayDeclinedError,
            rf"^ZaloPay order {trans_id()} is not a paid payment \(return_code 2\)$",
        ),
    ],
)
def test_the_query_before_a_refund_reads_its_sub_code(
    gateway: ZaloPayGateway, paid: httpx.Response, error: type, message: str
) -> None:
    with respx.mock(assert_all_mocked=True, assert_all_called=False) as mock:
        zalo = RefundStandIn(mock, paid)
        with pytest.raises(error, match=message):
            gateway.refund(refund_request())
    assert zalo.refund.call_count == 0


@pytest.mark.parametrize(
    ("response", "outcome", "detail"),
    [
        (answer(1, refund_id=77), RefundOutcome.succeeded, "ZaloPay refund_id 77"),
        (answer(1), RefundOutcome.succeeded, "ZaloPay refund_id "),
        (answer(3), RefundOutcome.pending, "refund in progress at ZaloPay"),
    ],
)
def test_refund_results_name_the_refund(
    gateway: ZaloPayGateway, response: httpx.Response, outcome: RefundOutcome, detail: str
) -> None:
    with respx.mock(assert_all_mocked=True, assert_all_called=False) as mock:
        zalo = RefundStandIn(mock, answer(1, amount=150000, zp_trans_id=5))
        zalo.refund.mock(return_value=response, side_effect=None)
        result = gateway.refund(refund_request())
    assert (result.outcome, result.gateway_reference, result.detail) == (outcome, refund_id("250103"), detail)


def test_a_refund_found_by_its_status_names_the_refund(gateway: ZaloPayGateway) -> None:
    with respx.mock(assert_all_mocked=True, assert_all_called=False) as mock:
        zalo = RefundStandIn(mock, answer(1, zp_trans_id=5))
        zalo.known[refund_id("250102")] = 1
        result = gateway.refund(refund_request())
    assert (result.outcome, result.gateway_reference) == (RefundOutcome.succeeded, refund_id("250102"))


@pytest.mark.parametrize(
    ("response", "error", "message"),
    [
        (
            answer(2, -13, return_message="too late"),
            GatewayDeclinedError,
            rf"^ZaloPay refused refund {refund_id('250103')}: sub_return_code -13 too late$",
        ),
        (
            answer(9, 4),
            GatewayTechnicalError,
            rf"^ZaloPay refund {refund_id('250103')} in doubt: return_code 9, sub_return_code 4$",
        ),
    ],
)
def test_refund_errors_say_what_is_wrong(
    gateway: ZaloPayGateway, response: httpx.Response, error: type, message: str
) -> None:
    with respx.mock(assert_all_mocked=True, assert_all_called=False) as mock:
        zalo = RefundStandIn(mock, answer(1, zp_trans_id=5))
        zalo.refund.mock(return_value=response, side_effect=None)
        with pytest.raises(error, match=message):
            gateway.refund(refund_request())


def test_an_app_id_in_other_digits_is_refused() -> None:
    with pytest.raises(ValueError, match=r"^the ZaloPay setting 'app_id' must be a whole number$"):
        make_gateway(app_id="２５５３")  # full-width digits: int() would read them, ZaloPay would not


def test_the_default_endpoint_is_zalopays_sandbox() -> None:
    gateway = make_gateway(endpoint=None)
    with respx.mock(assert_all_mocked=True, assert_all_called=False) as mock:
        route = mock.post("https://sb-openapi.zalopay.vn/v2/query").mock(return_value=answer(3))
        assert gateway.query_status(status_query(trans_id())).status is GatewayStatus.pending
    assert route.call_count == 1


def test_the_create_request_sends_every_documented_field(gateway: ZaloPayGateway) -> None:
    with respx.mock(assert_all_mocked=True, assert_all_called=False) as mock:
        route = mock.post(f"{BASE}/v2/create").mock(return_value=answer(1, order_url="http://zp.test/o"))
        result = gateway.start_payment(start_request(description="d" * 300))
    sent = form(route.calls.last.request)
    assert (sent["bank_code"], sent["description"], sent["app_id"]) == ("", "d" * 256, str(APP_ID))
    assert result.next_url == "http://zp.test/o"  # ZaloPay's sandbox pages may be plain HTTP


def test_cancel_reports_a_final_status_as_zalopay_gave_it(gateway: ZaloPayGateway) -> None:
    with respx.mock(assert_all_mocked=True, assert_all_called=False) as mock:
        route = mock.post(f"{BASE}/v2/query").mock(return_value=answer(2, -117))
        failed = gateway.cancel(status_query(trans_id()))
        route.mock(return_value=answer(2, -54))
        expired = gateway.cancel(status_query(trans_id()))
        route.mock(return_value=answer(2, -101))
        unknown = gateway.cancel(status_query(trans_id()))
    assert (failed.status, failed.raw_code) == (GatewayStatus.failed, "2/-117")
    assert (expired.status, expired.raw_code) == (GatewayStatus.cancelled, "2/-54")
    assert (unknown.status, unknown.raw_code, unknown.gateway_reference, unknown.amount) == (
        GatewayStatus.cancelled,
        "expired-at-lephi",
        trans_id(),
        None,
    )


def test_a_callback_without_a_type_is_a_payment(gateway: ZaloPayGateway) -> None:
    outer = json.loads(callback_body())
    del outer["type"]
    assert parse(gateway, json.dumps(outer).encode()).amount == 150000


@pytest.mark.parametrize(
    ("response", "amount"),
    [(answer(1), None), (answer(1, amount="150000"), 150000), (answer(1, amount=150000), 150000)],
)
def test_a_paid_status_reads_the_amount_when_given(
    gateway: ZaloPayGateway, response: httpx.Response, amount: int | None
) -> None:
    with respx.mock(assert_all_mocked=True, assert_all_called=False) as mock:
        mock.post(f"{BASE}/v2/query").mock(return_value=response)
        result = gateway.query_status(status_query(trans_id()))
    assert (result.status, result.amount) == (GatewayStatus.succeeded, amount)


@pytest.mark.parametrize("return_code", [True, 1.0, None])
def test_a_return_code_that_is_not_a_whole_number_is_not_read(gateway: ZaloPayGateway, return_code: Any) -> None:
    with respx.mock(assert_all_mocked=True, assert_all_called=False) as mock:
        mock.post(f"{BASE}/v2/query").mock(return_value=httpx.Response(200, json={"return_code": return_code}))
        with pytest.raises(GatewayTechnicalError, match=r"^ZaloPay answered HTTP 200 without a return_code$"):
            gateway.query_status(status_query(trans_id()))


@pytest.mark.parametrize(("given", "sent"), [(1, "1"), ("42", "42")])
def test_the_smallest_zp_trans_id_is_refunded(gateway: ZaloPayGateway, given: Any, sent: str) -> None:
    with respx.mock(assert_all_mocked=True, assert_all_called=False) as mock:
        zalo = RefundStandIn(mock, answer(1, zp_trans_id=given))
        gateway.refund(refund_request())
    assert form(zalo.refund.calls.last.request)["zp_trans_id"] == sent


@pytest.mark.parametrize("given", ["٥", "-5", "", True, -1, None])
def test_a_paid_order_without_a_usable_zp_trans_id_is_not_refunded(gateway: ZaloPayGateway, given: Any) -> None:
    with respx.mock(assert_all_mocked=True, assert_all_called=False) as mock:
        zalo = RefundStandIn(mock, answer(1, zp_trans_id=given))
        with pytest.raises(GatewayDeclinedError, match=r"is not a paid payment \(return_code 1\)$"):
            gateway.refund(refund_request())
    assert zalo.refund.call_count == 0


def test_a_long_refund_reason_is_cut_to_zalopays_limit(gateway: ZaloPayGateway) -> None:
    with respx.mock(assert_all_mocked=True, assert_all_called=False) as mock:
        zalo = RefundStandIn(mock, answer(1, zp_trans_id=5))
        gateway.refund(RefundRequest("pay_1", trans_id(), "rtk_0123456789", 50000, 150000, "r" * 300))
    assert form(zalo.refund.calls.last.request)["description"] == "r" * 256


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        (answer(2, -49), "sent"),  # the other "unknown id" code: not received, so it is sent
        (answer(2, -13, return_message="no"), GatewayDeclinedError),
        (answer(3, -101), RefundOutcome.pending),  # only a refusal with an unknown id means "never received"
        (answer(9, -101), GatewayTechnicalError),
    ],
)
def test_what_the_refund_status_says_before_a_refund(
    gateway: ZaloPayGateway, status: httpx.Response, expected: Any
) -> None:
    with respx.mock(assert_all_mocked=True, assert_all_called=False) as mock:
        zalo = RefundStandIn(mock, answer(1, zp_trans_id=5))
        zalo.status.mock(return_value=status, side_effect=None)
        if expected == "sent":
            assert gateway.refund(refund_request()).outcome is RefundOutcome.pending
            assert zalo.refund.call_count == 1
        elif isinstance(expected, RefundOutcome):
            assert gateway.refund(refund_request()).outcome is expected
            assert zalo.refund.call_count == 0
        else:
            with pytest.raises(expected):
                gateway.refund(refund_request())
            assert zalo.refund.call_count == 0


@pytest.mark.parametrize(
    ("response", "error", "message"),
    [
        (
            answer(2, -401, return_message="Giao dich that bai"),
            GatewayDeclinedError,
            "^ZaloPay create: return_code 2, sub_return_code -401: Giao dich that bai$",
        ),
        (
            answer(2, -500, return_message="He thong dang bao tri"),
            GatewayTechnicalError,
            "^ZaloPay create: return_code 2, sub_return_code -500: He thong dang bao tri$",
        ),
    ],
)
def test_create_errors_keep_zalopays_message(
    gateway: ZaloPayGateway, response: httpx.Response, error: type, message: str
) -> None:
    with respx.mock(assert_all_mocked=True, assert_all_called=False) as mock:
        mock.post(f"{BASE}/v2/create").mock(return_value=response)
        with pytest.raises(error, match=message):
            gateway.start_payment(start_request())


def test_a_refused_refund_without_a_message_says_so(gateway: ZaloPayGateway) -> None:
    with respx.mock(assert_all_mocked=True, assert_all_called=False) as mock:
        zalo = RefundStandIn(mock, answer(1, zp_trans_id=5))
        zalo.refund.mock(
            return_value=httpx.Response(200, json={"return_code": 2, "sub_return_code": -13}), side_effect=None
        )
        with pytest.raises(
            GatewayDeclinedError, match=rf"^ZaloPay refused refund {refund_id('250103')}: sub_return_code -13 $"
        ):
            gateway.refund(refund_request())


def test_aware_times_keep_their_zone() -> None:
    # 00:30 on 2 January in Tokyo is 22:30 on 1 January in Vietnam (15:30 UTC).
    tokyo = datetime(2025, 1, 2, 0, 30, tzinfo=timezone(timedelta(hours=9)))
    assert vn_day(tokyo) == "250101"
    assert epoch_ms(tokyo) == epoch_ms(datetime(2025, 1, 1, 15, 30, tzinfo=UTC)) == 1735745400000


def test_the_query_before_a_refund_names_the_paid_order(gateway: ZaloPayGateway) -> None:
    with respx.mock(assert_all_mocked=True, assert_all_called=False) as mock:
        zalo = RefundStandIn(mock, answer(1, zp_trans_id=5))
        gateway.refund(refund_request())
    sent = form(zalo.query.calls.last.request)
    assert sent["app_trans_id"] == trans_id() and sent["mac"] == hmac_hex(KEY1, f"{APP_ID}|{trans_id()}|{KEY1}")


def test_retries_wait_with_the_given_sleep_and_failures_name_the_call() -> None:
    waits: list[float] = []
    settings = {"app_id": str(APP_ID), "key1": KEY1, "key2": KEY2, "endpoint": BASE}
    context = GatewayContext("zalopay", "https://lephi.test", "https://lephi.test/cb", settings=settings)
    gateway = ZaloPayGateway(context, sleep=waits.append, clock=lambda: NOW)
    with respx.mock(assert_all_mocked=True, assert_all_called=False) as mock:
        mock.post(f"{BASE}/v2/query").mock(return_value=httpx.Response(503))
        with pytest.raises(
            GatewayTechnicalError, match=rf"^POST {BASE}/v2/query failed after 3 attempts \(HTTP 503\)$"
        ):
            gateway.query_status(status_query(trans_id()))
    assert len(waits) == 2


def test_only_the_endpoints_trailing_slash_is_dropped() -> None:
    gateway = make_gateway(endpoint=f"{BASE}/gateway/X/")  # a path prefix, as behind a proxy
    with respx.mock(assert_all_mocked=True, assert_all_called=False) as mock:
        route = mock.post(f"{BASE}/gateway/X/v2/query").mock(return_value=answer(3))
        gateway.query_status(status_query(trans_id()))
    assert route.call_count == 1
