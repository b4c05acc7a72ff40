"""Benchmark of verified gateway callbacks (VNPay IPN, Stripe webhook) against a bare FastAPI app in its own process.

    python -m bench.callbacks [--db sqlite|postgres|both] [--postgres URL] [--duration 15] [--warmup 3]
                              [--connections 32]

It drives the server with the shared load generator (``bench.harness``) and reuses ``bench.payments_create``'s
throwaway databases and server environment. For each database it migrates a fresh database and seeds, straight into
it before the server starts: the demo agency, with VNPay and Stripe merchant accounts in a gateways TOML file
(``LEPHI_GATEWAYS_FILE``; test secrets), and for each of the two gateways ``N`` pending payments with known gateway
references, each with its own dossier. Then it measures three phases one after the other, each with a warm-up and a
measured window:

1. the bare FastAPI app (``bench.bare``), in its own uvicorn process, the baseline;
2. in one uvicorn process serving the product, VNPay IPNs: ``GET /v1/gateways/vnpay/callback/{agency}`` with a valid
   ``vnp_SecureHash``, one per payment, so each is a first notification: it is verified, recorded in the inbox and
   moves its payment to ``succeeded``;
3. Stripe webhooks: ``POST /v1/gateways/stripe/callback/{agency}`` carrying ``payment_intent.succeeded`` for a
   distinct payment, with a valid ``Stripe-Signature`` made at generation time. They are generated just before the
   phase, and warm-up + duration is capped well under Stripe's 300 s tolerance (the age is checked and printed).
4. the bare app again; the ratios use both bare phases pooled (see ``bench.payments_create``).

Every request is built and signed before its phase starts, so no signing is charged to the server. An error is any
reply other than the gateway's success reply: HTTP 200 with ``{"RspCode": "00"}`` for VNPay, HTTP 200 for Stripe.
Lephi also answers Stripe 200 for events it cannot use (unknown order, amount mismatch, duplicate), so after the
phases the gateway inbox and the payments are read back from the database: every callback must have been
``accepted`` and have moved its payment to ``succeeded``.

Exit status: 0 when every request got its success reply and the database agrees, 1 otherwise. The target (server
CPU per callback at most 15 times the bare app's) is reported, never enforced.
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import json
import secrets
import shutil
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

from bench import bare as bare_app
from bench import harness
from bench import payments_create as pc

if TYPE_CHECKING:
    from sqlmodel import Session

    from bench.server import Settings
    from payments.agency.models import FeeScheduleLine

TARGET_CPU_RATIO = 15.0  # issue 10: server CPU per verified callback <= 15x the bare app's
STRIPE_TOLERANCE_SECONDS = 300  # adapters.stripe.TOLERANCE_SECONDS (not imported: the load generator stays light)
STRIPE_MARGIN_SECONDS = 60  # for generation, process start-up and the last replies
# Default seed per gateway, per second of warm-up + measurement: above the fastest rate measured (about 1,000
# callbacks a second on SQLite), so that no phase runs out before its end.
PAYMENTS_PER_SECOND = 1300
SEED_BATCH = 1000

# Test credentials, in the gateways file of the throwaway data directory only.
VNPAY_TMN_CODE = "BENCHTMN"
VNPAY_HASH_SECRET = "BENCHVNPAYHASHSECRETNOTAREAL0123"
STRIPE_WEBHOOK_SECRET = "whsec_bench_not_a_real_secret_0123456789ab"
# Callbacks never call out; the API addresses point at the discard port so that nothing could leave the machine.
GATEWAYS_TOML = """\
[agencies."{agency}".vnpay]
tmn_code = "{tmn}"
hash_secret = "{vnpay_secret}"
api_url = "http://127.0.0.1:9/merchant_webapi/api/transaction"

