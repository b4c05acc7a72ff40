"""The sandbox gateway called directly (adapters/sandbox.py): the callback signature (``t=<time>,v1=<HMAC>``), its
tolerance window and secret rotation, callback parsing and replies, and the gateway's own side (payment page,
settlement, the signed callback it sends, status, cancel, refund) on the real database-backed store.

tests/test_callbacks.py and tests/test_callback_input.py check the same rules through the API; these pin each branch
cheaply, so that the mutation run (scripts/mutate sandbox-signature) takes minutes. Signatures here are computed by
hand from the documented form, not with the adapter's ``sign``, so a wrong form in the adapter fails them.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import json
import re
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar

import httpx
import pytest

from adapters.base import (
    CallbackOutcome,
    CallbackRequest,
    GatewayContext,
    GatewayDeclinedError,
    GatewayStatus,
    InvalidCallback,
    RefundOutcome,
    RefundRequest,
    StartPayment,
    StatusQuery,
)
from adapters.sandbox import (
    SIGNATURE_HEADER,
    TOLERANCE_SECONDS,
    SandboxGateway,
    SandboxRecord,
    sign,
    verify,
)
from payments.core.db import Database, make_engine
from payments.gateway.sandbox_store import DbSandboxStore
from tests.conftest import make_settings

SECRET = "sandbox-secret"
OLD_SECRET = "retired-sandbox-secret"
BODY = b'{"event_id":"evt_1"}'
NOW = 1_790_000_000
T0 = datetime(2026, 12, 3, 3, 0, tzinfo=UTC)
CALLBACK_URL = "http://merchant.test/v1/gateways/sandbox/callback"


def mac(secret: str, body: bytes, timestamp: int | str) -> str:
    return hmac.new(secret.encode(), str(timestamp).encode() + b"." + body, hashlib.sha256).hexdigest()


def header(secret: str = SECRET, body: bytes = BODY, timestamp: int = NOW) -> str:
    return f"t={timestamp},v1={mac(secret, body, timestamp)}"


def refused(call: Callable[[], object], message: str) -> None:
    with pytest.raises(InvalidCallback) as caught:
        call()
    assert str(caught.value) == message


# --- the signature -------------------------------------------------------------------------------------------------


def test_sign_writes_the_time_and_the_hmac_of_time_dot_body() -> None:
    assert sign(SECRET, BODY, NOW) == f"t={NOW},v1={mac(SECRET, BODY, NOW)}"
    assert re.fullmatch(r"t=1790000000,v1=[0-9a-f]{64}", sign(SECRET, BODY, NOW))
    assert sign(SECRET, BODY, NOW) != sign(OLD_SECRET, BODY, NOW) != sign(SECRET, BODY, NOW + 1)


def test_a_signature_by_the_secret_within_the_window_is_accepted() -> None:
    verify([SECRET], BODY, header(), now=NOW)
    verify([SECRET], BODY, f" t={NOW} , v1={mac(SECRET, BODY, NOW)} ", now=NOW)  # spaces around the items
    verify([SECRET], BODY, f"v1={mac(SECRET, BODY, NOW)},t={NOW}", now=NOW)  # in any order


def test_a_signature_by_a_previous_secret_is_accepted_and_by_no_listed_secret_is_not() -> None:
    verify([SECRET, OLD_SECRET], BODY, header(OLD_SECRET), now=NOW)
    verify([OLD_SECRET, SECRET], BODY, header(SECRET), now=NOW)
    refused(lambda: verify([SECRET], BODY, header(OLD_SECRET), now=NOW), "signature does not match")
    refused(lambda: verify([], BODY, header(), now=NOW), "signature does not match")


def test_any_of_several_v1_values_may_carry_the_signature() -> None:
    good = mac(SECRET, BODY, NOW)
    verify([SECRET], BODY, f"t={NOW},v1={'0' * 64},v1={good}", now=NOW)
    verify([SECRET], BODY, f"t={NOW},v1={good},v1={'0' * 64}", now=NOW)
    refused(lambda: verify([SECRET], BODY, f"t={NOW},v1={'0' * 64}", now=NOW), "signature does not match")
    refused(lambda: verify([SECRET], BODY, f"t={NOW}", now=NOW), "signature does not match")
    refused(lambda: verify([SECRET], BODY, f"t={NOW},v0={good}", now=NOW), "signature does not match")


def test_the_first_timestamp_is_the_one_checked() -> None:
    refused(
        lambda: verify([SECRET], BODY, f"t=x,t={NOW},v1={mac(SECRET, BODY, NOW)}", now=NOW),
        "signature header has no valid timestamp",
    )
    verify([SECRET], BODY, f"t={NOW},t=x,v1={mac(SECRET, BODY, NOW)}", now=NOW)


def test_a_signature_over_another_body_or_time_does_not_match() -> None:
    refused(lambda: verify([SECRET], BODY + b" ", header(), now=NOW), "signature does not match")
    stamp = f"t={NOW},v1={mac(SECRET, BODY, NOW + 1)}"
    refused(lambda: verify([SECRET], BODY, stamp, now=NOW), "signature does not match")
    no_dot = hmac.new(SECRET.encode(), str(NOW).encode() + BODY, hashlib.sha256).hexdigest()
    refused(lambda: verify([SECRET], BODY, f"t={NOW},v1={no_dot}", now=NOW), "signature does not match")
    refused(
        lambda: verify([SECRET], BODY, f"t={NOW},v1={mac(SECRET, BODY, NOW).upper()}", now=NOW),
        "signature does not match",
    )


@pytest.mark.parametrize(
    "stamp", ["", "-1790000000", "+1790000000", " 1790000000x", "1_790_000_000", "１７９", "1790000000.0", "0" * 13]
)
def test_timestamps_other_than_one_to_twelve_ascii_digits_are_refused(stamp: str) -> None:
    refused(
        lambda: verify([SECRET], BODY, f"t={stamp},v1={mac(SECRET, BODY, NOW)}", now=0),
        "signature header has no valid timestamp",
    )


def test_a_header_without_a_timestamp_is_refused() -> None:
    refused(
        lambda: verify([SECRET], BODY, f"v1={mac(SECRET, BODY, NOW)}", now=NOW),
        "signature header has no valid timestamp",
    )
    refused(lambda: verify([SECRET], BODY, "", now=NOW), "signature header has no valid timestamp")
    refused(lambda: verify([SECRET], BODY, f"t{NOW},v1=0", now=NOW), "signature header has no valid timestamp")


def test_a_twelve_digit_timestamp_is_read_as_its_number() -> None:
    verify([SECRET], BODY, f"t=000000000007,v1={mac(SECRET, BODY, 7)}", now=7)


def test_the_window_is_tolerance_seconds_either_side_of_now() -> None:
    assert TOLERANCE_SECONDS == 300
    for now in (NOW - 300, NOW + 300, NOW - 299.5, NOW + 299.5):
        verify([SECRET], BODY, header(), now=now)
    for late in (NOW - 301, NOW + 301, NOW - 300.5, NOW + 300.5):
        refused(
            functools.partial(verify, [SECRET], BODY, header(), now=late),
            "signature timestamp outside the tolerance window",
        )


def test_the_window_is_checked_before_the_signature() -> None:
    refused(
        lambda: verify([SECRET], BODY, f"t={NOW},v1=0", now=NOW + 301),
        "signature timestamp outside the tolerance window",
    )


def test_without_now_the_clock_is_used() -> None:
    current = int(time.time())
    verify([SECRET], BODY, header(timestamp=current))
    refused(
        lambda: verify([SECRET], BODY, header(timestamp=current - 3600)),
        "signature timestamp outside the tolerance window",
    )
    # now=0 is a time, not "no time given".
    refused(
        lambda: verify([SECRET], BODY, header(timestamp=current), now=0),
        "signature timestamp outside the tolerance window",
    )
    verify([SECRET], BODY, header(timestamp=1), now=0)


@pytest.mark.parametrize("given", ["é" * 64, "\x00", "v1=" + "ü" * 10])
def test_non_ascii_signatures_do_not_match_and_do_not_raise_anything_else(given: str) -> None:
    refused(lambda: verify([SECRET], BODY, f"t={NOW},v1={given}", now=NOW), "signature does not match")


# --- the gateway on its store ----------------------------------------------------------------------------------------


@pytest.fixture
def db(database_url: str, tmp_path: Path) -> Iterator[Database]:
    settings = make_settings(database_url, tmp_path)
    database = Database(make_engine(settings.effective_database_url, settings))
    yield database
    database.dispose()


class Merchant:
    """The merchant's callback endpoint as an httpx transport: it records what the sandbox sends."""

    def __init__(self, status_code: int = 200, error: Exception | None = None) -> None:
        self.status_code = status_code
        self.error = error
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        if self.error is not None:
            raise self.error
        return httpx.Response(self.status_code, json={"result": "accepted"})


