"""The fleet scenario (bench/fleet_scenario.py), small: two API processes and two workers on one PostgreSQL database,
40 dossiers paid by 8 clients, one worker and one API process stopped mid-run with SIGKILL, or with SIGTERM. Nothing
may be lost or charged twice: one succeeded payment per dossier, one receipt each numbered without gap, every webhook
message delivered (exactly once unless a worker was killed mid-delivery). The receipt latency is the script's to
report, not asserted here: the machine running the suite is shared."""

from __future__ import annotations

import os

import pytest

from bench.fleet_scenario import Config, deployed_api_nice, run, summary
from tests.conftest import PG_URL

DOSSIERS = 40

pytestmark = [
    pytest.mark.slow,
    pytest.mark.postgres,
    pytest.mark.skipif(not PG_URL, reason="the fleet shares one PostgreSQL database (LEPHI_TEST_POSTGRES_URL)"),
]


@pytest.mark.parametrize("kill", ["sigkill", "sigterm"])
def test_fleet_loses_and_duplicates_nothing_when_processes_are_stopped(kill: str) -> None:
    assert PG_URL
    lines: list[str] = []
    cfg = Config(pg_admin_url=PG_URL, dossiers=DOSSIERS, clients=8, api=2, workers=2, kill=kill, out=lines.append)
    report = run(cfg)
    detail = "\n".join(lines + summary(cfg, report))
    assert not report.violations, detail
    # The API processes run as the reference deployment runs them: below the workers' CPU priority.
    assert report.api_nice == [min(19, os.getpriority(os.PRIO_PROCESS, 0) + deployed_api_nice())] * 2, detail
    assert any(f"{kill.upper()} to worker 0" in line and "api 1" in line for line in lines), detail
    assert report.payments == DOSSIERS and report.receipts == DOSSIERS, detail
    assert report.webhook_messages == 2 * DOSSIERS, detail
    if kill == "sigterm":
        assert report.webhook_duplicates == 0, detail