[agencies."{agency}".stripe]
secret_key = "sk_test_bench_not_a_real_key"
publishable_key = "pk_test_bench_not_a_real_key"
webhook_secrets = ["{stripe_secret}"]
api_base = "http://127.0.0.1:9"
"""


@dataclass(frozen=True)
class Seeded:
    """One pending payment, as the callback generator needs it."""

    payment_id: str
    reference: str  # vnp_TxnRef, or the PaymentIntent id
    token: str  # the payment's gateway_token (its idempotency key at the gateway)
    dossier_code: str
    amount: int


@dataclass(frozen=True)
class Phase:
    gateway: str
    endpoint: str  # label in the report
    expect_json: dict[str, str] | None  # what a 200 must also carry to be the success reply (VNPay's RspCode)


PHASES = (
    Phase("vnpay", "VNPay IPN (GET, signed query)", {"RspCode": "00"}),
    Phase("stripe", "Stripe webhook (POST, signed)", None),
)


# --- seed -----------------------------------------------------------------------------------------------------------
def write_gateways_file(path: Path, agency: str) -> None:
    path.write_text(
        GATEWAYS_TOML.format(
            agency=agency, tmn=VNPAY_TMN_CODE, vnpay_secret=VNPAY_HASH_SECRET, stripe_secret=STRIPE_WEBHOOK_SECRET
        )
    )


def seed(env: dict[str, str], count: int) -> tuple[str, dict[str, list[Seeded]]]:
    """Migrate, then seed the demo agency (VNPay and Stripe enabled) and ``count`` pending payments per gateway,
    each with its own unpaid dossier and the gateway reference its adapter would have returned."""
    from sqlmodel import select

    from bench.server import Settings, build_container, upgrade
    from payments.agency.demo import DEMO_AGENCY, seed_demo
    from payments.agency.models import Agency, FeeScheduleLine, Procedure

    with harness.environment(env):
        settings = Settings()
    upgrade(settings.effective_database_url)
    ctx = build_container(settings)
    seeded: dict[str, list[Seeded]] = {phase.gateway: [] for phase in PHASES}
    try:
        with ctx.db.write() as s:
            demo, _ = seed_demo(s, settings.data_dir)
            agency = s.get(Agency, demo.agency_id)
            assert agency is not None
            agency.payment_methods = sorted({*agency.payment_methods, *seeded})
            s.add(agency)
            procedure = s.exec(
                select(Procedure).where(Procedure.agency_id == agency.id, Procedure.code == pc.PROCEDURE)
            ).one()
            schedule = list(s.exec(select(FeeScheduleLine).where(FeeScheduleLine.procedure_id == procedure.id)))
        for gateway, out in seeded.items():
            prefix = "CBV" if gateway == "vnpay" else "CBS"
            for start in range(0, count, SEED_BATCH):
                with ctx.db.write() as s:
                    for i in range(start, min(count, start + SEED_BATCH)):
                        out.append(_pending_payment(s, settings, agency.id, procedure.id, schedule, gateway, prefix, i))
    finally:
        ctx.close()
    return DEMO_AGENCY, seeded


def _pending_payment(
    s: Session,
    settings: Settings,
    agency_id: str,
    procedure_id: str,
    schedule: list[FeeScheduleLine],
    gateway: str,
    prefix: str,
    i: int,
) -> Seeded:
    """An unpaid dossier (fee lines computed by the service) and its payment as ``start_payment`` leaves it: pending,
    with the gateway's reference and its two events. Rows are only added; the transaction flushes them in bulk."""
    from datetime import timedelta

    from adapters.vnpay import SANDBOX_PAY_URL, txn_ref
    from payments.core.types import new_id, utcnow
    from payments.dossier.models import Dossier
    from payments.dossier.service import compute_lines
    from payments.payment.models import Payment, PaymentEvent
    from payments.payment.states import PaymentStatus

    code = f"{prefix}-{i:07d}"
    lines = compute_lines(schedule, {})
    dossier = Dossier(
        agency_id=agency_id,
        code=code,
        procedure_id=procedure_id,
        payer_name="Nguyễn Văn An",
        payer_email="an@example.com",
        total_amount=sum(line.amount for line in lines),
        pay_token=secrets.token_urlsafe(24),
    )
    s.add(dossier)
    for line in lines:
        line.dossier_id = dossier.id
        s.add(line)
    now = utcnow()
    token = new_id("gtk")
    if gateway == "vnpay":
        reference = txn_ref(token, now)
        next_url = f"{SANDBOX_PAY_URL}?vnp_TxnRef={reference}"
    else:
        reference = f"pi_{secrets.token_hex(12)}"
        next_url = f"{settings.public_url}/pay/card/{reference}"
    payment = Payment(
        agency_id=agency_id,
        dossier_id=dossier.id,
        gateway=gateway,
        amount=dossier.total_amount,
        status=PaymentStatus.pending,
        gateway_token=token,
        gateway_reference=reference,
        next_url=next_url,
        return_url=pc.RETURN_URL,
        description=f"Le phi ho so {code}",
        expires_at=now + timedelta(seconds=settings.payment_expiry_seconds),
        created_at=now,
        updated_at=now,
    )
    s.add(payment)
    for kind, before, after in (
        ("payment.created", None, PaymentStatus.created),
        ("gateway.started", PaymentStatus.created, PaymentStatus.pending),
    ):
        s.add(
            PaymentEvent(
                payment_id=payment.id,
                kind=kind,
                from_status=before.value if before else None,
                to_status=after.value,
                actor="bench",
                gateway_reference=reference if before else None,
                amount=payment.amount,
                created_at=now,
            )
        )
    return Seeded(payment.id, reference, token, code, payment.amount)


