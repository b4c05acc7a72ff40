"""Card payments through the service against localstripe: the card page, server-side confirmation of the
PaymentMethod that Stripe.js creates in the browser, and the outcome taken from Stripe, not from the browser.

localstripe's stand-in Stripe.js cannot create PaymentMethods, so the payer's browser step is played here by
creating the PaymentMethod through localstripe's API, exactly what Stripe.js does."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.adapters.localstripe_server import LocalStripe, run_localstripe
from tests.conftest import Api, agency_api
from tests.factories import dossier_body, payment_body

VISA_OK, DECLINED, THREE_DS = "4242424242424242", "4000000000000341", "4000002500003155"


@pytest.fixture(scope="module")
def localstripe() -> Iterator[LocalStripe]:
    with run_localstripe() as server:
        yield server


@pytest.fixture
def card_api(database_url: str, tmp_path: Path, localstripe: LocalStripe) -> Iterator[Api]:
    gateways = f"""
[agencies."AGC-C".stripe]
secret_key = "{localstripe.secret_key}"
publishable_key = "{localstripe.publishable_key}"
webhook_secrets = ["whsec_test_0123456789"]
api_base = "{localstripe.url}"
js_url = "{localstripe.js_url}"
send_description = false
"""
    with agency_api(database_url, tmp_path, "AGC-C", ["stripe"], gateways) as api:
        yield api


def _payment_method(ls: LocalStripe, number: str) -> str:
    r = httpx.post(
        f"{ls.url}/v1/payment_methods",
        auth=(ls.secret_key, ""),
        data={
            "type": "card",
            "card[number]": number,
            "card[exp_month]": "12",
            "card[exp_year]": "2034",
            "card[cvc]": "123",
        },
    )
    assert r.status_code == 200, r.text
    return str(r.json()["id"])


def _start(api: Api) -> dict[str, Any]:
    code = api.post("/v1/dossiers", dossier_body()).json()["code"]
    r = api.post("/v1/payments", payment_body(code, method="stripe"))
    assert r.status_code == 201, r.text
    return dict(r.json())


def test_card_page_loads_stripe_js_with_the_publishable_key(card_api: Api, localstripe: LocalStripe) -> None:
    payment = _start(card_api)
    assert payment["next_url"] == f"http://testserver/pay/card/{payment['gateway_reference']}"
    page = card_api.client.get(payment["next_url"])
    assert page.status_code == 200 and localstripe.js_url in page.text and localstripe.publishable_key in page.text
    assert localstripe.secret_key not in page.text and "110.000" in page.text


def test_confirmed_card_succeeds_by_stripes_word(card_api: Api, localstripe: LocalStripe) -> None:
    payment = _start(card_api)
    r = card_api.client.post(
        f"/pay/card/{payment['gateway_reference']}/confirm",
        json={"payment_method": _payment_method(localstripe, VISA_OK)},
    )
    assert r.status_code == 200 and r.json()["payment_status"] == "succeeded", r.text
    assert r.json()["return_url"] == "https://portal.example.gov.vn/done"
    out = card_api.get(f"/v1/payments/{payment['id']}").json()
    assert out["status"] == "succeeded" and out["events"][-1]["kind"] == "gateway.status_query"
    refund = card_api.post(f"/v1/payments/{payment['id']}/refunds", {"amount": 10_000, "reason": "một phần"})
    assert refund.status_code == 201 and refund.json()["status"] == "succeeded"


def test_declined_card_fails_and_three_d_secure_waits(card_api: Api, localstripe: LocalStripe) -> None:
    declined = _start(card_api)
    r = card_api.client.post(
        f"/pay/card/{declined['gateway_reference']}/confirm",
        json={"payment_method": _payment_method(localstripe, DECLINED)},
    )
    assert r.json()["payment_status"] == "failed" and r.json()["error"]
    secure = _start(card_api)
    r = card_api.client.post(
        f"/pay/card/{secure['gateway_reference']}/confirm",
        json={"payment_method": _payment_method(localstripe, THREE_DS)},
    )
    assert r.json()["requires_action"] is True and r.json()["client_secret"].startswith(secure["gateway_reference"])
    assert card_api.get(f"/v1/payments/{secure['id']}").json()["status"] == "pending"


def test_confirm_refuses_what_is_not_a_payment_method(card_api: Api) -> None:
    payment = _start(card_api)
    r = card_api.client.post(f"/pay/card/{payment['gateway_reference']}/confirm", json={"payment_method": "tok_x"})
    assert r.status_code == 422
    assert card_api.client.post("/pay/card/pi_nope/confirm", json={"payment_method": "pm_x"}).status_code == 404
