"""The pages' defences: security headers and a strict Content-Security-Policy on every HTML page, CSRF tokens and
Origin checks on every form that changes something, /docs from local assets only, and client addresses that a
spoofed X-Forwarded-For cannot change (the public lookup's rate limit)."""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Iterator
from ipaddress import ip_network
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from fastapi.testclient import TestClient
from sqlalchemy import func
from sqlmodel import select

from invoices.models import Document
from lephi.app import create_app
from lephi.cli import server_config
from lephi.container import build_container
from lephi.jobs import HANDLERS
from payments.core.context import AppContext
from payments.core.db import Database, make_engine
from payments.core.proxies import client_address
from payments.outbox.worker import Worker
from payments.payment.models import Payment
from tests.adapters.localstripe_server import LocalStripe, run_localstripe
from tests.conftest import Api, _free_port, agency_api, make_settings
from tests.factories import dossier_body, payment_body, sandbox_outcome, seed_agency

CSRF = re.compile(r'name="csrf" value="([^"]+)"')
FORM_KEY = re.compile(r'name="form_key" value="([^"]+)"')


@pytest.fixture(scope="module")
def localstripe() -> Iterator[LocalStripe]:
    with run_localstripe() as server:
        yield server


@pytest.fixture
def pages_api(database_url: str, tmp_path: Path, localstripe: LocalStripe) -> Iterator[Api]:
    """An agency with the gateways that have pages of their own besides the sandbox: VietQR and card."""
    gateways = f"""
[agencies."AGC-P".vietqr]
bank_bin = "970436"
account_number = "0011001234567"
account_name = "SO TU PHAP TINH DEMO"
reference_secret = "reference-secret-0123456789abcdef"
notification_secret = "notification-secret-0123456789"

[agencies."AGC-P".stripe]
secret_key = "{localstripe.secret_key}"
publishable_key = "{localstripe.publishable_key}"
webhook_secrets = ["whsec_test_0123456789"]
api_base = "{localstripe.url}"
js_url = "{localstripe.js_url}"
send_description = false
"""
    with agency_api(database_url, tmp_path, "AGC-P", ["vietqr", "stripe"], gateways) as api:
        yield api


def _policy(response: Any) -> dict[str, list[str]]:
    header = response.headers.get("content-security-policy", "")
    policy: dict[str, list[str]] = {}
    for directive in filter(None, (d.strip() for d in header.split(";"))):
        name, *sources = directive.split()
        policy[name] = sources
    return policy


def _local(url: str) -> str:
    return url.replace("http://testserver", "")


def _payment(api: Api, method: str) -> dict[str, Any]:
    code = api.post("/v1/dossiers", dossier_body()).json()["code"]
    r = api.post("/v1/payments", payment_body(code, method=method))
    assert r.status_code == 201, r.text
    return dict(r.json())


def _issued(api: Api) -> Document:
    payment = _payment(api, "sandbox")
    sandbox_outcome(api.client, api.ctx.settings, payment["gateway_reference"], "success")
    Worker(api.ctx, HANDLERS).run_once()
    with api.ctx.db.read() as s:
        return s.exec(select(Document).where(Document.payment_id == payment["id"])).one()


def _pages(api: Api, pages_api: Api) -> dict[str, Any]:
    """Every kind of HTML page the service answers, each fetched once."""
    dossier = api.post("/v1/dossiers", dossier_body()).json()
    sandbox = _payment(api, "sandbox")
    doc = _issued(api)
    return {
        "payer": api.client.get(_local(dossier["pay_url"])),
        "sandbox": api.client.get(_local(sandbox["next_url"])),
        "qr": pages_api.client.get(_local(_payment(pages_api, "vietqr")["next_url"])),
        "card": pages_api.client.get(_local(_payment(pages_api, "stripe")["next_url"])),
        "lookup form": api.client.get("/r"),
        "lookup": api.client.get(f"/r/{doc.lookup_code}"),
        "lookup not found": api.client.get("/r/AAAAAAAAAAAA"),
        "receipt html": api.get(f"/v1/receipts/{doc.id}.html"),
        "form refused": api.client.post(_local(dossier["pay_url"]), data={"method": "sandbox", "form_key": "k" * 16}),
    }


