"""Benchmark of e-receipt issuance against raw RSA-2048 signatures with the same key, in one process and one run.

    python -m bench.issuance [--db sqlite|postgres|both] [--documents 400] [--rounds 3]

For each database it migrates a fresh one, seeds the demo agency and ``--documents`` succeeded payments (each with its
own dossier of two fee lines and one service line), and loads the agency's signing key once. Then, ``--rounds`` times,
alternating so that machine noise hits both alike:

1. the baseline: ``--documents`` RSA-2048 PKCS#1 v1.5 SHA-256 signatures with that key over a 1 KiB message (the
   size of a document's canonical SignedInfo is far below that; the RSA operation dominates either way);
2. issuance: ``issue_receipt`` for the next batch of payments, one after the other, as the outbox worker calls it:
   its transaction, the gap-free number, the document model, the XML, XSD validation, the XML-DSig signature, the
   stored row, and the ``receipt.issued`` event.

The reported ratio is issuance throughput over raw-signature throughput, per round and as the median. A breakdown
of one document's cost (build + validate, sign, and the rest) is measured on the side. Every issued document is read
back and verified at the end; the exit status is 1 if any is missing or does not verify. The target (ratio >= 0.5)
is reported, never enforced.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench import harness

TARGET_RATIO = 0.5


@dataclass
class Round:
    raw_per_s: float
    issue_per_s: float
    issue_cpu_ms: float

    @property
    def ratio(self) -> float:
        return self.issue_per_s / self.raw_per_s


def _seed(url: str, data_dir: Path, count: int) -> list[str]:
    from sqlmodel import Session

    from bench.server import Settings, upgrade
    from payments.agency.demo import seed_demo
    from payments.agency.models import Agency
    from payments.core import pii
    from payments.core.db import make_engine
    from payments.dossier.models import Dossier, DossierFeeLine, DossierStatus
    from payments.payment.models import Payment
    from payments.payment.states import PaymentStatus

    upgrade(url)
    settings = Settings(database_url=url, data_dir=data_dir)
    # The payers' sealed columns are written under the key the workers will load from the same settings.
    pii.install(pii.keyring_from_settings(settings))
    engine = make_engine(url, settings)
    ids: list[str] = []
    with Session(engine) as s:
        dossier, _ = seed_demo(s, data_dir)
        agency = s.get(Agency, dossier.agency_id)
        assert agency is not None
        now = datetime.now(UTC)
        for i in range(count):
            d = Dossier(
                agency_id=agency.id,
                code=f"HS-B-{i:08d}",
                procedure_id=dossier.procedure_id,
                payer_name="Nguyễn Thị Minh Khai",
                payer_email="payer@example.com",
                total_amount=127_000,
                status=DossierStatus.paid,
                pay_token=f"bench-{i}-{os.getpid()}",
            )
            s.add(d)
            s.flush()
            for pos, (kind, name, unit, qty) in enumerate(
                [
                    ("le_phi", "Lệ phí cấp bản sao trích lục hộ tịch", 8_000, 4),
                    ("phi", "Phí thẩm định", 50_000, 1),
                    ("service", "Phí dịch vụ bưu chính công ích", 45_000, 1),
                ]
            ):
                s.add(
                    DossierFeeLine(
                        dossier_id=d.id,
                        fee_code=f"F{pos}",
                        kind=kind,
                        name=name,
                        unit_amount=unit,
                        quantity=qty,
                        amount=unit * qty,
                        position=pos,
                    )
                )
            p = Payment(
                agency_id=agency.id,
                dossier_id=d.id,
                gateway="sandbox",
                amount=127_000,
                status=PaymentStatus.succeeded,
                gateway_token=f"tok-{i}-{os.getpid()}",
                gateway_reference=f"ref-{i}-{os.getpid()}",
                return_url="https://portal.example.gov.vn/done",
                description="bench",
                expires_at=now,
                succeeded_at=now,
            )
            s.add(p)
            ids.append(p.id)
        s.commit()
    engine.dispose()
    return ids


def _measure(url: str, data_dir: Path, documents: int, rounds: int) -> tuple[list[Round], dict[str, float], bool]:
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import padding
    from sqlmodel import select

    from bench.server import Settings, build_container
    from invoices.service import issue_receipt
    from invoices.tables import Document
    from invoices.verify import pinned, verify

    payments = _seed(url, data_dir, documents * rounds + 20)
    settings = Settings(database_url=url, data_dir=data_dir, run_worker=False, log_level="WARNING")
    ctx = build_container(settings)
    store = ctx.signers
    signer = store.for_agency("DEMO-STP", "0100000000", "demo")
    key = signer.key  # type: ignore[attr-defined]  # the local signer: the benchmark compares with its own key
    message = os.urandom(1024)
    # Warm-up: key, XSD, templates, connections, code paths.
    for payment_id in payments[-20:]:
        issue_receipt(ctx, store, payment_id)
    for _ in range(20):
        key.sign(message, padding.PKCS1v15(), hashes.SHA256())

    results: list[Round] = []
    for r in range(rounds):
        start = time.perf_counter()
        for _ in range(documents):
            key.sign(message, padding.PKCS1v15(), hashes.SHA256())
        raw = documents / (time.perf_counter() - start)
        batch = payments[r * documents : (r + 1) * documents]
        start, cpu = time.perf_counter(), time.process_time()
        for payment_id in batch:
            issue_receipt(ctx, store, payment_id)
        elapsed, cpu_used = time.perf_counter() - start, time.process_time() - cpu
        results.append(Round(raw, documents / elapsed, cpu_used / documents * 1000))
        print(f"  round {r + 1}: raw {raw:,.0f}/s, issuance {documents / elapsed:,.0f}/s", file=sys.stderr)

    breakdown = _breakdown(ctx, store)
    ok = True
    with ctx.db.read() as s:
        docs = s.exec(select(Document)).all()
    if len(docs) != documents * rounds + 20 or len({(d.series, d.number) for d in docs}) != len(docs):
        ok = False
    numbers = sorted(d.number for d in docs)
    ok = ok and numbers == list(range(1, len(docs) + 1))
    for doc in docs:
        try:
            verify(doc.xml, pinned(signer.certificate))
        except Exception as exc:  # reported, and the run fails
            print(f"document {doc.id} does not verify: {exc}", file=sys.stderr)
            ok = False
    ctx.close()
    return results, breakdown, ok


def _breakdown(ctx: object, store: object, samples: int = 200) -> dict[str, float]:
    """One document's cost by step, measured on a built document outside the database."""
    from datetime import date

    from invoices.content import Buyer, Document, FeeLine, Seller
    from invoices.format import DocumentKind
    from invoices.validate import validate
    from invoices.xml import build_xml

    signer = store.for_agency("DEMO-STP", "0100000000", "demo")  # type: ignore[attr-defined]
    doc = Document(
        kind=DocumentKind.receipt,
        series=f"K{date.today().year % 100:02d}TLP",
        number=1,
        issue_date=date.today(),
        dossier_code="HS-B-1",
        payment_method="CK",
        provider_tax_code="0100000000",
        seller=Seller(name="Sở Tư pháp", tax_code="0100000000", address="01 Đường Mẫu"),
        buyer=Buyer(name="Nguyễn Thị Minh Khai"),
        fee_lines=(FeeLine(name="Lệ phí", amount=32_000), FeeLine(name="Phí thẩm định", amount=50_000)),
        document_id="DLHDon",
    )
    start = time.perf_counter()
    for _ in range(samples):
        xml = build_xml(doc)
        validate(xml)
    build_ms = (time.perf_counter() - start) / samples * 1000
    start = time.perf_counter()
    for _ in range(samples):
        signer.sign(xml)
    sign_ms = (time.perf_counter() - start) / samples * 1000
    return {"build_validate_ms": build_ms, "sign_ms": sign_ms}


