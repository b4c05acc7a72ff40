"""The previous release's code against the new schema, for the payment path: during a rolling deploy its processes
still serve while the migrations of the new release have already run (the expand/contract rule of
docs/operations.md, "Migrations on a running fleet").

The previous release is the commit named in ``previous_release``; it is exported with ``git archive`` and run in a
process of its own, with this environment's installed dependencies, against a PostgreSQL database migrated to this
tree's head. Without the git history the test fails: a missing check must not pass as a skipped one."""

from __future__ import annotations

import os
import subprocess
import sys
import tarfile
from pathlib import Path

from lephi.migrate import upgrade
from tests.drills.pgcluster import cluster

ROOT = Path(__file__).resolve().parents[2]
PREVIOUS = (Path(__file__).parent / "previous_release").read_text().strip()

# Runs inside the export, with only the previous release's own code importable (its modules, its test factories).
SCRIPT = """
import os, pathlib, sys
from fastapi.testclient import TestClient

import lephi
assert pathlib.Path(lephi.__file__).resolve().is_relative_to(pathlib.Path.cwd().resolve()), lephi.__file__

from lephi.app import create_app
from lephi.container import build_container
from lephi.settings import Settings
from payments.auth.service import create_key
from payments.core.db import Database, make_engine
from tests.factories import dossier_body, payment_body, sandbox_outcome, seed_agency


class Late:
    app = None

    async def __call__(self, scope, receive, send):
        await self.app(scope, receive, send)


settings = Settings(
    env="test", database_url=os.environ["DRILL_DATABASE_URL"], data_dir=os.environ["DRILL_DATA_DIR"],
    public_url="http://testserver", run_worker=False, sandbox_enabled=True, log_level="WARNING",
)
late = Late()
ctx = build_container(settings, Database(make_engine(settings.effective_database_url, settings)),
                      http=TestClient(late, raise_server_exceptions=False))
with ctx.db.write() as s:
    seed_agency(s, "AGC-OLD")
    _, key = create_key(s, "AGC-OLD", "previous release", ["dossiers:write", "payments:write", "payments:read"])
late.app = app = create_app(settings, ctx)
auth = {"Authorization": f"Bearer {key}"}
with TestClient(app, raise_server_exceptions=False) as client:
    r = client.post("/v1/dossiers", json=dossier_body("HS-OLD"), headers={**auth, "Idempotency-Key": "d-old"})
    assert r.status_code == 201, r.text
    r = client.post("/v1/payments", json=payment_body("HS-OLD"), headers={**auth, "Idempotency-Key": "p-old"})
    assert r.status_code == 201, r.text
    payment = r.json()
    r = sandbox_outcome(client, settings, payment["gateway_reference"], "success", follow_redirects=False)
    assert r.status_code < 400, r.text
    r = client.get(f"/v1/payments/{payment['id']}", headers=auth)
    assert r.status_code == 200 and r.json()["status"] == "succeeded", r.text
ctx.close()
print("previous release: payment", payment["id"], "succeeded")
"""


def _git(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["git", "-C", str(ROOT), *args], check=False, capture_output=True, text=True, timeout=120)


def _export(commit: str, into: Path) -> None:
    archive = into.with_suffix(".tar")
    if _git("cat-file", "-e", f"{commit}^{{commit}}").returncode != 0:
        # A shallow clone lacks the commit: ask the clone's origin for it before failing.
        _git("fetch", "--quiet", "origin", commit)
    got = subprocess.run(
        ["git", "-C", str(ROOT), "archive", "--format=tar", "-o", str(archive), commit],
        check=False,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert got.returncode == 0, (
        f"cannot export the previous release {commit} with git archive (a clone with full history is needed): "
        f"{got.stderr}"
    )
    with tarfile.open(archive) as tar:
        tar.extractall(into, filter="data")


def test_previous_release_pays_against_the_new_schema(tmp_path: Path) -> None:
    old = tmp_path / "previous"
    _export(PREVIOUS, old)
    with cluster() as pg:
        url = pg.create_database("lephi")
        upgrade(url)  # this tree's head
        env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("LEPHI_")},
            "PYTHONPATH": str(old),
            "DRILL_DATABASE_URL": url,
            "DRILL_DATA_DIR": str(tmp_path / "data"),
        }
        run = subprocess.run(
            [sys.executable, "-c", SCRIPT], check=False, cwd=old, env=env, capture_output=True, text=True, timeout=300
        )
        assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-5000:]
        assert "succeeded" in run.stdout