def gateway(
    db: Database, client: httpx.Client | None = None, public_url: str = "https://lephi.test/", **settings: Any
) -> SandboxGateway:
    context = GatewayContext(
        name="sandbox",
        public_url=public_url,
        callback_url=CALLBACK_URL,
        settings={"secret": SECRET, **settings},
        http=client,
        store=DbSandboxStore(db),
    )
    return SandboxGateway(context)


def start(sandbox: SandboxGateway, key: str = "key-1", amount: int = 150_000, callback_url: str = CALLBACK_URL) -> str:
    result = sandbox.start_payment(
        StartPayment(
            merchant_reference=f"pay_{key}",
            idempotency_key=key,
            amount=amount,
            currency="VND",
            description="Lệ phí hộ tịch",
            return_url="https://merchant.test/return",
            callback_url=callback_url,
            created_at=T0,
            expires_at=T0,
        )
    )
    return result.gateway_reference


def query(reference: str | None, key: str = "key-1") -> StatusQuery:
    return StatusQuery(
        merchant_reference=f"pay_{key}", gateway_reference=reference, idempotency_key=key, amount=150_000, created_at=T0
    )


def test_a_gateway_needs_a_secret(db: Database) -> None:
    for settings in ({}, {"secret": ""}, {"secret": None}):
        context = GatewayContext("sandbox", "https://lephi.test", CALLBACK_URL, settings, store=DbSandboxStore(db))
        with pytest.raises(ValueError) as caught:
            SandboxGateway(context)
        assert str(caught.value) == "the sandbox gateway needs a signing secret"


