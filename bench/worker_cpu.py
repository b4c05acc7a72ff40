"""CPU of one outbox worker per e-receipt, in process: every job a receipt causes (issuance, webhook fan-out, the
T-VAN hand-over), with the claims and finishes around them.

    python -m bench.worker_cpu [--db sqlite|postgres] [--postgres URL] [--documents 300] [--profile FILE]

It migrates a fresh database (a temporary SQLite file, or a PostgreSQL database created and dropped), seeds the demo
agency and ``--documents`` succeeded payments, warms the worker up on one more, queues one receipt job per payment,
and lets one ``Worker`` drain the queue with ``run_once`` in this process. It prints the process CPU time per
document and the documents per second. ``--profile FILE`` writes a cProfile dump measured with a CPU-time clock (the
figures then include the profiler's own cost; compare dumps with each other, not with unprofiled runs).
"""

from __future__ import annotations

import argparse
import cProfile
import sys
import tempfile
import time
from pathlib import Path

from bench import harness, issuance


def drain(url: str, data_dir: Path, documents: int, profile: str | None) -> tuple[int, float, float]:
    """Jobs run, CPU seconds and wall seconds for one worker draining ``documents`` receipt jobs."""
    from bench.server import HANDLERS, NETWORK_KINDS, build_container
    from payments.outbox.worker import Worker

    payments = issuance._seed(url, data_dir, documents + 1)
    ctx = build_container(issuance._worker_settings(url, data_dir))
    try:
        ctx.signers.for_agency("DEMO-STP", "0100000000", "demo")
        worker = Worker(ctx, HANDLERS, name="bench-worker-cpu", concurrent=NETWORK_KINDS)
        HANDLERS[issuance.receipt_job()](ctx, {"payment_id": payments[0]})
        while worker.run_once():
            pass
        issuance._enqueue(url, data_dir, payments[1:])
        profiler = cProfile.Profile(time.process_time) if profile else None
        cpu, wall, jobs = time.process_time(), time.monotonic(), 0
        if profiler:
            profiler.enable()
        while ran := worker.run_once():
            jobs += ran
        if profiler and profile:
            profiler.disable()
            profiler.dump_stats(profile)
        return jobs, time.process_time() - cpu, time.monotonic() - wall
    finally:
        ctx.close()


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--db", choices=["sqlite", "postgres"], default="sqlite")
    p.add_argument("--postgres", dest="pg_admin_url", default=harness.DEFAULT_PG_ADMIN_URL)
    p.add_argument("--documents", type=int, default=300)
    p.add_argument("--profile", default=None, help="write a cProfile dump (CPU-time clock) to this file")
    args = p.parse_args()
    from payments.core.logging import configure_logging

    configure_logging("WARNING")
    with tempfile.TemporaryDirectory(prefix="lephi-bench-") as tmp:
        data_dir = Path(tmp)
        if args.db == "sqlite":
            jobs, cpu, wall = drain(f"sqlite:///{data_dir / 'bench.db'}", data_dir, args.documents, args.profile)
        else:
            harness.check_postgres(args.pg_admin_url)
            with harness.postgres_database(args.pg_admin_url) as url:
                jobs, cpu, wall = drain(url, data_dir, args.documents, args.profile)
    print(
        f"{args.db}: {args.documents} documents, {jobs} jobs, {cpu / args.documents * 1000:.2f} ms worker CPU per "
        f"document, {args.documents / wall:.1f} documents/s"
    )
    print(harness.machine_notes())
    return 0


if __name__ == "__main__":
    sys.exit(main())
