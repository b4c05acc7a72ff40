"""Per-agency gateway accounts: configuration, adapter instances and callback routes."""

from __future__ import annotations

from pathlib import Path

import pytest

from lephi.container import build_container
from payments.gateway.config import GatewayConfig, GatewayConfigError
from tests.conftest import make_settings

FILE = """
[gateways.sandbox]
secret = "default-secret"
[agencies."AGC-B".sandbox]
secret = "${AGC_B_SECRET}"
"""


def test_agency_settings_override_defaults_and_expand_env(tmp_path: Path) -> None:
    path = tmp_path / "gateways.toml"
    path.write_text(FILE)
    config = GatewayConfig.load(path, env={"AGC_B_SECRET": "b-secret"})
    assert config.for_agency("sandbox", "AGC-A") == {"secret": "default-secret"}
    assert config.for_agency("sandbox", "AGC-B") == {"secret": "b-secret"}
    assert config.for_agency("stripe", "AGC-B") == {}


def test_missing_env_var_and_bad_toml_are_clear_errors(tmp_path: Path) -> None:
    path = tmp_path / "gateways.toml"
    path.write_text(FILE)
    with pytest.raises(GatewayConfigError, match="AGC_B_SECRET"):
        GatewayConfig.load(path, env={})
    path.write_text("[gateways\n")
    with pytest.raises(GatewayConfigError, match="cannot read"):
        GatewayConfig.load(path)


def test_each_agency_gets_its_own_adapter_and_callback_url(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "gateways.toml"
    path.write_text(FILE)
    monkeypatch.setenv("AGC_B_SECRET", "b-secret")
    ctx = build_container(make_settings("sqlite://", tmp_path, gateways_file=path))
    a, b = ctx.gateways.get("sandbox", "AGC-A"), ctx.gateways.get("sandbox", "AGC-B")
    assert a is not b and a is ctx.gateways.get("sandbox", "AGC-A")
    assert (
        ctx.gateways.context("sandbox", "AGC-B").callback_url == "http://testserver/v1/gateways/sandbox/callback/AGC-B"
    )
    assert ctx.gateways.context("sandbox", "AGC-B").settings["secret"] == "b-secret"
    ctx.close()
