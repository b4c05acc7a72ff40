"""Amounts in gateway answers and webhooks are read strictly: a string, a float, a boolean or an amount out of range
is never rounded into a number; a webhook with one is invalid, an API answer with one is a technical error."""

from __future__ import annotations

import hashlib
import hmac
import json
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
import respx

from adapters.base import CallbackRequest, GatewayContext, GatewayTechnicalError, InvalidCallback, StatusQuery
from adapters.money import MAX_AMOUNT, amount_from_json, amount_from_text
from adapters.stripe import StripeGateway

API = "https://stripe.test"
WHSEC = "whsec_amounts"
NOW = 1_760_000_000
BAD_JSON_AMOUNTS = ["150000", 150000.0, 150000.5, True, -150000, 2**63, MAX_AMOUNT + 1, None, [150000]]


def _gateway() -> StripeGateway:
    settings = {"secret_key": "sk_test_x", "publishable_key": "pk_test_x", "webhook_secrets": [WHSEC], "api_base": API}
    return StripeGateway(
        GatewayContext("stripe", "https://lephi.test", "cb", settings, http=httpx.Client()), clock=lambda: NOW
    )


def _intent(amount: Any) -> dict[str, Any]:
    return {
        "id": "pi_1",
        "object": "payment_intent",
        "amount": amount,
        "currency": "vnd",
        "status": "succeeded",
        "client_secret": "pi_1_secret",
        "metadata": {"merchant_reference": "pay_1"},
    }


@pytest.mark.parametrize("text", ["150000", "0"])
def test_the_money_helpers_take_plain_whole_numbers(text: str) -> None:
    assert amount_from_text(text, minimum=0) == int(text) == amount_from_json(int(text), minimum=0)


@pytest.mark.parametrize(
    "text",
    [
        "+150000",
        "-1",
        " 150000",
        "150000 ",
        "150.000",
        "150,000",
        "1e5",
        "0150000",
        "١٥٠٠٠٠",
        "150_000",
        "",
        str(MAX_AMOUNT + 1),
        "9" * 5000,
    ],
)
def test_the_text_helper_refuses_anything_but_digits_in_range(text: str) -> None:
    with pytest.raises(ValueError):
        amount_from_text(text)


@pytest.mark.parametrize("amount", BAD_JSON_AMOUNTS, ids=repr)
def test_a_stripe_webhook_with_a_loose_amount_is_invalid(amount: Any) -> None:
    body = json.dumps({"id": "evt_1", "type": "payment_intent.succeeded", "data": {"object": _intent(amount)}}).encode()
    mac = hmac.new(WHSEC.encode(), f"{NOW}.".encode() + body, hashlib.sha256).hexdigest()
    with pytest.raises(InvalidCallback):
        _gateway().parse_callback(CallbackRequest("POST", {"stripe-signature": f"t={NOW},v1={mac}"}, {}, body))


@pytest.mark.parametrize("amount", BAD_JSON_AMOUNTS, ids=repr)
@respx.mock
def test_a_stripe_answer_with_a_loose_amount_is_a_technical_error(amount: Any) -> None:
    respx.get(f"{API}/v1/payment_intents/pi_1").mock(return_value=httpx.Response(200, json=_intent(amount)))
    gateway = _gateway()
    with pytest.raises(GatewayTechnicalError):
        gateway.card_page("pi_1")
    with pytest.raises(GatewayTechnicalError):
        gateway.query_status(StatusQuery("pay_1", "pi_1", "key", 150000, datetime.now(UTC)))