def test_starting_stores_a_pending_transaction_and_opens_its_page(db: Database) -> None:
    sandbox = gateway(db)
    result = sandbox.start_payment(
        StartPayment("pay_1", "key-1", 150_000, "VND", "Lệ phí", "https://m.test/r", CALLBACK_URL, T0, T0)
    )
    assert re.fullmatch(r"sbx_[0-9a-f]{24}", result.gateway_reference)
    assert result.next_url == f"https://lephi.test/sandbox/pay/{result.gateway_reference}"
    assert result.status is GatewayStatus.pending
    assert sandbox.get(result.gateway_reference) == SandboxRecord(
        id=result.gateway_reference,
        idempotency_key="key-1",
        merchant_reference="pay_1",
        amount=150_000,
        currency="VND",
        description="Lệ phí",
        status="pending",
        callback_url=CALLBACK_URL,
        return_url="https://m.test/r",
    )
    again = sandbox.start_payment(
        StartPayment("pay_1", "key-1", 150_000, "VND", "Lệ phí", "https://m.test/r", CALLBACK_URL, T0, T0)
    )
    assert again.gateway_reference == result.gateway_reference
    assert start(sandbox, "key-2") != result.gateway_reference


def test_the_page_url_joins_the_public_url_without_a_double_slash(db: Database) -> None:
    assert gateway(db, public_url="https://lephi.test/").page_url("sbx_1") == "https://lephi.test/sandbox/pay/sbx_1"
    assert gateway(db, public_url="https://lephi.test").page_url("sbx_1") == "https://lephi.test/sandbox/pay/sbx_1"
    # Only slashes are trimmed: a public URL whose path ends in another character keeps it.
    assert gateway(db, public_url="https://lephi.test/X/").page_url("sbx_1") == "https://lephi.test/X/sandbox/pay/sbx_1"
    assert gateway(db).get("sbx_missing") is None


def event(**changes: Any) -> dict[str, Any]:
    return {
        "event_id": "evt_1",
        "transaction_id": "sbx_1",
        "merchant_reference": "pay_1",
        "status": "succeeded",
        "amount": 150_000,
        "currency": "VND",
        **changes,
    }


def callback(body: bytes, headers: dict[str, str] | None = None) -> CallbackRequest:
    if headers is None:
        headers = {SIGNATURE_HEADER: header(body=body, timestamp=int(time.time()))}
    return CallbackRequest(method="POST", headers=headers, query={}, body=body)


