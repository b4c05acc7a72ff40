"""The fleet scenario: several API and worker processes on one PostgreSQL database, paid into from outside as an
operator would see it, with processes killed mid-run; then every invariant of the money checked.

    python -m bench.fleet_scenario [--postgres URL] [--dossiers 200] [--clients 16] [--api 2] [--workers 2]
                                   [--kill none|sigkill|sigterm] [--keep]

It creates a fresh PostgreSQL database (dropped afterwards), migrates it, seeds the demo agency (sandbox gateway) and
an API key, and starts ``--api`` processes of ``lephi serve --no-worker`` (real uvicorn, each on a free port, its own
``LEPHI_PUBLIC_URL``) and ``--workers`` processes of ``lephi worker``, plus a webhook receiver (a local HTTP server
that counts deliveries per ``webhook-id``) registered through the API for every event type.

``--clients`` concurrent clients then each take dossiers in turn and, for each one: create it (``POST /v1/dossiers``),
create its payment (``POST /v1/payments``, method ``sandbox``, with an Idempotency-Key), for some of them send the
same create again to the other API process (it must answer the same payment), open the sandbox page, submit its
form with ``success`` (for some of them twice at once, once to each process, as a double click behind a load
balancer would), and wait for the payment to be ``succeeded``. A client that loses its connection retries the same
request on another process with the same Idempotency-Key, as a real client would.

With ``--kill sigkill`` or ``--kill sigterm``, once a third of the payments have succeeded, one worker and one API
process get that signal and are not restarted. A sandbox callback sent to a dead process is lost, as a real
gateway's would be: the worker's first status query (``LEPHI_REQUERY_FIRST_SECONDS``, 2 s here) settles it.

At the end (once the workers have nothing left to do) it checks and prints:

- every dossier has exactly one payment, succeeded, and no payment exists beyond them;
- one receipt per payment, numbered 1..N without gap in each series;
- every webhook message reached the receiver, each exactly once. A worker killed with SIGKILL after a delivery was
  answered but before it was recorded leaves it to be sent again once its claim lapses: webhooks are at least once
  (docs/api.md, receivers drop duplicates by ``webhook-id``), so with ``--kill sigkill`` duplicates are counted and
  explained, not failed; with ``none`` or ``sigterm`` any duplicate is a violation;
- the receipt latency after success: from the payment's ``succeeded`` event to its receipt row, p50/p99/max.

Exit status 1 on any violation. The latency target (p99 <= 1 s) is reported, never enforced.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import contextlib
import http.server
import json
import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from bench import harness

ROOT = harness.ROOT
PROCEDURE = "2.000488"  # a procedure of the demo agency (payments.agency.demo)
RETURN_URL = "https://portal.example.gov.vn/done"
TARGET_RECEIPT_P99_S = 1.0
REPLAY_EVERY = 4  # every 4th payment create is sent again to another process
DOUBLE_SUBMIT_EVERY = 5  # every 5th pay form is submitted twice at once
REQUEST_DEADLINE_S = 60.0
API_UNIT = ROOT / "deploy" / "systemd" / "lephi-api@.service"


def deployed_api_nice() -> int:
    """The niceness the reference deployment gives API processes (``Nice=`` in deploy/systemd/lephi-api@.service),
    so that the scenario runs the fleet as it is deployed: on a host shared with workers, receipts go first."""
    found = re.findall(r"^Nice=(-?\d+)\s*$", API_UNIT.read_text(), flags=re.MULTILINE)
    if len(found) != 1:
        raise SystemExit(f"{API_UNIT} must set Nice= exactly once")
    return int(found[0])


@dataclass
class Config:
    pg_admin_url: str
    dossiers: int = 200
    clients: int = 16
    api: int = 2
    workers: int = 2
    kill: str = "none"
    keep: bool = False
    settle_timeout: float = 120.0
    out: Callable[[str], None] = print
    api_nice: int = field(default_factory=deployed_api_nice)


@dataclass
class Report:
    violations: list[str] = field(default_factory=list)
    lines: list[str] = field(default_factory=list)
    payments: int = 0
    receipts: int = 0
    webhook_messages: int = 0
    webhook_duplicates: int = 0
    latency_s: list[float] = field(default_factory=list)
    seconds: float = 0.0
    api_nice: list[int] = field(default_factory=list)  # each API process's niceness, read once it answered

    def latency(self, q: float) -> float:
        return harness.percentile(sorted(self.latency_s), q)


# --- the webhook receiver ---------------------------------------------------------------------------------------
class Receiver:
    """A client system's endpoint: answers 200 to every POST and counts them per ``webhook-id``."""

    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()
        self.types: dict[str, str] = {}
        self.lock = threading.Lock()
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # the name http.server calls
                body = self.rfile.read(int(self.headers.get("content-length") or 0))
                msg_id = self.headers.get("webhook-id", "")
                with receiver.lock:
                    receiver.counts[msg_id] += 1
                    with contextlib.suppress(ValueError, AttributeError):
                        receiver.types[msg_id] = str(json.loads(body).get("type"))
                self.send_response(200)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:  # the base class's signature
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = int(self.server.server_address[1])
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> Receiver:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


