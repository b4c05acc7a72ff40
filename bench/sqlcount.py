"""SQL statements, transactions and commits per request, one request of each kind, in process (no server).

    python -m bench.payments_create --count-sql [--db sqlite|postgres|both] [--postgres URL]

For each database it seeds a throwaway database as the HTTP benchmarks do (the demo agency with sandbox, VietQR,
VNPay and Stripe; an API key; unpaid dossiers; pending VNPay and Stripe payments), builds the app as the server
does (``bench.server``), and sends through Starlette's TestClient, for each kind: a first request (caches, lazy
imports) and then a second one, which is the one counted. SQLAlchemy engine events count, on every engine:
``before_cursor_execute`` (each statement sent to the driver; an ``executemany`` is one), ``begin`` (transactions),
``commit`` and ``rollback``. SQLite's ``BEGIN``/``BEGIN IMMEDIATE``, which Lephi emits itself when a transaction
begins, is counted as the transaction, not as a statement.
"""

from __future__ import annotations

import json
import shutil
import tempfile
import threading
import warnings
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from bench import harness

_TRANSACTION_CONTROL = ("BEGIN", "COMMIT", "ROLLBACK")


@dataclass
class Count:
    kind: str
    status: int = 0
    statements: int = 0
    transactions: int = 0
    commits: int = 0
    rollbacks: int = 0
    verbs: dict[str, int] = field(default_factory=dict)
    sql: list[str] = field(default_factory=list)


class Recorder:
    """Engine-class event listeners, so that every engine the app builds is counted whatever builds it."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.current: Count | None = None

    def before_cursor_execute(self, _conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        text = statement.lstrip()
        verb = text.split(None, 1)[0].upper() if text else "?"
        with self.lock:
            c = self.current
            if c is None or verb in _TRANSACTION_CONTROL:
                return
            c.statements += 1
            c.verbs[verb] = c.verbs.get(verb, 0) + 1
            c.sql.append(" ".join(text.split())[:300])

    def _bump(self, name: str, marker: str) -> Callable[..., None]:
        def listener(*_args: Any) -> None:
            with self.lock:
                if self.current is not None:
                    setattr(self.current, name, getattr(self.current, name) + 1)
                    self.current.sql.append(marker)

        return listener

    @contextmanager
    def installed(self) -> Iterator[None]:
        from sqlalchemy import event
        from sqlalchemy.engine import Engine

        listeners: list[tuple[str, Callable[..., None]]] = [
            ("before_cursor_execute", self.before_cursor_execute),
            ("begin", self._bump("transactions", "-- begin")),
            ("commit", self._bump("commits", "-- commit")),
            ("rollback", self._bump("rollbacks", "-- rollback")),
        ]
        for name, fn in listeners:
            event.listen(Engine, name, fn)
        try:
            yield
        finally:
            for name, fn in listeners:
                event.remove(Engine, name, fn)

    @contextmanager
    def counting(self, count: Count) -> Iterator[Count]:
        with self.lock:
            self.current = count
        try:
            yield count
        finally:
            with self.lock:
                self.current = None


@dataclass(frozen=True)
class Request:
    kind: str
    method: str
    target: str
    headers: dict[str, str]
    body: bytes
    expect: int


def from_raw(kind: str, raw: str, expect: int = 200) -> Request:
    """A request as the load generator sends it (a whole HTTP/1.1 message), for the TestClient."""
    head, _, body = raw.partition("\r\n\r\n")
    first, *lines = head.split("\r\n")
    method, target, _ = first.split(" ", 2)
    headers = {}
    for line in lines:
        name, _, value = line.partition(":")
        if name.strip().lower() not in {"host", "content-length"}:
            headers[name.strip()] = value.strip()
    return Request(kind, method, target, headers, body.encode("latin-1"), expect)


def requests_for(
    host: str, key: str, codes: dict[str, list[str]], agency: str, pending: dict[str, Any]
) -> list[list[Request]]:
    """Two requests of each kind (the first warms up, the second is counted)."""
    from bench import callbacks
    from bench import payments_create as pc

    auth = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
    out: list[list[Request]] = [[Request("GET /healthz", "GET", "/healthz", {}, b"", 200)] * 2]
    out.append(
        [
            Request(
                f"POST {pc.DOSSIERS_PATH}",
                "POST",
                pc.DOSSIERS_PATH,
                {**auth, "Idempotency-Key": f"d-{i}"},
                body.encode(),
                201,
            )
            for i, body in enumerate(pc.dossier_bodies(2))
        ]
    )
    for method in pc.METHODS:
        out.append(
            [
                Request(
                    pc.endpoint_label(method),
                    "POST",
                    pc.PAYMENTS_PATH,
                    {**auth, "Idempotency-Key": f"p-{method}-{i}"},
                    body.encode(),
                    201,
                )
                for i, body in enumerate(pc.payment_bodies(codes[method][:2], method))
            ]
        )
    vnpay = callbacks.vnpay_requests(host, agency, pending["vnpay"][:2])
    out.append([from_raw(callbacks.PHASES[0].endpoint, raw) for raw in vnpay])
    stripe, _ = callbacks.stripe_requests(host, agency, pending["stripe"][:2])
    out.append([from_raw(callbacks.PHASES[1].endpoint, raw) for raw in stripe])
    return out


def seed(env: dict[str, str], count: int = 2) -> tuple[str, dict[str, list[str]], str, dict[str, Any]]:
    """Both benchmarks' seeds in one database, then every method on the demo agency (each seed sets its own)."""
    from sqlmodel import select

    from bench import callbacks
    from bench import payments_create as pc
    from bench.server import Settings, build_container
    from payments.agency.models import Agency

    key, codes = pc.seed(env, count)
    agency, pending = callbacks.seed(env, count)
    with harness.environment(env):
        settings = Settings()
    ctx = build_container(settings)
    try:
        with ctx.db.write() as s:
            for row in s.exec(select(Agency).where(Agency.code == agency)):
                row.payment_methods = sorted({*row.payment_methods, *pc.METHODS, "vnpay", "stripe"})
                s.add(row)
    finally:
        ctx.close()
    return key, codes, agency, pending


