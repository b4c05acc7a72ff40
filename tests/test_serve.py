"""The README's run command on a fresh data directory: it migrates, seeds the demo, and the demo can be paid."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import _free_port


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    """One server for the module: a first start writes the demo's month of history, a cost worth paying once."""
    tmp_path = tmp_path_factory.mktemp("serve")
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("LEPHI_")}
    env.update({"LEPHI_DATA_DIR": str(tmp_path / "var"), "LEPHI_LOG_LEVEL": "WARNING"})
    lephi = Path(sys.executable).parent / "lephi"
    proc = subprocess.Popen(
        [str(lephi), "serve", "--port", str(port)],
        env=env,
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    base = f"http://127.0.0.1:{port}"
    lines: list[str] = []
    try:
        # Generous: the first start writes the demo history, and a busy CI machine runs several suites at once.
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            line = proc.stdout.readline() if proc.stdout else ""
            lines.append(line)
            if "xem@demo.gov.vn" in line:  # the banner's last line: the read-only demo account
                break
            if proc.poll() is not None:
                pytest.fail("serve exited:\n" + "".join(lines))
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.1)
        # Keep reading what the server prints: a full pipe would block its writes, and with them its shutdown.
        threading.Thread(target=lambda: proc.stdout and proc.stdout.read(), daemon=True).start()
        yield base, "".join(lines)
    finally:
        proc.terminate()
        try:
            # Its drain finishes the job in hand (the first start's demo history on a loaded machine can be long);
            # shutting down gracefully is tested in tests/test_graceful_shutdown.py, not here.
            proc.wait(90)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def test_serve_starts_seeds_and_the_demo_dossier_can_be_paid(served: tuple[str, str]) -> None:
    base, banner = served
    assert httpx.get(f"{base}/healthz").json() == {"status": "ok"}
    assert httpx.get(f"{base}/readyz").json()["status"] == "ok"
    pay_url = re.search(r"(http://\S+/pay/\S+)", banner)
    key = re.search(r"Demo API key.*?(lephi_\S+)", banner)
    assert pay_url and key, banner
    assert pay_url.group(1).startswith(base)

    with httpx.Client(follow_redirects=False, timeout=30) as browser:
        page = browser.get(pay_url.group(1))
        assert page.status_code == 200 and "HS-DEMO-0001" in page.text and "200.000" in page.text
        form_key = re.search(r'name="form_key" value="([^"]+)"', page.text)
        assert form_key
        csrf = re.search(r'name="csrf" value="([^"]+)"', page.text)
        assert csrf
        form = {"method": "sandbox", "form_key": form_key.group(1), "csrf": csrf.group(1)}
        r = browser.post(pay_url.group(1), data=form)
        assert r.status_code == 303 and "/sandbox/pay/" in r.headers["location"]
        # The payer chooses "success"; the sandbox calls Lephi back server to server, over real HTTP.
        sandbox = browser.get(r.headers["location"])
        csrf = re.search(r'name="csrf" value="([^"]+)"', sandbox.text)
        assert csrf
        r = browser.post(r.headers["location"], data={"outcome": "success", "csrf": csrf.group(1)})
        assert r.status_code == 303
        back = browser.get(r.headers["location"])
        assert "Thanh toán thành công" in back.text

    auth = {"Authorization": f"Bearer {key.group(1)}"}
    dossier = httpx.get(f"{base}/v1/dossiers/HS-DEMO-0001", headers=auth).json()
    assert dossier["status"] == "paid"
    payments = httpx.get(f"{base}/v1/payments", headers=auth, params={"dossier_code": "HS-DEMO-0001"}).json()
    assert [p["status"] for p in payments["data"]] == ["succeeded"]


def test_serve_prints_demo_staff_who_can_sign_in_to_the_console(served: tuple[str, str]) -> None:
    base, banner = served
    accounts = dict(re.findall(r"^\s+\w+\s+(\S+@demo\.gov\.vn)\s+password (\S+)$", banner, re.MULTILINE))
    assert set(accounts) == {
        "tinh@demo.gov.vn",
        "quantri@demo.gov.vn",
        "ketoan@demo.gov.vn",
        "pheduyet@demo.gov.vn",
        "xem@demo.gov.vn",
    }, banner
    with httpx.Client(base_url=base, follow_redirects=False, timeout=30) as browser:
        page = browser.get("/console/login")
        csrf = re.search(r'name="csrf" value="([^"]+)"', page.text)
        assert csrf
        form = {"email": "ketoan@demo.gov.vn", "password": accounts["ketoan@demo.gov.vn"], "csrf": csrf.group(1)}
        signed = browser.post("/console/login", data=form)
        assert signed.status_code == 303, signed.text
        home = browser.get("/console/")
        assert home.status_code == 200 and "ketoan@demo.gov.vn" in home.text