# --- --workers: worker processes draining one outbox queue -----------------------------------------------------
TARGET_WORKER_SCALING = 1.7  # issue 10: two workers issue at least 1.7 times what one does


@dataclass
class WorkerPhase:
    workers: int
    documents: int
    seconds: float
    cpu_seconds: float  # all worker processes, utime + stime
    postgres_cpu_seconds: float | None
    jobs: int  # every job the workers ran: each receipt also queues its follow-ups (tax hand-off, webhooks)
    per_worker: list[int]  # jobs each worker ran
    finished: list[float]  # seconds from the start line to each worker's last job: one idle early waits on others
    by_kind: dict[str, list[float]]  # job kind -> [jobs, CPU seconds inside its handler], all workers

    @property
    def per_s(self) -> float:
        return self.documents / self.seconds

    @property
    def cpu_ms(self) -> float:
        return self.cpu_seconds / self.documents * 1000


def receipt_job() -> str:
    """The outbox job kind whose handler issues a payment's receipt, as the composition root routes it."""
    from bench.server import HANDLERS
    from invoices.jobs import issue

    return next(kind for kind, handler in HANDLERS.items() if getattr(handler, "one", handler) is issue)


def _worker_settings(url: str, data_dir: Path) -> Any:
    from bench.server import Settings

    return Settings(database_url=url, data_dir=data_dir, run_worker=False, log_level="WARNING")