def test_every_html_page_sends_a_strict_policy_and_the_security_headers(api: Api, pages_api: Api) -> None:
    for name, page in _pages(api, pages_api).items():
        assert page.headers["content-type"].startswith("text/html"), name
        policy = _policy(page)
        assert policy["default-src"] == ["'none'"], name
        assert policy["frame-ancestors"] == ["'none'"], name
        assert "'unsafe-inline'" not in page.headers["content-security-policy"], name
        assert "'unsafe-eval'" not in page.headers["content-security-policy"], name
        assert page.headers["x-content-type-options"] == "nosniff", name
        assert page.headers["referrer-policy"] == "no-referrer", name
        assert page.headers["cache-control"] == "no-store", name
        assert "strict-transport-security" not in page.headers, name  # the public URL is http here
        # Each inline script and style carries this response's nonce, and nothing else is inline.
        nonces = [s[len("'nonce-") : -1] for s in policy["script-src"] if s.startswith("'nonce-")]
        assert len(nonces) == 1 and f"'nonce-{nonces[0]}'" in policy["style-src"], name
        inline = re.findall(r"<(?:script|style)\b([^>]*)>", page.text)
        assert inline, name
        for attributes in inline:
            assert f'nonce="{nonces[0]}"' in attributes, (name, attributes)
        assert not re.search(r"<[^>]+\sstyle=", page.text), name  # style attributes would need 'unsafe-inline'


def test_stripe_js_is_allowed_on_the_card_page_only(api: Api, pages_api: Api, localstripe: LocalStripe) -> None:
    pages = _pages(api, pages_api)
    stripe_origin = localstripe.url.rstrip("/")
    card = _policy(pages["card"])
    assert stripe_origin in card["script-src"] and stripe_origin in card["frame-src"]
    assert stripe_origin in card["connect-src"]
    for name, page in pages.items():
        if name != "card":
            assert stripe_origin not in page.headers["content-security-policy"], name
            assert _policy(page)["script-src"] == [s for s in _policy(page)["script-src"] if s.startswith("'nonce-")]


def test_the_nonce_is_new_for_every_response(api: Api) -> None:
    first, second = api.client.get("/r"), api.client.get("/r")
    assert _policy(first)["script-src"] != _policy(second)["script-src"]


def test_hsts_when_the_public_url_is_https(database_url: str, tmp_path: Path) -> None:
    settings = make_settings(database_url, tmp_path, public_url="https://lephi.example.gov.vn")
    with TestClient(create_app(settings), base_url="https://lephi.example.gov.vn") as client:
        page = client.get("/r")
        health = client.get("/healthz")
    assert page.headers["strict-transport-security"].startswith("max-age=")
    assert health.headers["strict-transport-security"].startswith("max-age=")
    assert health.headers["x-content-type-options"] == "nosniff"
    assert "content-security-policy" not in health.headers  # JSON, not a page


# --- CSRF and Origin on the forms that change something -------------------------------------------------------------


def _payments(api: Api) -> int:
    with api.ctx.db.read() as s:
        return int(s.exec(select(func.count()).select_from(Payment)).one())


def _pay_form(api: Api, code: str) -> tuple[str, dict[str, str]]:
    url = _local(api.post("/v1/dossiers", dossier_body(code)).json()["pay_url"])
    page = api.client.get(url)
    key, token = FORM_KEY.search(page.text), CSRF.search(page.text)
    assert key and token
    return url, {"method": "sandbox", "form_key": key.group(1), "csrf": token.group(1)}


def test_pay_form_without_its_token_is_refused_with_a_page_and_starts_no_payment(api: Api) -> None:
    url, form = _pay_form(api, "HS-CSRF-1")
    missing = api.client.post(url, data={k: v for k, v in form.items() if k != "csrf"}, follow_redirects=False)
    forged = api.client.post(url, data={**form, "csrf": "0" * 64}, follow_redirects=False)
    english = api.client.post(url + "?lang=en", data={**form, "csrf": "0" * 64}, follow_redirects=False)
    for refused in (missing, forged, english):
        assert refused.status_code == 403 and refused.headers["content-type"].startswith("text/html")
    assert "Biểu mẫu đã hết hạn" in missing.text and "has expired" in english.text
    assert _payments(api) == 0
    assert api.client.post(url, data=form, follow_redirects=False).status_code == 303
    assert _payments(api) == 1


