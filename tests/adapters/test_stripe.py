"""The Stripe card adapter, against a real localstripe server, plus respx for what localstripe cannot show.

localstripe differs from real Stripe in ways these tests work around (each is named where it matters):
- it rejects ``description`` on PaymentIntents, so the gateway runs with ``send_description=False`` against it;
- it ignores ``Idempotency-Key``, does not check a refund against the unrefunded amount, and accepts no
  ``created[gte]``/``created[lt]`` filters on lists: those behaviours are shown with respx, modelled on Stripe;
- card 4000000000000002 is declined only when attached to a customer, not when charged: the decline on
  confirm uses 4000000000000341, localstripe's charge-declined card (also declined on charge by real Stripe);
- confirming needs the secret key (real Stripe.js confirms with the publishable key and the client secret), so
  the payer is simulated with the secret key, except for 3-D Secure, which localstripe's Stripe.js completes
  through its own ``/_authenticate`` endpoint with the publishable key, as done here.
"""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import json
import queue
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs

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
    InvalidCallback,
    PaymentGateway,
    RefundOutcome,
    RefundRequest,
    StartPayment,
    StatusQuery,
)
from adapters.stripe import IgnoredEvent, StripeGateway, encode_form
from tests.adapters.localstripe_server import LocalStripe, run_localstripe

AMOUNT = 150_000
PUBLIC_URL = "https://lephi.test"
FAKE_API = "https://stripe.test"
WHSEC = "whsec_current"
OLD_WHSEC = "whsec_previous"
NOW = 1_760_000_000

# One client for every gateway, as the service shares one: building a client loads the CA bundle (~50 ms).
HTTP = httpx.Client(timeout=5)

VISA_OK = "4242424242424242"
VISA_DECLINED_ON_CHARGE = "4000000000000341"
VISA_3DS_REQUIRED = "4000002500003155"


# --- fixtures and helpers ------------------------------------------------------------------------------------------
@pytest.fixture(scope="session")
def localstripe() -> Iterator[LocalStripe]:
    with run_localstripe() as server:
        yield server


def settings(**overrides: Any) -> dict[str, Any]:
    return {
        "secret_key": "sk_test_x",
        "publishable_key": "pk_test_x",
        "webhook_secrets": [WHSEC, OLD_WHSEC],
        "api_base": FAKE_API,
        **overrides,
    }


def gateway(ls: LocalStripe | None = None, clock: Callable[[], float] = lambda: NOW, **overrides: Any) -> StripeGateway:
    if ls is not None:
        overrides = {
            "secret_key": ls.secret_key,
            "publishable_key": ls.publishable_key,
            "api_base": ls.url,
            "js_url": ls.js_url,
            "send_description": False,  # localstripe answers 400 "Unexpected description"
            **overrides,
        }
    callback_url = f"{PUBLIC_URL}/v1/gateways/stripe/callback"
    context = GatewayContext("stripe", PUBLIC_URL, callback_url, settings(**overrides), http=HTTP)
    return StripeGateway(context, clock=clock, sleep=lambda _s: None)


def start(ref: str = "pay_1", key: str = "idem_1", amount: int = AMOUNT) -> StartPayment:
    now = datetime(2025, 10, 9, tzinfo=UTC)
    return StartPayment(
        merchant_reference=ref,
        idempotency_key=key,
        amount=amount,
        currency="VND",
        description="Lệ phí cấp hộ chiếu",
        return_url=f"{PUBLIC_URL}/return",
        callback_url=f"{PUBLIC_URL}/cb",
        created_at=now,
        expires_at=now + timedelta(minutes=15),
    )


def status_query(pi_id: str | None, ref: str = "pay_1") -> StatusQuery:
    return StatusQuery(ref, pi_id, "idem_1", AMOUNT, datetime(2025, 10, 9, tzinfo=UTC))


def refund_request(pi_id: str, amount: int, key: str) -> RefundRequest:
    return RefundRequest("pay_1", pi_id, key, amount, AMOUNT, "hồ sơ bị từ chối")


