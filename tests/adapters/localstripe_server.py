"""Runs localstripe (a stateful fake of Stripe's API, installed in the venv) as a subprocess on a free port.

Used through ``run_localstripe()``, a context manager that waits until the server answers and stops it afterwards.
A server that does not start fails the tests with its log: the Stripe tests must never be skipped silently.

localstripe keeps its objects in memory (``--from-scratch``: never load an earlier run) but still writes them to
the fixed path ``/tmp/localstripe.pickle`` after every write request; that file is never read back here.
"""

from __future__ import annotations

import contextlib
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

START_TIMEOUT = 15.0
SECRET_KEY = "sk_test_lephi_localstripe"  # localstripe accepts any sk_ key; it has no accounts
PUBLISHABLE_KEY = "pk_test_lephi_localstripe"


@dataclass(frozen=True)
class LocalStripe:
    url: str
    secret_key: str = SECRET_KEY
    publishable_key: str = PUBLISHABLE_KEY

    @property
    def js_url(self) -> str:
        return f"{self.url}/js.stripe.com/v3/"


def _free_port() -> int:
    # localstripe listens on "::" (dual stack), so the port is probed there too.
    with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as sock:
        sock.bind(("::", 0))
        return int(sock.getsockname()[1])


def _executable() -> Path:
    path = Path(sys.executable).parent / "localstripe"
    if not path.exists():
        pytest.fail(f"localstripe is not installed next to {sys.executable} (uv sync --group dev installs it)")
    return path


def _wait_until_ready(proc: subprocess.Popen[bytes], url: str, log: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"localstripe exited with code {proc.returncode} at start:\n{log.read_text()[-2000:]}")
        with contextlib.suppress(httpx.TransportError):
            if httpx.get(f"{url}/js.stripe.com/v3/", timeout=1).status_code == 200:
                return
        time.sleep(0.05)
    pytest.fail(f"localstripe did not answer at {url} within {START_TIMEOUT:.0f} s:\n{log.read_text()[-2000:]}")


def _stop(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(5)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)


@contextlib.contextmanager
def run_localstripe() -> Iterator[LocalStripe]:
    with tempfile.TemporaryDirectory(prefix="localstripe-") as workdir:
        # A file, not a pipe: localstripe logs every request, and a full pipe would block the server.
        log = Path(workdir) / "localstripe.log"
        port = _free_port()
        with log.open("wb") as out:
            proc = subprocess.Popen(
                [str(_executable()), "--port", str(port), "--from-scratch"],
                cwd=workdir,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        try:
            url = f"http://127.0.0.1:{port}"
            _wait_until_ready(proc, url, log)
            yield LocalStripe(url)
        finally:
            _stop(proc)
