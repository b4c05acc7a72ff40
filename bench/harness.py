"""The one load generator and measurement kit every HTTP benchmark of ``bench/`` uses.

- **Servers**: ``uvicorn_server`` starts one uvicorn process for an app factory with the settings ``lephi serve``
  gives uvicorn (warning log level, no access log, no proxy headers; uvloop and httptools when installed), so the
  bare app (``bench.bare``) and the product are served the same way, each in its own process.
- **Load**: ``run_load`` runs a separate process (``python -m bench.harness``, spec on stdin, JSON on stdout) that
  keeps N keep-alive HTTP/1.1 connections busy in a closed loop (each connection sends its next request as soon as
  the previous answer arrives), warms up, then measures a fixed window: latency percentiles, statuses, and the CPU
  of the server process or processes (``utime + stime`` from ``/proc/<pid>/stat`` at the edges of the window), of
  the load generator, of all ``postgres`` processes and of the whole machine.
- **Report**: ``summarise`` turns the raw figures into a ``Result``; ``table`` prints results with each one's CPU
  per request as a multiple of the bare app's, measured in the same run.

The client is a minimal HTTP/1.1 client on asyncio (uvloop when installed) rather than httpx: on a 2-core machine an
``httpx.AsyncClient`` tops out at a few hundred requests per second and would measure itself. This module imports
nothing of the service, so the load generator stays light.
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
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_PG_ADMIN_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"


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
    server_cpu_ms: float | None = None  # server CPU in the window, from its utime + stime

    @property
    def server_cpu_ms_per_request(self) -> float | None:
        """CPU the server spent per answered request: less sensitive than req/s to other load on a shared machine."""
        if self.server_cpu_ms is None or not self.requests:
            return None
        return self.server_cpu_ms / self.requests

    def cpu_ratio(self, bare: Result) -> float | None:
        """This endpoint's server CPU per request as a multiple of the bare app's."""
        mine, base = self.server_cpu_ms_per_request, bare.server_cpu_ms_per_request
        return mine / base if mine is not None and base else None

    def as_json(self, bare: Result | None = None) -> dict[str, Any]:
        out = {**asdict(self), "server_cpu_ms_per_request": self.server_cpu_ms_per_request}
        if bare is not None:
            out["cpu_ratio_to_bare"] = self.cpu_ratio(bare)
        return out


def percentile(sorted_values: list[float], q: float) -> float:
    if not sorted_values:
        return float("nan")
    index = min(len(sorted_values) - 1, max(0, round(q * len(sorted_values)) - 1))
    return sorted_values[index]


# --- CPU accounting from /proc (Linux); None elsewhere ------------------------------------------------------------
CLOCK_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def proc_ticks(pid: int) -> int | None:
    """utime + stime of a process, all its threads, in clock ticks."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return int(fields[11]) + int(fields[12])


def postgres_ticks() -> int | None:
    """CPU of every PostgreSQL process, in clock ticks, including backends that have exited: the postmaster reaps
    them, and their time is then counted in its children's time (``cutime + cstime``)."""
    if not Path("/proc").is_dir():
        return None
    total = 0
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError, IndexError, ValueError):
            if Path(entry.path, "comm").read_text().strip() == "postgres":
                fields = Path(entry.path, "stat").read_text().rsplit(")", 1)[1].split()
                total += sum(int(fields[i]) for i in (11, 12, 13, 14))
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
    def take(cls, server_pids: list[int], with_postgres: bool) -> CpuSample:
        ticks = [proc_ticks(pid) for pid in server_pids]
        return cls(
            time.perf_counter(),
            time.process_time(),
            None if any(t is None for t in ticks) else sum(t for t in ticks if t is not None),
            postgres_ticks() if with_postgres else None,
            _machine_ticks(),
        )


def _pct_ticks(a: int | None, b: int | None, seconds: float) -> float | None:
    if a is None or b is None or seconds <= 0:
        return None
    # A postgres backend that exits inside the window takes its ticks with it: the sum can shrink, never below 0.
    return max(0.0, 100.0 * (b - a) / CLOCK_TICKS / seconds)


# --- the load generator -------------------------------------------------------------------------------------------
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


