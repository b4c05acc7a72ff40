"""Processes of a fleet started at the same moment: each runs the start-up path (migrations, development demo
seeding, creating a missing development signing key) and all of them must come up, agreeing on one schema, one demo
and one signing certificate.

Each test starts three real processes that import everything first and then wait for one go file
(tests/fleet_launch.py), so that they reach the race together rather than one import time apart."""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.hashes import SHA256
from sqlalchemy import create_engine, func, select, text
from sqlalchemy.engine import make_url

from console.staff.models import StaffUser
from invoices.verify import pinned, verify
from lephi.migrate import current_revision, head_revision, upgrade
from payments.agency.demo import DEMO_AGENCY, DEMO_DOSSIER
from payments.agency.models import Agency
from payments.auth.models import ApiKey
from payments.core.db import normalise_url
from payments.dossier.models import Dossier
from tests.conftest import PG_URL
from tests.invoices.test_signing import TAX_CODE

ROOT = Path(__file__).resolve().parent.parent
FLEET = 3


@pytest.fixture(params=["sqlite", "postgres"] if PG_URL else ["sqlite"])
def fresh_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A database nobody has migrated yet."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'fleet.db'}"
        return
    assert PG_URL
    admin_url = make_url(normalise_url(PG_URL))
    name = f"lephi_fleet_{os.getpid()}_{secrets.token_hex(3)}"
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield admin_url.set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def start_at_once(tmp_path: Path, url: str, *args: str) -> list[tuple[int, str, str]]:
    """Run ``args`` in FLEET processes released together; each one's exit code, stdout and stderr."""
    barrier = tmp_path / "barrier"
    barrier.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("LEPHI_")}
    env.update(
        PYTHONPATH=str(ROOT),
        LEPHI_ENV="development",
        LEPHI_DATABASE_URL=url,
        LEPHI_DATA_DIR=str(tmp_path / "var"),
        LEPHI_LOG_LEVEL="WARNING",
    )
    go = barrier / "go"
    command = [sys.executable, "-m", "tests.fleet_launch", str(go), *args]
    procs = [
        subprocess.Popen(command, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for _ in range(FLEET)
    ]
    try:
        deadline = time.monotonic() + 120
        while len(list(barrier.glob("ready.*"))) < FLEET:
            assert time.monotonic() < deadline, "the processes did not get ready"
            assert all(p.poll() is None for p in procs), [p.communicate() for p in procs]
            time.sleep(0.01)
        go.touch()
        results = []
        for p in procs:
            out, err = p.communicate(timeout=120)
            results.append((p.returncode, out, err))
        return results
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()


def assert_all_ok(results: list[tuple[int, str, str]]) -> None:
    failed = [f"exit {code}\n{err[-3000:]}" for code, _out, err in results if code != 0]
    assert not failed, "\n\n".join(failed)


def test_processes_migrating_a_fresh_database_at_once_all_succeed(tmp_path: Path, fresh_url: str) -> None:
    results = start_at_once(tmp_path, fresh_url, "migrate")
    assert_all_ok(results)
    engine = create_engine(normalise_url(fresh_url))
    try:
        assert current_revision(engine) == head_revision()
    finally:
        engine.dispose()


def test_processes_seeding_the_demo_at_once_make_one_demo(tmp_path: Path, fresh_url: str) -> None:
    upgrade(fresh_url)
    results = start_at_once(tmp_path, fresh_url, "demo")
    assert_all_ok(results)
    engine = create_engine(normalise_url(fresh_url))
    try:
        with engine.connect() as conn:
            assert (
                conn.execute(select(func.count()).select_from(Agency).where(Agency.code == DEMO_AGENCY)).scalar() == 1
            )
            assert (
                conn.execute(select(func.count()).select_from(Dossier).where(Dossier.code == DEMO_DOSSIER)).scalar()
                == 1
            )
            assert conn.execute(select(func.count()).select_from(StaffUser)).scalar() == 5
            # The key each process printed is the one in the data directory, and the only one made.
            assert conn.execute(select(func.count()).select_from(ApiKey)).scalar() == 1
    finally:
        engine.dispose()
    key = (tmp_path / "var" / "demo-api-key.txt").read_text().strip()
    staff_file = (tmp_path / "var" / "demo-staff.txt").read_text()
    for _code, out, _err in results:
        assert key in out
        for line in staff_file.splitlines():
            email, password = line.split(" ", 1)
            assert email in out and password in out


def test_processes_creating_a_missing_signing_key_at_once_load_the_same_one(tmp_path: Path) -> None:
    results = start_at_once(tmp_path, "sqlite://", "sign", "AGC-FLEET", TAX_CODE, str(tmp_path / "receipt"))
    assert_all_ok(results)
    signed = sorted(tmp_path.glob("receipt.*.xml"))
    assert len(signed) == FLEET
    loaded = [x509.load_pem_x509_certificate(p.with_suffix(".pem").read_bytes()) for p in signed]
    on_disk = x509.load_pem_x509_certificate((tmp_path / "var" / "certs" / "AGC-FLEET.cert.pem").read_bytes())
    assert {c.fingerprint(SHA256()) for c in loaded} == {on_disk.fingerprint(SHA256())}
    # What matters to payers: a receipt signed by any process verifies with the certificate any other one loaded.
    for document in signed:
        for certificate in loaded:
            assert verify(document.read_bytes(), pinned(certificate)).seller_tax_code == TAX_CODE
