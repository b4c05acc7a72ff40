""" "Test connection": one harmless question to a gateway with the agency's merchant settings, answered within a few
seconds with what happened. Never a success that did not happen: a gateway that could not be reached says so.

- Stripe: ``GET {api_base}/v1/balance`` with the secret key (reads, changes nothing).
- VNPay, MoMo and ZaloPay: their status query for a reference that does not exist; any verified answer proves the
  address and the merchant's keys work.
- The sandbox runs inside the service: nothing to reach. Gateways without a status query cannot be tested."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

import httpx

from adapters.base import GatewayContext, GatewayError, GatewayTechnicalError, PaymentGateway, StatusQuery
from adapters.registry import Factory

TIMEOUT_SECONDS = 5.0
QUERIED = ("vnpay", "momo", "zalopay")


@dataclass(frozen=True)
class Probe:
    outcome: str  # ok, local, refused, error, unreachable, timeout, not_configured, no_test
    detail: str = ""  # an HTTP status or a host name: never a setting's value

    @property
    def success(self) -> bool:
        return self.outcome in ("ok", "local")


def _client(deadline: float, reached: list[bool]) -> httpx.Client:
    def limit(request: httpx.Request) -> None:
        # The whole test, retries included, fits in TIMEOUT_SECONDS.
        left = deadline - time.monotonic()
        if left <= 0:
            raise httpx.ConnectTimeout("the connection test's time is up", request=request)
        request.extensions["timeout"] = httpx.Timeout(left).as_dict()

    def mark(_response: httpx.Response) -> None:
        reached[0] = True

    return httpx.Client(
        timeout=TIMEOUT_SECONDS,
        trust_env=False,
        follow_redirects=False,
        event_hooks={"request": [limit], "response": [mark]},
    )


def probe(name: str, factory: Factory, context: GatewayContext, clock: Callable[[], float] = time.monotonic) -> Probe:
    if name == "sandbox":
        return Probe("local")
    if name != "stripe" and name not in QUERIED:
        return Probe("no_test")
    reached = [False]
    with _client(clock() + TIMEOUT_SECONDS, reached) as client:
        if name == "stripe":
            return _stripe(client, context.settings)
        return _status_query(factory, replace(context, http=client), reached)


def _host(url: str) -> str:
    return urlsplit(url).netloc


def _stripe(client: httpx.Client, settings: Any) -> Probe:
    key = settings.get("secret_key")
    if not isinstance(key, str) or not key:
        return Probe("not_configured")
    base = str(settings.get("api_base") or "https://api.stripe.com").rstrip("/")
    try:
        response = client.get(base + "/v1/balance", headers={"Authorization": f"Bearer {key}"})
    except httpx.TimeoutException:
        return Probe("timeout", _host(base))
    except (httpx.HTTPError, ValueError):
        return Probe("unreachable", _host(base))
    if response.status_code == 200:
        return Probe("ok", _host(base))
    if response.status_code in (401, 403):
        return Probe("refused", f"HTTP {response.status_code}")
    return Probe("error", f"HTTP {response.status_code}")


def _status_query(factory: Factory, context: GatewayContext, reached: list[bool]) -> Probe:
    try:
        adapter: PaymentGateway = factory(context)
    except (ValueError, TypeError, KeyError):
        return Probe("not_configured")
    if hasattr(adapter, "sleep"):
        adapter.sleep = lambda _seconds: None  # retries wait for nothing: the test has its own time limit
    now = datetime.now(UTC)
    query = StatusQuery("lephi-connection-test", None, "lephi-connection-test", 1000, now)
    try:
        result = adapter.query_status(query)
    except GatewayTechnicalError as exc:
        if reached[0]:
            return Probe("error")
        return Probe("timeout" if "timeout" in str(exc) else "unreachable")
    except GatewayError:
        return Probe("ok" if reached[0] else "unreachable")
    except httpx.HTTPError:
        return Probe("unreachable")
    return Probe("ok", result.status.value)