def render(spec: dict[str, Any], body: str | None, idempotency_key: str | None) -> bytes:
    """One request from the spec's method, path and headers, with a JSON body and an Idempotency-Key if given."""
    lines = [f"{spec['method']} {spec['path']} HTTP/1.1", f"Host: {spec['host']}:{spec['port']}"]
    lines += [f"{k}: {v}" for k, v in spec["headers"].items()]
    if idempotency_key is not None:
        lines.append(f"Idempotency-Key: {idempotency_key}")
    data = (body or "").encode()
    if body is not None:
        lines += ["Content-Type: application/json", f"Content-Length: {len(data)}"]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + data


def _requests(spec: dict[str, Any]) -> Iterator[bytes]:
    """The requests to send, in order. ``bodies``: one JSON body per request (each with its own Idempotency-Key);
    ``raw``: whole precomputed requests (when path or headers differ per request, e.g. signed callbacks); neither:
    the same request over and over."""
    if spec.get("raw") is not None:
        return (r.encode("latin-1") for r in spec["raw"])
    bodies: list[str] | None = spec.get("bodies")
    if bodies is None:
        fixed = render(spec, None, None)
        return iter(lambda: fixed, None)
    run_id = secrets.token_hex(4)
    return (render(spec, b, f"bench-{run_id}-{i}") for i, b in enumerate(bodies))


def _label(status: int, body: bytes, expect: int, expect_json: dict[str, Any] | None) -> str:
    """The status as reported; a reply with the expected status whose JSON lacks ``expect_json`` counts as an error
    (VNPay's refusal is an HTTP 200 with another RspCode)."""
    if status != expect or not expect_json:
        return str(status)
    try:
        data = json.loads(body)
    except ValueError:
        return f"{status} (not JSON)"
    for key, value in expect_json.items():
        if not isinstance(data, dict) or data.get(key) != value:
            got = data.get(key) if isinstance(data, dict) else None
            return f"{status} {key}={got}"
    return str(status)


async def _drive(spec: dict[str, Any]) -> dict[str, Any]:
    """Run warm-up then the measured window with ``connections`` closed-loop clients; return raw measurements."""
    loop = asyncio.get_running_loop()
    requests = _requests(spec)
    expect = spec["expect"]
    expect_json = spec.get("expect_json")
    with_postgres = spec["with_postgres"]
    # Several server processes (bench.fleet): their CPU is summed, and each connection goes to one of their ports in
    # turn, as a load balancer would spread them.
    server_pids = spec.get("server_pids") or [spec["server_pid"]]
    ports = spec.get("ports") or [spec["port"]]

    start = time.perf_counter()
    m0 = start + spec["warmup"]
    m1 = m0 + spec["duration"]
    latencies: list[float] = []
    statuses: Counter[str] = Counter()
    samples: list[str] = []
    exhausted = False
    warmup_done = 0

    async def client(port: int) -> None:
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
                    _, conn = await loop.create_connection(HttpConnection, spec["host"], port)
                status, body = await conn.request(raw)
                label = _label(status, body, expect, expect_json)
            except (OSError, _Response) as exc:
                body, label = str(exc).encode(), type(exc).__name__
                if conn is not None and conn.transport is not None:
                    conn.transport.close()
                conn = None
            t1 = time.perf_counter()
            if not m0 <= t1 < m1:
                warmup_done += t1 < m0
                continue
            latencies.append((t1 - t0) * 1000)
            statuses[label] += 1
            if label != str(expect) and len(samples) < 5:
                sample = f"{label}: {body[:300].decode('utf-8', 'replace')}"
                if sample not in samples:
                    samples.append(sample)
        if conn is not None and conn.transport is not None:
            conn.transport.close()

    tasks = [asyncio.ensure_future(client(ports[i % len(ports)])) for i in range(spec["connections"])]
    all_done = asyncio.ensure_future(asyncio.gather(*tasks))
    await asyncio.wait([all_done], timeout=max(0.0, m0 - time.perf_counter()))
    if all_done.done():
        all_done.result()
        raise SystemExit(f"the load ran out of requests during the warm-up ({warmup_done} sent): seed more")
    first = CpuSample.take(server_pids, with_postgres)
    await asyncio.wait([all_done], timeout=max(0.0, m1 - time.perf_counter()))
    last = CpuSample.take(server_pids, with_postgres)
    await all_done
    seconds = min(last.wall, m1) - max(first.wall, m0)
    seconds = last.wall - first.wall if seconds <= 0 else seconds
    machine = None
    if first.machine and last.machine and last.machine[1] > first.machine[1]:
        machine = 100.0 * (last.machine[0] - first.machine[0]) / (last.machine[1] - first.machine[1])
    window = last.wall - first.wall
    server_ms = None
    if first.server is not None and last.server is not None:
        server_ms = 1000.0 * (last.server - first.server) / CLOCK_TICKS
    return {
        "seconds": seconds,
        "latencies": latencies,
        "statuses": dict(statuses),
        "samples": samples,
        "exhausted": exhausted,
        "server_cpu": _pct_ticks(first.server, last.server, window),
        "server_cpu_ms": server_ms,
        "postgres_cpu": _pct_ticks(first.postgres, last.postgres, window),
        "loadgen_cpu": 100.0 * (last.own - first.own) / window,
        "machine_busy": machine,
    }


