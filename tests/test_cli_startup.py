"""``lephi --help`` answers at once: the web app, the database models and lxml are loaded only by the commands that
use them. Checked in a fresh interpreter, since this test process has long imported everything."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from lephi.cli import app

# The web app (FastAPI and the app module), SQLAlchemy and every table model, the XML stack.
HEAVY = ("fastapi", "lephi.app", "lephi.container", "sqlalchemy", "sqlmodel", "lxml")

PROBE = """
import json, sys
from lephi.cli import app
try:
    app(sys.argv[1:])
except SystemExit:
    pass
print(json.dumps(sorted(sys.modules)))
"""


def _modules_after(*args: str) -> list[str]:
    done = subprocess.run([sys.executable, "-c", PROBE, *args], capture_output=True, text=True, check=True, timeout=60)
    modules: list[str] = json.loads(done.stdout.strip().splitlines()[-1])
    return modules


def _heavy(modules: list[str]) -> list[str]:
    ours = ("payments", "invoices", "console", "adapters", "lephi", "devtools")
    return [
        m
        for m in modules
        if m.split(".")[0] in HEAVY or m in HEAVY or (m.split(".")[0] in ours and m.endswith((".models", ".tables")))
    ]


@pytest.mark.parametrize("args", [("--help",), ("reconcile", "--help"), ("reconcile", "import", "--help")])
def test_help_loads_nothing_heavy(args: tuple[str, ...]) -> None:
    modules = _modules_after(*args)
    assert "lephi.cli.reconcile" in modules  # the probe did load the command line
    assert _heavy(modules) == []


def test_a_command_that_needs_the_application_still_gets_it() -> None:
    # The probe itself can tell: ``openapi`` builds the web app, so its modules are there.
    modules = _modules_after("openapi")
    assert "lephi.app" in modules
    assert "fastapi" in modules


def test_every_command_is_still_registered() -> None:
    import typer.main

    names = set(typer.main.get_command(app).commands)  # type: ignore[attr-defined]
    assert {"migrate", "serve", "worker", "openapi", "reconcile", "staff", "audit", "apikey"} <= names