def test_a_signed_callback_becomes_an_event(db: Database) -> None:
    parsed = gateway(db).parse_callback(callback(json.dumps(event()).encode()))
    assert (parsed.event_id, parsed.merchant_reference, parsed.gateway_reference) == ("evt_1", "pay_1", "sbx_1")
    assert (parsed.status, parsed.amount, parsed.currency, parsed.raw_code) == (
        GatewayStatus.succeeded,
        150_000,
        "VND",
        "succeeded",
    )
    numbers = gateway(db).parse_callback(
        callback(json.dumps(event(event_id=7, merchant_reference=8, transaction_id=9, currency=10)).encode())
    )
    assert (numbers.event_id, numbers.merchant_reference, numbers.gateway_reference, numbers.currency) == (
        "7",
        "8",
        "9",
        "10",
    )


def test_the_signature_header_is_found_in_any_case_and_verified_with_every_secret(db: Database) -> None:
    body = json.dumps(event(status="failed")).encode()
    now = int(time.time())
    upper = callback(body, {"Lephi-Sandbox-Signature": header(body=body, timestamp=now)})
    assert gateway(db).parse_callback(upper).status is GatewayStatus.failed
    old = callback(body, {SIGNATURE_HEADER: header(OLD_SECRET, body, now)})
    assert gateway(db, previous_secrets=[OLD_SECRET]).parse_callback(old).raw_code == "failed"
    refused(lambda: gateway(db).parse_callback(old), "signature does not match")
    stale = callback(body, {SIGNATURE_HEADER: header(body=body, timestamp=now - 3600)})
    refused(lambda: gateway(db).parse_callback(stale), "signature timestamp outside the tolerance window")


def test_a_callback_without_a_signature_header_is_refused(db: Database) -> None:
    body = json.dumps(event()).encode()
    refused(lambda: gateway(db).parse_callback(callback(body, {})), "missing signature header")
    refused(lambda: gateway(db).parse_callback(callback(body, {SIGNATURE_HEADER: ""})), "missing signature header")
    other = {"x-signature": header(body=body, timestamp=int(time.time()))}
    refused(lambda: gateway(db).parse_callback(callback(body, other)), "missing signature header")


@pytest.mark.parametrize(
    "body",
    [
        b"not json",
        b"[1, 2]",  # TypeError: a list indexed by a name
        b"null",
        json.dumps({k: v for k, v in event().items() if k != "event_id"}).encode(),
        json.dumps({k: v for k, v in event().items() if k != "merchant_reference"}).encode(),
        json.dumps({k: v for k, v in event().items() if k != "transaction_id"}).encode(),
        json.dumps({k: v for k, v in event().items() if k != "status"}).encode(),
        json.dumps({k: v for k, v in event().items() if k != "amount"}).encode(),
        json.dumps({k: v for k, v in event().items() if k != "currency"}).encode(),
        json.dumps(event(status="paid")).encode(),
        json.dumps(event(amount="150000")).encode(),
        json.dumps(event(amount=150000.0)).encode(),
        json.dumps(event(amount=True)).encode(),
        json.dumps(event(amount=0)).encode(),
    ],
)
def test_a_signed_body_that_is_not_a_sandbox_event_is_refused(db: Database, body: bytes) -> None:
    refused(lambda: gateway(db).parse_callback(callback(body)), "callback body is not a sandbox event")


@pytest.mark.parametrize(
    ("outcome", "code"),
    [
        (CallbackOutcome.accepted, 200),
        (CallbackOutcome.duplicate, 200),
        (CallbackOutcome.already_final, 200),
        (CallbackOutcome.unknown_order, 422),
        (CallbackOutcome.amount_mismatch, 422),
        (CallbackOutcome.invalid_signature, 401),
        (CallbackOutcome.error, 500),
    ],
)
def test_each_outcome_has_its_reply(outcome: CallbackOutcome, code: int) -> None:
    reply = SandboxGateway.callback_reply(outcome)
    assert reply.status_code == code
    assert json.loads(reply.body) == {"result": outcome.value}
    assert reply.media_type == "application/json"


