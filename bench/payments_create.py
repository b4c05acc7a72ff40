"""Benchmark of ``POST /v1/payments`` against a bare async endpoint served by the same process.

    python -m bench.payments_create [--db sqlite|postgres|both] [--duration 15] [--warmup 3] [--connections 32]

For each database it creates a throwaway database (a SQLite file under a temporary directory, or a fresh PostgreSQL
database that is dropped afterwards), migrates it, seeds the demo agency, an API key and one unpaid dossier per
request to be sent, then starts one uvicorn process serving ``bench.server:create`` (the product app plus a bare
``GET /bench/bare`` route) with the outbox worker off and logging at WARNING. A load generator in a separate process
keeps ``--connections`` keep-alive HTTP/1.1 connections busy (closed loop: each connection sends its next request
as soon as the previous answer arrives), first against the bare route, then with ``POST /v1/payments`` (method
``sandbox``, its own Idempotency-Key and dossier per request). After a warm-up it measures for a fixed duration:
throughput, latency percentiles, errors (any status other than the expected one), and the CPU used by the server,
the load generator, PostgreSQL and the whole machine.

The load generator is a minimal HTTP/1.1 client on asyncio (uvloop when installed) rather than httpx: on this kind
of machine an httpx.AsyncClient tops out at a few hundred requests per second and would measure itself.

Exit status: 0 when every request got its expected status, 1 otherwise. The targets are reported, never enforced.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import http.client
import json
import os
import platform
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_PG_ADMIN_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
BARE_PATH = "/bench/bare"  # kept in step with bench.server.BARE_PATH without importing the app here
PAYMENTS_PATH = "/v1/payments"
PROCEDURE = "2.000488"  # a procedure of the demo agency (payments.agency.demo)
RETURN_URL = "https://portal.example.gov.vn/done"
TARGET_RATIO = 0.4
TARGET_P99_MS = 50.0
SEED_BATCH = 2000


# --- results ------------------------------------------------------------------------------------------------------
@dataclass
class Result:
    db: str
    endpoint: str
    seconds: float
    requests: int
    errors: int
    rps: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float
    server_cpu: float | None  # percent of one core, over the measured window
    loadgen_cpu: float  # percent of one core
    postgres_cpu: float | None  # percent of one core, all postgres processes on the machine
    machine_busy: float | None  # percent of all cores
    other_cpu: float | None  # percent of one core used by everything else on the machine (it is shared)
    statuses: dict[str, int] = field(default_factory=dict)
    error_samples: list[str] = field(default_factory=list)
    exhausted: bool = False

    @property
    def server_cpu_ms_per_request(self) -> float | None:
        """CPU the server spent per answered request: less sensitive than req/s to other load on a shared machine."""
        if self.server_cpu is None or not self.requests:
            return None
        return self.server_cpu * 10 * self.seconds / self.requests


def percentile(sorted_values: list[float], q: float) -> float:
    if not sorted_values:
        return float("nan")
    index = min(len(sorted_values) - 1, max(0, round(q * len(sorted_values)) - 1))
    return sorted_values[index]


# --- CPU accounting from /proc (Linux); None elsewhere ------------------------------------------------------------
CLOCK_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def _proc_ticks(pid: int) -> int | None:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return int(fields[11]) + int(fields[12])  # utime + stime, all threads


def _postgres_ticks() -> int | None:
    if not Path("/proc").is_dir():
        return None
    total = 0
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            if Path(entry.path, "comm").read_text().strip() == "postgres":
                total += _proc_ticks(int(entry.name)) or 0
    return total


def _machine_ticks() -> tuple[int, int] | None:
    try:
        values = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    except (OSError, ValueError, IndexError):
        return None
    idle = values[3] + (values[4] if len(values) > 4 else 0)
    return sum(values[:8]) - idle, sum(values[:8])


@dataclass
class CpuSample:
    wall: float
    own: float
    server: int | None
    postgres: int | None
    machine: tuple[int, int] | None

    @classmethod
    def take(cls, server_pid: int, with_postgres: bool) -> CpuSample:
        return cls(
            time.perf_counter(),
            time.process_time(),
            _proc_ticks(server_pid),
            _postgres_ticks() if with_postgres else None,
            _machine_ticks(),
        )


def _pct_ticks(a: int | None, b: int | None, seconds: float) -> float | None:
    if a is None or b is None or seconds <= 0:
        return None
    return 100.0 * (b - a) / CLOCK_TICKS / seconds


# --- the load generator (runs in its own process: ``--loadgen`` reads a spec on stdin, writes JSON on stdout) ----
class _Response(Exception):
    pass


class HttpConnection(asyncio.Protocol):
    """One keep-alive HTTP/1.1 connection with at most one request in flight; responses need Content-Length."""

    def __init__(self) -> None:
        self.buffer = bytearray()
        self.waiter: asyncio.Future[tuple[int, bytes]] | None = None
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's transports do not subclass asyncio's

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        end = self.buffer.find(b"\r\n\r\n")
        if end < 0 or self.waiter is None or self.waiter.done():
            return
        head = bytes(self.buffer[:end]).decode("latin-1")
        length = None
        for line in head.split("\r\n")[1:]:
            name, _, value = line.partition(":")
            if name.strip().lower() == "content-length":
                length = int(value.strip())
        if length is None:
            self.waiter.set_exception(_Response(f"no Content-Length in response: {head[:200]!r}"))
            return
        if len(self.buffer) < end + 4 + length:
            return
        status = int(head[9:12])
        body = bytes(self.buffer[end + 4 : end + 4 + length])
        del self.buffer[: end + 4 + length]
        self.waiter.set_result((status, body))

    def connection_lost(self, exc: Exception | None) -> None:
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_exception(ConnectionError(f"connection lost: {exc}"))

    async def request(self, raw: bytes) -> tuple[int, bytes]:
        assert self.transport is not None
        self.waiter = asyncio.get_running_loop().create_future()
        self.transport.write(raw)
        return await self.waiter


def _render(spec: dict[str, Any], body: str | None, idempotency_key: str | None) -> bytes:
    lines = [f"{spec['method']} {spec['path']} HTTP/1.1", f"Host: {spec['host']}:{spec['port']}"]
    lines += [f"{k}: {v}" for k, v in spec["headers"].items()]
    if idempotency_key is not None:
        lines.append(f"Idempotency-Key: {idempotency_key}")
    data = (body or "").encode()
    if body is not None:
        lines += ["Content-Type: application/json", f"Content-Length: {len(data)}"]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + data


async def _drive(spec: dict[str, Any]) -> dict[str, Any]:
    """Run warm-up then the measured window with ``connections`` closed-loop clients; return raw measurements."""
    loop = asyncio.get_running_loop()
    bodies: list[str] | None = spec.get("bodies")
    run_id = secrets.token_hex(4)
    if bodies is None:
        fixed = _render(spec, None, None)
        requests: Iterator[bytes] = iter(lambda: fixed, None)
    else:
        requests = (_render(spec, b, f"bench-{run_id}-{i}") for i, b in enumerate(bodies))
    expect = spec["expect"]
    with_postgres = spec["with_postgres"]
    server_pid = spec["server_pid"]

    start = time.perf_counter()
    m0 = start + spec["warmup"]
    m1 = m0 + spec["duration"]
    latencies: list[float] = []
    statuses: Counter[str] = Counter()
    samples: list[str] = []
    exhausted = False
    warmup_done = 0

    async def client() -> None:
        nonlocal exhausted, warmup_done
        conn: HttpConnection | None = None
        while True:
            t0 = time.perf_counter()
            if t0 >= m1:
                break
            raw = next(requests, None)
            if raw is None:
                exhausted = True
                break
            try:
                if conn is None:
                    _, conn = await loop.create_connection(HttpConnection, spec["host"], spec["port"])
                status, body = await conn.request(raw)
                label = str(status)
            except (OSError, _Response) as exc:
                status, body, label = 0, str(exc).encode(), type(exc).__name__
                if conn is not None and conn.transport is not None:
                    conn.transport.close()
                conn = None
            t1 = time.perf_counter()
            if not m0 <= t1 < m1:
                warmup_done += t1 < m0
                continue
            latencies.append((t1 - t0) * 1000)
            statuses[label] += 1
            if status != expect and len(samples) < 5:
                sample = f"{label}: {body[:300].decode('utf-8', 'replace')}"
                if sample not in samples:
                    samples.append(sample)
        if conn is not None and conn.transport is not None:
            conn.transport.close()

    tasks = [asyncio.ensure_future(client()) for _ in range(spec["connections"])]
    all_done = asyncio.ensure_future(asyncio.gather(*tasks))
    await asyncio.wait([all_done], timeout=max(0.0, m0 - time.perf_counter()))
    if all_done.done():
        all_done.result()
        raise SystemExit(f"the load ran out of requests during the warm-up ({warmup_done} sent): seed more dossiers")
    first = CpuSample.take(server_pid, with_postgres)
    await asyncio.wait([all_done], timeout=max(0.0, m1 - time.perf_counter()))
    last = CpuSample.take(server_pid, with_postgres)
    await all_done
    seconds = min(last.wall, m1) - max(first.wall, m0)
    seconds = last.wall - first.wall if seconds <= 0 else seconds
    machine = None
    if first.machine and last.machine and last.machine[1] > first.machine[1]:
        machine = 100.0 * (last.machine[0] - first.machine[0]) / (last.machine[1] - first.machine[1])
    return {
        "seconds": seconds,
        "latencies": latencies,
        "statuses": dict(statuses),
        "samples": samples,
        "exhausted": exhausted,
        "server_cpu": _pct_ticks(first.server, last.server, last.wall - first.wall),
        "postgres_cpu": _pct_ticks(first.postgres, last.postgres, last.wall - first.wall),
        "loadgen_cpu": 100.0 * (last.own - first.own) / (last.wall - first.wall),
        "machine_busy": machine,
    }


def loadgen_main() -> None:
    spec = json.load(sys.stdin)
    try:
        import uvloop

        runner: Any = uvloop.run
    except ImportError:
        runner = asyncio.run
    out = runner(_drive(spec))
    json.dump(out, sys.stdout)


def run_load(spec: dict[str, Any]) -> dict[str, Any]:
    proc = subprocess.run(
        [sys.executable, "-m", "bench.payments_create", "--loadgen"],
        input=json.dumps(spec),
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=False,
    )
    if proc.returncode != 0:
        raise SystemExit(f"load generator failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(proc.stdout)
    return result


def _other(raw: dict[str, Any]) -> float | None:
    if raw["machine_busy"] is None or raw["server_cpu"] is None:
        return None
    ours = raw["server_cpu"] + raw["loadgen_cpu"] + (raw["postgres_cpu"] or 0.0)
    return max(0.0, raw["machine_busy"] * (os.cpu_count() or 1) - ours)


def summarise(db: str, endpoint: str, raw: dict[str, Any], expect: int) -> Result:
    values = sorted(raw["latencies"])
    statuses = raw["statuses"]
    errors = sum(n for s, n in statuses.items() if s != str(expect))
    return Result(
        db=db,
        endpoint=endpoint,
        seconds=raw["seconds"],
        requests=len(values),
        errors=errors,
        rps=len(values) / raw["seconds"],
        p50_ms=percentile(values, 0.50),
        p90_ms=percentile(values, 0.90),
        p99_ms=percentile(values, 0.99),
        max_ms=values[-1] if values else float("nan"),
        server_cpu=raw["server_cpu"],
        loadgen_cpu=raw["loadgen_cpu"],
        postgres_cpu=raw["postgres_cpu"],
        machine_busy=raw["machine_busy"],
        other_cpu=_other(raw),
        statuses=statuses,
        error_samples=raw["samples"],
        exhausted=raw["exhausted"],
    )


# --- databases ----------------------------------------------------------------------------------------------------
@contextlib.contextmanager
def postgres_database(admin_url: str) -> Iterator[str]:
    """A fresh database for this run, dropped afterwards even when the run fails."""
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    from payments.core.db import normalise_url

    admin = make_url(normalise_url(admin_url))
    name = f"lephi_bench_{os.getpid()}_{secrets.token_hex(3)}"
    engine = create_engine(admin, isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield admin.set(database=name).render_as_string(hide_password=False)
    finally:
        with engine.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        engine.dispose()


def check_postgres(admin_url: str) -> None:
    from sqlalchemy import create_engine, text

    from payments.core.db import normalise_url

    engine = create_engine(normalise_url(admin_url))
    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
    except Exception as exc:
        raise SystemExit(
            f"PostgreSQL at {admin_url} cannot be reached ({type(exc).__name__}); start it, point --pg-admin-url "
            "(or LEPHI_BENCH_POSTGRES_URL) at a server where this user may create databases, or use --db sqlite"
        ) from exc
    finally:
        engine.dispose()


@contextlib.contextmanager
def environment(env: dict[str, str]) -> Iterator[None]:
    """Run with exactly the server's environment, so that seeding reads the same settings as the server."""
    saved = dict(os.environ)
    os.environ.clear()
    os.environ.update(env)
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


