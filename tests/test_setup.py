"""Settings, migrations and the adapter registry."""

from __future__ import annotations

from importlib.metadata import EntryPoint
from pathlib import Path
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from pydantic import ValidationError
from sqlalchemy import create_engine, text

from adapters import registry
from adapters.base import GatewayContext, PaymentGateway
from adapters.sandbox import SandboxGateway
from lephi.migrate import current_revision, head_revision, upgrade
from lephi.settings import Settings
from lephi.tables import metadata
from payments.core.config import DEV_SANDBOX_SECRET
from payments.core.db import normalise_url
from payments.payment import kinds

# What production needs besides the case at hand.
PRODUCTION: dict[str, Any] = {
    "env": "production",
    "provider_tax_code": "0312345678",
    "province": "Lâm Đồng",
    "form_secret": "f" * 32,
    "pii_key_file": "/etc/lephi/pii.key",
}


def test_production_refuses_built_in_secrets() -> None:
    with pytest.raises(ValidationError, match="LEPHI_SANDBOX_SECRET"):
        Settings(**PRODUCTION, database_url="sqlite:///x.db", sandbox_enabled=True)
    with pytest.raises(ValidationError, match="LEPHI_DATABASE_URL"):
        Settings(**PRODUCTION, sandbox_enabled=False)
    ok = Settings(**PRODUCTION, database_url="sqlite:///x.db", sandbox_enabled=True, sandbox_secret="s" * 32)
    assert ok.sandbox_on


def test_sandbox_is_off_in_production_unless_enabled() -> None:
    assert not Settings(**PRODUCTION, database_url="sqlite:///x.db").sandbox_on
    assert Settings().sandbox_on and Settings().sandbox_secret == DEV_SANDBOX_SECRET


def test_settings_read_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LEPHI_DATABASE_URL", "postgresql://u@h/db")
    monkeypatch.setenv("LEPHI_PAYMENT_EXPIRY_SECONDS", "600")
    s = Settings()
    assert s.effective_database_url == "postgresql://u@h/db" and s.payment_expiry_seconds == 600
    assert normalise_url(s.effective_database_url) == "postgresql+psycopg://u@h/db"
    assert Settings(data_dir=Path("/tmp/v"), database_url="").effective_database_url == "sqlite:////tmp/v/lephi.db"


def test_migrations_match_the_models(database_url: str) -> None:
    engine = create_engine(normalise_url(database_url))
    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn, opts={"compare_type": True}), metadata)
    assert current_revision(engine) == head_revision()
    engine.dispose()
    assert diff == []


class _ThirdParty(PaymentGateway):
    name = "acme"

    def __init__(self, context: GatewayContext) -> None:
        self.context = context


def test_registry_finds_builtin_and_entry_point_adapters(monkeypatch: pytest.MonkeyPatch) -> None:
    ep = EntryPoint(name="acme", value=f"{__name__}:_ThirdParty", group=registry.ENTRY_POINT_GROUP)

    def fake_entry_points(group: str) -> list[EntryPoint]:
        return [ep] if group == registry.ENTRY_POINT_GROUP else []

    monkeypatch.setattr(registry, "entry_points", fake_entry_points)
    found = registry.discover()
    assert found["sandbox"] is SandboxGateway and found["acme"] is _ThirdParty
    reg = registry.GatewayRegistry(found, lambda n, a: GatewayContext(n, "http://x", f"http://x/{n}/{a}"))
    acme: Any = reg.get("acme")
    assert acme.context.callback_url == "http://x/acme/None" and reg.get("acme") is acme
    other: Any = reg.get("acme", "AGC-B")
    assert other is not acme and other.context.callback_url == "http://x/acme/AGC-B"
    with pytest.raises(KeyError):
        reg.get("nope")


def test_installed_package_declares_the_sandbox_entry_point() -> None:
    from importlib.metadata import entry_points

    names = {e.name for e in entry_points(group=registry.ENTRY_POINT_GROUP)}
    assert "sandbox" in names


