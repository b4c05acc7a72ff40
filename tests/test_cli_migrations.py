"""A ``lephi`` command on a database without this code's schema stops with what to do, not a traceback about a
missing table; a worker started beside the ``serve`` that migrates waits for the migration; a database migrated by
a newer release (a migration only adds) is used as it is."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from typer.testing import CliRunner

from lephi.cli import app as cli_app
from lephi.cli import common
from lephi.container import Container
from lephi.migrate import head_revision, upgrade
from lephi.settings import get_settings
from payments.core.db import normalise_url

EARLIER = "0019_statement_entry_fk"


@pytest.fixture
def fresh(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """An empty SQLite database the CLI is pointed at."""
    url = f"sqlite:///{tmp_path / 'fresh.db'}"
    monkeypatch.setenv("LEPHI_DATABASE_URL", url)
    monkeypatch.setenv("LEPHI_ENV", "test")
    monkeypatch.setenv("LEPHI_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("LEPHI_LOG_LEVEL", "WARNING")
    get_settings.cache_clear()
    yield url
    get_settings.cache_clear()


def _agency_list() -> tuple[int, str]:
    result = CliRunner().invoke(cli_app, ["agency", "list"])
    return result.exit_code, result.output + (result.stderr if result.stderr_bytes is not None else "")


def test_a_command_on_an_empty_database_says_to_migrate(fresh: str) -> None:
    code, output = _agency_list()
    assert code == 2, output
    assert "the database has no tables yet. Run `lephi migrate` first." in output
    assert "Traceback" not in output and "no such table" not in output


def test_a_command_on_a_database_behind_this_code_says_to_migrate(fresh: str) -> None:
    upgrade(fresh, EARLIER)
    code, output = _agency_list()
    assert code == 2, output
    assert f"the database is at migration {EARLIER}, this version of Lephi needs {head_revision()}" in output


def test_a_command_on_a_migrated_database_runs(fresh: str) -> None:
    upgrade(fresh)
    code, output = _agency_list()
    assert code == 0, output


def test_a_database_migrated_by_a_newer_release_is_used(fresh: str) -> None:
    upgrade(fresh)
    engine = create_engine(normalise_url(fresh))
    with engine.begin() as conn:
        conn.execute(text("UPDATE alembic_version SET version_num = '0099_from_a_newer_release'"))
    engine.dispose()
    code, output = _agency_list()
    assert code == 0, output


def test_a_worker_waits_for_the_migration(fresh: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(common, "MIGRATION_POLL_SECONDS", 0.05)
    got: list[Container] = []
    waiting = threading.Thread(target=lambda: got.append(common.context(wait_for_migrations=True)))
    waiting.start()
    waiting.join(1.0)
    assert waiting.is_alive() and not got  # still waiting: nothing to work on yet
    upgrade(fresh)
    waiting.join(10)
    assert not waiting.is_alive() and len(got) == 1
    got[0].close()