def seed(env: dict[str, str], count: int) -> tuple[str, list[str]]:
    """Migrate, then seed the demo agency, an API key that may create payments and ``count`` unpaid dossiers."""
    from lephi.container import build_container
    from lephi.migrate import upgrade
    from lephi.settings import Settings
    from payments.agency.demo import DEMO_AGENCY, seed_demo
    from payments.auth.models import Scope
    from payments.auth.service import create_key
    from payments.dossier.schemas import DossierIn, PayerIn
    from payments.dossier.service import upsert_dossier

    with environment(env):
        settings = Settings()
    upgrade(settings.effective_database_url)
    ctx = build_container(settings)
    try:
        with ctx.db.write() as s:
            dossier, _ = seed_demo(s, settings.data_dir)
            agency_id = dossier.agency_id
            _, key = create_key(s, DEMO_AGENCY, "bench", [Scope.payments_write.value])
        codes = [f"BENCH-{i:07d}" for i in range(count)]
        payer = PayerIn(name="Nguyễn Văn An", email="an@example.com")
        for batch in range(0, count, SEED_BATCH):
            with ctx.db.write() as s:
                for code in codes[batch : batch + SEED_BATCH]:
                    upsert_dossier(s, agency_id, DossierIn(code=code, procedure_code=PROCEDURE, payer=payer))
    finally:
        ctx.close()
    return key, codes


