"""Where webhooks may go: client endpoint URLs must not reach the service's own network (server-side request forgery).

Checked at registration (every notation of every refused address, names that resolve to one, in development-like and
production settings) and at each delivery, after resolving the name, with the connection made to the checked address.
DNS is played by replacing ``targets.resolve``; the receivers are real HTTP and HTTPS servers on loopback.
"""

from __future__ import annotations

import contextlib
import dataclasses
import ipaddress
import json
import socket
import ssl
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError
from sqlmodel import func, select

from lephi.jobs import HANDLERS
from lephi.settings import Settings
from payments.core.config import Environment
from payments.core.errors import ValidationFailed
from payments.outbox.worker import Worker
from payments.webhooks import targets
from payments.webhooks.models import DeliveryStatus, WebhookDelivery, WebhookEndpoint, WebhookMessage
from payments.webhooks.service import check_url, emit
from tests.conftest import Api

# Reserved for testing (RFC 6761): it never resolves in real DNS, so a request that arrives went to the checked address.
NAME = "hooks.lephi.test"
PUBLIC = "8.8.8.8"
MANAGER = ["webhooks:write"]

HOSTILE_HOSTS = [
    "127.0.0.1",
    "127.0.0.1:5432",
    "169.254.169.254",
    "[::1]",
    "0.0.0.0",
    "10.0.0.1",
    "2130706433",
    "0x7f.1",
    "0x7f000001",
    "0177.0.0.1",
    "017700000001",
    "127.1",
    "127.0.0.1.",
    "[::ffff:127.0.0.1]",
    "[::ffff:a9fe:a9fe]",
    "[::127.0.0.1]",
    "[::ffff:0:7f00:1]",
    "[64:ff9b::7f00:1]",
    "[64:ff9b::169.254.169.254]",
    "[64:ff9b:1::1]",
    "[2002:7f00:1::]",
    "[2001:0:4136:e378:8000:63bf:80ff:fffe]",
    "[fe80::1]",
    "[fe80::1%25eth0]",
    "[fc00::1]",
    "[fd00:ec2::254]",
    "[fec0::1]",
    "[::]",
    "100.64.0.1",
    "100.100.100.200",
    "172.16.0.1",
    "192.168.1.1",
    "198.18.0.1",
    "192.0.0.1",
    "192.0.2.1",
    "[2001:db8::1]",
    "224.0.0.1",
    "[ff02::1]",
    "240.0.0.1",
    "255.255.255.255",
    "0.1.2.3",
    "1.2.3.4.5",
    "metadata.google.internal",
    "metadata.google.internal.",
    "METADATA.Google.Internal",
    "metadata",
    "metadata.goog",
    "instance-data",
    "localhost",
    "localhost.",
    "api.localhost",
    "\uff4c\uff4f\uff43\uff41\uff4c\uff48\uff4f\uff53\uff54",  # fullwidth "localhost"
    "\uff11\uff12\uff17.0.0.1",  # fullwidth digits
    "127\u30020\u30020\u30021",  # ideographic full stops
    "db.internal",
    "printer.local",
    "router.lan",
    "postgres",
    "8.8.8.8:22",
]


@dataclass
class FakeDns:
    answers: dict[str, list[str]] = field(default_factory=dict)
    asked: list[str] = field(default_factory=list)

    def resolve(self, name: str, port: int) -> list[targets.IPAddress]:
        self.asked.append(name)
        if name not in self.answers:
            raise targets.Unresolvable(name)
        return [ipaddress.ip_address(a) for a in self.answers[name]]


@pytest.fixture
def dns(monkeypatch: pytest.MonkeyPatch) -> FakeDns:
    fake = FakeDns()
    monkeypatch.setattr(targets, "resolve", fake.resolve)
    return fake


@dataclass
class Receiver:
    port: int = 0
    requests: list[dict[str, str]] = field(default_factory=list)
    server_names: list[str | None] = field(default_factory=list)
    statuses: list[int] = field(default_factory=list)


def _serve(tls: ssl.SSLContext | None = None) -> Iterator[Receiver]:
    state = Receiver()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers["content-length"]))
            state.requests.append({k.lower(): v for k, v in self.headers.items()})
            self.send_response(state.statuses.pop(0) if state.statuses else 204)
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    if tls is not None:
        tls.sni_callback = lambda sock, name, ctx: state.server_names.append(name)
        server.socket = tls.wrap_socket(server.socket, server_side=True)
    state.port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield state
    server.shutdown()
    server.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    yield from _serve()


