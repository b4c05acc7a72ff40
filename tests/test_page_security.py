"""The pages' defences: client addresses that a spoofed X-Forwarded-For cannot change (the public lookup's rate
limit)."""

from __future__ import annotations

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

from payments.app import create_app
from payments.cli import server_config
from payments.core.context import AppContext, build_context
from payments.core.db import Database, make_engine
from payments.core.proxies import client_address
from tests.conftest import _free_port, make_settings
from tests.factories import seed_agency

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
    """The app as `lephi serve` runs it (uvicorn's configuration from payments.cli), with no trusted proxy."""
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    settings = make_settings(database_url, tmp_path, public_url=url, lookup_rate_per_minute=2)
    ctx = build_context(settings, Database(make_engine(settings.effective_database_url, settings)))
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