def worker_child() -> None:
    """One worker process: warm up on its own payment, say ready, wait for the start line, then claim and run
    receipt jobs as the outbox worker does until none is left; report what it did as JSON on stdout."""
    import json
    import threading

    from bench.server import HANDLERS, NETWORK_KINDS, build_container
    from payments.core.logging import configure_logging
    from payments.outbox.worker import Batched, Worker

    configure_logging("WARNING")
    spec = json.loads(sys.stdin.readline())
    ctx = build_container(_worker_settings(spec["url"], Path(spec["data_dir"])))
    by_kind: dict[str, list[float]] = {}  # kind -> [jobs, CPU seconds in the handler]
    lock = threading.Lock()

    def timed(kind: str, handler: Any, jobs: Any = lambda _payload: 1) -> Any:
        def run(ctx: Any, payload: Any) -> None:
            cpu = time.thread_time()  # the job's own thread: network jobs run on the worker's pool
            try:
                handler(ctx, payload)
            finally:
                with lock:
                    tally = by_kind.setdefault(kind, [0, 0.0])
                    tally[0] += jobs(payload)
                    tally[1] += time.thread_time() - cpu

        return run

    handlers = {
        k: Batched(timed(k, h.one), timed(k, h.many, len)) if isinstance(h, Batched) else timed(k, h)
        for k, h in HANDLERS.items()
    }
    worker = Worker(ctx, handlers, name=f"bench-{os.getpid()}", concurrent=NETWORK_KINDS)
    HANDLERS[receipt_job()](ctx, {"payment_id": spec["warm_payment"]})
    print("ready", flush=True)
    sys.stdin.readline()
    cpu, jobs = time.process_time(), 0
    while ran := worker.run_once():
        jobs += ran
    end, cpu = time.monotonic(), time.process_time() - cpu
    ctx.close()
    print(json.dumps({"jobs": jobs, "end": end, "cpu": cpu, "by_kind": by_kind}), flush=True)


def _enqueue(url: str, data_dir: Path, payment_ids: list[str]) -> None:
    from bench.server import build_container
    from payments.outbox.service import enqueue

    kind = receipt_job()
    ctx = build_container(_worker_settings(url, data_dir))
    try:
        with ctx.db.write() as s:
            for payment_id in payment_ids:
                enqueue(s, kind, {"payment_id": payment_id})
    finally:
        ctx.close()


def _run_workers(url: str, data_dir: Path, workers: int, batch: list[str], warm: list[str], pg: bool) -> WorkerPhase:
    import json
    import subprocess

    _enqueue(url, data_dir, batch)
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "bench.issuance", "--worker-child"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            cwd=harness.ROOT,
        )
        for _ in range(workers)
    ]
    try:
        for proc, warm_payment in zip(procs, warm, strict=False):
            assert proc.stdin is not None and proc.stdout is not None
            proc.stdin.write(json.dumps({"url": url, "data_dir": str(data_dir), "warm_payment": warm_payment}) + "\n")
            proc.stdin.flush()
        for proc in procs:
            assert proc.stdout is not None
            if proc.stdout.readline().strip() != "ready":
                raise SystemExit(f"a worker process failed to start ({proc.wait()})")
        pg0 = harness.postgres_ticks() if pg else None
        start = time.monotonic()
        for proc in procs:
            assert proc.stdin is not None
            proc.stdin.write("go\n")
            proc.stdin.flush()
        reports = []
        for proc in procs:
            out, _ = proc.communicate(timeout=3600)
            if proc.returncode != 0:
                raise SystemExit(f"a worker process failed ({proc.returncode})")
            reports.append(json.loads(out.strip().splitlines()[-1]))
        pg1 = harness.postgres_ticks() if pg else None
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
    done = sum(r["jobs"] for r in reports)
    by_kind: dict[str, list[float]] = {}
    for r in reports:
        for kind, (n, cpu) in r["by_kind"].items():
            tally = by_kind.setdefault(kind, [0, 0.0])
            tally[0] += n
            tally[1] += cpu
    if done < len(batch):
        raise SystemExit(f"{workers} worker(s) ran {done} jobs, {len(batch)} receipt jobs were queued")
    return WorkerPhase(
        workers=workers,
        documents=len(batch),
        seconds=max(r["end"] for r in reports) - start,
        cpu_seconds=sum(r["cpu"] for r in reports),
        # backends that exit inside the window take their ticks with them
        postgres_cpu_seconds=None if pg0 is None or pg1 is None else max(0, pg1 - pg0) / harness.CLOCK_TICKS,
        jobs=done,
        per_worker=[r["jobs"] for r in reports],
        finished=[r["end"] - start for r in reports],
        by_kind=by_kind,
    )