# --- the server process ---------------------------------------------------------------------------------------------
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def server(env: dict[str, str], port: int, log_path: Path, app: str) -> Iterator[subprocess.Popen[bytes]]:
    cmd = [
        sys.executable,
        "-m",
        "uvicorn",
        "--factory",
        app,
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--log-level",
        "warning",
        "--no-access-log",
    ]
    with log_path.open("wb") as log:
        proc = subprocess.Popen(cmd, env=env, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
        try:
            wait_ready(proc, port, log_path)
            yield proc
        finally:
            if proc.poll() is None:
                proc.send_signal(signal.SIGINT)
                try:
                    proc.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()


def wait_ready(proc: subprocess.Popen[bytes], port: int, log_path: Path, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"the server exited ({proc.returncode}):\n{log_path.read_text()[-3000:]}")
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
        try:
            conn.request("GET", "/readyz")
            if conn.getresponse().status == 200:
                return
        except OSError:
            pass
        finally:
            conn.close()
        time.sleep(0.2)
    raise SystemExit(f"the server was not ready within {timeout:.0f} s:\n{log_path.read_text()[-3000:]}")


def server_env(database_url: str, data_dir: Path, port: int, extra: list[str]) -> dict[str, str]:
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


# --- one database, both endpoints ---------------------------------------------------------------------------------
def bench_database(db: str, args: argparse.Namespace, workdir: Path) -> list[Result]:
    data_dir = workdir / db
    data_dir.mkdir()
    port = free_port()
    with contextlib.ExitStack() as stack:
        if db == "sqlite":
            url = f"sqlite:///{(data_dir / 'lephi.db').as_posix()}"
        else:
            url = stack.enter_context(postgres_database(args.pg_admin_url))
        env = server_env(url, data_dir, port, args.env)
        started = time.perf_counter()
        key, codes = seed(env, args.dossiers)
        print(f"[{db}] seeded {len(codes)} unpaid dossiers in {time.perf_counter() - started:.1f} s", flush=True)
        proc = stack.enter_context(server(env, port, data_dir / "server.log", args.app))
        print(f"[{db}] server pid {proc.pid} on port {port}", flush=True)
        common = {
            "host": "127.0.0.1",
            "port": port,
            "connections": args.connections,
            "warmup": args.warmup,
            "duration": args.duration,
            "server_pid": proc.pid,
            "with_postgres": db == "postgres",
        }
        bare = {**common, "method": "GET", "path": BARE_PATH, "headers": {}, "expect": 200}
        results = [summarise(db, "GET /bench/bare", run_load(bare), 200)]
        print(f"[{db}] bare: {results[-1].rps:.0f} req/s", flush=True)
        bodies = [
            json.dumps({"dossier_code": c, "method": "sandbox", "return_url": RETURN_URL}, separators=(",", ":"))
            for c in codes
        ]
        payments = {
            **common,
            "method": "POST",
            "path": PAYMENTS_PATH,
            "headers": {"Authorization": f"Bearer {key}"},
            "bodies": bodies,
            "expect": 201,
        }
        results.append(summarise(db, "POST /v1/payments", run_load(payments), 201))
        print(f"[{db}] payments: {results[-1].rps:.0f} req/s", flush=True)
        warnings = [line for line in (data_dir / "server.log").read_text().splitlines() if line.strip()]
        if warnings:
            print(f"[{db}] the server logged {len(warnings)} lines at WARNING or above; first: {warnings[0][:300]}")
    return results


# --- report ---------------------------------------------------------------------------------------------------------
def _fmt(value: float | None, pattern: str = "{:.0f}") -> str:
    return "-" if value is None else pattern.format(value)


def table(results: list[Result]) -> str:
    header = (
        "db",
        "endpoint",
        "requests",
        "errors",
        "req/s",
        "p50 ms",
        "p90 ms",
        "p99 ms",
        "max ms",
        "server CPU%",
        "server CPU ms/req",
        "loadgen CPU%",
        "postgres CPU%",
        "machine busy%",
        "other CPU%",
    )
    rows = [
        (
            r.db,
            r.endpoint,
            str(r.requests),
            str(r.errors),
            f"{r.rps:.0f}",
            f"{r.p50_ms:.1f}",
            f"{r.p90_ms:.1f}",
            f"{r.p99_ms:.1f}",
            f"{r.max_ms:.1f}",
            _fmt(r.server_cpu),
            _fmt(r.server_cpu_ms_per_request, "{:.2f}"),
            _fmt(r.loadgen_cpu),
            _fmt(r.postgres_cpu),
            _fmt(r.machine_busy),
            _fmt(r.other_cpu),
        )
        for r in results
    ]
    widths = [max(len(x[i]) for x in [header, *rows]) for i in range(len(header))]

    def line(cells: tuple[str, ...]) -> str:
        return (
            "| "
            + " | ".join(
                c.ljust(w) if i < 2 else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths, strict=True))
            )
            + " |"
        )

    sep = "|" + "|".join("-" * (w + 2) for w in widths) + "|"
    return "\n".join([line(header), sep, *(line(r) for r in rows)])