def ls_post(ls: LocalStripe, path: str, data: dict[str, str] | None = None, **kw: Any) -> httpx.Response:
    return HTTP.post(f"{ls.url}{path}", data=data or {}, auth=(ls.secret_key, ""), **kw)


def pay(ls: LocalStripe, pi_id: str, card: str) -> httpx.Response:
    """The payer's card reaching the PaymentIntent (Stripe.js's job; the secret key is localstripe's requirement)."""
    card_form = {"card[number]": card, "card[exp_month]": "12", "card[exp_year]": "2034", "card[cvc]": "123"}
    pm = ls_post(ls, "/v1/payment_methods", {"type": "card", **card_form})
    assert pm.status_code == 200, pm.text
    # localstripe answers 500 "Not implemented" to confirm(payment_method=...): attach first, then confirm.
    assert ls_post(ls, f"/v1/payment_intents/{pi_id}", {"payment_method": pm.json()["id"]}).status_code == 200
    return ls_post(ls, f"/v1/payment_intents/{pi_id}/confirm")


def paid_intent(ls: LocalStripe, gw: StripeGateway, ref: str, card: str = VISA_OK) -> str:
    pi_id = gw.start_payment(start(ref=ref, key=f"idem_{ref}")).gateway_reference
    assert pay(ls, pi_id, card).status_code == 200
    return pi_id


def sign(secret: str, body: bytes, timestamp: int) -> str:
    """Stripe's algorithm, written out here rather than borrowed from the adapter."""
    return hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()


def event_body(event_type: str = "payment_intent.succeeded", **intent: Any) -> bytes:
    obj = {
        "id": "pi_123",
        "object": "payment_intent",
        "amount": AMOUNT,
        "amount_received": AMOUNT,
        "currency": "vnd",
        "status": "succeeded",
        "metadata": {"merchant_reference": "pay_1"},
        **intent,
    }
    return json.dumps({"id": "evt_1", "object": "event", "type": event_type, "data": {"object": obj}}).encode()


def webhook(body: bytes, header: str) -> CallbackRequest:
    return CallbackRequest("POST", {"Stripe-Signature": header, "Content-Type": "application/json"}, {}, body)


def signed(body: bytes, secret: str = WHSEC, timestamp: int = NOW) -> CallbackRequest:
    return webhook(body, f"t={timestamp},v1={sign(secret, body, timestamp)}")


# --- settings ------------------------------------------------------------------------------------------------------
def test_is_a_payment_gateway() -> None:
    assert isinstance(gateway(), PaymentGateway) and StripeGateway.name == "stripe"


@pytest.mark.parametrize("missing", ["secret_key", "publishable_key", "webhook_secrets"])
def test_a_missing_setting_is_named(missing: str) -> None:
    given = {k: v for k, v in settings().items() if k != missing}
    context = GatewayContext("stripe", PUBLIC_URL, PUBLIC_URL, given, http=HTTP)
    with pytest.raises(ValueError, match=missing):
        StripeGateway(context)


def test_swapped_keys_are_refused() -> None:
    with pytest.raises(ValueError, match="secret_key"):
        gateway(secret_key="pk_test_x")


def test_form_encoding_of_nested_params() -> None:
    form = encode_form({"a": 1, "m": {"k": "v w"}, "t": ["card"], "i": [{"p": "x"}], "b": True, "n": None})
    assert parse_qs(form) == {"a": ["1"], "m[k]": ["v w"], "t[]": ["card"], "i[0][p]": ["x"], "b": ["true"]}


# --- payments against localstripe ----------------------------------------------------------------------------------
def test_start_creates_a_zero_decimal_vnd_payment_intent(localstripe: LocalStripe) -> None:
    gw = gateway(localstripe)
    result = gw.start_payment(start(ref="pay_start", key="idem_start"))
    assert result.status is GatewayStatus.pending
    assert result.next_url == f"{PUBLIC_URL}/pay/card/{result.gateway_reference}"
    intent = HTTP.get(
        f"{localstripe.url}/v1/payment_intents/{result.gateway_reference}", auth=(localstripe.secret_key, "")
    ).json()
    assert (intent["amount"], intent["currency"]) == (AMOUNT, "vnd")
    assert intent["metadata"] == {"merchant_reference": "pay_start"}
    assert gw.query_status(status_query(result.gateway_reference)).status is GatewayStatus.pending