def test_a_token_is_bound_to_its_page_and_to_the_browser(api: Api) -> None:
    url_a, form_a = _pay_form(api, "HS-CSRF-A")
    url_b, _ = _pay_form(api, "HS-CSRF-B")
    # Dossier A's token does not pay dossier B.
    assert api.client.post(url_b, data=form_a, follow_redirects=False).status_code == 403
    # Another browser (no cookie of ours) cannot replay a token it was shown.
    with TestClient(api.client.app, raise_server_exceptions=False) as other:
        assert other.post(url_a, data=form_a, follow_redirects=False).status_code == 403
    assert _payments(api) == 0


@pytest.mark.parametrize(
    "headers",
    [
        {"Origin": "https://attacker.example"},
        {"Origin": "http://testserver.attacker.example"},
        {"Origin": "null", "Sec-Fetch-Site": "cross-site"},
        {"Origin": "http://testserver", "Sec-Fetch-Site": "same-site"},
    ],
)
def test_a_submission_from_another_origin_is_refused(api: Api, headers: dict[str, str]) -> None:
    url, form = _pay_form(api, "HS-ORIGIN")
    refused = api.client.post(url, data=form, headers=headers, follow_redirects=False)
    assert refused.status_code == 403 and "Biểu mẫu" in refused.text
    assert _payments(api) == 0
    # What our own page sends: under Referrer-Policy no-referrer a browser's Origin is "null".
    ours = {"Origin": "null", "Sec-Fetch-Site": "same-origin"}
    assert api.client.post(url, data=form, headers=ours, follow_redirects=False).status_code == 303


def test_sandbox_outcome_form_needs_its_token(api: Api) -> None:
    payment = api.post("/v1/payments", payment_body(api.post("/v1/dossiers", dossier_body()).json()["code"])).json()
    url = _local(payment["next_url"])
    refused = api.client.post(url, data={"outcome": "success"}, follow_redirects=False)
    assert refused.status_code == 403 and refused.headers["content-type"].startswith("text/html")
    assert api.get(f"/v1/payments/{payment['id']}").json()["status"] == "pending"
    token = CSRF.search(api.client.get(url).text)
    assert token
    crossed = api.client.post(
        url, data={"outcome": "success", "csrf": token.group(1)}, headers={"Origin": "https://evil.example"}
    )
    assert crossed.status_code == 403
    done = api.client.post(url, data={"outcome": "success", "csrf": token.group(1)}, follow_redirects=False)
    assert done.status_code == 303
    assert api.get(f"/v1/payments/{payment['id']}").json()["status"] == "succeeded"


def test_card_confirmation_from_another_origin_is_refused(pages_api: Api) -> None:
    payment = _payment(pages_api, "stripe")
    r = pages_api.client.post(
        f"/pay/card/{payment['gateway_reference']}/confirm",
        json={"payment_method": "pm_card_visa"},
        headers={"Origin": "https://attacker.example"},
    )
    assert r.status_code == 403 and r.json()["code"] == "foreign_origin"
    assert pages_api.get(f"/v1/payments/{payment['id']}").json()["status"] == "pending"


# --- /docs ----------------------------------------------------------------------------------------------------------


def test_docs_load_nothing_from_another_origin(api: Api) -> None:
    page = api.client.get("/docs")
    assert page.status_code == 200 and "SwaggerUIBundle" in page.text
    urls = re.findall(r"""(?:src|href)=["']([^"']+)""", page.text)
    assert urls and all(u.startswith("/") and not u.startswith("//") for u in urls), urls
    assert "validatorUrl: null" in page.text  # Swagger UI's default badge comes from a public validator
    policy = _policy(page)
    for sources in policy.values():
        assert all(s.startswith("'") or s == "data:" for s in sources), policy
    for url in urls:
        asset = api.client.get(url)
        assert asset.status_code == 200 and asset.content, url
    assert api.client.get("/docs/assets/redoc.standalone.js").status_code == 404  # only what the page loads


