"""Fixtures: every database test runs on SQLite and, when LEPHI_TEST_POSTGRES_URL is set, on PostgreSQL too.

Tests commit for real (concurrency needs it), so isolation is a fresh SQLite file per test (copied from one migrated
template) and, on PostgreSQL, one database per run whose tables are truncated before each test.
"""

from __future__ import annotations

import os
import secrets
import shutil
from collections.abc import Callable, Generator, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from argon2 import PasswordHasher
from click.testing import Result
from fastapi.testclient import TestClient
from hypothesis import settings as hypothesis_settings
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url
from starlette.types import ASGIApp, Receive, Send
from starlette.types import Scope as AsgiScope
from typer.testing import CliRunner

from console.staff import passwords
from lephi.app import create_app
from lephi.cli import app as cli_app
from lephi.cli import server_config
from lephi.container import Container, build_container
from lephi.migrate import upgrade
from lephi.settings import Settings, get_settings
from lephi.tables import metadata
from payments.auth.models import Scope
from payments.auth.service import create_key
from payments.core.db import Database, make_engine, normalise_url
from payments.core.logging import configure_logging
from tests.factories import seed_agency
from tests.privacy_scan import leaks, plant_payer

# No timing assertion in the suite: Hypothesis's per-example deadline would be one, and the machines are shared.
hypothesis_settings.register_profile("lephi", deadline=None)
hypothesis_settings.load_profile("lephi")

PG_URL = os.environ.get("LEPHI_TEST_POSTGRES_URL")
BACKENDS = ["sqlite", "postgres"] if PG_URL else ["sqlite"]
ALL_SCOPES = [s.value for s in Scope]


# Staff passwords are hashed with argon2id at the library's defaults (64 MiB, 3 passes): right for the service,
# and seconds per sign-in on a loaded 2-core machine. Tests that are not about hashing use the cheapest parameters;
# the ones that are (tests/console/test_passwords.py) are marked real_argon2 and keep the product's.
_CHEAP_HASHER = PasswordHasher(time_cost=1, memory_cost=64, parallelism=1)
_CHEAP_DUMMY = _CHEAP_HASHER.hash("not the password of any account")


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """A test whose captured logs or output hold a payer's identity number, passport number, phone or e-mail that
    some test sent (tests/privacy_scan.py) fails, whatever it asserted itself."""
    report: pytest.TestReport = yield
    if report.passed and report.when in ("call", "teardown"):
        # Each phase's report repeats the earlier phases' sections: the teardown looks at its own only.
        sections = [c for name, c in report.sections if report.when == "call" or name.endswith("teardown")]
        found = leaks("\n".join(sections))
        if found:
            report.outcome = "failed"
            report.longrepr = f"personal data in the captured logs: {len(found)} planted values, e.g. {found[0][:3]}..."
    return report