# --- processes ----------------------------------------------------------------------------------------------------
@dataclass
class Proc:
    kind: str  # "api" or "worker"
    index: int
    popen: subprocess.Popen[bytes]
    log: Path
    port: int | None = None
    signalled: str | None = None

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"


def lephi_command() -> list[str]:
    script = Path(sys.executable).with_name("lephi")
    return [str(script)] if script.exists() else [sys.executable, "-c", "from lephi.cli import app; app()"]


def fleet_env(url: str, data_dir: Path, receiver_port: int) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LEPHI_")}
    env.update(
        {
            "LEPHI_ENV": "test",
            "LEPHI_DATABASE_URL": url,
            "LEPHI_DATA_DIR": str(data_dir),
            "LEPHI_SANDBOX_ENABLED": "true",
            "LEPHI_LOG_LEVEL": "WARNING",
            "LEPHI_LOG_JSON": "true",
            # One key for all clients: the per-key limit is not what is tried here.
            "LEPHI_API_RATE_PER_MINUTE": "100000000",
            # Every process signs and checks the pay forms with one key, as production requires.
            "LEPHI_FORM_SECRET": "fleet-scenario-form-secret-0123456789abcdef",
            # A callback lost to a dead process is settled by the first status query: seconds, not the default 30.
            "LEPHI_REQUERY_FIRST_SECONDS": "2",
            # A job claimed by a worker killed with SIGKILL is taken over once its claim lapses.
            "LEPHI_WORKER_LEASE_SECONDS": "5",
            "LEPHI_WEBHOOK_ALLOWED_PORTS": json.dumps([receiver_port]),
            "LEPHI_WEBHOOK_ALLOWED_PRIVATE_HOSTS": json.dumps(["127.0.0.1/32"]),
            "LEPHI_WEBHOOK_RETRY_SCHEDULE_SECONDS": json.dumps([1, 2, 5, 10]),
            "PYTHONPATH": str(ROOT),
        }
    )
    return env


def start_api(index: int, env: dict[str, str], workdir: Path, nice: int = 0) -> Proc:
    port = harness.free_port()
    log = workdir / f"api{index}.log"
    env = {**env, "LEPHI_PUBLIC_URL": f"http://127.0.0.1:{port}"}
    # nice(1) execs the command: the process keeps its pid, and signals reach lephi itself.
    command = [
        *(["nice", "-n", str(nice)] if nice else []),
        *lephi_command(),
        *["serve", "--no-worker", "--host", "127.0.0.1", "--port", str(port)],
    ]
    with log.open("wb") as out:
        popen = subprocess.Popen(command, env=env, cwd=workdir, stdout=out, stderr=subprocess.STDOUT)
    return Proc("api", index, popen, log, port)


