"""Log lines of one module, recorded by standing in for its logger.

structlog's own ``capture_logs`` misses a logger that another test has already used (it is cached on first use), so
an assertion on log lines that passes alone can fail in the full suite."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import ModuleType
from typing import Any


@contextmanager
def module_logs(module: ModuleType) -> Iterator[list[dict[str, Any]]]:
    lines: list[dict[str, Any]] = []

    class _Recorder:
        def __getattr__(self, level: str) -> Callable[..., None]:
            def record(event: str, **fields: Any) -> None:
                lines.append({"event": event, **fields, "log_level": level})

            return record

    kept = getattr(module, "log")  # noqa: B009  any module with a module-level ``log``
    setattr(module, "log", _Recorder())  # noqa: B010
    try:
        yield lines
    finally:
        setattr(module, "log", kept)  # noqa: B010