def test_card_page_has_what_stripe_js_needs(localstripe: LocalStripe) -> None:
    gw = gateway(localstripe)
    pi_id = gw.start_payment(start(ref="pay_page", key="idem_page")).gateway_reference
    page = gw.card_page(pi_id)
    assert page["client_secret"].startswith(f"{pi_id}_secret_")
    assert page["publishable_key"] == localstripe.publishable_key and page["js_url"] == localstripe.js_url
    assert (page["amount"], page["currency"], page["status"]) == (AMOUNT, "VND", "pending")
    assert HTTP.get(page["js_url"]).status_code == 200
    with pytest.raises(GatewayDeclinedError):
        gw.card_page("pi_doesnotexist")


@pytest.mark.parametrize(
    ("card", "expected", "raw_code"),
    [
        (VISA_OK, GatewayStatus.succeeded, "succeeded"),
        (VISA_DECLINED_ON_CHARGE, GatewayStatus.failed, "requires_payment_method:card_declined"),
        (VISA_3DS_REQUIRED, GatewayStatus.pending, "requires_action"),
    ],
)
def test_the_payers_card_decides_the_status(
    localstripe: LocalStripe, card: str, expected: GatewayStatus, raw_code: str
) -> None:
    gw = gateway(localstripe)
    pi_id = gw.start_payment(start(ref=f"pay_{card}", key=f"idem_{card}")).gateway_reference
    pay(localstripe, pi_id, card)  # a decline answers 402, as Stripe does
    result = gw.query_status(status_query(pi_id))
    assert (result.status, result.raw_code, result.gateway_reference, result.amount) == (
        expected,
        raw_code,
        pi_id,
        AMOUNT,
    )


def test_3d_secure_completed_by_the_payer_succeeds(localstripe: LocalStripe) -> None:
    gw = gateway(localstripe)
    pi_id = gw.start_payment(start(ref="pay_3ds_ok", key="idem_3ds_ok")).gateway_reference
    pay(localstripe, pi_id, VISA_3DS_REQUIRED)
    page = gw.card_page(pi_id)
    # What localstripe's Stripe.js does when the payer completes the challenge: publishable key + client secret.
    done = HTTP.post(
        f"{localstripe.url}/v1/payment_intents/{pi_id}/_authenticate?success=true",
        json={"key": page["publishable_key"], "client_secret": page["client_secret"]},
    )
    assert done.status_code == 200, done.text
    assert gw.query_status(status_query(pi_id)).status is GatewayStatus.succeeded


def test_query_without_reference_or_for_a_missing_intent_is_unknown(localstripe: LocalStripe) -> None:
    gw = gateway(localstripe)
    assert gw.query_status(status_query(None)).status is GatewayStatus.unknown
    assert gw.query_status(status_query("pi_doesnotexist")).status is GatewayStatus.unknown


def test_cancel_an_unpaid_intent(localstripe: LocalStripe) -> None:
    gw = gateway(localstripe)
    pi_id = gw.start_payment(start(ref="pay_cancel", key="idem_cancel")).gateway_reference
    assert gw.cancel(status_query(pi_id)).status is GatewayStatus.cancelled
    # Cancelling again is refused by Stripe; the answer is still what the payment is.
    assert gw.cancel(status_query(pi_id)).status is GatewayStatus.cancelled
    assert gw.query_status(status_query(pi_id)).status is GatewayStatus.cancelled


def test_cancel_of_a_paid_intent_reports_the_success(localstripe: LocalStripe) -> None:
    gw = gateway(localstripe)
    pi_id = paid_intent(localstripe, gw, "pay_cancel_paid")
    result = gw.cancel(status_query(pi_id))
    assert (result.status, result.amount) == (GatewayStatus.succeeded, AMOUNT)