def start_worker(index: int, env: dict[str, str], workdir: Path) -> Proc:
    log = workdir / f"worker{index}.log"
    with log.open("wb") as out:
        popen = subprocess.Popen(
            [*lephi_command(), "worker"], env=env, cwd=workdir, stdout=out, stderr=subprocess.STDOUT
        )
    return Proc("worker", index, popen, log)


def stop_all(procs: list[Proc]) -> None:
    for p in procs:
        if p.popen.poll() is None:
            p.popen.send_signal(signal.SIGTERM)
    for p in procs:
        try:
            p.popen.wait(timeout=20)
        except subprocess.TimeoutExpired:
            p.popen.kill()
            p.popen.wait()


# --- seeding ------------------------------------------------------------------------------------------------------
def seed(url: str, data_dir: Path) -> str:
    """Migrate, seed the demo agency with the sandbox, and make an API key for dossiers, payments and webhooks."""
    from bench.server import Settings, build_container, upgrade
    from payments.agency.demo import DEMO_AGENCY, seed_demo
    from payments.auth.models import Scope
    from payments.auth.service import create_key

    upgrade(url)
    ctx = build_container(Settings(database_url=url, data_dir=data_dir, run_worker=False, log_level="WARNING"))
    try:
        with ctx.db.write() as s:
            seed_demo(s, data_dir, configured=["sandbox"])
            scopes = [
                s.value for s in (Scope.payments_write, Scope.payments_read, Scope.dossiers_write, Scope.webhooks_write)
            ]
            _, key = create_key(s, DEMO_AGENCY, "fleet", scopes)
    finally:
        ctx.close()
    return key


# --- clients ------------------------------------------------------------------------------------------------------
class Fleet:
    """The API processes as clients see them: a request goes to a preferred process and, when that one cannot be
    reached, to the next one, the same request with the same Idempotency-Key."""

    def __init__(self, apis: list[Proc], key: str) -> None:
        self.apis = apis
        self.auth = {"Authorization": f"Bearer {key}"}

    def request(
        self,
        client: httpx.Client,
        prefer: int,
        method: str,
        path: str,
        *,
        idempotency_key: str | None = None,
        api: bool = True,
        **kwargs: Any,
    ) -> httpx.Response:
        headers = dict(self.auth) if api else {}
        if idempotency_key:
            headers["Idempotency-Key"] = idempotency_key
        deadline = time.monotonic() + REQUEST_DEADLINE_S
        attempt = 0
        while True:
            target = self.apis[(prefer + attempt) % len(self.apis)]
            try:
                return client.request(method, target.base + path, headers=headers, **kwargs)
            except httpx.TransportError:
                if time.monotonic() > deadline:
                    raise
                attempt += 1
                time.sleep(0.05)


def _expect(r: httpx.Response, statuses: tuple[int, ...], what: str) -> dict[str, Any]:
    if r.status_code not in statuses:
        raise AssertionError(f"{what}: {r.status_code} {r.text[:300]}")
    data: dict[str, Any] = r.json() if r.headers.get("content-type", "").endswith("json") else {}
    return data


_ACTION = re.compile(r'<form[^>]*action="([^"]+)"')
_CSRF = re.compile(r'name="csrf" value="([^"]+)"')