# --- the callbacks, built and signed before the phase -------------------------------------------------------------
def _http(method: str, target: str, host: str, headers: dict[str, str], body: str = "") -> str:
    lines = [f"{method} {target} HTTP/1.1", f"Host: {host}", *(f"{k}: {v}" for k, v in headers.items())]
    if body:
        lines.append(f"Content-Length: {len(body.encode())}")
    return "\r\n".join(lines) + "\r\n\r\n" + body


def vnpay_requests(host: str, agency: str, payments: list[Seeded]) -> list[str]:
    """One IPN per payment, as VNPay sends it (API 2.1.0): a GET with the signed ``vnp_*`` query."""
    from adapters.vnpay import ascii_text, sign_params, vnpay_time
    from payments.core.types import utcnow

    pay_date = vnpay_time(utcnow())
    out = []
    for i, p in enumerate(payments):
        params = {
            "vnp_Amount": str(p.amount * 100),
            "vnp_BankCode": "NCB",
            "vnp_BankTranNo": f"VNP{14_000_000 + i}",
            "vnp_CardType": "ATM",
            "vnp_OrderInfo": ascii_text(f"Le phi ho so {p.dossier_code}"),
            "vnp_PayDate": pay_date,
            "vnp_ResponseCode": "00",
            "vnp_TmnCode": VNPAY_TMN_CODE,
            "vnp_TransactionNo": str(14_000_000 + i),
            "vnp_TransactionStatus": "00",
            "vnp_TxnRef": p.reference,
        }
        params["vnp_SecureHash"] = sign_params(params, VNPAY_HASH_SECRET)
        target = f"/v1/gateways/vnpay/callback/{agency}?{urlencode(params)}"
        out.append(_http("GET", target, host, {"User-Agent": "lephi-bench (VNPay IPN)"}))
    return out


def stripe_event(p: Seeded, created: int) -> dict[str, Any]:
    """A ``payment_intent.succeeded`` event shaped like Stripe's (API 2024-06-20), about 2.5 KB pretty-printed."""
    intent = {
        "id": p.reference,
        "object": "payment_intent",
        "amount": p.amount,
        "amount_capturable": 0,
        "amount_details": {"tip": {}},
        "amount_received": p.amount,
        "application": None,
        "application_fee_amount": None,
        "automatic_payment_methods": None,
        "canceled_at": None,
        "cancellation_reason": None,
        "capture_method": "automatic",
        "client_secret": f"{p.reference}_secret_{secrets.token_hex(12)}",
        "confirmation_method": "automatic",
        "created": created - 90,
        "currency": "vnd",
        "customer": None,
        "description": f"Le phi ho so {p.dossier_code}",
        "invoice": None,
        "last_payment_error": None,
        "latest_charge": f"ch_{secrets.token_hex(12)}",
        "livemode": False,
        "metadata": {"merchant_reference": p.payment_id},
        "next_action": None,
        "on_behalf_of": None,
        "payment_method": f"pm_{secrets.token_hex(12)}",
        "payment_method_configuration_details": None,
        "payment_method_options": {
            "card": {
                "installments": None,
                "mandate_options": None,
                "network": None,
                "request_three_d_secure": "automatic",
            }
        },
        "payment_method_types": ["card"],
        "processing": None,
        "receipt_email": None,
        "review": None,
        "setup_future_usage": None,
        "shipping": None,
        "source": None,
        "statement_descriptor": None,
        "statement_descriptor_suffix": None,
        "status": "succeeded",
        "transfer_data": None,
        "transfer_group": None,
    }
    return {
        "id": f"evt_{secrets.token_hex(12)}",
        "object": "event",
        "api_version": "2024-06-20",
        "created": created,
        "data": {"object": intent},
        "livemode": False,
        "pending_webhooks": 1,
        "request": {"id": f"req_{secrets.token_hex(7)}", "idempotency_key": p.token},
        "type": "payment_intent.succeeded",
    }


