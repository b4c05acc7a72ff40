"""A gateway adapter from another package, found through the ``lephi.gateways`` entry point of the installed
example package (examples/acme-gateway), and a payment through it end to end."""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Iterator
from importlib.metadata import entry_points
from pathlib import Path

import pytest

from adapters.registry import ENTRY_POINT_GROUP, discover
from tests.conftest import Api, agency_api
from tests.factories import dossier_body, payment_body

SECRET = "acme-merchant-secret"


def test_the_installed_package_is_discovered() -> None:
    assert "acme" in {e.name for e in entry_points(group=ENTRY_POINT_GROUP)}
    assert discover()["acme"].__module__ == "acme_lephi_gateway"


@pytest.fixture
def acme_api(database_url: str, tmp_path: Path) -> Iterator[Api]:
    gateways = f'[agencies."AGC-X".acme]\nsecret = "{SECRET}"\n'
    with agency_api(database_url, tmp_path, "AGC-X", ["acme"], gateways) as api:
        yield api


def test_a_payment_through_the_third_party_adapter(acme_api: Api) -> None:
    code = acme_api.post("/v1/dossiers", dossier_body()).json()["code"]
    payment = acme_api.post("/v1/payments", payment_body(code, method="acme")).json()
    assert payment["status"] == "pending" and payment["next_url"].startswith("https://pay.acme.example/checkout")
    assert "callback%2FAGC-X" in payment["next_url"]
    body = json.dumps(
        {"id": "n1", "order": payment["gateway_reference"], "status": "paid", "amount": payment["amount"]}
    ).encode()
    signature = hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
    r = acme_api.client.post("/v1/gateways/acme/callback/AGC-X", content=body, headers={"X-Acme-Signature": signature})
    assert r.status_code == 200 and r.text == "OK"
    assert acme_api.get(f"/v1/payments/{payment['id']}").json()["status"] == "succeeded"
    forged = acme_api.client.post(
        "/v1/gateways/acme/callback/AGC-X", content=body, headers={"X-Acme-Signature": "0" * 64}
    )
    assert forged.status_code == 401
