"""Outbound HTTP for adapters: timeouts, and retries with exponential backoff and full jitter for answers that
may succeed on a second try (network errors, timeouts, 429, 5xx). Only for requests that are safe to repeat:
queries, and creations that carry the gateway's idempotency token."""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Mapping
from typing import Any

import httpx

from adapters.base import GatewayTechnicalError

RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})


def request_with_retries(
    client: httpx.Client,
    method: str,
    url: str,
    *,
    attempts: int = 3,
    base_delay: float = 0.25,
    max_delay: float = 4.0,
    sleep: Callable[[float], None] = time.sleep,
    **kwargs: Any,
) -> httpx.Response:
    """Send and return the response; raise GatewayTechnicalError when every attempt failed technically."""
    last: str = ""
    for attempt in range(attempts):
        try:
            response = client.request(method, url, **kwargs)
        except httpx.TimeoutException as exc:
            last = f"timeout: {exc}"
        except httpx.TransportError as exc:
            last = f"network error: {type(exc).__name__}: {exc}"
        else:
            if response.status_code not in RETRY_STATUSES:
                return response
            last = f"HTTP {response.status_code}"
        if attempt + 1 < attempts:
            sleep(random.uniform(0, min(max_delay, base_delay * 2**attempt)))  # noqa: S311 - jitter, not security
    raise GatewayTechnicalError(f"{method} {url} failed after {attempts} attempts ({last})")


def client_for(settings: Mapping[str, Any], given: httpx.Client | None) -> httpx.Client:
    """The shared client the service provides, or one with conservative timeouts."""
    if given is not None:
        return given
    timeout = float(settings.get("timeout_seconds", 15))
    return httpx.Client(timeout=httpx.Timeout(timeout, connect=min(5.0, timeout)))