def test_partial_then_full_refund(localstripe: LocalStripe) -> None:
    gw = gateway(localstripe)
    pi_id = paid_intent(localstripe, gw, "pay_refund")
    first = gw.refund(refund_request(pi_id, 50_000, "rf_1"))
    rest = gw.refund(refund_request(pi_id, 100_000, "rf_2"))
    assert first.outcome is rest.outcome is RefundOutcome.succeeded
    assert first.gateway_reference and rest.gateway_reference and first.gateway_reference != rest.gateway_reference
    refunds = HTTP.get(
        f"{localstripe.url}/v1/refunds", params={"payment_intent": pi_id}, auth=(localstripe.secret_key, "")
    ).json()["data"]
    assert sorted(r["amount"] for r in refunds) == [50_000, 100_000]
    assert {r["metadata"]["reason"] for r in refunds} == {"hồ sơ bị từ chối"}


def test_refund_of_an_unpaid_intent_is_declined(localstripe: LocalStripe) -> None:
    gw = gateway(localstripe)
    pi_id = gw.start_payment(start(ref="pay_refund_unpaid", key="idem_refund_unpaid")).gateway_reference
    pay(localstripe, pi_id, VISA_DECLINED_ON_CHARGE)
    with pytest.raises(GatewayDeclinedError, match="HTTP 400"):
        gw.refund(refund_request(pi_id, AMOUNT, "rf_unpaid"))


def test_list_pagination_follows_the_cursor(localstripe: LocalStripe) -> None:
    # localstripe accepts no created[...] filter on lists, so the paginator is exercised on the unfiltered list.
    gw = gateway(localstripe)
    paid_intent(localstripe, gw, "pay_list_1")
    paid_intent(localstripe, gw, "pay_list_2")
    everything = HTTP.get(
        f"{localstripe.url}/v1/balance_transactions", params={"limit": 100}, auth=(localstripe.secret_key, "")
    ).json()["data"]
    streamed = [txn["id"] for txn in gw.iter_list("/v1/balance_transactions", {}, page_size=2)]
    assert len(streamed) >= 2 and streamed == [txn["id"] for txn in everything]


def test_localstripe_delivers_a_webhook_the_adapter_verifies(localstripe: LocalStripe) -> None:
    received: queue.Queue[tuple[dict[str, str], bytes]] = queue.Queue()

    class Hook(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            received.put((dict(self.headers.items()), body))
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Hook)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    config = "/_config/webhooks/lephi_e2e"
    try:
        hook_url = f"http://127.0.0.1:{server.server_address[1]}/hook"
        events = {"url": hook_url, "secret": "whsec_e2e", "events[]": "payment_intent.succeeded"}
        assert ls_post(localstripe, config, events).status_code == 200
        gw = gateway(localstripe, clock=time.time, webhook_secrets=["whsec_new", "whsec_e2e"])
        pi_id = paid_intent(localstripe, gw, "pay_webhook")
        event = _wait_for_event(gw, received, pi_id)
        assert (event.status, event.amount, event.currency) == (GatewayStatus.succeeded, AMOUNT, "VND")
        assert (event.merchant_reference, event.raw_code) == ("pay_webhook", "payment_intent.succeeded")
    finally:
        # localstripe cannot forget a webhook: narrow it to an event type that never happens.
        ls_post(localstripe, config, {"url": "http://127.0.0.1:9/", "secret": "x", "events[]": "lephi.none"})
        server.shutdown()
        server.server_close()


def _wait_for_event(gw: StripeGateway, received: queue.Queue[tuple[dict[str, str], bytes]], pi_id: str) -> Any:
    deadline = time.monotonic() + 10  # localstripe waits one second before it delivers
    while time.monotonic() < deadline:
        headers, body = received.get(timeout=max(0.1, deadline - time.monotonic()))
        event = gw.parse_callback(CallbackRequest("POST", headers, {}, body))
        if event.gateway_reference == pi_id:
            return event
    pytest.fail("localstripe delivered no payment_intent.succeeded webhook")


