"""The suite's watch on its own logs: every identity number, passport number, phone and e-mail a test sends as a
payer's is planted here, and no captured log or output of any test may contain one (the hook is in conftest.py)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

PLANTED: set[str] = set()
# Shorter values (a test's "+84 912") would match by chance in ids and timestamps.
MIN_LENGTH = 8
FIELDS = ("id_number", "passport_number", "phone", "email")


def plant(values: Iterable[str | None]) -> None:
    PLANTED.update(v for v in values if v and len(v) >= MIN_LENGTH)


def plant_payer(body: Any) -> None:
    """The personal data in a dossier request's payer, if the body is one."""
    payer = body.get("payer") if isinstance(body, Mapping) else None
    if isinstance(payer, Mapping):
        plant(str(payer[f]) for f in FIELDS if isinstance(payer.get(f), str))


def leaks(captured: str) -> list[str]:
    return sorted(v for v in PLANTED if v in captured)