# --- client addresses behind proxies --------------------------------------------------------------------------------

PROXIES = [ip_network("10.0.0.0/8"), ip_network("::1/128")]


@pytest.mark.parametrize(
    ("peer", "forwarded", "client"),
    [
        ("203.0.113.9", "198.51.100.1", "203.0.113.9"),  # not a proxy of ours: its header is ignored
        ("10.0.0.2", "198.51.100.1", "198.51.100.1"),
        ("10.0.0.2", "1.2.3.4, 198.51.100.1", "198.51.100.1"),  # the client wrote 1.2.3.4; the proxy saw .1
        ("10.0.0.2", "1.2.3.4, 198.51.100.1, 10.0.0.7", "198.51.100.1"),  # two proxies of ours
        ("10.0.0.2", "10.0.0.8", "10.0.0.8"),  # from inside: every hop is ours
        ("10.0.0.2", None, "10.0.0.2"),
        ("::1", "2001:db8::5", "2001:db8::5"),
        ("::ffff:10.0.0.2", "198.51.100.1", "198.51.100.1"),
    ],
)
def test_client_address_is_the_right_most_untrusted_hop(peer: str, forwarded: str | None, client: str) -> None:
    assert client_address(peer, forwarded, PROXIES) == client
    assert client_address(peer, forwarded, []) == peer  # no proxy configured: the peer, always


def _lookups(client: TestClient, forwarded: list[str]) -> list[int]:
    return [client.get("/r/AAAAAAAAAAAA", headers={"X-Forwarded-For": f}).status_code for f in forwarded]


def _lookup_client(database_url: str, tmp_path: Path, peer: str, proxies: list[str]) -> TestClient:
    settings = make_settings(database_url, tmp_path, lookup_rate_per_minute=2, trusted_proxies=proxies)
    return TestClient(create_app(settings), client=(peer, 40000), raise_server_exceptions=False)


def test_spoofed_forwarded_for_from_an_untrusted_peer_does_not_reset_the_lookup_limit(
    database_url: str, tmp_path: Path
) -> None:
    with _lookup_client(database_url, tmp_path, "203.0.113.9", ["10.0.0.0/8"]) as client:
        statuses = _lookups(client, [f"198.51.100.{i}" for i in range(5)])
    assert statuses == [404, 404, 429, 429, 429]


def test_forwarded_for_from_a_trusted_proxy_names_the_client(database_url: str, tmp_path: Path) -> None:
    with _lookup_client(database_url, tmp_path, "10.0.0.2", ["10.0.0.0/8"]) as client:
        # Two clients behind the proxy each get their own limit, however they start the header themselves.
        first = _lookups(client, ["6.6.6.6, 198.51.100.1", "7.7.7.7, 198.51.100.1", "198.51.100.1"])
        second = _lookups(client, ["198.51.100.2", "198.51.100.2"])
    assert first == [404, 404, 429]
    assert second == [404, 404]


@pytest.fixture
def served_ctx(database_url: str, tmp_path: Path) -> Iterator[tuple[str, AppContext]]:
    """The app as `lephi serve` runs it (uvicorn's configuration from lephi.cli), with no trusted proxy."""
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    settings = make_settings(database_url, tmp_path, public_url=url, lookup_rate_per_minute=2)
    ctx = build_container(settings, Database(make_engine(settings.effective_database_url, settings)))
    with ctx.db.write() as s:
        seed_agency(s, "AGC-S")
    server = uvicorn.Server(server_config(create_app(settings, ctx), "127.0.0.1", port))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 15
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    yield url, ctx
    server.should_exit = True
    thread.join(10)
    ctx.close()


def test_the_server_does_not_believe_forwarded_headers_from_localhost_either(served_ctx: tuple[str, Any]) -> None:
    """uvicorn by itself trusts X-Forwarded-For from 127.0.0.1; `serve` leaves that to LEPHI_TRUSTED_PROXIES."""
    url, _ctx = served_ctx
    statuses = [
        httpx.get(f"{url}/r/AAAAAAAAAAAA", headers={"X-Forwarded-For": f"198.51.100.{i}"}).status_code for i in range(4)
    ]
    assert statuses == [404, 404, 429, 429]
