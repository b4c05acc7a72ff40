"""Gateway credentials and options, per gateway and per agency, from a TOML file (``LEPHI_GATEWAYS_FILE``).

```toml
[gateways.stripe]                 # defaults for every agency
api_base = "https://api.stripe.com"

[agencies."DEMO-STP".stripe]      # one agency's own merchant account
secret_key = "${DEMO_STRIPE_SECRET_KEY}"
publishable_key = "pk_live_..."
webhook_secrets = ["${DEMO_STRIPE_WEBHOOK_SECRET}"]
```

``${NAME}`` is replaced by the environment variable NAME, so secrets stay out of the file. Each agency's merchant
settings sit on top of the gateway defaults; an adapter is built once per (gateway, agency).
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


class GatewayConfigError(ValueError):
    """The gateways file is unreadable, or names an environment variable that is not set."""


def _expand(value: Any, env: Mapping[str, str]) -> Any:
    if isinstance(value, str):

        def sub(match: re.Match[str]) -> str:
            name = match.group(1)
            if name not in env:
                raise GatewayConfigError(f"environment variable {name} (used in the gateways file) is not set")
            return env[name]

        return _VAR.sub(sub, value)
    if isinstance(value, list):
        return [_expand(v, env) for v in value]
    if isinstance(value, dict):
        return {k: _expand(v, env) for k, v in value.items()}
    return value


class GatewayConfig:
    def __init__(self, defaults: dict[str, dict[str, Any]], agencies: dict[str, dict[str, dict[str, Any]]]) -> None:
        self.defaults = defaults
        self.agencies = agencies

    @classmethod
    def load(cls, path: Path | None, env: Mapping[str, str] | None = None) -> GatewayConfig:
        if path is None:
            return cls({}, {})
        try:
            raw = tomllib.loads(path.read_text(encoding="utf-8"))
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise GatewayConfigError(f"cannot read the gateways file {path}: {exc}") from exc
        data = _expand(raw, os.environ if env is None else env)
        return cls(dict(data.get("gateways", {})), dict(data.get("agencies", {})))

    def for_agency(self, gateway: str, agency_code: str | None) -> dict[str, Any]:
        merged = dict(self.defaults.get(gateway, {}))
        if agency_code is not None:
            merged.update(self.agencies.get(agency_code, {}).get(gateway, {}))
        return merged
