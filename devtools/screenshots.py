"""Screenshots of the main pages, at an office screen's width and a phone's, for docs/console.md.

Usage: ``make screenshots`` (or ``.venv/bin/python -m devtools.screenshots [OUT_DIR]``). It starts ``lephi serve``
on a fresh data directory (demo data, SQLite), signs in with the demo accounts the banner prints, and photographs
the payer's page, the sign-in page and every page in each demo role's menu, in Vietnamese, with Debian's
Chromium. Pages are found from the menu, so a new console page appears without changing this file."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
from playwright.sync_api import Page, sync_playwright

CHROMIUM = os.environ.get("LEPHI_TEST_CHROMIUM", "/usr/bin/chromium")
FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
]
SCREENS = {"office": {"width": 1366, "height": 768}, "phone": {"width": 390, "height": 844}}
ROLES = ("agency_admin", "finance", "province_admin")
OUT = Path("docs/screenshots")


def _serve(data_dir: Path, port: int) -> tuple[subprocess.Popen[str], str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LEPHI_")}
    env.update({"LEPHI_DATA_DIR": str(data_dir), "LEPHI_LOG_LEVEL": "WARNING"})
    lephi = Path(sys.executable).parent / "lephi"
    proc = subprocess.Popen(  # noqa: S603 - our own CLI, from this venv
        [str(lephi), "serve", "--port", str(port)], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    lines: list[str] = []
    deadline = time.monotonic() + 180  # the first start writes the demo history: slow on a busy machine
    while time.monotonic() < deadline:
        line = proc.stdout.readline() if proc.stdout else ""
        lines.append(line)
        if "xem@demo.gov.vn" in line or proc.poll() is not None:
            break
    base = f"http://127.0.0.1:{port}"
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                return proc, "".join(lines)
        except httpx.HTTPError:
            time.sleep(0.2)
    proc.terminate()
    raise SystemExit("lephi serve did not start:\n" + "".join(lines))


def _shoot(page: Page, out: Path, name: str) -> None:
    for screen, size in SCREENS.items():
        page.set_viewport_size(size)  # type: ignore[arg-type]
        path = out / f"{name}-{screen}.png"
        page.screenshot(path=str(path), full_page=True)
        sys.stdout.write(f"  {path}\n")


def _slug(href: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", href.removeprefix("/console").strip("/").lower()) or "home"


def main(out: Path = OUT) -> None:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = int(sock.getsockname()[1])
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        proc, banner = _serve(Path(tmp) / "var", port)
        base = f"http://127.0.0.1:{port}"
        accounts = dict(re.findall(r"^\s+(\w+)\s+\S+@demo\.gov\.vn\s+password (\S+)$", banner, re.MULTILINE))
        emails = dict(re.findall(r"^\s+(\w+)\s+(\S+@demo\.gov\.vn)\s+password", banner, re.MULTILINE))
        pay = re.search(r"(http://\S+/pay/\S+)", banner)
        try:
            with sync_playwright() as p:
                browser = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
                page = browser.new_page(locale="vi-VN")
                if pay:
                    page.goto(pay.group(1))
                    _shoot(page, out, "payer-pay")
                page.goto(f"{base}/console/login")
                _shoot(page, out, "console-login")
                seen: set[str] = set()
                for role in ROLES:
                    context = browser.new_context(locale="vi-VN")
                    page = context.new_page()
                    page.goto(f"{base}/console/login")
                    page.fill("#email", emails[role])
                    page.fill("#password", accounts[role])
                    page.locator("form button[type=submit]").last.click()
                    page.wait_for_load_state()
                    hrefs = [h for h in page.locator("nav.main a").evaluate_all("as => as.map(a => a.pathname)")]
                    for href in hrefs:
                        if href in seen:
                            continue
                        seen.add(href)
                        page.goto(f"{base}{href}")
                        _shoot(page, out, f"console-{_slug(href)}")
                    context.close()
                browser.close()
        finally:
            proc.terminate()
            proc.wait(10)


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else OUT)