def pay_one(fleet: Fleet, i: int, run: str, succeeded: Callable[[], None]) -> str:
    """One dossier from creation to a succeeded payment; returns the payment id."""
    n = len(fleet.apis)
    home, other = i % n, (i + 1) % n
    code = f"HSF-{run}-{i:05d}"
    with httpx.Client(timeout=30) as c:
        body = {
            "code": code,
            "procedure_code": PROCEDURE,
            "payer": {"name": "Nguyễn Văn An", "email": "an@example.com"},
        }
        r = fleet.request(c, home, "POST", "/v1/dossiers", json=body, idempotency_key=f"{run}-d-{i}")
        _expect(r, (200, 201), f"dossier {code}")
        pay = {"dossier_code": code, "method": "sandbox", "return_url": RETURN_URL}
        r = fleet.request(c, home, "POST", "/v1/payments", json=pay, idempotency_key=f"{run}-p-{i}")
        payment = _expect(r, (200, 201), f"payment of {code}")
        if i % REPLAY_EVERY == 0:
            r = fleet.request(c, other, "POST", "/v1/payments", json=pay, idempotency_key=f"{run}-p-{i}")
            again = _expect(r, (200, 201), f"replayed payment of {code}")
            if again.get("id") != payment["id"]:
                raise AssertionError(f"replay of {code} answered payment {again.get('id')}, not {payment['id']}")
        page_path = httpx.URL(payment["next_url"]).raw_path.decode()
        r = fleet.request(c, other, "GET", page_path, api=False)
        _expect(r, (200,), f"sandbox page of {code}")
        action, token = _ACTION.search(r.text), _CSRF.search(r.text)
        if not action or not token:
            raise AssertionError(f"sandbox page of {code} has no form")
        form = {"csrf": token.group(1), "outcome": "success"}
        submits = [home, other] if i % DOUBLE_SUBMIT_EVERY == 0 else [home]

        def submit(prefer: int) -> int:
            r = fleet.request(c, prefer, "POST", action.group(1), data=form, api=False, follow_redirects=False)
            return r.status_code

        with concurrent.futures.ThreadPoolExecutor(len(submits)) as pool:
            codes = list(pool.map(submit, submits))
        if any(s != 303 for s in codes):
            raise AssertionError(f"pay form of {code} answered {codes}")
        deadline = time.monotonic() + REQUEST_DEADLINE_S
        while True:
            r = fleet.request(c, home, "GET", f"/v1/payments/{payment['id']}")
            status = _expect(r, (200,), f"payment {payment['id']}").get("status")
            if status == "succeeded":
                succeeded()
                return str(payment["id"])
            if status not in ("created", "pending") or time.monotonic() > deadline:
                raise AssertionError(f"payment of {code} is {status}")
            time.sleep(0.1)


# --- the run --------------------------------------------------------------------------------------------------------
@contextlib.contextmanager
def fleet_up(cfg: Config, url: str, workdir: Path, receiver: Receiver) -> Iterator[tuple[list[Proc], list[Proc]]]:
    from bench.server import READY_PATH

    env = fleet_env(url, workdir / "var", receiver.port)
    apis = [start_api(i, env, workdir, cfg.api_nice) for i in range(cfg.api)]
    workers = [start_worker(i, env, workdir) for i in range(cfg.workers)]
    try:
        for p in apis:
            assert p.port is not None
            harness.wait_ready(p.popen, p.port, p.log, READY_PATH, timeout=120)
        for p in workers:
            if p.popen.poll() is not None:
                raise SystemExit(f"worker {p.index} exited ({p.popen.returncode}):\n{p.log.read_text()[-3000:]}")
        yield apis, workers
    finally:
        stop_all(apis + workers)


def kill_some(cfg: Config, apis: list[Proc], workers: list[Proc]) -> str:
    sig = signal.SIGKILL if cfg.kill == "sigkill" else signal.SIGTERM
    victims = [workers[0]] if workers else []
    if len(apis) > 1:  # the last API process: clients prefer the others as often
        victims.append(apis[-1])
    for p in victims:
        p.popen.send_signal(sig)
        p.signalled = cfg.kill
    return ", ".join(f"{p.kind} {p.index} (pid {p.popen.pid})" for p in victims)


