"""Which of a gateway's merchant settings are set for an agency, and where from, without ever reading a value out.

The gateways file (``LEPHI_GATEWAYS_FILE``) is read again here as written, before ``${NAME}`` references are
replaced, so that the page can say which environment variable a secret comes from. The values themselves never
leave this module: a setting is "set" (from the file, from ``${NAME}``, or built in) or "missing"."""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")

# What each built-in adapter refuses to start without (their constructors' ``_required`` settings).
REQUIRED: dict[str, tuple[str, ...]] = {
    "stripe": ("secret_key", "publishable_key", "webhook_secrets"),
    "vnpay": ("tmn_code", "hash_secret"),
    "momo": ("partner_code", "access_key", "secret_key"),
    "zalopay": ("app_id", "key1", "key2"),
    "vietqr": ("bank_bin", "account_number", "account_name", "reference_secret", "notification_secret"),
    "sandbox": ("secret",),
}
# Settings the service gives an adapter itself, not from the gateways file.
BUILT_IN: dict[str, dict[str, str]] = {"sandbox": {"secret": "LEPHI_SANDBOX_SECRET"}}


@dataclass(frozen=True)
class Setting:
    name: str
    state: str  # "env", "env_missing", "file", "built_in" or "missing"
    variables: tuple[str, ...] = ()
    level: str = ""  # "agency" (the agency's own) or "default" (every agency's), when from the file

    @property
    def shown(self) -> str:
        """The variables' names as the file writes them: ``${NAME}`` (a built-in setting's is a plain name)."""
        if self.state == "built_in":
            return ", ".join(self.variables)
        return ", ".join(f"${{{name}}}" for name in self.variables)

    @property
    def present(self) -> bool:
        return self.state in ("env", "file", "built_in")


class Unreadable(Exception):
    """The gateways file cannot be read as TOML: the page says so instead of guessing."""


def read_raw(path: Path | None) -> dict[str, Any]:
    if path is None:
        return {}
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise Unreadable(type(exc).__name__) from exc


def _variables(value: Any) -> list[str]:
    if isinstance(value, str):
        return _VAR.findall(value)
    if isinstance(value, list):
        return [name for item in value for name in _variables(item)]
    if isinstance(value, dict):
        return [name for item in value.values() for name in _variables(item)]
    return []


def _table(data: Mapping[str, Any], *path: str) -> Mapping[str, Any]:
    for key in path:
        value = data.get(key) if isinstance(data, Mapping) else None
        if not isinstance(value, Mapping):
            return {}
        data = value
    return data


def settings_of(
    raw: Mapping[str, Any], gateway: str, agency_code: str, env: Mapping[str, str] | None = None
) -> list[Setting]:
    """The gateway's settings for the agency: the required ones first (missing ones included), then the others."""
    environment = os.environ if env is None else env
    defaults = _table(raw, "gateways", gateway)
    own = _table(raw, "agencies", agency_code, gateway)
    found: dict[str, Setting] = {}
    for name, variable in BUILT_IN.get(gateway, {}).items():
        found[name] = Setting(name, "built_in", (variable,))
    for level, table in (("default", defaults), ("agency", own)):
        for name, value in table.items():
            names = tuple(dict.fromkeys(_variables(value)))
            state = ("env" if all(n in environment for n in names) else "env_missing") if names else "file"
            found[str(name)] = Setting(str(name), state, names, level)
    required = REQUIRED.get(gateway, ())
    rows = [found.get(name, Setting(name, "missing")) for name in required]
    rows += [setting for name, setting in sorted(found.items()) if name not in required]
    return rows


def ready(settings: list[Setting], gateway: str) -> bool:
    required = set(REQUIRED.get(gateway, ()))
    return all(s.present for s in settings if s.name in required)
