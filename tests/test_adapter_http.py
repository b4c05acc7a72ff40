"""Retries with backoff and jitter for outbound gateway calls."""

from __future__ import annotations

import httpx
import pytest
import respx

from adapters.base import GatewayTechnicalError
from adapters.http import request_with_retries


@respx.mock
def test_retries_5xx_then_succeeds_with_growing_jittered_delays() -> None:
    route = respx.post("https://gw.test/api").mock(
        side_effect=[httpx.Response(503), httpx.Response(502), httpx.Response(200, json={"ok": True})]
    )
    delays: list[float] = []
    with httpx.Client() as client:
        r = request_with_retries(client, "POST", "https://gw.test/api", attempts=3, base_delay=1.0, sleep=delays.append)
    assert r.json() == {"ok": True} and route.call_count == 3
    assert len(delays) == 2 and 0 <= delays[0] <= 1.0 and 0 <= delays[1] <= 2.0


@respx.mock
def test_timeouts_exhaust_into_a_technical_error() -> None:
    respx.get("https://gw.test/q").mock(side_effect=httpx.ReadTimeout("slow"))
    with httpx.Client() as client, pytest.raises(GatewayTechnicalError, match="timeout"):
        request_with_retries(client, "GET", "https://gw.test/q", sleep=lambda _s: None)


@respx.mock
def test_a_4xx_is_an_answer_not_retried() -> None:
    route = respx.post("https://gw.test/api").mock(return_value=httpx.Response(400, json={"error": "bad"}))
    with httpx.Client() as client:
        assert request_with_retries(client, "POST", "https://gw.test/api", sleep=lambda _s: None).status_code == 400
    assert route.call_count == 1