def stripe_requests(host: str, agency: str, payments: list[Seeded]) -> tuple[list[str], int]:
    """One webhook per payment, signed as Stripe signs (``t=...,v1=HMAC-SHA256("{t}.{body}")``) with the current
    time; returns the requests and that timestamp."""
    signed_at = int(time.time())
    key = STRIPE_WEBHOOK_SECRET.encode()
    headers = {
        "User-Agent": "Stripe/1.0 (+https://stripe.com/docs/webhooks)",
        "Accept": "*/*; q=0.5, application/xml",
        "Cache-Control": "no-cache",
        "Content-Type": "application/json; charset=utf-8",
    }
    out = []
    for p in payments:
        body = json.dumps(stripe_event(p, signed_at), indent=2)  # ASCII (ensure_ascii), as the raw request needs
        mac = hmac.new(key, f"{signed_at}.{body}".encode(), hashlib.sha256).hexdigest()
        signature = {"Stripe-Signature": f"t={signed_at},v1={mac}"}
        out.append(_http("POST", f"/v1/gateways/stripe/callback/{agency}", host, {**headers, **signature}, body))
    return out, signed_at


# --- what the database says afterwards ----------------------------------------------------------------------------
@dataclass
class Settled:
    gateway: str
    seeded: int
    inbox: dict[str, int]  # outcome -> callbacks recorded
    payments: dict[str, int]  # status -> payments of this gateway

    @property
    def consistent(self) -> bool:
        """Every recorded callback was accepted, and each moved one payment to succeeded."""
        accepted = self.inbox.get("accepted", 0)
        return set(self.inbox) <= {"accepted"} and self.payments.get("succeeded", 0) == accepted


def read_back(env: dict[str, str], seeded: dict[str, list[Seeded]]) -> list[Settled]:
    from sqlalchemy import func
    from sqlmodel import select

    from bench.server import Settings, build_container
    from payments.payment.models import GatewayInbox, Payment

    with harness.environment(env):
        settings = Settings()
    ctx = build_container(settings)
    out = []
    try:
        with ctx.db.read() as s:
            for gateway, payments in seeded.items():
                inbox = s.exec(
                    select(GatewayInbox.outcome, func.count())
                    .where(GatewayInbox.gateway == gateway)
                    .group_by(GatewayInbox.outcome)
                ).all()
                statuses = s.exec(
                    select(Payment.status, func.count()).where(Payment.gateway == gateway).group_by(Payment.status)
                ).all()
                out.append(Settled(gateway, len(payments), dict(inbox), {str(k): n for k, n in statuses}))
    finally:
        ctx.close()
    return out


# --- one database, three phases -------------------------------------------------------------------------------------
def bench_database(db: str, args: argparse.Namespace, workdir: Path) -> tuple[list[harness.Result], list[Settled]]:
    from bench.server import READY_PATH
    from payments.agency.demo import DEMO_AGENCY

    data_dir = workdir / db
    data_dir.mkdir()
    results = [bare_app.measure(db, args.connections, args.warmup, args.duration, data_dir)]
    port = harness.free_port()
    with pc.throwaway_database(db, data_dir, args.pg_admin_url) as url:
        gateways_file = data_dir / "gateways.toml"
        env = pc.server_env(url, data_dir, port, [f"LEPHI_GATEWAYS_FILE={gateways_file}", *args.env])
        write_gateways_file(gateways_file, DEMO_AGENCY)
        started = time.perf_counter()
        agency, seeded = seed(env, args.payments)
        print(
            f"[{db}] seeded {args.payments} pending payments (each with its dossier) per gateway in "
            f"{time.perf_counter() - started:.1f} s",
            flush=True,
        )
        log = data_dir / "server.log"
        with harness.uvicorn_server(args.app, env, port, log, READY_PATH) as proc:
            print(f"[{db}] server pid {proc.pid} on port {port}", flush=True)
            common = harness.load_spec(
                port, proc.pid, args.connections, args.warmup, args.duration, with_postgres=db == "postgres"
            )
            host = f"127.0.0.1:{port}"
            for phase in PHASES:
                started = time.perf_counter()
                if phase.gateway == "vnpay":
                    requests, signed_at = vnpay_requests(host, agency, seeded["vnpay"]), None
                else:
                    requests, signed_at = stripe_requests(host, agency, seeded["stripe"])
                built = time.perf_counter() - started
                spec = {**common, "raw": requests, "expect": 200, "expect_json": phase.expect_json}
                results.append(harness.phase(db, phase.endpoint, spec))
                age = f"; signatures {time.time() - signed_at:.0f} s old at the end" if signed_at else ""
                print(
                    f"[{db}] {phase.gateway}: {len(requests)} requests built and signed in {built:.1f} s before "
                    f"the phase{age}",
                    flush=True,
                )
        settled = read_back(env, seeded)
        harness.server_log_warnings(db, log)
    results.append(pc.bare_again(db, args, data_dir))
    return results, settled


