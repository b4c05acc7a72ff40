"""structlog set-up: JSON lines, dotted event names, and a redaction step so secrets never reach a log."""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import Mapping, MutableMapping
from typing import Any

import structlog

from payments.core.requestid import add_to_log

# Secrets, and the personal data that travels with payments (a bank memo carries the payer's name).
_SECRET_KEYS = re.compile(
    r"(authorization|cookie|secret|password|passwd|api_?key|token|signature|card|cccd|id_number|memo|payer|phone"
    r"|email|description)",
    re.I,
)
REDACTED = "[redacted]"
_MAX_DEPTH = 20  # deeper structures are cut rather than walked: a log call must never fail


def redact(_logger: Any, _method: str, event_dict: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """Replace the value of every sensitive key, at any depth of nested dicts, lists and tuples."""
    for key in list(event_dict):
        if key != "event":
            event_dict[key] = _redacted(key, event_dict[key], 0)
    return event_dict


def _redacted(key: object, value: Any, depth: int) -> Any:
    if isinstance(key, str) and _SECRET_KEYS.search(key):
        return REDACTED
    if depth >= _MAX_DEPTH and isinstance(value, Mapping | list | tuple):
        return REDACTED
    if isinstance(value, Mapping):
        return {k: _redacted(k, v, depth + 1) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_redacted(None, v, depth + 1) for v in value]
    return value


# PostgreSQL puts the offending values in an error's DETAIL line ("Key (...)=(...)", "Failing row contains (...)"),
# which hide_parameters does not cover.
_DB_DETAIL = re.compile(r"^DETAIL:.*$", re.M)


def scrub_database_detail(_logger: Any, _method: str, event_dict: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    for key, value in event_dict.items():
        if isinstance(value, str) and "DETAIL:" in value:
            event_dict[key] = _DB_DETAIL.sub("DETAIL: " + REDACTED, value)
    return event_dict


class _CurrentStderr:
    """Writes to whatever ``sys.stderr`` is at the time (it is swapped by test runners and some servers)."""

    def write(self, text: str) -> int:
        return sys.stderr.write(text)

    def flush(self) -> None:
        sys.stderr.flush()


def configure_logging(level: str = "INFO", json: bool = True) -> None:
    renderer: Any = structlog.processors.JSONRenderer() if json else structlog.dev.ConsoleRenderer()
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            add_to_log,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            redact,
            structlog.processors.format_exc_info,
            scrub_database_detail,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelNamesMapping()[level.upper()]),
        logger_factory=structlog.PrintLoggerFactory(file=_CurrentStderr()),  # type: ignore[arg-type]
        cache_logger_on_first_use=False,
    )


def get_logger(name: str) -> Any:
    return structlog.get_logger(name)