def _as(api: Api) -> dict[str, str]:
    return {"Authorization": f"Bearer {api.new_key(MANAGER)}"}


def _register(api: Api, url: str) -> Any:
    return api.post("/v1/webhook-endpoints", {"url": url, "event_types": ["payment.succeeded"]}, headers=_as(api))


def _allow(api: Api, monkeypatch: pytest.MonkeyPatch, hosts: list[str], ports: list[int] | None = None) -> None:
    monkeypatch.setattr(api.ctx.settings, "webhook_allowed_private_hosts", hosts)
    monkeypatch.setattr(api.ctx.settings, "webhook_allowed_ports", ports or [])
    monkeypatch.setattr(api.ctx.settings, "webhook_retry_schedule_seconds", [3600])


def _production(api: Api, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(api.ctx.settings, "env", Environment.production)


def _endpoints(api: Api) -> int:
    with api.ctx.db.read() as s:
        return int(s.exec(select(func.count()).select_from(WebhookEndpoint)).one())


def _deliver_one(api: Api) -> WebhookDelivery:
    with api.ctx.db.write() as s:
        emit(s, api.agency_id, "payment.succeeded", {"payment_id": "pay_1"})
    worker = Worker(api.ctx, HANDLERS)
    for _ in range(3):
        worker.run_once()
    with api.ctx.db.read() as s:
        (delivery,) = s.exec(select(WebhookDelivery)).all()
    return delivery


def _shown(api: Api) -> list[str | None]:
    return [d["last_error"] for d in api.get("/v1/webhook-deliveries", headers=_as(api)).json()["data"]]


def _assert_refused(r: Any) -> None:
    assert r.status_code == 422, r.text
    assert r.headers["content-type"] == "application/problem+json"
    assert "refused" in r.json()["detail"] or "cannot be read" in r.json()["detail"], r.json()


# Registration


@pytest.mark.parametrize("env", ["test", "production"])
def test_a_url_naming_a_refused_address_or_name_is_refused_and_stores_nothing(
    api: Api, dns: FakeDns, monkeypatch: pytest.MonkeyPatch, env: str
) -> None:
    # One service for the whole matrix: each host is its own request, and every miss is reported at once.
    if env == "production":
        _production(api, monkeypatch)
    accepted = []
    for host in HOSTILE_HOSTS:
        for scheme in ("https", "http") if env == "test" else ("https",):
            r = _register(api, f"{scheme}://{host}/lephi/events")
            try:
                _assert_refused(r)
            except AssertionError:
                accepted.append(f"{scheme}://{host}: {r.status_code} {r.text[:200]}")
    assert not accepted, "\n".join(accepted)
    assert _endpoints(api) == 0


@pytest.mark.parametrize(
    "answers",
    [["127.0.0.1"], ["93.184.215.14", "10.0.0.1"], ["169.254.169.254"], ["::ffff:127.0.0.1"], ["fd00:ec2::254"]],
    ids=["loopback", "one-of-several-private", "metadata", "mapped", "metadata-v6"],
)
def test_a_name_resolving_to_a_refused_address_is_refused(api: Api, dns: FakeDns, answers: list[str]) -> None:
    dns.answers["hooks.example.com"] = answers
    r = _register(api, "https://hooks.example.com/events")
    _assert_refused(r)
    assert "resolves to" in r.json()["detail"] and answers[-1] not in r.json()["detail"]
    assert _endpoints(api) == 0


def test_public_names_and_names_without_an_address_yet_are_accepted(api: Api, dns: FakeDns) -> None:
    dns.answers["hooks.example.com"] = ["93.184.215.14", "2606:2800:21f:cb07:6820:80da:af6b:8b2c"]
    for url in ("https://hooks.example.com/events", "https://not-yet.example.com/events", f"https://{PUBLIC}:8443/x"):
        assert _register(api, url).status_code == 201, url
    assert dns.asked == ["hooks.example.com", "not-yet.example.com"]


def test_ports_are_a_short_list_unless_the_operator_adds_one(
    api: Api, dns: FakeDns, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert _register(api, f"http://{PUBLIC}:8080/x").status_code == 201
    _assert_refused(_register(api, f"https://{PUBLIC}:5432/x"))
    _allow(api, monkeypatch, [], [5432])
    assert _register(api, f"https://{PUBLIC}:5432/x").status_code == 201
    _production(api, monkeypatch)
    for port in (80, 8080):
        _assert_refused(_register(api, f"https://{PUBLIC}:{port}/x"))
    assert _register(api, f"https://{PUBLIC}/x").status_code == 201


@pytest.mark.parametrize("env", ["test", "production"])
def test_the_operator_may_open_named_hosts_and_networks_of_its_own(
    api: Api, dns: FakeDns, monkeypatch: pytest.MonkeyPatch, env: str
) -> None:
    if env == "production":
        _production(api, monkeypatch)
    _allow(api, monkeypatch, ["erp.tinh.internal", "*.stc.tinh.vn", "10.20.0.0/16"])
    dns.answers.update(
        {
            "erp.tinh.internal": ["10.1.2.3"],
            "mot-cua.stc.tinh.vn": ["192.168.5.5"],
            "stc.tinh.vn": ["192.168.5.6"],
            "other.tinh.internal": ["10.1.2.4"],
        }
    )
    for url in ("https://erp.tinh.internal/x", "https://mot-cua.stc.tinh.vn/x", "https://10.20.3.4/x"):
        assert _register(api, url).status_code == 201, url
    for url in ("https://10.21.0.1/x", "https://other.tinh.internal/x", "https://stc.tinh.vn/x"):
        _assert_refused(_register(api, url))
    # A listed name opens private addresses only: never loopback or metadata.
    for answer in ("127.0.0.1", "169.254.169.254"):
        dns.answers["erp.tinh.internal"] = [answer]
        _assert_refused(_register(api, "https://erp.tinh.internal/x"))


EVERYTHING = ["0.0.0.0/0", "::/0", "169.254.0.0/16", "100.64.0.0/10", "fd00::/8", "127.0.0.0/8"]
EVERYTHING_NAMED = ["metadata.google.internal", "metadata", "*.internal", "localhost", "*.localhost", NAME]


@pytest.mark.parametrize("env", ["test", "production"])
@pytest.mark.parametrize(
    "host",
    [
        "169.254.169.254",
        "169.254.170.2",
        "[fd00:ec2::254]",
        "100.100.100.200",
        "[fe80::1]",
        "0.0.0.0",
        "[::ffff:169.254.169.254]",
        "metadata.google.internal",
        "metadata",
        "localhost",
        "x.localhost",
        NAME,
    ],
)
def test_no_operator_setting_opens_metadata_link_local_or_unspecified_addresses(
    api: Api, dns: FakeDns, monkeypatch: pytest.MonkeyPatch, host: str, env: str
) -> None:
    if env == "production":
        _production(api, monkeypatch)
    _allow(api, monkeypatch, EVERYTHING + EVERYTHING_NAMED)
    dns.answers[NAME] = ["169.254.169.254"]
    _assert_refused(_register(api, f"https://{host}/x"))
    assert _endpoints(api) == 0


def test_loopback_can_be_opened_outside_production_only(
    api: Api, dns: FakeDns, monkeypatch: pytest.MonkeyPatch
) -> None:
    _allow(api, monkeypatch, ["127.0.0.0/8", "::1/128"])
    assert _register(api, "https://127.0.0.1/x").status_code == 201
    assert _register(api, "https://[::1]/x").status_code == 201
    _production(api, monkeypatch)
    _assert_refused(_register(api, "https://127.0.0.1/x"))
    _assert_refused(_register(api, "https://[::1]/x"))


def test_a_mistyped_operator_setting_stops_the_start() -> None:
    for entry in ("10.0.0.0/33", "not a host", "erp/tinh"):
        with pytest.raises(ValidationError):
            Settings(webhook_allowed_private_hosts=[entry])
    with pytest.raises(ValidationError):
        Settings(webhook_allowed_ports=[70000])
    settings = Settings(webhook_allowed_private_hosts=[" ERP.Tinh.Internal ", "10.0.0.0/8"])
    assert settings.webhook_allowed_private_hosts == ["erp.tinh.internal", "10.0.0.0/8"]


def _notation(value: int, parts: int, styles: list[str]) -> str:
    sizes = [1] * (parts - 1) + [5 - parts]
    numbers, shift = [], 32
    for size in sizes:
        shift -= 8 * size
        numbers.append((value >> shift) & ((1 << (8 * size)) - 1))
    formats: dict[str, Callable[[int], str]] = {"dec": str, "hex": hex, "oct": lambda n: "0" + oct(n)[2:]}
    return ".".join(formats[style](n) for n, style in zip(numbers, styles, strict=False))


@given(
    value=st.integers(0, 2**32 - 1),
    parts=st.integers(1, 4),
    styles=st.lists(st.sampled_from(["dec", "hex", "oct"]), min_size=4, max_size=4),
)
def test_every_ipv4_notation_the_c_resolver_reads_is_read_the_same(value: int, parts: int, styles: list[str]) -> None:
    text = _notation(value, parts, styles)
    expected = ipaddress.IPv4Address(socket.inet_aton(text))
    assert targets.parse(f"https://{text}/", targets.Policy(False, frozenset({443}), (), ())).address == expected


# Delivery


@pytest.mark.parametrize(
    "answers",
    [["127.0.0.1"], [PUBLIC, "127.0.0.1"], ["::ffff:127.0.0.1"], ["169.254.169.254"], ["10.0.0.1"]],
    ids=["loopback", "public-then-loopback", "mapped", "metadata", "private"],
)
def test_a_name_rebound_to_a_refused_address_is_blocked_at_delivery(
    api: Api, dns: FakeDns, receiver: Receiver, monkeypatch: pytest.MonkeyPatch, answers: list[str]
) -> None:
    _allow(api, monkeypatch, [], [receiver.port])
    dns.answers[NAME] = [PUBLIC]
    assert _register(api, f"http://{NAME}:{receiver.port}/events").status_code == 201
    dns.answers[NAME] = answers
    delivery = _deliver_one(api)
    # Failed at once (no retry), nothing sent anywhere, and a category only.
    assert (delivery.status.value, delivery.attempts, delivery.last_error) == ("failed", 1, "blocked")
    assert receiver.requests == [] and _shown(api) == ["blocked"]


@pytest.mark.parametrize(
    "url",
    [
        "http://169.254.169.254/latest/meta-data",
        "http://0x7f.1:8080/",
        "https://metadata/",
        "https://example.com:8443/\x7f",
    ],
)
def test_an_endpoint_stored_before_the_rules_is_blocked_at_delivery(
    api: Api, dns: FakeDns, monkeypatch: pytest.MonkeyPatch, url: str
) -> None:
    _allow(api, monkeypatch, EVERYTHING_NAMED)
    monkeypatch.setattr(api.ctx.settings, "env", Environment.production)
    with api.ctx.db.write() as s:
        s.add(WebhookEndpoint(agency_id=api.agency_id, url=url, secret="whsec_" + "A" * 32))
    delivery = _deliver_one(api)
    assert (delivery.status.value, delivery.last_error) == ("failed", "blocked")


def test_the_request_goes_to_the_checked_address_with_the_name_as_host(
    api: Api, dns: FakeDns, receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    _allow(api, monkeypatch, ["127.0.0.0/8"], [receiver.port])
    # Nothing listens on 127.0.0.2: the next checked address is tried.
    dns.answers[NAME] = ["127.0.0.2", "127.0.0.1"]
    assert _register(api, f"http://{NAME}:{receiver.port}/events").status_code == 201
    looked_up: list[str] = []
    real = socket.getaddrinfo

    def spy(host: Any, *args: Any, **kwargs: Any) -> Any:
        looked_up.append(str(host))
        return real(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", spy)
    delivery = _deliver_one(api)
    assert delivery.status.value == "delivered", delivery.last_error
    assert [r["host"] for r in receiver.requests] == [f"{NAME}:{receiver.port}"]
    assert dns.asked == [NAME, NAME]  # once at registration, once for the delivery
    assert NAME not in looked_up  # the HTTP client never asked the resolver again


@dataclass
class Pki:
    ca: Path
    server: ssl.SSLContext


def _pki(tmp_path: Path, name: str) -> Pki:
    now = datetime.now(UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Lephi test CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(days=1))
        .not_valid_after(now + timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(days=1))
        .not_valid_after(now + timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    (tmp_path / "ca.pem").write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    (tmp_path / "server.pem").write_bytes(
        cert.public_bytes(serialization.Encoding.PEM)
        + key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server.load_cert_chain(tmp_path / "server.pem")
    return Pki(tmp_path / "ca.pem", server)


@pytest.mark.parametrize(("certified", "outcome"), [(NAME, "delivered"), ("other.lephi.test", "tls")])
def test_https_presents_the_registered_name_for_sni_and_the_certificate_check(
    api: Api, dns: FakeDns, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, certified: str, outcome: str
) -> None:
    pki = _pki(tmp_path, certified)
    # The deployment's HTTP client, trusting the test CA instead of the system's.
    api = dataclasses.replace(
        api,
        ctx=dataclasses.replace(
            api.ctx,
            webhook_http=httpx.Client(
                verify=ssl.create_default_context(cafile=pki.ca),
                follow_redirects=False,
                trust_env=False,
                limits=httpx.Limits(max_keepalive_connections=0),
            ),
        ),
    )
    server = _serve(pki.server)
    receiver = next(server)
    try:
        _allow(api, monkeypatch, ["127.0.0.1/32"], [receiver.port])
        dns.answers[NAME] = ["127.0.0.1"]
        assert _register(api, f"https://{NAME}:{receiver.port}/events").status_code == 201
        delivery = _deliver_one(api)
    finally:
        next(server, None)
    assert receiver.server_names == [NAME]
    if outcome == "delivered":
        assert delivery.status.value == "delivered"
        assert [r["host"] for r in receiver.requests] == [f"{NAME}:{receiver.port}"]
    else:
        assert (delivery.status.value, delivery.last_error) == ("pending", "tls")
        assert receiver.requests == [] and _shown(api) == ["tls"]


@pytest.mark.parametrize("case", ["refused", "http_503", "dns"])
def test_a_failed_attempt_is_recorded_and_shown_as_a_category(
    api: Api, dns: FakeDns, receiver: Receiver, monkeypatch: pytest.MonkeyPatch, case: str
) -> None:
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    port = receiver.port if case != "refused" else closed.getsockname()[1]
    closed.close()
    _allow(api, monkeypatch, ["127.0.0.1/32"], [port])
    dns.answers[NAME] = ["127.0.0.1"]
    assert _register(api, f"http://{NAME}:{port}/events").status_code == 201
    receiver.statuses = [503]
    if case == "dns":
        del dns.answers[NAME]
    delivery = _deliver_one(api)
    assert (delivery.status.value, delivery.attempts, delivery.last_error) == ("pending", 1, case)
    assert _shown(api) == [case]


def test_errors_stored_as_free_text_before_are_shown_as_categories(api: Api, dns: FakeDns) -> None:
    endpoint = _register(api, f"https://{PUBLIC}/events").json()
    with api.ctx.db.write() as s:
        for stored in ("ConnectError: [Errno 111] Connection refused", "HTTP 502"):
            message = WebhookMessage(agency_id=api.agency_id, event_type="payment.succeeded", body="{}")
            s.add(message)
            s.flush()
            s.add(
                WebhookDelivery(
                    agency_id=api.agency_id,
                    message_id=message.id,
                    endpoint_id=endpoint["id"],
                    event_type="payment.succeeded",
                    status=DeliveryStatus.failed,
                    attempts=1,
                    last_error=stored,
                )
            )
    shown = _shown(api)
    assert sorted(str(e) for e in shown) == ["http_502", "network"]
    assert "Errno" not in json.dumps(shown)


_URL_PIECES = st.sampled_from(
    ["http://", "https://", "[", "]", ":", "%", "@", ".", "0x", "::ffff:", "localhost", "\uff0e", "\u3002", "/", "#"]
)


@given(st.lists(st.one_of(_URL_PIECES, st.text(max_size=8)), max_size=8).map("".join))
def test_any_url_is_accepted_or_refused_never_an_unexpected_error(url: str) -> None:
    settings = Settings(webhook_allowed_private_hosts=["10.0.0.0/8"])
    with pytest.MonkeyPatch.context() as monkeypatch:
        monkeypatch.setattr(targets, "resolve", FakeDns().resolve)
        try:
            check_url(url, settings)
        except ValidationFailed as exc:
            assert exc.status == 422
            return
        # Accepted: a delivery reads it the same way (no name resolves here, so only an address gets a route).
        with contextlib.suppress(targets.Unresolvable):
            assert targets.route(url, settings).addresses