# --- webhooks ------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("event_type", "status"),
    [
        ("payment_intent.succeeded", GatewayStatus.succeeded),
        ("payment_intent.payment_failed", GatewayStatus.failed),
        ("payment_intent.canceled", GatewayStatus.cancelled),
        ("payment_intent.processing", GatewayStatus.pending),
        ("payment_intent.requires_action", GatewayStatus.pending),
    ],
)
def test_a_signed_event_is_parsed(event_type: str, status: GatewayStatus) -> None:
    event = gateway().parse_callback(signed(event_body(event_type)))
    assert (event.event_id, event.merchant_reference, event.gateway_reference) == ("evt_1", "pay_1", "pi_123")
    assert (event.status, event.amount, event.currency, event.raw_code) == (status, AMOUNT, "VND", event_type)


def test_success_reports_the_amount_received_and_others_the_amount() -> None:
    gw = gateway()
    assert gw.parse_callback(signed(event_body(amount_received=AMOUNT - 1))).amount == AMOUNT - 1
    failed = event_body("payment_intent.payment_failed", amount_received=0, status="requires_payment_method")
    assert gw.parse_callback(signed(failed)).amount == AMOUNT


def test_events_the_adapter_does_not_act_on_are_ignored_not_rejected() -> None:
    with pytest.raises(IgnoredEvent) as caught:
        gateway().parse_callback(signed(event_body("charge.succeeded", object="charge")))
    assert isinstance(caught.value, InvalidCallback) and "charge.succeeded" in str(caught.value)


@pytest.mark.parametrize(
    "request_",
    [
        signed(event_body(), secret="whsec_wrong"),
        webhook(event_body(amount=1), f"t={NOW},v1={sign(WHSEC, event_body(), NOW)}"),  # body changed after signing
        signed(event_body(), timestamp=NOW - 301),  # stale
        signed(event_body(), timestamp=NOW + 301),  # from the future
        webhook(event_body(), ""),
        webhook(event_body(), f"t=abc,v1={sign(WHSEC, event_body(), NOW)}"),
        webhook(event_body(), f"t={NOW}"),
        webhook(event_body(), f"t={NOW},v1=é"),
        CallbackRequest("POST", {}, {}, event_body()),
        signed(b"not json"),
        signed(json.dumps({"id": "evt_1", "type": "payment_intent.succeeded"}).encode()),
    ],
    ids=[
        "wrong-secret",
        "tampered",
        "stale",
        "future",
        "empty-header",
        "bad-timestamp",
        "no-v1",
        "non-ascii",
        "no-header",
        "not-json",
        "no-object",
    ],
)
def test_untrustworthy_webhooks_are_rejected(request_: CallbackRequest) -> None:
    with pytest.raises(InvalidCallback) as caught:
        gateway().parse_callback(request_)
    assert not isinstance(caught.value, IgnoredEvent)


def test_the_tolerance_window_is_inclusive() -> None:
    gw = gateway()
    assert gw.parse_callback(signed(event_body(), timestamp=NOW - 300)).status is GatewayStatus.succeeded
    assert gw.parse_callback(signed(event_body(), timestamp=NOW + 300)).status is GatewayStatus.succeeded


def test_rotated_secrets_are_all_accepted() -> None:
    body = event_body()
    gw = gateway()
    assert gw.parse_callback(signed(body, secret=OLD_WHSEC)).event_id == "evt_1"
    # During a roll Stripe signs with both secrets; one matching v1 is enough.
    both = f"t={NOW},v1={sign('whsec_unknown', body, NOW)},v1={sign(WHSEC, body, NOW)},v0=ignored"
    assert gw.parse_callback(webhook(body, both)).event_id == "evt_1"
    with pytest.raises(InvalidCallback):
        gateway(webhook_secrets=[WHSEC]).parse_callback(signed(body, secret=OLD_WHSEC))


def test_callback_replies() -> None:
    gw = gateway()
    for outcome in set(CallbackOutcome) - {CallbackOutcome.invalid_signature, CallbackOutcome.error}:
        reply = gw.callback_reply(outcome)
        assert (reply.status_code, json.loads(reply.body)) == (200, {"received": True})
    assert gw.callback_reply(CallbackOutcome.invalid_signature).status_code == 400
    assert gw.callback_reply(CallbackOutcome.error).status_code == 500  # so that Stripe delivers it again