def drive(cfg: Config, fleet: Fleet, apis: list[Proc], workers: list[Proc]) -> tuple[list[str], list[str]]:
    run = secrets.token_hex(3).upper()
    done = 0
    lock = threading.Lock()
    kill_at = cfg.dossiers // 3 if cfg.kill != "none" else -1
    killed = threading.Event()

    def succeeded() -> None:
        nonlocal done
        with lock:
            done += 1
            now = done
        if now == kill_at and not killed.is_set():
            killed.set()
            cfg.out(f"  {now} payments succeeded: {cfg.kill.upper()} to {kill_some(cfg, apis, workers)}")

    ids: list[str] = []
    failures: list[str] = []
    with concurrent.futures.ThreadPoolExecutor(cfg.clients) as pool:
        futures = [pool.submit(pay_one, fleet, i, run, succeeded) for i in range(cfg.dossiers)]
        for f in futures:
            try:
                ids.append(f.result())
            except Exception as exc:  # every failed flow is reported, the run goes on
                failures.append(f"{type(exc).__name__}: {exc}")
    return ids, failures


def wait_quiet(url: str, timeout: float) -> bool:
    """Wait until no outbox job is due (a claim left by a killed worker counts until another worker has run it) and
    no webhook delivery is pending, twice in a row; False at the timeout."""
    from sqlalchemy import create_engine, text

    from payments.core.db import normalise_url

    engine = create_engine(normalise_url(url))
    deadline = time.monotonic() + timeout
    quiet = 0
    try:
        while time.monotonic() < deadline:
            with engine.connect() as conn:
                due = conn.execute(
                    text("SELECT count(*) FROM outbox WHERE status = 'pending' AND run_after <= now()")
                ).scalar()
                pending = conn.execute(text("SELECT count(*) FROM webhook_delivery WHERE status = 'pending'")).scalar()
            quiet = quiet + 1 if not due and not pending else 0
            if quiet >= 2:
                return True
            time.sleep(0.25)
        return False
    finally:
        engine.dispose()


def check(cfg: Config, url: str, receiver: Receiver, ids: list[str], report: Report) -> None:
    from sqlalchemy import create_engine, text

    from payments.core.db import normalise_url

    v = report.violations
    engine = create_engine(normalise_url(url))
    try:
        with engine.connect() as conn:
            statuses: dict[Any, Any] = dict(
                conn.execute(text("SELECT status, count(*) FROM payment GROUP BY status")).all()
            )
            per_dossier = conn.execute(
                text("SELECT count(*) FROM (SELECT dossier_id FROM payment GROUP BY dossier_id HAVING count(*) > 1) d")
            ).scalar()
            docs = conn.execute(text("SELECT payment_id, series, number, created_at FROM document")).all()
            succeeded_at: dict[Any, Any] = dict(
                conn.execute(
                    text(
                        "SELECT payment_id, min(created_at) FROM payment_event WHERE to_status = 'succeeded' GROUP BY 1"
                    )
                ).all()
            )
            messages: dict[Any, Any] = dict(conn.execute(text("SELECT id, event_type FROM webhook_message")).all())
            deliveries: dict[Any, Any] = dict(
                conn.execute(text("SELECT status, count(*) FROM webhook_delivery GROUP BY status")).all()
            )
            dead: dict[Any, Any] = dict(
                conn.execute(text("SELECT kind, count(*) FROM outbox WHERE status = 'dead' GROUP BY kind")).all()
            )
    finally:
        engine.dispose()

    if dead:
        v.append(f"outbox jobs that gave up, by kind: {dead}")
    report.payments = int(statuses.get("succeeded", 0))
    if report.payments != cfg.dossiers or sum(statuses.values()) != cfg.dossiers:
        v.append(f"payments by status {statuses}, expected {cfg.dossiers} succeeded and nothing else")
    if len(set(ids)) != cfg.dossiers:
        v.append(f"{len(set(ids))} payments reached succeeded through the API, expected {cfg.dossiers}")
    if per_dossier:
        v.append(f"{per_dossier} dossiers have more than one payment")

    report.receipts = len(docs)
    by_payment = Counter(d.payment_id for d in docs)
    if len(docs) != cfg.dossiers or len(by_payment) != cfg.dossiers:
        v.append(f"{len(docs)} receipts for {len(by_payment)} payments, expected {cfg.dossiers} of each")
    if any(n > 1 for n in by_payment.values()):
        v.append(f"{sum(1 for n in by_payment.values() if n > 1)} payments have more than one receipt")
    series: dict[str, list[int]] = {}
    for d in docs:
        series.setdefault(d.series, []).append(d.number)
    for name, numbers in series.items():
        if sorted(numbers) != list(range(1, len(numbers) + 1)):
            v.append(f"series {name}: numbers are not 1..{len(numbers)} without gap or repeat")
    report.latency_s = [
        max(0.0, (d.created_at - succeeded_at[d.payment_id]).total_seconds())
        for d in docs
        if d.payment_id in succeeded_at
    ]

    report.webhook_messages = len(messages)
    expected_types = Counter(messages.values())
    if expected_types.get("payment.succeeded") != cfg.dossiers or expected_types.get("receipt.issued") != cfg.dossiers:
        v.append(f"webhook messages by type {dict(expected_types)}, expected {cfg.dossiers} of each")
    if set(deliveries) - {"delivered"}:
        v.append(f"webhook deliveries by status {deliveries}, expected all delivered")
    received = receiver.counts
    missing = [m for m in messages if received.get(m, 0) == 0]
    unknown = [m for m in received if m not in messages]
    duplicates = {m: n for m, n in received.items() if n > 1}
    report.webhook_duplicates = sum(n - 1 for n in duplicates.values())
    if missing:
        v.append(f"{len(missing)} webhook messages never reached the receiver")
    if unknown:
        v.append(f"the receiver got {len(unknown)} webhook ids that are no message")
    if duplicates and cfg.kill != "sigkill":
        v.append(f"{len(duplicates)} webhook messages delivered more than once ({report.webhook_duplicates} extra)")


