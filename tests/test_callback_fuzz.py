"""Every callback route, whatever arrives: arbitrary bytes, header values (non-ASCII included), query strings, gateway
names and agencies, by GET and POST. Never a 5xx, and nothing stored for a message that was not verified."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select

from adapters import vietqr
from adapters.sandbox import SIGNATURE_HEADER, sign
from lephi.tables import metadata
from tests.conftest import Api, agency_api

NOTIFY_SECRET = "bank-notification-secret-0123456789"
GATEWAYS = f"""
[agencies."AGC-F".vietqr]
bank_bin = "970436"
account_number = "0011001234567"
account_name = "SO TU PHAP TINH DEMO"
reference_secret = "reference-secret-0123456789abcdef"
notification_secret = "{NOTIFY_SECRET}"
[agencies."AGC-F".vnpay]
tmn_code = "TEST_TMN_CODE"
hash_secret = "vnpay-hash-secret-0123456789"
[agencies."AGC-F".momo]
partner_code = "MOMO"
access_key = "F8BBA842ECF85"
secret_key = "K951B6PE1waDMi640xX08PD3vg6EkVlz"
endpoint = "https://momo.test"
[agencies."AGC-F".zalopay]
app_id = "2553"
key1 = "PcY4iZIKFCIdgZvA6ueMcMHHUbRLYjPL"
key2 = "kLtgPl8HHhfvMuDHPwKfgfsY4Ydm9eIz"
endpoint = "https://zalopay.test"
[agencies."AGC-F".stripe]
secret_key = "sk_test_fuzz"
publishable_key = "pk_test_fuzz"
webhook_secrets = ["whsec_test_0123456789"]
"""
# Tables an accepted callback writes to; an unverified one must leave them as they were.
WRITTEN = (
    "gateway_inbox",
    "bank_credit",
    "payment",
    "payment_event",
    "outbox",
    "webhook_message",
    "webhook_delivery",
    "sandbox_transaction",
)

GATEWAY_NAMES = st.one_of(
    st.sampled_from(["stripe", "vnpay", "momo", "zalopay", "vietqr", "sandbox"]),
    st.sampled_from(["nope", "STRIPE", "sandbox ", ""]),
    st.text(max_size=20),
)
AGENCIES = st.one_of(st.none(), st.sampled_from(["AGC-F", "AGC-NONE", "agc-f"]), st.text(max_size=60))
HEADER_NAMES = st.one_of(
    st.sampled_from(
        [
            "stripe-signature",
            "lephi-bank-signature",
            SIGNATURE_HEADER,
            "content-type",
            "content-length",
            "x-forwarded-for",
            "idempotency-key",
            "authorization",
        ]
    ),
    st.from_regex(r"[A-Za-z][A-Za-z0-9-]{0,20}", fullmatch=True),
)
# Any text a client can put on the wire (no CR, LF or NUL), sent as UTF-8: non-ASCII arrives as Latin-1 text.
HEADER_TEXT = st.text(st.characters(blacklist_characters="\r\n\x00", blacklist_categories=("Cs",)), max_size=80)
SIGNATURE_LIKE = st.builds(
    lambda t, v: f"t={t},v1={v}",
    st.one_of(st.just(str(int(time.time()))), st.text(max_size=12)),
    HEADER_TEXT,
)
HEADER_VALUES = st.one_of(HEADER_TEXT, SIGNATURE_LIKE).map(lambda text: text.encode("utf-8"))
QUERIES = st.lists(st.tuples(st.one_of(st.sampled_from(["vnp_SecureHash", "vnp_Amount"]), st.text()), st.text()))


@pytest.fixture
def fapi(database_url: str, tmp_path: Path) -> Iterator[Api]:
    with agency_api(
        database_url, tmp_path, "AGC-F", ["vietqr", "vnpay", "momo", "zalopay", "stripe", "sandbox"], GATEWAYS
    ) as api:
        yield api


def written(api: Api) -> dict[str, int]:
    tables = {t.name: t for t in metadata.sorted_tables if t.name in WRITTEN}
    assert len(tables) == len(WRITTEN)
    with api.ctx.db.read() as s:
        return {name: int(s.execute(select(func.count()).select_from(t)).scalar_one()) for name, t in tables.items()}


def _path(gateway: str, agency: str | None) -> str:
    path = f"/v1/gateways/{quote(gateway, safe='')}/callback"
    return path if agency is None else f"{path}/{quote(agency, safe='')}"


def _send(api: Api, method: str, path: str, query: list[tuple[str, str]], headers: Any, body: bytes) -> Any:
    r = api.client.request(method, path, params=query, headers=headers, content=body)
    assert r.status_code < 500, f"{method} {path} -> {r.status_code}: {r.text[:300]}"
    return r


@settings(max_examples=150, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(
    gateway=GATEWAY_NAMES,
    agency=AGENCIES,
    method=st.sampled_from(["GET", "POST"]),
    query=QUERIES,
    headers=st.lists(st.tuples(HEADER_NAMES, HEADER_VALUES), max_size=6),
    body=st.binary(max_size=2000),
)
def test_unverified_callbacks_never_fail_and_store_nothing(
    fapi: Api,
    gateway: str,
    agency: str | None,
    method: str,
    query: list[tuple[str, str]],
    headers: list[tuple[str, bytes]],
    body: bytes,
) -> None:
    before = written(fapi)
    _send(fapi, method, _path(gateway, agency), query, headers, body)
    assert written(fapi) == before


@settings(max_examples=60, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(
    route=st.sampled_from(
        [
            ("sandbox", None, SIGNATURE_HEADER, "dev-sandbox-secret"),
            ("sandbox", "AGC-F", SIGNATURE_HEADER, "dev-sandbox-secret"),
            ("vietqr", "AGC-F", vietqr.SIGNATURE_HEADER, NOTIFY_SECRET),
        ]
    ),
    body=st.one_of(
        st.binary(max_size=1000),
        st.dictionaries(st.sampled_from(["event_id", "transaction_id", "amount", "currency", "status"]), st.text()).map(
            lambda d: repr(d).encode()
        ),
    ),
)
def test_validly_signed_garbage_is_refused_without_a_server_error(
    fapi: Api, route: tuple[str, str | None, str, str], body: bytes
) -> None:
    gateway, agency, header, secret = route
    if gateway == "sandbox":
        secret = fapi.ctx.settings.sandbox_secret
    before = written(fapi)
    signature = sign(secret, body, int(time.time()))
    r = _send(fapi, "POST", _path(gateway, agency), [], {header: signature}, body)
    assert r.status_code == 401
    assert written(fapi) == before