def verdicts(results: list[Result]) -> list[str]:
    out = []
    for db in dict.fromkeys(r.db for r in results):
        bare = next(r for r in results if r.db == db and r.endpoint.endswith(BARE_PATH))
        pay = next(r for r in results if r.db == db and r.endpoint.endswith(PAYMENTS_PATH))
        ratio = pay.rps / bare.rps if bare.rps else float("nan")
        ok_ratio = "met" if ratio >= TARGET_RATIO else "MISSED"
        ok_p99 = "met" if pay.p99_ms <= TARGET_P99_MS else "MISSED"
        out.append(
            f"{db}: payments/bare throughput = {pay.rps:.0f}/{bare.rps:.0f} = {ratio:.2f} "
            f"(target >= {TARGET_RATIO}: {ok_ratio}); payments p99 = {pay.p99_ms:.1f} ms "
            f"(target <= {TARGET_P99_MS:.0f} ms: {ok_p99}); errors = {pay.errors + bare.errors}"
        )
        for r in (bare, pay):
            if r.errors:
                out.append(f"  {r.endpoint} statuses {r.statuses}; samples:")
                out += [f"    {s}" for s in r.error_samples]
            if r.exhausted:
                out.append(f"  {r.endpoint}: ran out of seeded dossiers after {r.seconds:.1f} s; raise --dossiers")
    return out