def _check_documents(url: str, data_dir: Path, expected: int) -> bool:
    """Every queued job done, one document per payment, numbers gap-free, every document verifies."""
    from sqlmodel import select

    from bench.server import build_container
    from invoices.tables import Document
    from invoices.verify import pinned, verify
    from payments.outbox.models import OutboxJob, OutboxStatus

    ctx = build_container(_worker_settings(url, data_dir))
    try:
        certificate = ctx.signers.for_agency("DEMO-STP", "0100000000", "demo").certificate
        with ctx.db.read() as s:
            docs = s.exec(select(Document)).all()
            undone = [j for j in s.exec(select(OutboxJob)) if j.status != OutboxStatus.done]
        ok = len(docs) == expected and not undone
        ok = ok and sorted(d.number for d in docs) == list(range(1, len(docs) + 1))
        for doc in docs:
            try:
                verify(doc.xml, pinned(certificate))
            except Exception as exc:  # reported, and the run fails
                print(f"document {doc.id} does not verify: {exc}", file=sys.stderr)
                ok = False
        if undone:
            print(f"{len(undone)} jobs not done, e.g. {undone[0].kind} {undone[0].last_error}", file=sys.stderr)
    finally:
        ctx.close()
    return ok


def measure_workers(url: str, data_dir: Path, documents: int, workers: int, pg: bool) -> tuple[list[WorkerPhase], bool]:
    """One phase per worker count (1, then ``workers``), each draining its own queue of ``documents`` jobs."""
    from bench.server import build_container

    counts = sorted({1, workers})
    total = documents * len(counts) + sum(counts)  # each worker process warms up on a payment of its own
    payments = _seed(url, data_dir, total)
    ctx = build_container(_worker_settings(url, data_dir))
    try:  # the agency's key is made once, before the workers load it
        ctx.signers.for_agency("DEMO-STP", "0100000000", "demo")
    finally:
        ctx.close()
    phases = []
    for n in counts:
        warm, batch, payments = payments[:n], payments[n : n + documents], payments[n + documents :]
        phases.append(_run_workers(url, data_dir, n, batch, warm, pg))
        p = phases[-1]
        print(f"  {n} worker(s): {p.per_s:,.1f} documents/s, {p.cpu_ms:.2f} ms CPU/document", file=sys.stderr)
    return phases, _check_documents(url, data_dir, total)


def report_workers(rows: list[tuple[str, list[WorkerPhase], bool]]) -> None:
    print()
    print(
        "| database | workers | documents | seconds | documents/s | worker CPU ms/document | postgres CPU ms/document "
        "| jobs run | jobs per worker (finished at s) |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|---|")
    for db, phases, _ok in rows:
        for p in phases:
            pg = "-" if p.postgres_cpu_seconds is None else f"{p.postgres_cpu_seconds / p.documents * 1000:.2f}"
            print(
                f"| {db} | {p.workers} | {p.documents} | {p.seconds:.2f} | {p.per_s:,.1f} | {p.cpu_ms:.2f} | {pg} "
                f"| {p.jobs} | {', '.join(f'{n} ({t:.2f})' for n, t in zip(p.per_worker, p.finished, strict=True))} |"
            )
    for db, phases, _ok in rows:
        for p in phases:
            kinds = ", ".join(
                f"{kind} {int(n)} x {cpu / n * 1000:.2f} ms" for kind, (n, cpu) in sorted(p.by_kind.items()) if n
            )
            rest = p.cpu_seconds - sum(cpu for _n, cpu in p.by_kind.values())
            print(
                f"{db}, {p.workers} worker(s): CPU per job inside its handler: {kinds}; claiming and finishing jobs "
                f"{rest / p.documents * 1000:.2f} ms per document"
            )
    for db, phases, ok in rows:
        if len(phases) > 1:
            ratio = phases[-1].per_s / phases[0].per_s
            verdict = "met" if ratio >= TARGET_WORKER_SCALING else "missed"
            print(
                f"\n{db}: {phases[-1].workers} workers / 1 worker throughput = {ratio:.2f} "
                f"(target >= {TARGET_WORKER_SCALING} with 2: {verdict}); every document verified: {ok}"
            )
        else:
            print(f"\n{db}: every document verified: {ok}")