def test_the_status_is_found_by_reference_or_by_idempotency_key(db: Database) -> None:
    sandbox = gateway(db)
    reference = start(sandbox)
    by_reference = sandbox.query_status(query(reference))
    assert (by_reference.status, by_reference.gateway_reference, by_reference.amount, by_reference.raw_code) == (
        GatewayStatus.pending,
        reference,
        150_000,
        "pending",
    )
    assert sandbox.query_status(query(None)) == by_reference
    assert sandbox.query_status(query("")) == by_reference
    # A reference wins over the key: another transaction's key does not redirect the query.
    other = start(sandbox, "key-2", amount=7)
    assert sandbox.query_status(query(other, "key-1")).amount == 7
    assert sandbox.query_status(query("sbx_missing")).status is GatewayStatus.unknown
    missing = sandbox.query_status(query(None, "key-missing"))
    assert (missing.status, missing.gateway_reference, missing.amount) == (GatewayStatus.unknown, None, None)


def test_cancel_cancels_only_a_pending_transaction(db: Database) -> None:
    merchant = Merchant()
    with httpx.Client(transport=httpx.MockTransport(merchant)) as client:
        sandbox = gateway(db, client)
        reference = start(sandbox)
        cancelled = sandbox.cancel(query(reference))
        assert (cancelled.status, cancelled.gateway_reference) == (GatewayStatus.cancelled, reference)
        paid = start(sandbox, "key-2")
        sandbox.complete(paid, "success")
        assert sandbox.cancel(query(paid, "key-2")).status is GatewayStatus.succeeded
        assert sandbox.get(paid) is not None and sandbox.get(paid).status == "succeeded"  # type: ignore[union-attr]
        unknown = sandbox.cancel(query("sbx_missing"))
        assert (unknown.status, unknown.gateway_reference) == (GatewayStatus.cancelled, None)


def refund_request(reference: str, key: str = "rf-1", amount: int = 50_000) -> RefundRequest:
    return RefundRequest("pay_key-1", reference, key, amount, 150_000, "duplicate payment")


def test_a_paid_transaction_is_refunded_up_to_its_amount(db: Database) -> None:
    with httpx.Client(transport=httpx.MockTransport(Merchant())) as client:
        sandbox = gateway(db, client)
        reference = start(sandbox)
        sandbox.complete(reference, "success")
        result = sandbox.refund(refund_request(reference))
        assert (result.outcome, result.gateway_reference, result.detail) == (
            RefundOutcome.succeeded,
            f"{reference}:rf-1",
            "",
        )
        assert sandbox.refund(refund_request(reference)).gateway_reference == f"{reference}:rf-1"  # the same key
        assert sandbox.refund(refund_request(reference, "rf-2", 100_000)).outcome is RefundOutcome.succeeded
        with pytest.raises(GatewayDeclinedError) as over:
            sandbox.refund(refund_request(reference, "rf-3", 1))
        assert str(over.value) == "refund exceeds the amount paid"
        assert sandbox.get(reference).refunded_amount == 150_000  # type: ignore[union-attr]


@pytest.mark.parametrize("outcome", [None, "decline", "cancel", "missing"])
def test_only_a_paid_transaction_is_refundable(db: Database, outcome: str | None) -> None:
    with httpx.Client(transport=httpx.MockTransport(Merchant())) as client:
        sandbox = gateway(db, client)
        reference = start(sandbox)
        if outcome == "missing":
            reference = "sbx_missing"
        elif outcome is not None:
            sandbox.complete(reference, outcome)
        with pytest.raises(GatewayDeclinedError) as caught:
            sandbox.refund(refund_request(reference))
        assert str(caught.value) == "the sandbox transaction is not refundable"