# --- what localstripe cannot show: respx, modelled on Stripe's answers ---------------------------------------------
def _intent(pi_id: str, **fields: Any) -> dict[str, Any]:
    return {"id": pi_id, "object": "payment_intent", "amount": AMOUNT, "currency": "vnd", **fields}


@respx.mock
def test_start_sends_stripes_form_and_the_same_key_gives_the_same_intent() -> None:
    replies: dict[str, httpx.Response] = {}

    def stripe(request: httpx.Request) -> httpx.Response:  # Stripe replays the first answer for a key
        key = request.headers["Idempotency-Key"]
        if key not in replies:
            replies[key] = httpx.Response(200, json=_intent(f"pi_{len(replies)}", status="requires_payment_method"))
        return replies[key]

    route = respx.post(f"{FAKE_API}/v1/payment_intents").mock(side_effect=stripe)
    gw = gateway()
    first, again, other = (gw.start_payment(start(key=k)) for k in ("k1", "k1", "k2"))
    assert first.gateway_reference == again.gateway_reference != other.gateway_reference
    sent = route.calls[0].request
    assert sent.headers["Authorization"] == "Bearer sk_test_x"
    assert sent.headers["Content-Type"] == "application/x-www-form-urlencoded"
    assert parse_qs(sent.content.decode()) == {
        "amount": ["150000"],
        "currency": ["vnd"],
        "payment_method_types[]": ["card"],
        "description": ["Lệ phí cấp hộ chiếu"],
        "metadata[merchant_reference]": ["pay_1"],
    }


@respx.mock
def test_start_retries_5xx_with_the_same_idempotency_key() -> None:
    route = respx.post(f"{FAKE_API}/v1/payment_intents").mock(
        side_effect=[httpx.Response(503), httpx.Response(502), httpx.Response(200, json=_intent("pi_retry"))]
    )
    assert gateway().start_payment(start(key="k_retry")).gateway_reference == "pi_retry"
    assert [c.request.headers["Idempotency-Key"] for c in route.calls] == ["k_retry"] * 3


@respx.mock
def test_start_that_keeps_failing_is_a_technical_error_and_a_4xx_a_decline() -> None:
    respx.post(f"{FAKE_API}/v1/payment_intents").mock(
        side_effect=[httpx.Response(500)] * 3 + [httpx.ConnectTimeout("slow")] * 3
    )
    with pytest.raises(GatewayTechnicalError, match="HTTP 500"):
        gateway().start_payment(start())
    with pytest.raises(GatewayTechnicalError, match="timeout"):
        gateway().start_payment(start())
    respx.post(f"{FAKE_API}/v1/payment_intents").mock(
        return_value=httpx.Response(400, json={"error": {"type": "invalid_request_error", "code": "amount_too_small"}})
    )
    with pytest.raises(GatewayDeclinedError, match="amount_too_small"):
        gateway().start_payment(start(amount=100))


@pytest.mark.parametrize("flag", [False, "false"])
@respx.mock
def test_description_can_be_left_out_for_localstripe(flag: bool | str) -> None:
    route = respx.post(f"{FAKE_API}/v1/payment_intents").mock(return_value=httpx.Response(200, json=_intent("pi_1")))
    gateway(send_description=flag).start_payment(start())
    assert "description" not in parse_qs(route.calls[0].request.content.decode())


def test_only_vnd_is_accepted() -> None:
    with pytest.raises(GatewayDeclinedError, match="VND"):
        gateway().start_payment(dataclasses.replace(start(), currency="USD"))