def loadgen_main() -> None:
    spec = json.load(sys.stdin)
    try:
        import uvloop

        runner: Any = uvloop.run
    except ImportError:
        runner = asyncio.run
    json.dump(runner(_drive(spec)), sys.stdout)


def run_load(spec: dict[str, Any]) -> dict[str, Any]:
    """Drive a server from a separate process, so that the client's CPU is never the server's."""
    proc = subprocess.run(
        [sys.executable, "-m", "bench.harness"],
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


def load_spec(
    port: int, server_pid: int, connections: int, warmup: float, duration: float, with_postgres: bool
) -> dict[str, Any]:
    """What every phase shares; a phase adds method, path, headers, expect and its bodies or raw requests."""
    return {
        "host": "127.0.0.1",
        "port": port,
        "connections": connections,
        "warmup": warmup,
        "duration": duration,
        "server_pid": server_pid,
        "with_postgres": with_postgres,
    }


def _other(raw: dict[str, Any]) -> float | None:
    if raw["machine_busy"] is None or raw["server_cpu"] is None:
        return None
    ours = float(raw["server_cpu"] + raw["loadgen_cpu"] + (raw["postgres_cpu"] or 0.0))
    return max(0.0, float(raw["machine_busy"]) * (os.cpu_count() or 1) - ours)


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
        server_cpu_ms=raw.get("server_cpu_ms"),
    )


def phase(db: str, endpoint: str, spec: dict[str, Any]) -> Result:
    """Run one phase and print its headline."""
    result = summarise(db, endpoint, run_load(spec), spec["expect"])
    cpu = result.server_cpu_ms_per_request
    print(
        f"[{db}] {endpoint}: {result.rps:.0f} req/s, p99 {result.p99_ms:.1f} ms, "
        f"server CPU {'-' if cpu is None else f'{cpu:.3f}'} ms/request, errors {result.errors}",
        flush=True,
    )
    return result


# --- server processes ---------------------------------------------------------------------------------------------
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def uvicorn_command(app: str, port: int) -> list[str]:
    """uvicorn as ``lephi serve`` configures it (payments.cli.server_config), for an app factory."""
    return [
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
        "--no-proxy-headers",
    ]


