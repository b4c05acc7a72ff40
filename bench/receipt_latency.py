"""Benchmark of how soon an e-receipt follows a payment's success, with the API and the workers in separate processes.

    python -m bench.receipt_latency [--payments 200] [--clients 16] [--rate N] [--workers 2] [--postgres URL]
                                    [--env LEPHI_X=value ...]

On a fresh PostgreSQL database it seeds the demo agency with a VNPay merchant account and ``--payments`` pending VNPay
payments (``bench.callbacks.seed``: each with its own dossier), makes the agency's signing key, and starts one API
process (``bench.server:create``, worker off, as ``lephi serve --no-worker``) and ``--workers`` ``lephi worker``
processes. Each worker's first receipt is issued before the measurement (key, XSD and templates loaded). Then
``--clients`` threads send one signed VNPay IPN per payment, each on its own keep-alive connection, as fast as the
API answers (a burst) or paced at ``--rate`` per second: each IPN moves its payment to ``succeeded`` and queues the
receipt job in the same transaction.

The latency of a receipt is its document row's ``created_at`` minus its payment's ``succeeded_at`` (both written by
the service on this machine's clock). Reported: p50, p90, p99 and max over the measured payments, the time the IPNs
took, and how many receipts each worker issued. Exit status 1 if a payment did not succeed or has no receipt within
``--timeout`` seconds. The target (p99 <= 1 s) is reported, never enforced.
"""

from __future__ import annotations

import argparse
import http.client
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from bench import callbacks as cb
from bench import harness
from bench import payments_create as pc

TARGET_P99_SECONDS = 1.0


def _target(raw: str) -> str:
    """The request target of a raw request built by ``bench.callbacks.vnpay_requests``."""
    return raw.split("\r\n", 1)[0].split(" ")[1]