# --- report ---------------------------------------------------------------------------------------------------------
def verdicts(results: list[harness.Result], settled: dict[str, list[Settled]]) -> list[str]:
    out = []
    bare = pc.bare_of(results)
    for db in dict.fromkeys(r.db for r in results):
        for phase, check in zip(PHASES, settled[db], strict=True):
            r = next(r for r in results if r.db == db and r.endpoint == phase.endpoint)
            ratio = r.cpu_ratio(bare[db])
            verdict = "-" if ratio is None else f"{ratio:.1f}x ({'met' if ratio <= TARGET_CPU_RATIO else 'MISSED'})"
            out.append(
                f"{db} {phase.gateway}: server CPU per callback / bare app's = {verdict} (target <= "
                f"{TARGET_CPU_RATIO:g}x); p50 {r.p50_ms:.1f} ms, p99 {r.p99_ms:.1f} ms; errors = {r.errors}"
            )
            out.append(
                f"  database: {check.seeded} seeded, inbox {check.inbox or '{}'}, payments {check.payments}: "
                + ("consistent" if check.consistent else "INCONSISTENT (a callback was not accepted, or not applied)")
            )
            if r.errors:
                out.append(f"  replies {r.statuses}; samples:")
                out += [f"    {s}" for s in r.error_samples]
            if r.exhausted:
                out.append(f"  ran out of seeded payments after {r.seconds:.1f} s; raise --payments")
        if bare[db].errors:
            out.append(f"{db} bare: replies {bare[db].statuses}")
    return out


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.callbacks", description=__doc__.split("\n\n")[0])
    harness.add_load_options(p)
    p.add_argument(
        "--payments",
        type=int,
        default=None,
        help=f"pending payments to seed per gateway, one per callback (default: {PAYMENTS_PER_SECOND} per second of "
        "warm-up + duration)",
    )
    p.add_argument("--env", action="append", default=[], metavar="LEPHI_NAME=value", help="extra server setting")
    p.add_argument("--app", default="bench.server:create", help="ASGI app factory uvicorn serves")
    p.add_argument("--json", type=Path, help="also write the results as JSON to this file")
    p.add_argument("--keep", action="store_true", help="keep the temporary directory (SQLite file, server logs)")
    args = p.parse_args(argv)
    harness.settle_database(args)
    if args.payments is None:
        args.payments = int(PAYMENTS_PER_SECOND * (args.warmup + args.duration))
    budget = STRIPE_TOLERANCE_SECONDS - STRIPE_MARGIN_SECONDS
    if args.warmup + args.duration > budget:
        p.error(f"--warmup + --duration may not exceed {budget} s: Stripe refuses signatures older than 300 s")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    dbs = ["sqlite", "postgres"] if args.db == "both" else [args.db]
    if "postgres" in dbs:
        harness.check_postgres(args.pg_admin_url)
    print(harness.machine_notes())
    print(
        f"method: the bare app and the product each in its own uvicorn process, {args.connections} keep-alive "
        f"connections from a separate load-generator process, {args.warmup:g} s warm-up then {args.duration:g} s "
        f"measured per phase (bare app, VNPay IPN, Stripe webhook); {args.payments} pending payments per gateway"
        + (f"; settings {' '.join(args.env)}" if args.env else ""),
        flush=True,
    )
    workdir = Path(tempfile.mkdtemp(prefix="lephi-bench-callbacks-"))
    results: list[harness.Result] = []
    settled: dict[str, list[Settled]] = {}
    try:
        for db in dbs:
            db_results, settled[db] = bench_database(db, args, workdir)
            results += db_results
    finally:
        if args.keep:
            print(f"kept {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    bare = pc.bare_of(results)
    print()
    print(harness.table(results, bare))
    print()
    for line in verdicts(results, settled):
        print(line)
    print(harness.machine_notes())
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "results": [r.as_json(bare[r.db]) for r in results],
                    "database": {db: [asdict(c) for c in checks] for db, checks in settled.items()},
                },
                indent=2,
            )
        )
    inconsistent = any(not c.consistent for checks in settled.values() for c in checks)
    return 1 if inconsistent or any(r.errors or r.exhausted for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
