"""The baseline of every HTTP benchmark: a bare FastAPI app, served in its own uvicorn process.

One async route that touches nothing and returns a small dict, on the same FastAPI, uvicorn and settings as the
product server (``bench.harness.uvicorn_command``). Each benchmark measures it in the same run as the product, with
the same load generator, and reports the product's server CPU per request as a multiple of this app's.

    python -m bench.bare [--duration 15] [--warmup 3] [--connections 32]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import tempfile
from pathlib import Path

from fastapi import FastAPI

from bench import harness

BARE_PATH = "/"


def create() -> FastAPI:
    app = FastAPI(openapi_url=None, docs_url=None, redoc_url=None)

    @app.get(BARE_PATH)
    async def bare() -> dict[str, object]:
        return {"ok": True, "service": "lephi"}

    return app


LABEL = "bare FastAPI app (own process)"
LABEL_AFTER = "bare FastAPI app (own process, after)"


def measure(
    db: str,
    connections: int,
    warmup: float,
    duration: float,
    workdir: Path | None = None,
    label: str = LABEL,
) -> harness.Result:
    """Start the bare app in its own process, drive it with the shared load generator, and return its figures
    (``db`` only labels the result: the bare app has no database)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("LEPHI_")}
    port = harness.free_port()
    with contextlib.ExitStack() as stack:
        if workdir is None:
            workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="lephi-bench-bare-")))
        log = workdir / f"bare-{db}-{len(list(workdir.glob('bare-*.log')))}.log"
        proc = stack.enter_context(harness.uvicorn_server("bench.bare:create", env, port, log, BARE_PATH))
        spec = harness.load_spec(port, proc.pid, connections, warmup, duration, with_postgres=False)
        return harness.phase(
            db,
            label,
            {**spec, "method": "GET", "path": BARE_PATH, "headers": {}, "expect": 200},
        )


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.bare", description=__doc__.split("\n\n")[0])
    p.add_argument("--duration", type=float, default=15.0)
    p.add_argument("--warmup", type=float, default=3.0)
    p.add_argument("--connections", type=int, default=32)
    args = p.parse_args(argv)
    print(harness.machine_notes())
    result = measure("-", args.connections, args.warmup, args.duration)
    print(harness.table([result]))
    return 1 if result.errors else 0


if __name__ == "__main__":
    sys.exit(main())