def _send(port: int, targets: list[str], clients: int, rate: float = 0) -> tuple[float, list[int]]:
    """Every IPN, from ``clients`` threads on keep-alive connections, at most ``rate`` per second when given;
    returns the seconds taken and the bad statuses."""
    queue = list(reversed(list(enumerate(targets))))
    lock = threading.Lock()
    bad: list[int] = []
    start = time.perf_counter()

    def client() -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        while True:
            with lock:
                if not queue:
                    break
                i, target = queue.pop()
            if rate and (ahead := start + i / rate - time.perf_counter()) > 0:
                time.sleep(ahead)
            conn.request("GET", target, headers={"User-Agent": "lephi-bench (VNPay IPN)"})
            response = conn.getresponse()
            body = response.read()
            if response.status != 200 or b'"00"' not in body:
                with lock:
                    bad.append(response.status)
        conn.close()

    threads = [threading.Thread(target=client) for _ in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return time.perf_counter() - start, bad


def _receipts(env: dict[str, str], payment_ids: list[str]) -> list[tuple[str, float, str]]:
    """(payment id, seconds from success to receipt, the worker that issued it) for each receipt issued so far."""
    from sqlalchemy import text

    from bench.server import Settings, build_container

    with harness.environment(env):
        settings = Settings()
    ctx = build_container(settings)
    try:
        with ctx.db.read() as s:
            rows = s.execute(
                text(
                    "SELECT p.id, EXTRACT(EPOCH FROM d.created_at - p.succeeded_at), "
                    "(SELECT o.locked_by FROM outbox o WHERE o.kind = 'payment.succeeded' "
                    "AND o.payload->>'payment_id' = p.id LIMIT 1) "
                    "FROM payment p JOIN document d ON d.payment_id = p.id WHERE p.id = ANY(:ids)"
                ),
                {"ids": payment_ids},
            ).all()
    finally:
        ctx.close()
    return [(str(r[0]), float(r[1]), str(r[2])) for r in rows]


def _listening_workers(env: dict[str, str], names: list[str]) -> int:
    from sqlalchemy import text

    from bench.server import Settings, build_container

    with harness.environment(env):
        settings = Settings()
    ctx = build_container(settings)
    try:
        with ctx.db.read() as s:
            found = s.execute(
                text("SELECT DISTINCT application_name FROM pg_stat_activity WHERE application_name = ANY(:names)"),
                {"names": names},
            ).all()
    finally:
        ctx.close()
    return len(found)


def _wait(check: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(0.2)


def run(args: argparse.Namespace, workdir: Path) -> tuple[list[tuple[str, float, str]], float, bool]:
    from bench.server import READY_PATH, Settings, build_container
    from payments.agency.demo import DEMO_AGENCY

    port = harness.free_port()
    with pc.throwaway_database("postgres", workdir, args.pg_admin_url) as url:
        gateways_file = workdir / "gateways.toml"
        env = pc.server_env(url, workdir, port, [f"LEPHI_GATEWAYS_FILE={gateways_file}", *args.env])
        cb.write_gateways_file(gateways_file, DEMO_AGENCY)
        warm = 2 * args.workers
        agency, seeded = cb.seed(env, args.payments + warm)
        payments = seeded["vnpay"]
        with harness.environment(env):
            settings = Settings()
        ctx = build_container(settings)
        try:  # the agency's key is made once, before the workers load it
            ctx.signers.for_agency(DEMO_AGENCY, "0100000000", "demo")
        finally:
            ctx.close()
        requests = [_target(r) for r in cb.vnpay_requests(f"127.0.0.1:{port}", agency, payments)]
        names = [f"lephi-bench-worker-{i}" for i in range(args.workers)]
        workers = []
        log = workdir / "server.log"
        with harness.uvicorn_server("bench.server:create", env, port, log, READY_PATH):
            try:
                for name in names:
                    worker_env = {**env, "PGAPPNAME": name}  # how the run tells the workers apart in PostgreSQL
                    workers.append(
                        subprocess.Popen(
                            [str(Path(sys.executable).parent / "lephi"), "worker"],
                            env=worker_env,
                            cwd=harness.ROOT,
                            stdout=subprocess.DEVNULL,
                            stderr=(workdir / f"{name}.log").open("wb"),
                        )
                    )
                _wait(lambda: _listening_workers(env, names) == len(names), 180, "the workers to start")
                warm_ids = [p.payment_id for p in payments[:warm]]
                _send(port, requests[:warm], warm)
                _wait(lambda: len(_receipts(env, warm_ids)) == warm, 180, "the warm-up receipts")
                measured = [p.payment_id for p in payments[warm:]]
                seconds, bad = _send(port, requests[warm:], args.clients, args.rate)
                print(f"{len(measured)} IPNs sent by {args.clients} clients in {seconds:.2f} s", file=sys.stderr)
                try:
                    _wait(lambda: len(_receipts(env, measured)) == len(measured), args.timeout, "every receipt")
                except SystemExit as exc:
                    print(exc, file=sys.stderr)
                rows = _receipts(env, measured)
            finally:
                for proc in workers:
                    proc.terminate()
                for proc in workers:
                    try:
                        proc.wait(30)
                    except subprocess.TimeoutExpired:
                        proc.kill()
        harness.server_log_warnings("postgres", log)
    ok = not bad and len(rows) == len(measured)
    return rows, seconds, ok


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--payments", type=int, default=200)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument(
        "--rate", type=float, default=0, help="IPNs per second (default: as fast as the API answers, a burst)"
    )
    parser.add_argument("--timeout", type=float, default=300, help="seconds to wait for the last receipt")
    parser.add_argument(
        "--postgres",
        "--pg-admin-url",
        dest="pg_admin_url",
        default=os.environ.get("LEPHI_BENCH_POSTGRES_URL", harness.DEFAULT_PG_ADMIN_URL),
    )
    parser.add_argument("--env", action="append", default=[], help="LEPHI_NAME=value for every process")
    args = parser.parse_args(argv)
    harness.check_postgres(args.pg_admin_url)
    with tempfile.TemporaryDirectory(prefix="lephi-bench-") as tmp:
        rows, seconds, ok = run(args, Path(tmp))
    latencies = sorted(r[1] for r in rows)
    per_worker: dict[str, int] = {}
    for _id, _latency, worker in rows:
        per_worker[worker] = per_worker.get(worker, 0) + 1
    if not latencies:
        print("no receipt was issued")
        return 1
    p = {q: harness.percentile(latencies, q / 100) for q in (50, 90, 99)}
    print()
    print("| payments | clients | rate | workers | IPNs sent in | receipt after success p50 | p90 | p99 | max |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    rate = f"{args.rate:g}/s" if args.rate else "burst"
    print(
        f"| {len(rows)} | {args.clients} | {rate} | {args.workers} | {seconds:.2f} s | {p[50]:.3f} s | {p[90]:.3f} s "
        f"| {p[99]:.3f} s | {latencies[-1]:.3f} s |"
    )
    verdict = "met" if p[99] <= TARGET_P99_SECONDS else "missed"
    print(f"\nreceipts per worker: {', '.join(str(n) for n in sorted(per_worker.values(), reverse=True))}")
    print(f"target p99 <= {TARGET_P99_SECONDS:.0f} s: {verdict}; every payment has its receipt: {ok}")
    print(harness.machine_notes())
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
