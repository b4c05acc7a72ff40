"""The payment gateways page: settings shown as set or missing (and where from) but never their values, turning a
method on or off for the agency (version bumped, audited, refused when not configured or the last one), the
connection test against localstripe, an unreachable address and a silent one, roles, isolation, CSRF and hostile
forms."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlmodel import select

from console.gateways import probe
from lephi.container import Container
from lephi.settings import Settings
from payments.agency.models import Agency
from tests.adapters.localstripe_server import LocalStripe, run_localstripe
from tests.conftest import make_settings
from tests.console.conftest import MakeStaff, count, csrf_of
from tests.console.test_admin_pages import ROLES, audit_rows, html, sign_in

SECRETS = {
    "CCERT_STRIPE_SECRET": "sk_test_lephi_localstripe",
    "CCERT_STRIPE_WEBHOOK": "whsec_ccert_webhook_value_1234",
    "CCERT_VNPAY_SECRET": "VNPAYSECRETVALUEccert0123456789",
    "CCERT_STRIPE_SECRET_B": "sk_test_agency_b_value_98765",
}
LITERALS = ("pk_test_ccert_publishable_literal", "CCERTTMN")
READERS = {"province_admin", "agency_admin", "finance", "viewer"}
ADMINS = {"province_admin", "agency_admin"}


@pytest.fixture(scope="module")
def localstripe() -> Iterator[LocalStripe]:
    with run_localstripe() as server:
        yield server


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def settings(database_url: str, tmp_path: Path, localstripe: LocalStripe, monkeypatch: pytest.MonkeyPatch) -> Settings:
    for name, value in SECRETS.items():
        monkeypatch.setenv(name, value)
    unreachable = f"http://127.0.0.1:{closed_port()}"
    path = tmp_path / "gateways.toml"
    path.write_text(
        f"""
[gateways.stripe]
api_base = "{localstripe.url}"
send_description = false

[agencies."AGC-A".stripe]
secret_key = "${{CCERT_STRIPE_SECRET}}"
publishable_key = "{LITERALS[0]}"
webhook_secrets = ["${{CCERT_STRIPE_WEBHOOK}}"]

[agencies."AGC-A".vnpay]
tmn_code = "{LITERALS[1]}"
hash_secret = "${{CCERT_VNPAY_SECRET}}"
api_url = "{unreachable}/merchant_webapi/api/transaction"

