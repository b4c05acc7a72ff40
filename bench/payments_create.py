"""Benchmark of the API's hot paths against a bare FastAPI app in its own process, measured in the same run.

    python -m bench.payments_create [--db sqlite|postgres|both] [--postgres URL] [--duration 15] [--warmup 3]
                                    [--connections 32] [--count-sql]

For each database it creates a throwaway database (a SQLite file under a temporary directory, or a fresh PostgreSQL
database that is dropped afterwards), migrates it, and seeds the demo agency (sandbox and VietQR), an API key that
may write dossiers and payments, and one unpaid dossier per payment to be sent. Then, with the shared load generator
(``bench.harness``: ``--connections`` closed-loop keep-alive connections from a separate process, a warm-up, then a
measured window), it measures in this order:

1. the bare FastAPI app (``bench.bare``), in its own uvicorn process, started with the same uvicorn settings;
2. one uvicorn process serving the product (``bench.server:create``, outbox worker off, logging at WARNING), with
   ``GET /healthz``, ``POST /v1/dossiers`` (a new dossier each), ``POST /v1/payments`` with ``method: sandbox`` and
   ``POST /v1/payments`` with ``method: vietqr`` (each its own dossier and Idempotency-Key).
3. the bare app again: the ratios use the CPU per request of both bare phases pooled (the baseline is the figure
   most sensitive to other work on the machine), and both are shown.

Each phase is reported with its server CPU per request (``utime + stime`` of the server process over the measured
window, divided by the requests answered in it), that CPU as a multiple of the bare app's, throughput and latency
percentiles. ``--count-sql`` instead counts, in process and without a server, the SQL statements, transactions and
commits of one request of each kind (``bench.sqlcount``).

Exit status: 0 when every request got its expected status, 1 otherwise. The targets are reported, never enforced.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import os
import secrets
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from bench import bare as bare_app
from bench import harness

PROCEDURE = "2.000488"  # a procedure of the demo agency (payments.agency.demo)
RETURN_URL = "https://portal.example.gov.vn/done"
PAYMENTS_PATH = "/v1/payments"
DOSSIERS_PATH = "/v1/dossiers"
SEED_BATCH = 2000
# Default seed per payment method, per second of warm-up + measurement: above the fastest rate measured (840
# dossiers and 720 payments a second on SQLite), so that no phase runs out before its end.
DOSSIERS_PER_SECOND = 1000
METHODS = ("sandbox", "vietqr")
# Issue 10's targets: server CPU per request as a multiple of the bare app's, and p99 at 32 connections.
TARGET_CPU_RATIO = {
    ("sqlite", "payments"): 20.0,
    ("postgres", "payments"): 25.0,
    ("sqlite", "dossiers"): 15.0,
    ("postgres", "dossiers"): 15.0,
}
TARGET_P99_MS = 100.0

# Test settings of the demo agency's VietQR account, in the throwaway data directory only.
VIETQR_TOML = """\
[agencies."{agency}".vietqr]
bank_bin = "970436"
account_number = "0011001234567"
account_name = "SO TU PHAP TINH DEMO"
reference_secret = "bench-reference-secret-0123456789"
notification_secret = "bench-notification-secret-0123456789"
"""


def endpoint_label(method: str) -> str:
    return f"POST {PAYMENTS_PATH} ({method})"


# --- seed -----------------------------------------------------------------------------------------------------------
def seed(env: dict[str, str], count: int) -> tuple[str, dict[str, list[str]]]:
    """Migrate, then seed the demo agency (with every configured method), an API key that may write dossiers and
    payments, and ``count`` unpaid dossiers per payment method."""
    from bench.server import Settings, build_container, upgrade
    from payments.agency.demo import DEMO_AGENCY, seed_demo
    from payments.auth.models import Scope
    from payments.auth.service import create_key
    from payments.dossier.schemas import DossierIn, PayerIn
    from payments.dossier.service import upsert_dossier

    with harness.environment(env):
        settings = Settings()
    upgrade(settings.effective_database_url)
    ctx = build_container(settings)
    codes = {m: [f"B{m[0].upper()}-{i:07d}" for i in range(count)] for m in METHODS}
    try:
        with ctx.db.write() as s:
            dossier, _ = seed_demo(s, settings.data_dir, configured=list(METHODS))
            agency_id = dossier.agency_id
            scopes = [Scope.payments_write.value, Scope.dossiers_write.value]
            _, key = create_key(s, DEMO_AGENCY, "bench", scopes)
        payer = PayerIn(name="Nguyễn Văn An", email="an@example.com")
        every = [c for m in METHODS for c in codes[m]]
        for batch in range(0, len(every), SEED_BATCH):
            with ctx.db.write() as s:
                for code in every[batch : batch + SEED_BATCH]:
                    upsert_dossier(s, agency_id, DossierIn(code=code, procedure_code=PROCEDURE, payer=payer))
    finally:
        ctx.close()
    return key, codes


def server_env(database_url: str, data_dir: Path, port: int, extra: list[str]) -> dict[str, str]:
    """The product server's environment: a throwaway data directory, the worker off, the demo agency's VietQR
    account in a gateways file, and ``extra`` (``LEPHI_NAME=value``) last."""
    from payments.agency.demo import DEMO_AGENCY

    gateways = data_dir / "gateways.toml"
    if not gateways.exists():
        gateways.write_text(VIETQR_TOML.format(agency=DEMO_AGENCY))
    env = {k: v for k, v in os.environ.items() if not k.startswith("LEPHI_")}
    env.update(
        {
            "LEPHI_ENV": "test",
            "LEPHI_DATABASE_URL": database_url,
            "LEPHI_DATA_DIR": str(data_dir),
            "LEPHI_PUBLIC_URL": f"http://127.0.0.1:{port}",
            "LEPHI_RUN_WORKER": "false",
            "LEPHI_SANDBOX_ENABLED": "true",
            "LEPHI_LOG_LEVEL": "WARNING",
            "LEPHI_LOG_JSON": "true",
            "LEPHI_GATEWAYS_FILE": str(gateways),
            # One API key sends the whole load: the per-key limit would measure itself, not the service.
            "LEPHI_API_RATE_PER_MINUTE": "100000000",
        }
    )
    for item in extra:
        name, sep, value = item.partition("=")
        if not sep or not name.startswith("LEPHI_"):
            raise SystemExit(f"--env takes LEPHI_NAME=value, got {item!r}")
        env[name] = value
    return env


@contextlib.contextmanager
def throwaway_database(db: str, data_dir: Path, pg_admin_url: str) -> Iterator[str]:
    """A SQLite file in ``data_dir``, or a fresh PostgreSQL database dropped afterwards."""
    if db == "sqlite":
        yield f"sqlite:///{(data_dir / 'lephi.db').as_posix()}"
    else:
        with harness.postgres_database(pg_admin_url) as url:
            yield url


# --- one database, every phase --------------------------------------------------------------------------------------
def dossier_bodies(count: int) -> list[str]:
    run = secrets.token_hex(2).upper()
    return [
        json.dumps(
            {
                "code": f"BD{run}-{i:07d}",
                "procedure_code": PROCEDURE,
                "payer": {"name": "Nguyễn Văn An", "email": "an@example.com"},
            },
            separators=(",", ":"),
        )
        for i in range(count)
    ]


def payment_bodies(codes: list[str], method: str) -> list[str]:
    return [
        json.dumps({"dossier_code": c, "method": method, "return_url": RETURN_URL}, separators=(",", ":"))
        for c in codes
    ]


def bench_database(db: str, args: argparse.Namespace, workdir: Path) -> list[harness.Result]:
    from bench.server import READY_PATH

    data_dir = workdir / db
    data_dir.mkdir()
    results = [bare_app.measure(db, args.connections, args.warmup, args.duration, data_dir)]
    port = harness.free_port()
    with throwaway_database(db, data_dir, args.pg_admin_url) as url:
        env = server_env(url, data_dir, port, args.env)
        started = time.perf_counter()
        key, codes = seed(env, args.dossiers)
        print(
            f"[{db}] seeded {args.dossiers} unpaid dossiers per method in {time.perf_counter() - started:.1f} s",
            flush=True,
        )
        log = data_dir / "server.log"
        with harness.uvicorn_server(args.app, env, port, log, READY_PATH) as proc:
            print(f"[{db}] server pid {proc.pid} on port {port}", flush=True)
            common = harness.load_spec(
                port, proc.pid, args.connections, args.warmup, args.duration, with_postgres=db == "postgres"
            )
            auth = {"Authorization": f"Bearer {key}"}
            results.append(
                harness.phase(
                    db, "GET /healthz", {**common, "method": "GET", "path": "/healthz", "headers": {}, "expect": 200}
                )
            )
            spec = {"method": "POST", "path": DOSSIERS_PATH, "headers": auth, "expect": 201}
            bodies = dossier_bodies(args.dossiers)
            results.append(harness.phase(db, f"POST {DOSSIERS_PATH}", {**common, **spec, "bodies": bodies}))
            for method in METHODS:
                spec = {"method": "POST", "path": PAYMENTS_PATH, "headers": auth, "expect": 201}
                bodies = payment_bodies(codes[method], method)
                results.append(harness.phase(db, endpoint_label(method), {**common, **spec, "bodies": bodies}))
        harness.server_log_warnings(db, log)
    results.append(bare_again(db, args, data_dir))
    return results


def bare_again(db: str, args: argparse.Namespace, data_dir: Path) -> harness.Result:
    """The bare app once more after the product's phases: its CPU per request is the most noise-sensitive figure
    of every ratio (it moved by half between phases of one run), so the ratios use both measurements."""
    return bare_app.measure(db, args.connections, args.warmup, args.duration, data_dir, label=bare_app.LABEL_AFTER)


# --- report ---------------------------------------------------------------------------------------------------------
def bare_of(results: list[harness.Result]) -> dict[str, harness.Result]:
    """Per database, the bare app's figures over its measurements of the run (before and after the product's
    phases) pooled: their requests and CPU added, so its CPU per request is the mean over both windows."""
    out: dict[str, harness.Result] = {}
    for r in results:
        if not r.endpoint.startswith("bare "):
            continue
        seen = out.get(r.db)
        if seen is None or seen.server_cpu_ms is None or r.server_cpu_ms is None:
            out[r.db] = r
            continue
        out[r.db] = dataclasses.replace(
            seen,
            endpoint="bare FastAPI app (before and after)",
            requests=seen.requests + r.requests,
            server_cpu_ms=seen.server_cpu_ms + r.server_cpu_ms,
        )
    return out


def verdicts(results: list[harness.Result]) -> list[str]:
    out = []
    bare = bare_of(results)
    for r in results:
        base = bare[r.db]
        ratio = r.cpu_ratio(base)
        kind = "payments" if r.endpoint.startswith(f"POST {PAYMENTS_PATH}") else None
        kind = "dossiers" if r.endpoint.startswith(f"POST {DOSSIERS_PATH}") else kind
        line = f"{r.db} {r.endpoint}: " + ("-" if ratio is None else f"{ratio:.1f}x the bare app's CPU per request")
        target = TARGET_CPU_RATIO.get((r.db, kind or ""))
        if target is not None and ratio is not None:
            line += f" (target <= {target:g}x: {'met' if ratio <= target else 'MISSED'})"
        if kind == "payments":
            ok = "met" if r.p99_ms <= TARGET_P99_MS else "MISSED"
            line += f"; p99 {r.p99_ms:.1f} ms (target <= {TARGET_P99_MS:g} ms: {ok})"
        out.append(line)
        if r.errors:
            out.append(f"  statuses {r.statuses}; samples:")
            out += [f"    {s}" for s in r.error_samples]
        if r.exhausted:
            out.append(f"  ran out of seeded dossiers after {r.seconds:.1f} s; raise --dossiers")
    return out


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.payments_create", description=__doc__.split("\n\n")[0])
    harness.add_load_options(p)
    p.add_argument(
        "--dossiers",
        type=int,
        default=None,
        help=f"unpaid dossiers to seed per payment method, and dossiers to create (default: {DOSSIERS_PER_SECOND} "
        "per second of warm-up + duration)",
    )
    p.add_argument(
        "--env",
        action="append",
        default=[],
        metavar="LEPHI_NAME=value",
        help="extra setting for the server and the seeding, e.g. LEPHI_SQLITE_SYNCHRONOUS=NORMAL (repeatable)",
    )
    p.add_argument(
        "--app",
        default="bench.server:create",
        help="ASGI app factory uvicorn serves (default bench.server:create); another launcher lets one try a "
        "change without editing the product",
    )
    p.add_argument("--count-sql", action="store_true", help="count SQL statements and transactions per request")
    p.add_argument("--show-sql", action="store_true", help="with --count-sql, also print each request's statements")
    p.add_argument("--json", type=Path, help="also write the results as JSON to this file")
    p.add_argument("--keep", action="store_true", help="keep the temporary directory (SQLite file, server logs)")
    args = p.parse_args(argv)
    harness.settle_database(args)
    if args.dossiers is None:
        args.dossiers = int(DOSSIERS_PER_SECOND * (args.warmup + args.duration))
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    dbs = ["sqlite", "postgres"] if args.db == "both" else [args.db]
    if "postgres" in dbs:
        harness.check_postgres(args.pg_admin_url)
    if args.count_sql:
        from bench import sqlcount

        return sqlcount.run(dbs, args.pg_admin_url, args.env, args.json, verbose=args.show_sql)
    print(harness.machine_notes())
    print(
        f"method: the bare app and the product each in its own uvicorn process, {args.connections} keep-alive "
        f"connections from a separate load-generator process, {args.warmup:g} s warm-up then {args.duration:g} s "
        "measured per phase" + (f"; settings {' '.join(args.env)}" if args.env else ""),
        flush=True,
    )
    workdir = Path(tempfile.mkdtemp(prefix="lephi-bench-"))
    results: list[harness.Result] = []
    try:
        for db in dbs:
            results += bench_database(db, args, workdir)
    finally:
        if args.keep:
            print(f"kept {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    bare = bare_of(results)
    print()
    print(harness.table(results, bare))
    print()
    for line in verdicts(results):
        print(line)
    print(harness.machine_notes())
    if args.json:
        args.json.write_text(json.dumps([r.as_json(bare[r.db]) for r in results], indent=2))
    return 1 if any(r.errors or r.exhausted for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