@pytest.mark.parametrize(
    ("outcome", "status"), [("success", "succeeded"), ("decline", "failed"), ("cancel", "cancelled")]
)
def test_the_payers_choice_settles_the_transaction_and_sends_a_signed_callback(
    db: Database, outcome: str, status: str
) -> None:
    merchant = Merchant()
    with httpx.Client(transport=httpx.MockTransport(merchant)) as client:
        sandbox = gateway(db, client, previous_secrets=[OLD_SECRET])
        reference = start(sandbox)
        before = int(time.time())
        record = sandbox.complete(reference, outcome)
        after = int(time.time())
        assert record is not None and record.status == status and sandbox.get(reference) == record
        assert not client.is_closed  # the service's client is left open for its next use
    (sent,) = merchant.requests
    assert sent.method == "POST" and str(sent.url) == CALLBACK_URL
    assert sent.headers["content-type"] == "application/json"
    body = sent.content
    sent_event = json.loads(body)
    assert re.fullmatch(r"evt_[0-9a-f]{24}", sent_event.pop("event_id"))
    assert sent_event == {
        "transaction_id": reference,
        "merchant_reference": "pay_key-1",
        "status": status,
        "amount": 150_000,
        "currency": "VND",
    }
    assert b" " not in body  # compact JSON: the bytes signed are the bytes sent
    stamp = int(re.fullmatch(r"t=([0-9]+),v1=[0-9a-f]{64}", sent.headers[SIGNATURE_HEADER]).group(1))  # type: ignore[union-attr]
    assert before <= stamp <= after
    assert sent.headers[SIGNATURE_HEADER] == header(SECRET, body, stamp)  # signed with the current secret
    parsed = sandbox.parse_callback(CallbackRequest("POST", dict(sent.headers), {}, body))
    assert (parsed.gateway_reference, parsed.status) == (reference, GatewayStatus(status))


def test_a_transaction_is_settled_once(db: Database) -> None:
    merchant = Merchant()
    with httpx.Client(transport=httpx.MockTransport(merchant)) as client:
        sandbox = gateway(db, client)
        reference = start(sandbox)
        assert sandbox.complete(reference, "success") is not None
        assert sandbox.complete(reference, "decline") is None
        assert sandbox.complete("sbx_missing", "success") is None
        with pytest.raises(KeyError):
            sandbox.complete(reference, "refund")
    assert len(merchant.requests) == 1
    assert sandbox.get(reference).status == "succeeded"  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("status_code", "delivered"), [(200, True), (204, True), (299, True), (300, False), (500, False)]
)
def test_delivery_succeeds_only_on_a_2xx_answer(db: Database, status_code: int, delivered: bool) -> None:
    merchant = Merchant(status_code)
    with httpx.Client(transport=httpx.MockTransport(merchant)) as client:
        sandbox = gateway(db, client)
        record = sandbox.get(start(sandbox))
        assert record is not None
        assert sandbox.deliver(record, event_id="evt_given") is delivered
    assert json.loads(merchant.requests[0].content)["event_id"] == "evt_given"


def test_a_lost_delivery_is_reported_not_raised(db: Database) -> None:
    merchant = Merchant(error=httpx.ConnectError("refused"))
    with httpx.Client(transport=httpx.MockTransport(merchant)) as client:
        sandbox = gateway(db, client)
        record = sandbox.get(start(sandbox))
        assert record is not None
        assert sandbox.deliver(record) is False
        assert not client.is_closed
    assert len(merchant.requests) == 1


class _Endpoint(BaseHTTPRequestHandler):
    received: ClassVar[list[tuple[str, dict[str, str], bytes]]] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["content-length"]))
        _Endpoint.received.append((self.path, dict(self.headers.items()), body))
        self.send_response(200)
        self.send_header("content-length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        pass


class _OwnClient(httpx.Client):
    """httpx's client, remembered so the test can see how the sandbox configured and left it."""

    made: ClassVar[list[httpx.Client]] = []

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        _OwnClient.made.append(self)


def test_without_a_client_of_the_service_the_sandbox_uses_its_own(
    db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(httpx, "Client", _OwnClient)
    _OwnClient.made.clear()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Endpoint)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    _Endpoint.received.clear()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/callback"
        sandbox = gateway(db)
        reference = start(sandbox, callback_url=url)
        assert sandbox.complete(reference, "success") is not None
        ((path, headers, body),) = _Endpoint.received
        assert path == "/callback" and json.loads(body)["status"] == "succeeded"
        # A merchant that never answers must not hold the payer's page: ten seconds, then closed.
        (own,) = _OwnClient.made
        assert own.timeout == httpx.Timeout(10) and own.is_closed
        sandbox.parse_callback(CallbackRequest("POST", headers, {}, body))
        # Nothing listens on a closed port: the delivery is lost, not raised.
        server.shutdown()
        server.server_close()
        record = sandbox.get(reference)
        assert record is not None and sandbox.deliver(record) is False
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
