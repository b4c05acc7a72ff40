"""Drill: back up with ``pg_dump -Fc``, restore with ``pg_restore`` into a fresh database, and run the service on
it: every receipt still verifies and is recognised as issued here, the next receipt continues the numbering with no
gap, and the schema is at the migrations' head. The commands are those of docs/operations.md ("Backup and
restore")."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from sqlalchemy.engine import make_url
from sqlmodel import col, select

from invoices.tables import Document
from invoices.verification import verify_upload
from lephi.migrate import upgrade
from payments.payment import kinds
from tests.drills.pgcluster import cluster
from tests.drills.service import pay, run_due_jobs, service

ROOT = Path(__file__).resolve().parents[2]


def _libpq(url: str) -> str:
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


def test_backup_restore_keeps_receipts_verifiable_and_numbering_gap_free(tmp_path: Path) -> None:
    with cluster() as pg:
        live = pg.create_database("lephi")
        upgrade(live)
        data_dir = tmp_path / "data"  # the signing keys: backed up with the database, restored beside it
        with service(live, data_dir) as api:
            for n in range(3):
                pay(api, f"HS-B{n}")
            run_due_jobs(api, {kinds.SUCCEEDED})
        dump = tmp_path / "lephi.dump"
        subprocess.run(["pg_dump", "-Fc", "-d", _libpq(live), "-f", str(dump)], check=True, timeout=120)

        restored = pg.create_database("lephi_restored")
        subprocess.run(
            ["pg_restore", "--no-owner", "--exit-on-error", "-d", _libpq(restored), str(dump)], check=True, timeout=120
        )
        env = {**os.environ, "LEPHI_DATABASE_URL": restored, "LEPHI_ENV": "test"}
        current = subprocess.run(
            [sys.executable, "-m", "alembic", "current"],
            check=False,
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert current.returncode == 0 and "(head)" in current.stdout, current.stdout + current.stderr

        with service(restored, data_dir, seed=False) as api:
            with api.ctx.db.read() as s:
                documents = list(s.exec(select(Document).order_by(col(Document.number))))
                assert [d.number for d in documents] == [1, 2, 3]
                for d in documents:
                    assert verify_upload(s, api.ctx.settings, d.xml).issued_here
            pay(api, "HS-AFTER")
            run_due_jobs(api, {kinds.SUCCEEDED})
            with api.ctx.db.read() as s:
                numbers = s.exec(select(Document.number).order_by(col(Document.number))).all()
                assert list(numbers) == [1, 2, 3, 4]
                (last,) = [d for d in s.exec(select(Document)).all() if d.number == 4]
                assert verify_upload(s, api.ctx.settings, last.xml).issued_here