@pytest.fixture(autouse=True)
def _cheap_password_hashing(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    if request.node.get_closest_marker("real_argon2") is None:
        monkeypatch.setattr(passwords, "_hasher", _CHEAP_HASHER)
        monkeypatch.setattr(passwords, "_DUMMY_HASH", _CHEAP_DUMMY)


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("template") / "template.db"
    upgrade(f"sqlite:///{path}")
    return path


@pytest.fixture(scope="session")
def pg_database() -> Iterator[str]:
    """A database of its own for this run, migrated once, dropped at the end."""
    assert PG_URL, "LEPHI_TEST_POSTGRES_URL is not set"
    admin_url = make_url(normalise_url(PG_URL))
    name = f"lephi_test_{os.getpid()}_{secrets.token_hex(3)}"
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:  # fails the run, not skips it, when the server is unreachable
        conn.execute(text(f'CREATE DATABASE "{name}"'))
        # Commits without waiting for the WAL flush: nothing in the suite depends on surviving a server crash.
        conn.execute(text(f'ALTER DATABASE "{name}" SET synchronous_commit = off'))
    url = admin_url.set(database=name).render_as_string(hide_password=False)
    upgrade(url)
    yield url
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


@pytest.fixture(params=BACKENDS)
def database_url(request: pytest.FixtureRequest, tmp_path: Path, sqlite_template: Path) -> str:
    if request.param == "sqlite":
        path = tmp_path / "lephi.db"
        shutil.copy(sqlite_template, path)
        return f"sqlite:///{path}"
    url: str = request.getfixturevalue("pg_database")
    engine = create_engine(url)
    tables = ", ".join(f'"{t.name}"' for t in metadata.sorted_tables)
    with engine.begin() as conn:
        conn.execute(text(f"TRUNCATE {tables} RESTART IDENTITY CASCADE"))
    engine.dispose()
    return url


def make_settings(database_url: str, tmp_path: Path, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "env": "test",
        "database_url": database_url,
        "data_dir": tmp_path,
        "public_url": "http://testserver",
        "run_worker": False,
        "sandbox_enabled": True,
        "log_json": True,
        "log_level": "WARNING",
        "db_pool_size": 20,
        # Suites send thousands of requests with one key; the limit has its own tests.
        "api_rate_per_minute": 1_000_000,
        # No fsync per commit (WAL keeps each commit atomic): no test here cuts the power, and fsyncs were most of
        # the suite's wall time on a busy disk. The service's own default (FULL) is tested in test_setup.py.
        "sqlite_synchronous": "NORMAL",
    }
    values.update(overrides)
    return Settings(**values)


@pytest.fixture
def settings(database_url: str, tmp_path: Path, request: pytest.FixtureRequest) -> Settings:
    marker = request.node.get_closest_marker("settings")
    return make_settings(database_url, tmp_path, **(marker.kwargs if marker else {}))


class LateApp:
    """An ASGI app that forwards to one set later: the container's HTTP client (through which the sandbox gateway's
    callbacks reach the service) must exist before the app that serves them."""

    def __init__(self) -> None:
        self.app: ASGIApp | None = None

    async def __call__(self, scope: AsgiScope, receive: Receive, send: Send) -> None:
        assert self.app is not None, "no app serves this context yet: use the client fixture"
        await self.app(scope, receive, send)


@pytest.fixture
def late_app() -> LateApp:
    return LateApp()


@pytest.fixture
def ctx(settings: Settings, late_app: LateApp) -> Iterator[Container]:
    http = TestClient(late_app, raise_server_exceptions=False)
    context = build_container(settings, Database(make_engine(settings.effective_database_url, settings)), http=http)
    yield context
    context.close()
    http.close()


@dataclass
class Api:
    """A test client signed in as one agency's client system."""

    client: TestClient
    ctx: Container
    key: str
    agency_id: str
    agency_code: str

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.key}"}

    def post(self, path: str, json: Any = None, key: str | None = None, **kw: Any) -> Any:
        plant_payer(json)
        headers = {**self.auth, **kw.pop("headers", {})}
        if key is not False:
            headers.setdefault("Idempotency-Key", key or secrets.token_hex(8))
        return self.client.post(path, json=json, headers=headers, **kw)

    def get(self, path: str, **kw: Any) -> Any:
        return self.client.get(path, headers={**self.auth, **kw.pop("headers", {})}, **kw)

    def new_key(self, scopes: list[str], agency_code: str | None = None) -> str:
        with self.ctx.db.write() as s:
            _, raw = create_key(s, agency_code or self.agency_code, "test", scopes)
        return raw


@pytest.fixture
def client(ctx: Container, late_app: LateApp) -> Iterator[TestClient]:
    app = create_app(ctx.settings, ctx)
    # The sandbox gateway's callbacks travel over HTTP; in tests they go to this app through the context's client.
    late_app.app = app
    with TestClient(app, raise_server_exceptions=False) as c:
        yield c


@pytest.fixture
def api(client: TestClient, ctx: Container) -> Api:
    with ctx.db.write() as s:
        agency = seed_agency(s, "AGC-A")
        _, raw = create_key(s, "AGC-A", "test", ALL_SCOPES)
    return Api(client, ctx, raw, agency.id, "AGC-A")


