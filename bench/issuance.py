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

from bench import payments_create as pc

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

    from lephi.migrate import upgrade
    from lephi.settings import Settings
    from payments.agency.demo import seed_demo
    from payments.agency.models import Agency
    from payments.core.db import make_engine
    from payments.dossier.models import Dossier, DossierFeeLine, DossierStatus
    from payments.payment.models import Payment
    from payments.payment.states import PaymentStatus

    upgrade(url)
    engine = make_engine(url, Settings(database_url=url, data_dir=data_dir))
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

    from invoices.models import Document
    from invoices.service import issue_receipt
    from invoices.verify import verify
    from lephi.container import build_container
    from lephi.settings import Settings

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
            verify(doc.xml, [signer.certificate])
        except Exception as exc:  # reported, and the run fails
            print(f"document {doc.id} does not verify: {exc}", file=sys.stderr)
            ok = False
    ctx.close()
    return results, breakdown, ok


def _breakdown(ctx: object, store: object, samples: int = 200) -> dict[str, float]:
    """One document's cost by step, measured on a built document outside the database."""
    from datetime import date

    from invoices.format import DocumentKind
    from invoices.model import Buyer, Document, FeeLine, Seller
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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--db", choices=["sqlite", "postgres", "both"], default="both")
    parser.add_argument("--documents", type=int, default=400, help="documents per round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--pg-admin-url", default=os.environ.get("LEPHI_BENCH_POSTGRES_URL", pc.DEFAULT_PG_ADMIN_URL))
    args = parser.parse_args(argv)
    from payments.core.logging import configure_logging

    configure_logging("WARNING")  # one log line per document would be measured too
    databases = ["sqlite", "postgres"] if args.db == "both" else [args.db]
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
                pc.check_postgres(args.pg_admin_url)
                with pc.postgres_database(args.pg_admin_url) as url:
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