[agencies."AGC-B".stripe]
secret_key = "${{CCERT_STRIPE_SECRET_B}}"
publishable_key = "pk_test_b"
webhook_secrets = ["whsec_b_literal"]
api_base = "{unreachable}"
"""
    )
    return make_settings(database_url, tmp_path, gateways_file=path)


def page(client: TestClient, agency: str | None = None, lang: str = "en") -> Any:
    return client.get(f"/console/gateways?lang={lang}" + (f"&agency={agency}" if agency else ""))


def post(client: TestClient, path: str, agency: str = "AGC-A", csrf: str | None = None, **fields: str) -> Any:
    token = csrf if csrf is not None else csrf_of(page(client, agency).text)
    data = {"csrf": token, "lang": "en", "agency": agency, **fields}
    return client.post(f"/console/gateways/{path}", data=data, follow_redirects=False)


def agency(ctx: Container, code: str = "AGC-A") -> tuple[list[str], int]:
    with ctx.db.read() as s:
        row = s.exec(select(Agency).where(Agency.code == code)).one()
        return list(row.payment_methods), row.version


def no_secret_in(text: str) -> None:
    for value in (*SECRETS.values(), *LITERALS, "whsec_b_literal"):
        assert value not in text


@pytest.mark.parametrize("role", ROLES)
def test_roles_see_settings_states_but_never_values(
    client: TestClient, ctx: Container, make_staff: MakeStaff, agencies: dict[str, str], role: str
) -> None:
    sign_in(client, make_staff, role)
    response = page(client, "AGC-A" if role == "province_admin" else None)
    if role not in READERS:
        html(response, 403)
        return
    html(response, 200)
    no_secret_in(response.text)
    assert "set (from ${CCERT_STRIPE_SECRET})" in response.text
    assert "set (from ${CCERT_STRIPE_WEBHOOK})" in response.text
    assert "set (in the gateways file)" in response.text  # the publishable key, a literal
    assert "missing" in response.text  # momo and vietqr have nothing for AGC-A
    assert "set (built in, from LEPHI_SANDBOX_SECRET)" in response.text
    assert 'href="/console/gateways?lang=en"' in response.text
    assert ('action="/console/gateways/methods"' in response.text) == (role in ADMINS)
    if role in ADMINS:
        return
    csrf = csrf_of(response.text)
    before = agency(ctx), count(ctx, "audit_log")
    html(post(client, "methods", csrf=csrf, method="stripe", action="enable"), 403)
    html(post(client, "test", csrf=csrf, gateway="stripe"), 403)
    assert (agency(ctx), count(ctx, "audit_log")) == before


def test_turning_methods_on_and_off_bumps_the_version_and_is_audited(
    client: TestClient, ctx: Container, make_staff: MakeStaff, agencies: dict[str, str]
) -> None:
    sign_in(client, make_staff, "agency_admin")
    methods, version = agency(ctx)
    assert methods == ["sandbox"]
    response = post(client, "methods", method="stripe", action="enable")
    assert response.status_code == 303, response.text[:300]
    shown = client.get(response.headers["location"])
    assert "payment methods are saved" in shown.text
    no_secret_in(shown.text)
    assert agency(ctx) == (["sandbox", "stripe"], version + 1)
    (row,) = audit_rows(ctx, "agency.payment_methods_changed")
    assert row.before == {"payment_methods": ["sandbox"]} and row.after == {"payment_methods": ["sandbox", "stripe"]}
    assert row.target == "AGC-A" and row.agency_id == agencies["AGC-A"]

    # Enabling what is on, or disabling what is off, changes and records nothing.
    assert post(client, "methods", method="stripe", action="enable").status_code == 303
    assert post(client, "methods", method="momo", action="disable").status_code == 303
    assert agency(ctx) == (["sandbox", "stripe"], version + 1)

    before = agency(ctx), count(ctx, "audit_log")
    refused = post(client, "methods", method="momo", action="enable")
    html(refused, 400)
    assert "momo cannot be turned on" in refused.text
    assert (agency(ctx), count(ctx, "audit_log")) == before

    assert post(client, "methods", method="sandbox", action="disable").status_code == 303
    assert agency(ctx) == (["stripe"], version + 2)
    last = post(client, "methods", method="stripe", action="disable")
    html(last, 400)
    assert "last method" in last.text and agency(ctx) == (["stripe"], version + 2)


def test_another_agency_is_404_and_hostile_forms_change_nothing(
    client: TestClient, ctx: Container, make_staff: MakeStaff, agencies: dict[str, str]
) -> None:
    sign_in(client, make_staff, "agency_admin")
    html(page(client, "AGC-B"), 404)
    csrf = csrf_of(page(client).text)
    before = agency(ctx), agency(ctx, "AGC-B"), count(ctx, "audit_log")
    html(post(client, "methods", agency="AGC-B", csrf=csrf, method="stripe", action="enable"), 404)
    html(post(client, "test", agency="AGC-B", csrf=csrf, gateway="stripe"), 404)
    html(post(client, "methods", csrf="", method="stripe", action="enable"), 403)
    html(post(client, "methods", csrf="wrong", method="stripe", action="enable"), 403)
    html(post(client, "methods", csrf=csrf, method="paypal", action="enable"), 400)
    html(post(client, "methods", csrf=csrf, method="stripe", action="drop"), 400)
    html(post(client, "methods", csrf=csrf, method="stripe\x00", action="enable"), 400)
    html(post(client, "methods", csrf=csrf, method="s" * 5000, action="enable"), 400)
    html(post(client, "test", csrf=csrf, gateway="../../etc"), 400)
    html(post(client, "methods", csrf=csrf, method="stripe", action="enable", lang="xx"), 400)
    files = {"method": ("m.txt", b"stripe")}
    data = {"csrf": csrf, "lang": "en", "agency": "AGC-A", "action": "enable"}
    html(client.post("/console/gateways/methods", data=data, files=files), 400)
    assert (agency(ctx), agency(ctx, "AGC-B"), count(ctx, "audit_log")) == before

    sign_in(client, make_staff, "province_admin")
    listing = page(client)
    assert "agency=AGC-A" in listing.text and "agency=AGC-B" in listing.text
    b = page(client, "AGC-B")
    html(b, 200)
    no_secret_in(b.text)


def test_connection_tests_say_what_happened(
    client: TestClient, ctx: Container, make_staff: MakeStaff, agencies: dict[str, str]
) -> None:
    sign_in(client, make_staff, "province_admin")

    def tested(gateway: str, code: str = "AGC-A") -> str:
        started = time.monotonic()
        response = post(client, "test", agency=code, gateway=gateway)
        html(response, 200)
        assert time.monotonic() - started < probe.TIMEOUT_SECONDS + 3
        no_secret_in(response.text)
        return str(response.text)

    assert "stripe: connected, the gateway answered." in tested("stripe")
    assert "stripe: CANNOT REACH the gateway (127.0.0.1:" in tested("stripe", "AGC-B")
    assert "vnpay: CANNOT REACH the gateway" in tested("vnpay")
    assert "sandbox: the sandbox runs inside this service" in tested("sandbox")
    assert "momo: a required setting is missing" in tested("momo")
    assert "vietqr: this gateway has no status query" in tested("vietqr")


def test_a_gateway_that_never_answers_times_out_with_a_clear_result(
    client: TestClient, ctx: Container, make_staff: MakeStaff, agencies: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(probe, "TIMEOUT_SECONDS", 1.0)
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)  # accepts connections (the kernel does) and never answers
        port = silent.getsockname()[1]
        ctx.gateway_config.agencies["AGC-A"]["vnpay"]["api_url"] = f"http://127.0.0.1:{port}/api"
        sign_in(client, make_staff, "agency_admin")
        started = time.monotonic()
        response = post(client, "test", gateway="vnpay")
        assert time.monotonic() - started < 3
    html(response, 200)
    assert "vnpay: CANNOT REACH the gateway: no answer within 1 seconds." in response.text