def test_sandbox_satisfies_the_protocol() -> None:
    gateway = SandboxGateway(GatewayContext("sandbox", "http://x", "http://x/cb", {"secret": "s"}))
    assert isinstance(gateway, PaymentGateway)


def test_production_needs_the_providers_tax_code_and_the_province() -> None:
    base = {"env": "production", "database_url": "sqlite:///x.db", "form_secret": "f" * 32, "pii_key_file": "/k"}
    with pytest.raises(ValueError, match="LEPHI_PROVIDER_TAX_CODE"):
        Settings(**base, province="Lâm Đồng")
    with pytest.raises(ValueError, match="LEPHI_PROVINCE"):
        Settings(**base, provider_tax_code="0312345678")
    with pytest.raises(ValueError, match="provider_tax_code"):
        Settings(**base, provider_tax_code="MST-1", province="Lâm Đồng")
    with pytest.raises(ValueError, match="LEPHI_FORM_SECRET"):
        Settings(**{**base, "form_secret": None}, provider_tax_code="0312345678", province="Lâm Đồng")
    with pytest.raises(ValueError, match="LEPHI_PII_KEY"):
        Settings(**{**base, "pii_key_file": None}, provider_tax_code="0312345678", province="Lâm Đồng")
    ok = Settings(**base, provider_tax_code="0312345678", province="Lâm Đồng")
    assert ok.effective_provider_tax_code == "0312345678" and ok.effective_notice_place == "Lâm Đồng"
    assert Settings(**base, provider_tax_code="0312345678", notice_place="Đà Lạt").effective_notice_place == "Đà Lạt"


def test_development_never_uses_the_demo_agencys_tax_code_as_the_provider() -> None:
    from payments.agency.demo import DEMO_TAX_CODE

    settings = Settings(database_url="sqlite://")
    assert settings.effective_provider_tax_code != DEMO_TAX_CODE
    assert Settings(database_url="sqlite://", province="Gia Lai").effective_notice_place == "Gia Lai"


def test_sqlite_commits_are_durable_by_default(tmp_path: Path) -> None:
    """The suite runs with synchronous=NORMAL for speed; the service itself fsyncs every commit unless told not to."""
    from payments.core.db import make_engine

    settings = Settings(database_url=f"sqlite:///{tmp_path / 'd.db'}")
    assert settings.sqlite_synchronous == "FULL"
    engine = make_engine(settings.effective_database_url, settings)
    with engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA synchronous").scalar() == 2  # FULL
    engine.dispose()


def test_jobs_queued_under_the_old_receipt_kinds_keep_their_meaning(tmp_path: Path) -> None:
    """Jobs written before the payment domain announced facts (receipt.issue, receipt.adjust) are renamed by the
    migration, so an upgrade in the middle of a day issues every receipt it owes."""
    url = f"sqlite:///{tmp_path / 'old.db'}"
    upgrade(url, "0008")
    engine = create_engine(url)
    with engine.begin() as conn:
        for kind in ("receipt.issue", "receipt.adjust", "payment.expire"):
            conn.execute(
                text(
                    "INSERT INTO outbox (kind, payload, status, run_after, attempts, max_attempts, created_at) "
                    "VALUES (:kind, '{}', 'pending', '2026-12-01 00:00:00', 0, 10, '2026-12-01 00:00:00')"
                ),
                {"kind": kind},
            )
    upgrade(url)
    with engine.connect() as conn:
        got = sorted(row[0] for row in conn.execute(text("SELECT kind FROM outbox")))
    engine.dispose()
    assert got == sorted([kinds.SUCCEEDED, kinds.REFUND_SUCCEEDED, kinds.EXPIRE])


def test_an_adapter_that_does_not_declare_its_behaviour_is_refused_as_not_configured() -> None:
    class Old:  # written before pushes_funds and starts_offline existed
        name = "old"

        def __init__(self, context: GatewayContext) -> None:
            self.context = context

    reg = registry.GatewayRegistry({"old": Old}, lambda n, a: GatewayContext(n, "http://x", "http://x/cb"))  # type: ignore[dict-item]
    with pytest.raises(ValueError, match="does not declare pushes_funds, starts_offline"):
        reg.get("old", "AGC-A")
