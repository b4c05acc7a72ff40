"""The service clock: ``clock_at`` moves ``utcnow`` (and the signer's signing time) for the current thread only."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta, timezone

import pytest

from invoices.signing import vietnam_now
from payments.core.types import clock_at, utcnow


def test_clock_at_moves_utcnow_here_only_and_comes_back() -> None:
    moment = datetime(2026, 1, 2, 3, 4, 5, tzinfo=timezone(timedelta(hours=7)))
    with clock_at(moment):
        assert utcnow() == moment and utcnow().tzinfo is UTC
        assert vietnam_now() == moment
        with ThreadPoolExecutor(1) as pool:  # a request served meanwhile keeps the real time
            elsewhere = pool.submit(utcnow).result()
        assert elsewhere > moment + timedelta(days=300)
    assert utcnow() - datetime.now(UTC) < timedelta(seconds=5)


def test_clock_at_needs_an_aware_moment() -> None:
    with pytest.raises(ValueError, match="aware"), clock_at(datetime(2026, 1, 2)):
        pass
