"""Scale of the payment create path with the number of API processes, on PostgreSQL, against the database's own
single-connection commit rate measured in the same run.

    python -m bench.fleet [--postgres URL] [--processes 1,2,4] [--duration 15] [--warmup 3] [--connections 32]

It creates a fresh PostgreSQL database (dropped afterwards), migrates it, and seeds the demo agency (sandbox), an API
key and enough unpaid dossiers for every phase. Then for each count N of ``--processes`` it starts N processes of
``lephi serve --no-worker`` (real uvicorn, each on its own port) and one ``lephi worker``, and drives
``POST /v1/payments`` (``method: sandbox``, a dossier and an Idempotency-Key each) with the shared load generator
(``bench.harness``): ``--connections`` closed-loop keep-alive connections from a separate process, spread over the N
ports in turn as a load balancer would, a warm-up, then a measured window. Reported per N: payments per second,
latency percentiles, the API processes' CPU per payment and in all (``utime + stime``, summed over them), PostgreSQL's
CPU, the CPU everything else on the machine took in the window (percent of one core), the speed-up over one process,
and the machine's load average.

The baseline is a tight loop of ``INSERT`` + ``COMMIT`` on one psycopg connection to the same server (a table of
its own in the throwaway database), for ``--commit-seconds``, before the first phase and after the last: each payment
create commits at least once, so one connection's commit rate is what a single serialised writer could reach.

Exit status: 0 when every request got its 201, 1 otherwise. The target (2 processes >= 1.6x one, issue 12) is
reported, never enforced.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench import harness
from bench.fleet_scenario import lephi_command
from bench.payments_create import PAYMENTS_PATH, PROCEDURE, RETURN_URL

TARGET_TWO_OVER_ONE = 1.6
SEED_BATCH = 2000
PAYMENTS_PER_SECOND = 1000  # dossiers seeded per phase, per second of warm-up + measurement (above the fastest rate)


@dataclass
class Phase:
    processes: int
    result: harness.Result
    load_before: float
    load_after: float


# --- the database -------------------------------------------------------------------------------------------------
def commit_rate(url: str, seconds: float) -> float:
    """INSERT + COMMIT per second on one connection, in a tight loop."""
    import psycopg
    from sqlalchemy.engine import make_url

    from payments.core.db import normalise_url

    u = make_url(normalise_url(url))
    with psycopg.connect(
        host=u.host or "127.0.0.1", port=u.port or 5432, user=u.username, password=u.password, dbname=u.database
    ) as conn:
        conn.execute("CREATE TABLE IF NOT EXISTS bench_commit (id bigserial PRIMARY KEY, at timestamptz)")
        conn.commit()
        done, end = 0, time.perf_counter() + seconds
        start = time.perf_counter()
        while time.perf_counter() < end:
            conn.execute("INSERT INTO bench_commit (at) VALUES (now())")
            conn.commit()
            done += 1
        rate = done / (time.perf_counter() - start)
        conn.execute("DROP TABLE bench_commit")
        conn.commit()
    return rate


def seed(url: str, data_dir: Path, count: int) -> tuple[str, list[str]]:
    """Migrate, seed the demo agency with the sandbox, an API key for payments, and ``count`` unpaid dossiers."""
    from bench.server import Settings, build_container, upgrade
    from payments.agency.demo import DEMO_AGENCY, seed_demo
    from payments.auth.models import Scope
    from payments.auth.service import create_key
    from payments.dossier.schemas import DossierIn, PayerIn
    from payments.dossier.service import upsert_dossier

    upgrade(url)
    ctx = build_container(Settings(database_url=url, data_dir=data_dir, run_worker=False, log_level="WARNING"))
    codes = [f"BF-{i:07d}" for i in range(count)]
    try:
        with ctx.db.write() as s:
            dossier, _ = seed_demo(s, data_dir, configured=["sandbox"])
            agency_id = dossier.agency_id
            _, key = create_key(s, DEMO_AGENCY, "bench", [Scope.payments_write.value])
        payer = PayerIn(name="Nguyễn Văn An", email="an@example.com")
        for batch in range(0, count, SEED_BATCH):
            with ctx.db.write() as s:
                for code in codes[batch : batch + SEED_BATCH]:
                    upsert_dossier(s, agency_id, DossierIn(code=code, procedure_code=PROCEDURE, payer=payer))
    finally:
        ctx.close()
    return key, codes


# --- processes ------------------------------------------------------------------------------------------------------
def fleet_env(url: str, data_dir: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LEPHI_")}
    env.update(
        {
            "LEPHI_ENV": "test",
            "LEPHI_DATABASE_URL": url,
            "LEPHI_DATA_DIR": str(data_dir),
            "LEPHI_SANDBOX_ENABLED": "true",
            "LEPHI_LOG_LEVEL": "WARNING",
            "LEPHI_LOG_JSON": "true",
            # One API key sends the whole load: the per-key limit would measure itself, not the service.
            "LEPHI_API_RATE_PER_MINUTE": "100000000",
            "LEPHI_FORM_SECRET": "bench-fleet-form-secret-0123456789abcdef",
            "PYTHONPATH": str(harness.ROOT),
        }
    )
    return env


def start(n: int, env: dict[str, str], workdir: Path) -> tuple[list[tuple[subprocess.Popen[bytes], int]], Any]:
    """``n`` API processes and one worker, started together; each API process with its port."""
    apis = []
    for i in range(n):
        port = harness.free_port()
        with (workdir / f"api{n}-{i}.log").open("wb") as log:
            command = [*lephi_command(), "serve", "--no-worker", "--host", "127.0.0.1", "--port", str(port)]
            proc = subprocess.Popen(
                command,
                env={**env, "LEPHI_PUBLIC_URL": f"http://127.0.0.1:{port}"},
                cwd=workdir,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        apis.append((proc, port))
    with (workdir / f"worker{n}.log").open("wb") as log:
        worker = subprocess.Popen([*lephi_command(), "worker"], env=env, cwd=workdir, stdout=log, stderr=log)
    from bench.server import READY_PATH

    for i, (proc, port) in enumerate(apis):
        harness.wait_ready(proc, port, workdir / f"api{n}-{i}.log", READY_PATH, timeout=180)
    return apis, worker


def stop(procs: list[subprocess.Popen[bytes]]) -> None:
    for p in procs:
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
    for p in procs:
        try:
            p.wait(timeout=30)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


# --- the run --------------------------------------------------------------------------------------------------------
def measure(n: int, args: argparse.Namespace, env: dict[str, str], key: str, codes: list[str], workdir: Path) -> Phase:
    apis, worker = start(n, env, workdir)
    try:
        time.sleep(1)  # let the start-up's own work (the worker's first claims, caches) settle
        load_before = os.getloadavg()[0]
        spec = harness.load_spec(apis[0][1], apis[0][0].pid, args.connections, args.warmup, args.duration, True)
        spec.update(
            {
                "ports": [port for _, port in apis],
                "server_pids": [p.pid for p, _ in apis],
                "method": "POST",
                "path": PAYMENTS_PATH,
                "headers": {"Authorization": f"Bearer {key}"},
                "expect": 201,
                "bodies": [
                    json.dumps(
                        {"dossier_code": c, "method": "sandbox", "return_url": RETURN_URL}, separators=(",", ":")
                    )
                    for c in codes
                ],
            }
        )
        result = harness.phase("postgres", f"{n} API process{'es' if n > 1 else ''}", spec)
        return Phase(n, result, load_before, os.getloadavg()[0])
    finally:
        stop([p for p, _ in apis] + [worker])


def pct(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f}"


def report(phases: list[Phase], commits: list[float]) -> list[str]:
    one = next((p.result.rps for p in phases if p.processes == 1), None)
    header = (
        "| API processes | payments/s | x 1 process | p50 ms | p99 ms | API CPU ms/payment | API CPU% | postgres CPU% "
        "| other CPU% | payments per single-connection commit | errors | load average (1 min) before / after |"
    )
    lines = [header, "|" + "---|" * 12]
    base = sum(commits) / len(commits)
    for p in phases:
        r = p.result
        cpu = r.server_cpu_ms_per_request
        lines.append(
            f"| {p.processes} | {r.rps:.0f} | {r.rps / one if one else float('nan'):.2f} | {r.p50_ms:.1f} "
            f"| {r.p99_ms:.1f} | {'-' if cpu is None else f'{cpu:.2f}'} | {pct(r.server_cpu)} | {pct(r.postgres_cpu)} "
            f"| {pct(r.other_cpu)} | {r.rps / base:.2f} | {r.errors} "
            f"| {p.load_before:.2f} / {p.load_after:.2f} |"
        )
    lines.append("")
    lines.append(
        "single-connection PostgreSQL commit rate (INSERT + COMMIT): "
        + ", ".join(f"{c:,.0f}/s" for c in commits)
        + " (before the first phase, after the last)"
    )
    two = next((p.result.rps for p in phases if p.processes == 2), None)
    if one and two:
        ratio = two / one
        verdict = "met" if ratio >= TARGET_TWO_OVER_ONE else "MISSED"
        lines.append(f"2 processes over 1: {ratio:.2f}x (target >= {TARGET_TWO_OVER_ONE:g}x: {verdict})")
    return lines


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.fleet", description=__doc__.split("\n\n")[0])
    harness.add_load_options(p)
    p.add_argument("--processes", default="1,2,4", help="API process counts to measure, comma-separated")
    p.add_argument("--commit-seconds", type=float, default=3.0, help="length of each commit-rate loop (default 3)")
    p.add_argument("--json", type=Path, help="also write the results as JSON to this file")
    p.add_argument("--keep", action="store_true", help="keep the temporary directory (process logs)")
    args = p.parse_args(argv)
    args.db = "postgres"
    if args.pg_admin_url is None:
        args.pg_admin_url = os.environ.get("LEPHI_BENCH_POSTGRES_URL", harness.DEFAULT_PG_ADMIN_URL)
    args.counts = [int(x) for x in args.processes.split(",") if x.strip()]
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    harness.check_postgres(args.pg_admin_url)
    print(harness.machine_notes())
    print(
        f"method: N x `lephi serve --no-worker` + 1 `lephi worker` on PostgreSQL, {args.connections} keep-alive "
        f"connections spread over the N ports from a separate load-generator process, {args.warmup:g} s warm-up "
        f"then {args.duration:g} s measured of POST {PAYMENTS_PATH} (sandbox)",
        flush=True,
    )
    workdir = Path(tempfile.mkdtemp(prefix="lephi-fleet-bench-"))
    per_phase = int(PAYMENTS_PER_SECOND * (args.warmup + args.duration))
    phases: list[Phase] = []
    commits: list[float] = []
    try:
        with harness.postgres_database(args.pg_admin_url) as url:
            (workdir / "var").mkdir()
            started = time.perf_counter()
            key, codes = seed(url, workdir / "var", per_phase * len(args.counts))
            print(f"seeded {len(codes)} dossiers in {time.perf_counter() - started:.1f} s", flush=True)
            env = fleet_env(url, workdir / "var")
            commits.append(commit_rate(url, args.commit_seconds))
            print(f"single-connection commit rate: {commits[-1]:,.0f}/s", flush=True)
            for i, n in enumerate(args.counts):
                phases.append(measure(n, args, env, key, codes[i * per_phase : (i + 1) * per_phase], workdir))
            commits.append(commit_rate(url, args.commit_seconds))
            print(f"single-connection commit rate: {commits[-1]:,.0f}/s", flush=True)
    finally:
        if args.keep:
            print(f"kept {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    print()
    for line in report(phases, commits):
        print(line)
    for p in phases:
        if p.result.errors:
            print(f"{p.processes} processes: statuses {p.result.statuses}; samples: {p.result.error_samples}")
        if p.result.exhausted:
            print(f"{p.processes} processes: ran out of seeded dossiers; raise PAYMENTS_PER_SECOND")
    print(harness.machine_notes())
    if args.json:
        args.json.write_text(
            json.dumps(
                {"commit_rate": commits, "phases": [{"processes": p.processes, **p.result.as_json()} for p in phases]}
            )
        )
    return 1 if any(p.result.errors or p.result.exhausted for p in phases) else 0


if __name__ == "__main__":
    sys.exit(main())