def main_workers(databases: list[str], args: argparse.Namespace) -> int:
    rows = []
    for db in databases:
        with tempfile.TemporaryDirectory(prefix="lephi-bench-") as tmp:
            data_dir = Path(tmp)
            print(f"{db}: {args.documents} receipt jobs per phase, 1 then {args.workers} worker(s)", file=sys.stderr)
            if db == "sqlite":
                url = f"sqlite:///{data_dir / 'bench.db'}"
                phases, ok = measure_workers(url, data_dir, args.documents, args.workers, pg=False)
            else:
                harness.check_postgres(args.pg_admin_url)
                with harness.postgres_database(args.pg_admin_url) as url:
                    phases, ok = measure_workers(url, data_dir, args.documents, args.workers, pg=True)
        rows.append((db, phases, ok))
    report_workers(rows)
    print(harness.machine_notes())
    return 0 if all(ok for _db, _phases, ok in rows) else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--db", choices=["sqlite", "postgres", "both"], default="both")
    parser.add_argument("--documents", type=int, default=400, help="documents per round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--postgres",
        "--pg-admin-url",
        dest="pg_admin_url",
        default=os.environ.get("LEPHI_BENCH_POSTGRES_URL", harness.DEFAULT_PG_ADMIN_URL),
    )
    parser.add_argument(
        "--workers",
        type=int,
        default=None,
        help="instead of the rounds: worker processes draining one outbox queue of --documents receipt jobs, with 1 "
        "and then N workers; reports documents/s, CPU per document and the N/1 throughput ratio",
    )
    parser.add_argument("--worker-child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker_child:
        worker_child()
        return 0
    from payments.core.logging import configure_logging

    configure_logging("WARNING")  # one log line per document would be measured too
    databases = ["sqlite", "postgres"] if args.db == "both" else [args.db]
    if args.workers is not None:
        return main_workers(databases, args)
    failed = False
    rows = []
    for db in databases:
        with tempfile.TemporaryDirectory(prefix="lephi-bench-") as tmp:
            data_dir = Path(tmp)
            print(f"{db}: seeding {args.documents * args.rounds + 20} paid payments", file=sys.stderr)
            if db == "sqlite":
                results, breakdown, ok = _measure(
                    f"sqlite:///{data_dir / 'bench.db'}", data_dir, args.documents, args.rounds
                )
            else:
                harness.check_postgres(args.pg_admin_url)
                with harness.postgres_database(args.pg_admin_url) as url:
                    results, breakdown, ok = _measure(url, data_dir, args.documents, args.rounds)
        failed = failed or not ok
        ratio = statistics.median(r.ratio for r in results)
        rows.append((db, results, breakdown, ratio, ok))
    print()
    print("| database | raw RSA-2048 signatures/s | issued documents/s | ratio (median) | CPU ms/document | target |")
    print("|---|---|---|---|---|---|")
    for db, results, _breakdown, ratio, _ok in rows:
        raw = statistics.median(r.raw_per_s for r in results)
        issued = statistics.median(r.issue_per_s for r in results)
        cpu = statistics.median(r.issue_cpu_ms for r in results)
        status = "met" if ratio >= TARGET_RATIO else "missed"
        print(f"| {db} | {raw:,.0f} | {issued:,.0f} | {ratio:.2f} | {cpu:.2f} | >= {TARGET_RATIO} {status} |")
    for db, results, breakdown, _ratio, ok in rows:
        ratios = ", ".join(f"{r.ratio:.2f}" for r in results)
        print(
            f"\n{db}: per-round ratios {ratios}; build + XSD validation {breakdown['build_validate_ms']:.2f} ms, "
            f"XML-DSig signature {breakdown['sign_ms']:.2f} ms per document; every document verified: {ok}"
        )
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