def run(cfg: Config) -> Report:
    report = Report()
    out = cfg.out
    workdir = Path(tempfile.mkdtemp(prefix="lephi-fleet-"))
    started = time.monotonic()
    try:
        with harness.postgres_database(cfg.pg_admin_url) as url, Receiver() as receiver:
            (workdir / "var").mkdir()
            key = seed(url, workdir / "var")
            with fleet_up(cfg, url, workdir, receiver) as (apis, workers):
                report.api_nice = [os.getpriority(os.PRIO_PROCESS, p.popen.pid) for p in apis]
                out(
                    f"  fleet up in {time.monotonic() - started:.1f} s: {len(apis)} API processes "
                    f"(ports {', '.join(str(p.port) for p in apis)}, nice {report.api_nice}), "
                    f"{len(workers)} workers, webhook receiver on port {receiver.port}"
                )
                fleet = Fleet(apis, key)
                with httpx.Client(timeout=30) as c:
                    endpoint = {"url": f"http://127.0.0.1:{receiver.port}/events", "event_types": []}
                    r = fleet.request(c, 0, "POST", "/v1/webhook-endpoints", json=endpoint, idempotency_key="fleet-wh")
                    _expect(r, (201,), "webhook endpoint")
                t0 = time.monotonic()
                ids, failures = drive(cfg, fleet, apis, workers)
                paid = time.monotonic() - t0
                out(f"  {len(ids)} of {cfg.dossiers} payments succeeded in {paid:.1f} s ({len(failures)} flows failed)")
                report.violations += failures[:10]
                if len(failures) > 10:
                    report.violations.append(f"... and {len(failures) - 10} more failed flows")
                t0 = time.monotonic()
                if not wait_quiet(url, cfg.settle_timeout):
                    report.violations.append(f"outbox jobs or webhook deliveries left after {cfg.settle_timeout:g} s")
                out(f"  outbox and webhooks settled {time.monotonic() - t0:.1f} s later")
                for p in apis + workers:
                    if p.signalled is None and p.popen.poll() is not None:
                        report.violations.append(f"{p.kind} {p.index} died ({p.popen.returncode}) without a signal")
                    if p.signalled == "sigterm":
                        code = p.popen.wait(timeout=30)
                        if code != 0:  # a requested stop drains and exits 0 (lephi serve, lephi worker)
                            report.violations.append(f"{p.kind} {p.index} exited {code} on SIGTERM")
            check(cfg, url, receiver, ids, report)
            for p in apis + workers:
                errors = [line for line in p.log.read_text(errors="replace").splitlines() if '"error"' in line]
                if errors:
                    out(f"  {p.kind} {p.index} logged {len(errors)} errors; first: {errors[0][:300]}")
    finally:
        report.seconds = time.monotonic() - started
        if cfg.keep:
            out(f"  kept {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    return report


def summary(cfg: Config, report: Report) -> list[str]:
    lines = [
        f"payments succeeded: {report.payments} of {cfg.dossiers}",
        f"receipts: {report.receipts}, numbered without gap per series",
        f"webhook messages: {report.webhook_messages}, duplicates delivered: {report.webhook_duplicates}",
    ]
    if report.webhook_duplicates and cfg.kill == "sigkill":
        lines.append(
            "  (a worker killed after the receiver answered but before the delivery was recorded: the message is "
            "sent again with the same webhook-id once the claim lapses; webhooks are at least once, docs/api.md)"
        )
    if report.latency_s:
        p99 = report.latency(0.99)
        verdict = "met" if p99 <= TARGET_RECEIPT_P99_S else "MISSED"
        lines.append(
            f"receipt after success: p50 {report.latency(0.5) * 1000:.0f} ms, p99 {p99 * 1000:.0f} ms, "
            f"max {max(report.latency_s) * 1000:.0f} ms (target p99 <= {TARGET_RECEIPT_P99_S:g} s: {verdict})"
        )
    lines.append(f"whole run: {report.seconds:.1f} s")
    lines += [f"VIOLATION: {v}" for v in report.violations]
    lines.append("OK: nothing lost or duplicated" if not report.violations else "FAILED")
    return lines


def parse_args(argv: list[str] | None) -> Config:
    p = argparse.ArgumentParser(prog="python -m bench.fleet_scenario", description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--postgres",
        "--pg-admin-url",
        dest="pg_admin_url",
        default=os.environ.get("LEPHI_BENCH_POSTGRES_URL", harness.DEFAULT_PG_ADMIN_URL),
        metavar="URL",
        help="PostgreSQL server where a fresh database is created and dropped (env LEPHI_BENCH_POSTGRES_URL)",
    )
    p.add_argument("--dossiers", type=int, default=200)
    p.add_argument("--clients", type=int, default=16)
    p.add_argument("--api", type=int, default=2, help="API processes (lephi serve --no-worker)")
    p.add_argument("--workers", type=int, default=2, help="worker processes (lephi worker)")
    p.add_argument("--kill", choices=["none", "sigkill", "sigterm"], default="none")
    p.add_argument("--keep", action="store_true", help="keep the temporary directory (process logs)")
    p.add_argument(
        "--api-nice",
        type=int,
        default=deployed_api_nice(),
        metavar="N",
        help="niceness of the API processes (default: the reference deployment's, Nice= in "
        "deploy/systemd/lephi-api@.service; 0 runs them at the workers' priority)",
    )
    a = p.parse_args(argv)
    return Config(a.pg_admin_url, a.dossiers, a.clients, a.api, a.workers, a.kill, a.keep, api_nice=a.api_nice)


def main(argv: list[str] | None = None) -> int:
    cfg = parse_args(argv)
    harness.check_postgres(cfg.pg_admin_url)
    print(harness.machine_notes())
    print(
        f"fleet scenario: {cfg.dossiers} dossiers, {cfg.clients} clients, {cfg.api} API + {cfg.workers} workers, "
        f"kill {cfg.kill}, API processes at nice {cfg.api_nice}",
        flush=True,
    )
    report = run(cfg)
    for line in summary(cfg, report):
        print(line)
    print(harness.machine_notes())
    return 1 if report.violations else 0


if __name__ == "__main__":
    sys.exit(main())
