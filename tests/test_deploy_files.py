"""The reference deployment's files (deploy/, docs/deploy.md) agree with the service: every setting they name exists,
the example settings file is accepted in production, and nginx lets through every body the service accepts."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
from dotenv import dotenv_values

from lephi.app import body_limits
from lephi.settings import Settings

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"
_SIZE = {"k": 1024, "m": 1024 * 1024, "g": 1024 * 1024 * 1024}


def _texts() -> dict[str, str]:
    files = [p for p in DEPLOY.rglob("*") if p.is_file()] + [ROOT / "docs" / "deploy.md"]
    return {str(p.relative_to(ROOT)): p.read_text() for p in files}


def test_every_setting_named_exists() -> None:
    known = {f"LEPHI_{name.upper()}" for name in Settings.model_fields}
    unknown = {
        (path, name) for path, text in _texts().items() for name in re.findall(r"\bLEPHI_[A-Z0-9_]*[A-Z0-9]", text)
    }
    assert {(path, name) for path, name in unknown if name not in known} == set()


def test_the_example_settings_are_accepted_in_production(monkeypatch: pytest.MonkeyPatch) -> None:
    values = dotenv_values(DEPLOY / "lephi.env.example")
    for name in [n for n in os.environ if n.startswith("LEPHI_")]:
        monkeypatch.delenv(name)
    for name, value in values.items():
        monkeypatch.setenv(name, value or "")
    monkeypatch.setenv("LEPHI_FORM_SECRET", "x" * 40)  # from secrets.env
    settings = Settings(_env_file=None)  # type: ignore[call-arg]
    assert settings.env == "production" and settings.db_pgbouncer and not settings.sandbox_on
    assert [str(net) for net in settings.trusted_proxies] == ["127.0.0.1/32", "::1/128"]


def _nginx_size(value: str) -> int:
    number, unit = re.fullmatch(r"(\d+)([kmg]?)", value.lower()).groups()  # type: ignore[union-attr]
    return int(number) * _SIZE.get(unit, 1)


def test_nginx_lets_through_every_body_the_service_accepts() -> None:
    conf = (DEPLOY / "nginx" / "lephi.conf").read_text()
    server_wide = _nginx_size(re.search(r"^    client_max_body_size (\w+);", conf, re.M).group(1))  # type: ignore[union-attr]
    per_location = {
        path: _nginx_size(size)
        for path, size in re.findall(r"location = (\S+) \{[^}]*?client_max_body_size (\w+);", conf, re.S)
    }
    limits = {**body_limits(), "/v1/...": Settings(_env_file=None).max_body_bytes}  # type: ignore[call-arg]
    for path, limit in limits.items():
        assert per_location.get(path, server_wide) >= limit, path


def test_api_processes_run_below_the_workers_cpu_priority_in_every_launcher() -> None:
    """Both launchers give the API processes the same niceness, above the workers', and the fleet scenario runs the
    API processes at it (bench/fleet_scenario.py reads it from the unit)."""
    from bench.fleet_scenario import deployed_api_nice

    nice = deployed_api_nice()
    assert 0 < nice <= 19
    assert "Nice=" not in (DEPLOY / "systemd" / "lephi-worker@.service").read_text()
    procfile = [line for line in (DEPLOY / "Procfile").read_text().splitlines() if not line.startswith("#")]
    apis = [line for line in procfile if " serve " in line]
    workers = [line for line in procfile if line.endswith(" worker")]
    assert apis and workers
    assert all(re.match(rf"api\d+: nice -n {nice} \.venv/bin/lephi serve ", line) for line in apis), apis
    assert not any("nice" in line for line in workers), workers