@dataclass
class LiveServer:
    url: str
    ctx: Container
    key: str


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def live_server(database_url: str, tmp_path: Path) -> Iterator[LiveServer]:
    """The app on a real HTTP server (uvicorn, one process) in a background thread."""
    import threading
    import time

    import httpx
    import uvicorn

    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    settings = make_settings(database_url, tmp_path, public_url=url, db_pool_size=20)
    context = build_container(settings, Database(make_engine(settings.effective_database_url, settings)))
    with context.db.write() as s:
        seed_agency(s, "AGC-A")
        _, raw = create_key(s, "AGC-A", "test", ALL_SCOPES)
    server = uvicorn.Server(server_config(create_app(settings, context), "127.0.0.1", port))  # as `lephi serve`
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                break
        except httpx.HTTPError:
            time.sleep(0.05)
    yield LiveServer(url, context, raw)
    server.should_exit = True
    thread.join(10)
    context.close()


@contextmanager
def agency_api(database_url: str, tmp_path: Path, code: str, methods: list[str], gateways: str) -> Iterator[Api]:
    """A client of one agency whose gateway accounts come from the given gateways file text."""
    path = tmp_path / "gateways.toml"
    path.write_text(gateways)
    settings = make_settings(database_url, tmp_path, gateways_file=path)
    context = build_container(settings, Database(make_engine(settings.effective_database_url, settings)))
    with context.db.write() as s:
        agency = seed_agency(s, code, methods=methods)
        _, key = create_key(s, code, "test", ALL_SCOPES)
    # The adapters keep their own HTTP clients, so respx can stand in for the gateways' servers.
    with TestClient(create_app(settings, context), raise_server_exceptions=False) as client:
        yield Api(client, context, key, agency.id, code)
    context.close()


Cli = Callable[..., Result]


@pytest.fixture
def cli(api: Api, database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Cli]:
    """``lephi`` run in-process against the test database (the ``api`` fixture has seeded agency AGC-A)."""
    monkeypatch.setenv("LEPHI_DATABASE_URL", database_url)
    monkeypatch.setenv("LEPHI_ENV", "test")
    monkeypatch.setenv("LEPHI_DATA_DIR", str(tmp_path / "cli"))
    # The service's own personal-data key: the command reads and writes the same sealed rows.
    monkeypatch.setenv("LEPHI_PII_KEY_FILE", str(api.ctx.settings.data_dir / "pii.key"))
    monkeypatch.setenv("LEPHI_LOG_LEVEL", "WARNING")
    monkeypatch.setenv("LEPHI_RUN_WORKER", "false")
    get_settings.cache_clear()
    runner = CliRunner()

    def run(*args: str) -> Result:
        result = runner.invoke(cli_app, list(args))
        # The CLI configures logging for itself; give the app under test its own configuration back.
        configure_logging(api.ctx.settings.log_level, api.ctx.settings.log_json)
        return result

    yield run
    get_settings.cache_clear()


# --- a run without PostgreSQL says so --------------------------------------------------------------------------------
_NOT_RUN_ON_POSTGRES: list[str] = []


def pytest_collection_finish(session: pytest.Session) -> None:
    """Without LEPHI_TEST_POSTGRES_URL each database test runs on SQLite only: count the PostgreSQL runs left out
    (of the tests selected, after -k and -m)."""
    if PG_URL:
        return
    for item in session.items:
        callspec = getattr(item, "callspec", None)
        if callspec is not None and callspec.params.get("database_url") == "sqlite":
            _NOT_RUN_ON_POSTGRES.append(item.nodeid)


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
    if PG_URL or not _NOT_RUN_ON_POSTGRES:
        return
    terminalreporter.write_sep("=", "PostgreSQL not configured", yellow=True, bold=True)
    terminalreporter.write_line(
        f"WARNING: LEPHI_TEST_POSTGRES_URL is not set: {len(_NOT_RUN_ON_POSTGRES)} test(s) ran on SQLite only and "
        "were NOT run on PostgreSQL. CI sets it; see docs/testing.md.",
        yellow=True,
    )
