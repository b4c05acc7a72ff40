"""CPU per request of the hot paths in process, one request at a time, with an optional cProfile dump per path.

    python -m bench.cpu_profile [--count 300] [--kinds dossier,sandbox,vietqr,vnpay,stripe] [--rounds 10]
                                [--inline] [--out DIR] [--db sqlite|postgres] [--postgres ADMIN_URL]

It seeds a throwaway SQLite (or PostgreSQL) database as the HTTP benchmarks do, builds the app as the server does
(``bench.server``) and drives it through ASGI on one event loop, without a server or a load generator: for each
kind, a warm-up, ``--count`` requests under cProfile (dumped to ``DIR/KIND.prof`` with ``--out``), then ``--count``
requests without it in ``--rounds`` rounds. Each line gives process CPU and wall time per request: the lowest round
(the least disturbed by other work on the machine) and the median.

``--inline`` runs the work the endpoints hand to a worker thread on the event loop's thread instead, so that
cProfile, which sees one thread, sees the database work too; the difference between the two modes' CPU is what
the hop to the thread costs. The figures are comparable only within one run on a quiet machine; the HTTP
benchmarks stay the reference.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import os
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench import callbacks, harness, sqlcount
from bench import payments_create as pc

KINDS = ("dossier", "sandbox", "vietqr", "vnpay", "stripe")
HOST = "127.0.0.1:8000"

Call = tuple[str, str, dict[str, str], bytes]


def build_requests(env: dict[str, str], count: int) -> dict[str, list[Call]]:
    key, codes, agency, pending = sqlcount.seed(env, count)
    auth = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
    out: dict[str, list[Call]] = {
        "dossier": [
            ("POST", pc.DOSSIERS_PATH, {**auth, "Idempotency-Key": f"d-{i}"}, body.encode())
            for i, body in enumerate(pc.dossier_bodies(count))
        ]
    }
    for method in pc.METHODS:
        out[method] = [
            ("POST", pc.PAYMENTS_PATH, {**auth, "Idempotency-Key": f"p-{method}-{i}"}, body.encode())
            for i, body in enumerate(pc.payment_bodies(codes[method][:count], method))
        ]
    raw = {
        "vnpay": callbacks.vnpay_requests(HOST, agency, pending["vnpay"][:count]),
        "stripe": callbacks.stripe_requests(HOST, agency, pending["stripe"][:count])[0],
    }
    for kind, messages in raw.items():
        parsed = [sqlcount.from_raw(kind, message) for message in messages]
        out[kind] = [(r.method, r.target, r.headers, r.body) for r in parsed]
    return out


async def call(app: Any, state: dict[str, Any], request: Call) -> bool:
    method, target, headers, body = request
    path, _, query = target.partition("?")
    raw_headers = [(b"host", HOST.encode()), (b"content-length", str(len(body)).encode())]
    raw_headers += [(name.lower().encode(), value.encode()) for name, value in headers.items()]
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": query.encode(),
        "root_path": "",
        "headers": raw_headers,
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 8000),
        "state": dict(state),
    }
    delivered = False
    status = 0

    async def receive() -> dict[str, Any]:
        nonlocal delivered
        if not delivered:
            delivered = True
            return {"type": "http.request", "body": body, "more_body": False}
        await asyncio.Event().wait()
        raise AssertionError("unreachable")

    async def send(message: dict[str, Any]) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]

    await app(scope, receive, send)
    if status >= 300:
        print(f"{method} {path}: HTTP {status}")
    return status < 300


def run_inline() -> None:
    """Every ``run_in_threadpool`` the endpoints and FastAPI use, and the database's own threads, run the function
    on the calling thread."""
    import fastapi.dependencies.utils
    import fastapi.routing

    from payments.auth import deps
    from payments.core.db import Database
    from payments.dossier import endpoints as dossier_endpoints
    from payments.gateway import endpoints as gateway_endpoints
    from payments.payment import endpoints as payment_endpoints

    async def inline(func: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        return func(*args, **kwargs)

    endpoints = (dossier_endpoints, gateway_endpoints, payment_endpoints)
    for module in (deps, *endpoints, fastapi.routing, fastapi.dependencies.utils):
        if hasattr(module, "run_in_threadpool"):
            module.run_in_threadpool = inline  # type: ignore[attr-defined]

    threaded = Database.offload

    async def offload(db: Database, func: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        if db.on_loop:  # PostgreSQL through asyncpg already runs on the loop's thread (in a greenlet)
            return await threaded(db, func, *args, **kwargs)
        return func(*args, **kwargs)

    Database.offload = offload  # type: ignore[method-assign,assignment]


def report(kind: str, label: str, samples: list[tuple[float, float]], size: int) -> None:
    """The lowest of the rounds (the one least disturbed by whatever else runs on the machine) and the median."""
    cpu = sorted(c / size * 1e6 for _, c in samples)
    wall = sorted(w / size * 1e6 for w, _ in samples)
    print(
        f"{kind:8} {label:9} CPU per request {cpu[0]:6.0f} us (median {cpu[len(cpu) // 2]:6.0f})"
        f"  wall {wall[0]:6.0f} us (median {wall[len(wall) // 2]:6.0f})"
    )


async def measure(
    app: Any, kinds: list[str], requests: dict[str, list[Call]], count: int, rounds: int, out: Path | None
) -> bool:
    state: dict[str, Any] = {}
    inbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    outbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    lifespan = asyncio.create_task(
        app({"type": "lifespan", "asgi": {"version": "3.0"}, "state": state}, inbox.get, outbox.put)
    )
    await inbox.put({"type": "lifespan.startup"})
    started = await outbox.get()
    assert started["type"] == "lifespan.startup.complete", started
    ok = True
    warm = 10
    for kind in kinds:
        batch = requests[kind]
        for request in batch[:warm]:
            ok &= await call(app, state, request)
        profiled = batch[warm : warm + count]
        profiler = cProfile.Profile()
        wall, cpu = time.perf_counter(), time.process_time()
        profiler.enable()
        for request in profiled:
            ok &= await call(app, state, request)
        profiler.disable()
        report(kind, "profiled", [(time.perf_counter() - wall, time.process_time() - cpu)], len(profiled))
        if out:
            profiler.dump_stats(out / f"{kind}.prof")
        plain = batch[warm + count : warm + 2 * count]
        size = max(1, len(plain) // rounds)
        samples = []
        for start in range(0, size * rounds, size):
            wall, cpu = time.perf_counter(), time.process_time()
            for request in plain[start : start + size]:
                ok &= await call(app, state, request)
            samples.append((time.perf_counter() - wall, time.process_time() - cpu))
        report(kind, "plain", samples, size)
    await inbox.put({"type": "lifespan.shutdown"})
    await lifespan
    return ok


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--count", type=int, default=300, help="requests per kind and mode (default 300)")
    parser.add_argument("--kinds", default=",".join(KINDS), help=f"comma-separated, of {', '.join(KINDS)}")
    parser.add_argument("--rounds", type=int, default=10, help="rounds the unprofiled requests are split into")
    parser.add_argument("--inline", action="store_true", help="run worker-thread work on the event loop's thread")
    parser.add_argument("--out", type=Path, help="directory for the cProfile dumps (KIND.prof)")
    parser.add_argument("--db", choices=["sqlite", "postgres"], default="sqlite", help="database (default sqlite)")
    parser.add_argument(
        "--postgres",
        default=os.environ.get("LEPHI_BENCH_POSTGRES_URL", harness.DEFAULT_PG_ADMIN_URL),
        help="admin URL of the PostgreSQL server a throwaway database is created on",
    )
    args = parser.parse_args(argv)
    kinds = [k for k in args.kinds.split(",") if k]
    if unknown := set(kinds) - set(KINDS):
        parser.error(f"unknown kinds: {', '.join(sorted(unknown))}")
    warnings.filterwarnings("ignore")
    from bench.server import app_from_environment
    from payments.agency.demo import DEMO_AGENCY

    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="lephi-bench-profile-"))
    with pc.throwaway_database(args.db, work, args.postgres) as url:
        gateways = work / "gateways.toml"
        env = pc.server_env(url, work, 8000, [f"LEPHI_GATEWAYS_FILE={gateways}"])
        gateways.write_text(
            pc.VIETQR_TOML.format(agency=DEMO_AGENCY)
            + "\n"
            + callbacks.GATEWAYS_TOML.format(
                agency=DEMO_AGENCY,
                tmn=callbacks.VNPAY_TMN_CODE,
                vnpay_secret=callbacks.VNPAY_HASH_SECRET,
                stripe_secret=callbacks.STRIPE_WEBHOOK_SECRET,
            )
        )
        requests = build_requests(env, 2 * args.count + 10)
        with harness.environment(env):
            if args.inline:
                run_inline()
            app = app_from_environment()
            ok = asyncio.run(measure(app, kinds, requests, args.count, max(1, args.rounds), args.out))
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