def machine_notes() -> str:
    model = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    load = " ".join(f"{x:.2f}" for x in os.getloadavg()) if hasattr(os, "getloadavg") else "?"
    return (
        f"machine: {os.cpu_count()} CPUs {model}; load average {load}; "
        f"Python {platform.python_version()} on {platform.system()} {platform.release()}"
    )


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.payments_create", description=__doc__.split("\n\n")[0])
    p.add_argument("--db", choices=["sqlite", "postgres", "both"], default="both")
    p.add_argument("--duration", type=float, default=15.0, help="measured seconds per endpoint (default 15)")
    p.add_argument("--warmup", type=float, default=3.0, help="unmeasured seconds before each measurement (default 3)")
    p.add_argument("--connections", type=int, default=32, help="concurrent keep-alive connections (default 32)")
    p.add_argument(
        "--dossiers",
        type=int,
        default=None,
        help="unpaid dossiers to seed, one per payment request (default: 400 per second of warm-up + duration)",
    )
    p.add_argument(
        "--pg-admin-url",
        default=os.environ.get("LEPHI_BENCH_POSTGRES_URL", DEFAULT_PG_ADMIN_URL),
        help="PostgreSQL server where a fresh database is created and dropped (env LEPHI_BENCH_POSTGRES_URL)",
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
        help="ASGI app factory uvicorn serves; it must keep the bare route (default bench.server:create); "
        "another launcher lets one try a change without editing the product",
    )
    p.add_argument("--json", type=Path, help="also write the results as JSON to this file")
    p.add_argument("--keep", action="store_true", help="keep the temporary directory (SQLite file, server logs)")
    p.add_argument("--loadgen", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.dossiers is None:
        args.dossiers = int(400 * (args.warmup + args.duration))
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.loadgen:
        loadgen_main()
        return 0
    dbs = ["sqlite", "postgres"] if args.db == "both" else [args.db]
    if "postgres" in dbs:
        check_postgres(args.pg_admin_url)
    print(machine_notes())
    print(
        f"method: one uvicorn process, {args.connections} keep-alive connections from a separate load-generator "
        f"process, {args.warmup:g} s warm-up then {args.duration:g} s measured per endpoint"
        + (f"; settings {' '.join(args.env)}" if args.env else ""),
        flush=True,
    )
    workdir = Path(tempfile.mkdtemp(prefix="lephi-bench-"))
    results: list[Result] = []
    try:
        for db in dbs:
            results += bench_database(db, args, workdir)
    finally:
        if args.keep:
            print(f"kept {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    print()
    print(table(results))
    print()
    for line in verdicts(results):
        print(line)
    if args.json:
        args.json.write_text(
            json.dumps(
                [{**asdict(r), "server_cpu_ms_per_request": r.server_cpu_ms_per_request} for r in results], indent=2
            )
        )
    return 1 if any(r.errors for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