@respx.mock
def test_refund_above_the_remaining_amount_is_declined() -> None:
    # localstripe accepts it; Stripe answers 400 amount_too_large.
    error = {
        "type": "invalid_request_error",
        "code": "amount_too_large",
        "message": "Refund amount (₫200,000) is greater than unrefunded amount on charge (₫100,000)",
    }
    route = respx.post(f"{FAKE_API}/v1/refunds").mock(return_value=httpx.Response(400, json={"error": error}))
    with pytest.raises(GatewayDeclinedError, match="amount_too_large"):
        gateway().refund(refund_request("pi_1", 200_000, "rf_over"))
    assert route.calls[0].request.headers["Idempotency-Key"] == "rf_over"
    assert parse_qs(route.calls[0].request.content.decode())["payment_intent"] == ["pi_1"]


@pytest.mark.parametrize(
    ("answer", "outcome"),
    [("succeeded", RefundOutcome.succeeded), ("pending", RefundOutcome.pending), ("failed", RefundOutcome.failed)],
)
@respx.mock
def test_refund_statuses(answer: str, outcome: RefundOutcome) -> None:
    respx.post(f"{FAKE_API}/v1/refunds").mock(return_value=httpx.Response(200, json={"id": "re_1", "status": answer}))
    result = gateway().refund(refund_request("pi_1", AMOUNT, "rf"))
    assert (result.outcome, result.gateway_reference) == (outcome, "re_1")


@respx.mock
def test_refund_technical_failures_are_not_declines() -> None:
    respx.post(f"{FAKE_API}/v1/refunds").mock(
        side_effect=[httpx.ReadTimeout("slow")] * 3
        + [httpx.Response(409, json={"error": {"type": "idempotency_error"}})]
    )
    with pytest.raises(GatewayTechnicalError, match="timeout"):
        gateway().refund(refund_request("pi_1", AMOUNT, "rf"))
    with pytest.raises(GatewayTechnicalError, match="409"):
        gateway().refund(refund_request("pi_1", AMOUNT, "rf"))


@respx.mock
def test_cancel_refused_because_it_succeeded_reports_the_success() -> None:
    refusal = {"type": "invalid_request_error", "code": "payment_intent_unexpected_state"}
    respx.post(f"{FAKE_API}/v1/payment_intents/pi_1/cancel").mock(
        return_value=httpx.Response(400, json={"error": refusal})
    )
    respx.get(f"{FAKE_API}/v1/payment_intents/pi_1").mock(
        return_value=httpx.Response(200, json=_intent("pi_1", status="succeeded"))
    )
    assert gateway().cancel(status_query("pi_1")).status is GatewayStatus.succeeded


@respx.mock
def test_list_charges_streams_pages_with_the_date_filter() -> None:
    pages = [
        {"data": [{"id": "ch_1"}, {"id": "ch_2"}], "has_more": True},
        {"data": [{"id": "ch_3"}], "has_more": False},
    ]
    route = respx.get(f"{FAKE_API}/v1/charges").mock(side_effect=[httpx.Response(200, json=p) for p in pages])
    charges = gateway().list_charges(1_700_000_000, 1_700_086_400, page_size=2)
    assert next(charges)["id"] == "ch_1" and route.call_count == 1  # a generator: one page at a time
    assert [c["id"] for c in charges] == ["ch_2", "ch_3"] and route.call_count == 2
    first, second = (dict(c.request.url.params) for c in route.calls)
    assert first == {"created[gte]": "1700000000", "created[lt]": "1700086400", "limit": "2"}
    assert second == {**first, "starting_after": "ch_2"}


@respx.mock
def test_list_balance_transactions_by_payout() -> None:
    route = respx.get(f"{FAKE_API}/v1/balance_transactions").mock(
        return_value=httpx.Response(200, json={"data": [{"id": "txn_1"}], "has_more": False})
    )
    assert [t["id"] for t in gateway().list_balance_transactions(1, 2, payout="po_1")] == ["txn_1"]
    assert route.calls[0].request.url.params["payout"] == "po_1"


@respx.mock
def test_a_cursor_that_cannot_advance_is_an_error() -> None:
    respx.get(f"{FAKE_API}/v1/charges").mock(return_value=httpx.Response(200, json={"data": [], "has_more": True}))
    with pytest.raises(GatewayTechnicalError, match="empty page"):
        list(gateway().list_charges(1, 2))
