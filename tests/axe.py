"""axe-core in a real page: the accessibility violations of what the browser shows now.

The pages' Content-Security-Policy rightly refuses an injected script, so the page is opened in a browser context
made with ``bypass_csp=True`` (``new_context``) for this check only; the CSP itself is tested elsewhere."""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Any

from playwright.sync_api import Page

AXE = Path(__file__).resolve().parent.parent / "node_modules" / "axe-core" / "axe.min.js"
BLOCKING = ("critical", "serious")


@cache
def _source() -> str:
    if not AXE.exists():
        raise RuntimeError(f"{AXE} is missing: run scripts/bootstrap --dev (it runs npm ci)")
    return AXE.read_text()


def violations(page: Page, impacts: tuple[str, ...] = BLOCKING) -> list[dict[str, Any]]:
    """The violations of the given impacts, each as ``{id, impact, help, targets}``; WCAG 2.1 A/AA rules."""
    page.add_script_tag(content=_source())
    result: dict[str, Any] = page.evaluate(
        "async () => await axe.run(document, {runOnly: {type: 'tag', values: ['wcag2a', 'wcag2aa', 'wcag21a', "
        "'wcag21aa', 'best-practice']}})"
    )
    return [
        {
            "id": v["id"],
            "impact": v["impact"],
            "help": v["help"],
            "targets": [n["target"] for n in v["nodes"]][:5],
        }
        for v in result["violations"]
        if v["impact"] in impacts
    ]