@contextlib.contextmanager
def uvicorn_server(
    app: str, env: dict[str, str], port: int, log_path: Path, ready_path: str
) -> Iterator[subprocess.Popen[bytes]]:
    """One uvicorn process serving ``app`` (``module:factory``); ready once ``ready_path`` answers 200."""
    with log_path.open("wb") as log:
        proc = subprocess.Popen(uvicorn_command(app, port), env=env, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
        try:
            wait_ready(proc, port, log_path, ready_path)
            yield proc
        finally:
            if proc.poll() is None:
                proc.send_signal(signal.SIGINT)
                try:
                    proc.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()


def wait_ready(proc: subprocess.Popen[bytes], port: int, log_path: Path, ready_path: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"the server exited ({proc.returncode}):\n{log_path.read_text()[-3000:]}")
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
        try:
            conn.request("GET", ready_path)
            if conn.getresponse().status == 200:
                return
        except OSError:
            pass
        finally:
            conn.close()
        time.sleep(0.2)
    raise SystemExit(f"the server was not ready within {timeout:.0f} s:\n{log_path.read_text()[-3000:]}")


def server_log_warnings(db: str, log_path: Path) -> None:
    warnings = [line for line in log_path.read_text().splitlines() if line.strip()]
    if warnings:
        print(f"[{db}] the server logged {len(warnings)} lines at WARNING or above; first: {warnings[0][:300]}")


# --- databases ----------------------------------------------------------------------------------------------------
def _admin(admin_url: str) -> tuple[Any, Any]:
    """The server's admin URL and an engine on it that creates and drops databases (outside transactions)."""
    from sqlalchemy import create_engine
    from sqlalchemy.engine import make_url

    from payments.core.db import normalise_url

    admin = make_url(normalise_url(admin_url))
    return admin, create_engine(admin, isolation_level="AUTOCOMMIT")


@contextlib.contextmanager
def postgres_database(admin_url: str, template: str | None = None) -> Iterator[str]:
    """A fresh database for this run (or a copy of ``template``), dropped afterwards even when the run fails."""
    from sqlalchemy import text

    admin, engine = _admin(admin_url)
    name = f"lephi_bench_{os.getpid()}_{secrets.token_hex(3)}"
    # A file copy: the default strategy writes the whole template to the WAL, gigabytes for a large one.
    copy = f' TEMPLATE "{template}" STRATEGY = FILE_COPY' if template else ""
    with engine.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"{copy}'))
    try:
        yield admin.set(database=name).render_as_string(hide_password=False)
    finally:
        with engine.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        engine.dispose()


def kept_postgres_database(admin_url: str, name: str) -> str:
    """A database of this name, made afresh (dropped first if it exists) and kept after the run: a template."""
    from sqlalchemy import text

    admin, engine = _admin(admin_url)
    with engine.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    engine.dispose()
    rendered: str = admin.set(database=name).render_as_string(hide_password=False)
    return rendered


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


# --- report ---------------------------------------------------------------------------------------------------------
def _fmt(value: float | None, pattern: str = "{:.0f}") -> str:
    return "-" if value is None else pattern.format(value)


def table(results: list[Result], bare: dict[str, Result] | None = None) -> str:
    """Markdown table; ``bare`` maps a db to the bare app's result of the same run, for the CPU ratio column."""
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
        "x bare CPU",
        "loadgen CPU%",
        "postgres CPU%",
        "other CPU%",
    )
    rows = []
    for r in results:
        base = (bare or {}).get(r.db)
        rows.append(
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
                _fmt(r.server_cpu_ms_per_request, "{:.3f}"),
                _fmt(r.cpu_ratio(base) if base else None, "{:.1f}"),
                _fmt(r.loadgen_cpu),
                _fmt(r.postgres_cpu),
                _fmt(r.other_cpu),
            )
        )
    widths = [max(len(x[i]) for x in [header, *rows]) for i in range(len(header))]

    def line(cells: tuple[str, ...]) -> str:
        padded = (c.ljust(w) if i < 2 else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths, strict=True)))
        return "| " + " | ".join(padded) + " |"

    sep = "|" + "|".join("-" * (w + 2) for w in widths) + "|"
    return "\n".join([line(header), sep, *(line(r) for r in rows)])


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


if __name__ == "__main__":
    loadgen_main()


def add_load_options(p: argparse.ArgumentParser) -> None:
    """The options every HTTP benchmark takes: which database, and how long and how hard to load the server."""
    p.add_argument("--db", choices=["sqlite", "postgres", "both"], default=None, help="default sqlite")
    p.add_argument(
        "--postgres",
        "--pg-admin-url",
        dest="pg_admin_url",
        default=None,
        metavar="URL",
        help="PostgreSQL server where a fresh database is created and dropped (env LEPHI_BENCH_POSTGRES_URL); "
        "given alone, the run is on PostgreSQL",
    )
    p.add_argument("--duration", type=float, default=15.0, help="measured seconds per phase (default 15)")
    p.add_argument("--warmup", type=float, default=3.0, help="unmeasured seconds before each measurement (default 3)")
    p.add_argument("--connections", type=int, default=32, help="concurrent keep-alive connections (default 32)")


def settle_database(args: argparse.Namespace) -> None:
    """``--db`` is PostgreSQL when a server was named, else SQLite; the server defaults to the environment's."""
    if args.db is None:
        args.db = "postgres" if args.pg_admin_url else "sqlite"
    if args.pg_admin_url is None:
        args.pg_admin_url = os.environ.get("LEPHI_BENCH_POSTGRES_URL", DEFAULT_PG_ADMIN_URL)