def count_database(db: str, pg_admin_url: str, extra_env: list[str], workdir: Path) -> list[Count]:
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "Using `httpx` with `starlette.testclient`")
        from fastapi.testclient import TestClient

    from bench import callbacks
    from bench import payments_create as pc
    from bench.server import app_from_environment
    from payments.agency.demo import DEMO_AGENCY

    data_dir = workdir / db
    data_dir.mkdir()
    port = 8000  # never listened on: the TestClient calls the app in process
    with pc.throwaway_database(db, data_dir, pg_admin_url) as url:
        gateways_file = data_dir / "gateways.toml"
        env = pc.server_env(url, data_dir, port, [f"LEPHI_GATEWAYS_FILE={gateways_file}", *extra_env])
        gateways_file.write_text(
            pc.VIETQR_TOML.format(agency=DEMO_AGENCY)
            + "\n"
            + callbacks.GATEWAYS_TOML.format(
                agency=DEMO_AGENCY,
                tmn=callbacks.VNPAY_TMN_CODE,
                vnpay_secret=callbacks.VNPAY_HASH_SECRET,
                stripe_secret=callbacks.STRIPE_WEBHOOK_SECRET,
            )
        )
        key, codes, agency, pending = seed(env)
        recorder = Recorder()
        counts: list[Count] = []
        with harness.environment(env):
            app = app_from_environment()
            with TestClient(app, base_url=f"http://127.0.0.1:{port}") as client, recorder.installed():
                for first, second in requests_for(f"127.0.0.1:{port}", key, codes, agency, pending):
                    for request, counted in ((first, False), (second, True)):
                        count = Count(request.kind)
                        with recorder.counting(count):
                            response = client.request(
                                request.method, request.target, headers=request.headers, content=request.body
                            )
                        count.status = response.status_code
                        if response.status_code != request.expect:
                            raise SystemExit(
                                f"[{db}] {request.kind}: HTTP {response.status_code}, expected {request.expect}: "
                                f"{response.text[:500]}"
                            )
                        if counted:
                            counts.append(count)
    return counts


def table(rows: dict[str, list[Count]]) -> str:
    lines = [
        "| db | request | statements | by verb | transactions | commits | rollbacks |",
        "|---|---|---:|---|---:|---:|---:|",
    ]
    for db, counts in rows.items():
        for c in counts:
            verbs = ", ".join(f"{v} {n}" for v, n in Counter(c.verbs).most_common())
            lines.append(
                f"| {db} | {c.kind} | {c.statements} | {verbs} | {c.transactions} | {c.commits} | {c.rollbacks} |"
            )
    return "\n".join(lines)


def run(dbs: list[str], pg_admin_url: str, extra_env: list[str], json_path: Path | None, verbose: bool = False) -> int:
    workdir = Path(tempfile.mkdtemp(prefix="lephi-bench-sql-"))
    rows: dict[str, list[Count]] = {}
    try:
        for db in dbs:
            rows[db] = count_database(db, pg_admin_url, extra_env, workdir)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    print(table(rows))
    if verbose:
        for db, counts in rows.items():
            for c in counts:
                print(f"\n[{db}] {c.kind}:")
                for statement in c.sql:
                    print(f"  {statement}")
    if json_path:
        json_path.write_text(json.dumps({db: [asdict(c) for c in counts] for db, counts in rows.items()}, indent=2))
    return 0
