"""Benchmark of reconciliation (import of settlement files plus the matching run) against a raw load and one join.

    python -m bench.reconcile [--db sqlite|postgres|both] [--sizes 10000,100000,1000000]

For each database and size it creates a throwaway database (a SQLite file under a temporary directory, or a fresh
PostgreSQL database that is dropped afterwards), migrates it, and generates with ``devtools.generate`` one
agency's day of that many paid payments (70% VNPay, 30% MoMo) with their dossiers and receipts, 10 injected
discrepancies of every category a gateway file can show, and the two settlement files (VNPay CSV and MoMo CSV,
about one line per payment). Generation is not timed. On PostgreSQL the database is then analyzed (``VACUUM
ANALYZE``), as autovacuum keeps a production database.

Then, each in a child process of its own so that each has its own peak memory, and in this order:

1. the baseline (the floor): the same settlement rows read with the ``csv`` module and loaded by the fastest path
   the product itself uses, ``COPY`` on PostgreSQL and a single-transaction ``executemany`` on SQLite, into a plain
   table without constraints or indexes, then one SQL join of those rows with the payments by gateway and reference
   (counting the rows whose amount agrees), in one transaction. A slower baseline (``executemany`` on PostgreSQL,
   as until December 2026) flatters the ratio about fivefold;
2. Lephi: ``importer.import_file`` of both files, then ``matching.run_day`` for the day, as the CLI does them.

Reported per size: both times, the ratio (Lephi over baseline; target at most 4), settlement lines per second, and
each child's peak RSS (``ru_maxrss``; target at most 256 MiB for Lephi), and on PostgreSQL what Lephi wrote (the
database's growth, the WAL, temporary files) and the peak disk use beyond where it started (the file system holding
the database, sampled every 0.2 s; target at 10M lines: under 2 GiB beyond the data kept), with the peak while
importing and what the WAL and temporary-file directories held at their highest. After the timed part, Lephi's
exceptions are compared with the generator's manifest: every injected discrepancy in its category and
nothing else, and the matched count. The machine is shared: other work on it shows in the times, so the load
average is printed. A day kept (``--keep``) by an earlier version of the code is migrated to this one's schema
before it is timed.

Exit status: 0 when the findings were exact at every size, 1 otherwise. The targets are reported, never enforced.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import hashlib
import json
import os
import pickle
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

from bench import harness

DAY = date(2026, 11, 20)
AGENCY = "BENCH-RECON"
MIX = {"vnpay": 0.7, "momo": 0.3}
# Every category a gateway file can show; the transfer categories need a bank statement, left out here.
INJECTED = dict.fromkeys(
    (
        "paid_not_settled",
        "settled_unknown",
        "amount_mismatch",
        "duplicate_payment",
        "paid_without_receipt",
        "receipt_without_payment",
        "refund_not_settled",
    ),
    10,
)
TARGET_RATIO = 4.0
TARGET_RSS_MIB = 256
RAW_TABLE = "bench_raw_line"


@dataclass
class Row:
    db: str
    size: int
    lines: int
    generate_s: float
    baseline_s: float
    baseline_rss_mib: float
    import_s: float
    match_s: float
    lephi_rss_mib: float
    exact: bool
    detail: str
    disk: dict[str, float] | None = None  # MiB written by the import and matching (PostgreSQL): data, WAL, temp
    peak_disk_mib: float | None = None  # the file system's use at its highest during them, beyond where it started
    peak_import_mib: float | None = None  # the same, while importing
    peak_wal_mib: float | None = None  # the WAL directory at its highest
    peak_temp_mib: float | None = None  # the temporary files' directory at its highest

    @property
    def lephi_s(self) -> float:
        return self.import_s + self.match_s

    @property
    def ratio(self) -> float:
        return self.lephi_s / self.baseline_s


# --- the children ---------------------------------------------------------------------------------------------------
def _peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def child_generate(spec: dict[str, Any]) -> dict[str, Any]:
    from devtools.generate import generate
    from lephi.container import build_container
    from lephi.migrate import upgrade
    from lephi.settings import Settings

    upgrade(spec["url"])
    ctx = build_container(Settings(database_url=spec["url"], data_dir=Path(spec["dir"]), log_level="ERROR"))
    start = time.perf_counter()
    manifest = generate(
        ctx,
        agency_code=AGENCY,
        day=DAY,
        payments=spec["size"],
        discrepancies=INJECTED,
        out_dir=Path(spec["dir"]) / "files",
        seed=spec["size"],
        formats=["vnpay_csv", "momo_csv"],
        mix=MIX,
    )
    seconds = time.perf_counter() - start
    ctx.close()
    (Path(spec["dir"]) / "manifest.pickle").write_bytes(pickle.dumps(manifest))
    if spec["url"].startswith("postgresql"):
        _analyze(spec["url"])
    files = [
        {"path": str(f.path), "format": f.format.value, "source": f.source, "lines": f.lines} for f in manifest.files
    ]
    return {"seconds": seconds, "files": files}


def _analyze(url: str) -> None:
    from sqlalchemy import create_engine, text

    engine = create_engine(url, isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.execute(text("VACUUM ANALYZE"))
    engine.dispose()


def child_baseline(spec: dict[str, Any]) -> dict[str, Any]:
    """Plain driver calls only: what the same rows cost with no parsing rules, no constraints and no logic."""
    url: str = spec["url"]
    postgres = url.startswith("postgresql")
    if postgres:
        import psycopg

        conn: Any = psycopg.connect(url.replace("postgresql+psycopg://", "postgresql://"))
    else:
        import sqlite3

        conn = sqlite3.connect(url.removeprefix("sqlite:///"), isolation_level=None)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=FULL")  # the service's default
        conn.execute("BEGIN")
    start = time.perf_counter()
    cur = conn.cursor()
    cur.execute(
        f"CREATE TABLE {RAW_TABLE} (source TEXT, external_id TEXT, reference TEXT, booked TEXT, kind TEXT, "
        "amount BIGINT, fee BIGINT)"
    )
    if postgres:
        # The importer's own load path: COPY, the fastest way PostgreSQL takes rows.
        with cur.copy(f"COPY {RAW_TABLE} FROM STDIN") as copy:
            for f in spec["files"]:
                for row in _raw_rows(Path(f["path"]), f["source"]):
                    copy.write_row(row)
    else:
        insert = f"INSERT INTO {RAW_TABLE} VALUES ({', '.join(['?'] * 7)})"
        for f in spec["files"]:
            cur.executemany(insert, _raw_rows(Path(f["path"]), f["source"]))
    loaded = time.perf_counter()
    cur.execute(
        f"SELECT count(*), sum(CASE WHEN r.amount = p.amount THEN 1 ELSE 0 END) FROM {RAW_TABLE} r "
        "JOIN payment p ON p.gateway = r.source AND p.gateway_reference = r.reference"
    )
    joined, agreeing = cur.fetchone()
    if postgres:
        conn.commit()
    else:
        conn.execute("COMMIT")
    seconds = time.perf_counter() - start
    cur.execute(f"DROP TABLE {RAW_TABLE}")  # Lephi's run that follows finds the database as generated
    if postgres:
        conn.commit()
    conn.close()
    return {
        "seconds": seconds,
        "load_s": loaded - start,
        "joined": joined,
        "agreeing": agreeing,
        "rss_mib": _peak_rss_mib(),
    }


# (external id, reference, date, kind, amount, fee) columns of each gateway's default layout
_RAW_COLUMNS = {
    "vnpay": ("Mã GD VNPAY", "Mã tham chiếu", "Ngày GD", "Loại GD", "Số tiền", "Phí"),
    "momo": ("transId", "orderId", "responseTime", "type", "amount", "fee"),
}


def _raw_rows(path: Path, source: str) -> Iterator[tuple[Any, ...]]:
    with path.open(encoding="utf-8-sig", newline="") as fh:
        reader = csv.reader(fh)
        header = next(reader)
        ext, ref, day, kind, amount, fee = (header.index(name) for name in _RAW_COLUMNS[source])
        for row in reader:
            yield (
                source,
                row[ext],
                row[ref],
                row[day],
                row[kind],
                int(row[amount].replace(",", "")),
                int(row[fee].replace(",", "") or 0),
            )


def child_lephi(spec: dict[str, Any]) -> dict[str, Any]:
    from sqlmodel import select

    from adapters.statements.base import StatementFormat
    from lephi.container import build_container
    from lephi.settings import Settings
    from payments.core.logging import configure_logging
    from payments.reconcile.importer import import_file
    from payments.reconcile.matching import run_day
    from payments.reconcile.models import ExceptionStatus, ReconException

    configure_logging("ERROR")  # one log line per held credit would be measured too
    manifest = pickle.loads((Path(spec["dir"]) / "manifest.pickle").read_bytes())
    disk_before = _pg_disk(spec["url"])
    ctx = build_container(Settings(database_url=spec["url"], data_dir=Path(spec["dir"]), log_level="ERROR"))
    started_at, start = time.time(), time.perf_counter()
    for f in spec["files"]:
        import_file(ctx, AGENCY, Path(f["path"]), StatementFormat(f["format"]))
    imported, imported_at = time.perf_counter(), time.time()
    run = run_day(ctx, manifest.agency_id, DAY)
    matched = time.perf_counter()
    with ctx.db.read() as s:
        rows = s.exec(
            select(ReconException).where(
                ReconException.agency_id == manifest.agency_id, ReconException.status == ExceptionStatus.open
            )
        )
        found = {(e.category.value, e.key) for e in rows}
    expected = manifest.expected_keys(ctx)
    ctx.close()  # its backends exit and report their temporary files
    disk = _disk_used(disk_before, _pg_disk(spec["url"], settle=True))
    exact = found == expected and run.counts["matched"] == manifest.matched
    detail = (
        f"{len(found)} findings, {run.counts['matched']:,} matched"
        if exact
        else f"missing {sorted(expected - found)[:3]}, unexpected {sorted(found - expected)[:3]}, "
        f"matched {run.counts['matched']} of {manifest.matched}"
    )
    return {
        "import_s": imported - start,
        "import_window": [started_at, imported_at],
        "match_s": matched - imported,
        "rss_mib": _peak_rss_mib(),
        "exact": exact,
        "detail": detail,
        "disk": disk,
    }


def _pg_disk(url: str, settle: bool = False) -> dict[str, int] | None:
    """The database's size, the WAL position and the temporary files written so far (PostgreSQL only)."""
    if not url.startswith("postgresql"):
        return None
    import psycopg

    if settle:
        time.sleep(1.5)  # exited backends' statistics reach the cumulative view within a second
    with psycopg.connect(url.replace("+psycopg", ""), autocommit=True) as conn:
        row = conn.execute(
            "SELECT pg_database_size(current_database()), pg_current_wal_lsn() - '0/0'::pg_lsn, temp_bytes"
            " FROM pg_stat_database WHERE datname = current_database()"
        ).fetchone()
    assert row is not None
    return {"size": int(row[0]), "wal": int(row[1]), "temp": int(row[2])}


def _data_directory(url: str) -> Path | None:
    """Where the database keeps its files, when that is on this machine (the file system sampled for the peak)."""
    if not url.startswith("postgresql"):
        return Path(url.removeprefix("sqlite:///")).parent
    import psycopg

    with psycopg.connect(url.replace("+psycopg", ""), autocommit=True) as conn:
        try:
            row = conn.execute("SELECT current_setting('data_directory')").fetchone()
        except psycopg.Error:  # only superusers and pg_read_all_settings may read it
            return None
    path = Path(str(row[0])) if row else None
    return path if path is not None and path.is_dir() else None


class DiskPeak:
    """The highest use of a file system while the block runs, beyond its use at the start, sampled every 0.2 s:
    what the import and matching need free, the data they keep, their temporary tables, sorts and WAL together.
    The machine's other work shows in it too (it is small beside a large import)."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self.peak_mib: float | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._start = self._peak = 0
        self._samples: list[tuple[float, int]] = []
        # What two of PostgreSQL's own directories held at their highest, in MiB: the WAL and the sorts' and
        # hashes' temporary files (the rest of the growth is the database's files, temporary tables included).
        self.peak_wal_mib = self.peak_temp_mib = 0.0

    def _used(self) -> int:
        assert self.path is not None
        st = os.statvfs(self.path)
        return (st.f_blocks - st.f_bfree) * st.f_frsize

    def _sample(self) -> None:
        while not self._stop.wait(0.2):
            used = self._used()
            self._samples.append((time.time(), used))
            self._peak = max(self._peak, used)
            assert self.path is not None
            self.peak_wal_mib = max(self.peak_wal_mib, _dir_mib(self.path / "pg_wal"))
            self.peak_temp_mib = max(self.peak_temp_mib, _dir_mib(self.path / "base" / "pgsql_tmp"))

    def peak_between(self, start: float, end: float) -> float | None:
        """The highest use sampled between two moments (``time.time()``), beyond the use at the start, in MiB."""
        used = [u for t, u in self._samples if start <= t <= end]
        return (max(used) - self._start) / 2**20 if used else None

    def __enter__(self) -> DiskPeak:
        if self.path is not None:
            self._start = self._peak = self._used()
            self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.path is not None:
            self._stop.set()
            self._thread.join()
            self.peak_mib = (max(self._peak, self._used()) - self._start) / 2**20


def _dir_mib(path: Path) -> float:
    """The size of a directory's files (not its subdirectories), in MiB; 0 if it is missing."""
    total = 0
    with contextlib.suppress(OSError), os.scandir(path) as entries:
        for entry in entries:
            with contextlib.suppress(OSError):
                if entry.is_file(follow_symlinks=False):
                    total += entry.stat(follow_symlinks=False).st_size
    return total / 2**20


def _disk_used(before: dict[str, int] | None, after: dict[str, int] | None) -> dict[str, float] | None:
    """What the import and the matching wrote, in MiB: the data they keep (the database's growth), the WAL, and
    the temporary files of sorts and hashes that spilled to disk."""
    if before is None or after is None:
        return None
    return {k: (after[k] - before[k]) / 2**20 for k in ("size", "wal", "temp")}


CHILDREN = {"generate": child_generate, "baseline": child_baseline, "lephi": child_lephi}


def run_child(kind: str, spec: dict[str, Any]) -> dict[str, Any]:
    out = Path(spec["dir"]) / f"{kind}.json"
    subprocess.run(
        [sys.executable, "-m", "bench.reconcile", "--child", kind, json.dumps(spec), str(out)],
        check=True,
        cwd=harness.ROOT,
    )
    result: dict[str, Any] = json.loads(out.read_text())
    return result


# --- the parent -----------------------------------------------------------------------------------------------------
@contextlib.contextmanager
def database(db: str, workdir: Path, admin_url: str) -> Iterator[str]:
    if db == "sqlite":
        yield f"sqlite:///{workdir / 'bench.db'}"
    else:
        with harness.postgres_database(admin_url) as url:
            yield url


def measure(db: str, size: int, admin_url: str) -> Row:
    with tempfile.TemporaryDirectory(prefix="lephi-bench-recon-") as tmp, database(db, Path(tmp), admin_url) as url:
        spec: dict[str, Any] = {"url": url, "dir": tmp, "size": size}
        print(f"{db} {size:,}: generating", file=sys.stderr, flush=True)
        generated = run_child("generate", spec)
        spec["files"] = generated["files"]
        return timed(db, size, spec, generated)


def measure_kept(db: str, size: int, admin_url: str, keep: Path, generate_only: bool = False) -> Row | None:
    """Generate once into ``keep`` (the files, and the database: a PostgreSQL template or a SQLite file), then time
    on a copy, so that the same day can be measured again, by another version of the code, without generating it
    again (an hour and 25 GB at ten million payments)."""
    home = keep.resolve() / f"{db}-{size}"
    done = home / "generated.json"
    # Named by the directory too: days kept in two directories (by two versions of the generator) stay apart.
    template = f"lephi_bench_recon_{size}_{hashlib.sha256(str(home).encode()).hexdigest()[:8]}"
    if not done.exists():
        home.mkdir(parents=True, exist_ok=True)
        url = (
            harness.kept_postgres_database(admin_url, template)
            if db == "postgres"
            else f"sqlite:///{home / 'bench.db'}"
        )
        print(f"{db} {size:,}: generating into {home}", file=sys.stderr, flush=True)
        generated = run_child("generate", {"url": url, "dir": str(home), "size": size})
        done.write_text(json.dumps(generated))
    else:
        print(f"{db} {size:,}: reusing the day generated in {home}", file=sys.stderr, flush=True)
        generated = json.loads(done.read_text())
    if generate_only:
        return None
    spec: dict[str, Any] = {"dir": str(home), "size": size, "files": generated["files"]}
    # A day kept by an earlier version of the code has that version's schema: the copy is brought to this one's.
    from lephi.migrate import upgrade

    if db == "postgres":
        with harness.postgres_database(admin_url, template=template) as url:
            upgrade(url)
            return timed(db, size, {**spec, "url": url}, generated)
    with tempfile.TemporaryDirectory(prefix="lephi-bench-recon-", dir=home) as tmp:
        copy = Path(tmp) / "bench.db"
        shutil.copyfile(home / "bench.db", copy)
        upgrade(f"sqlite:///{copy}")
        return timed(db, size, {**spec, "url": f"sqlite:///{copy}"}, generated)


def timed(db: str, size: int, spec: dict[str, Any], generated: dict[str, Any]) -> Row:
    print(f"{db} {size:,}: baseline", file=sys.stderr, flush=True)
    baseline = run_child("baseline", spec)
    print(f"{db} {size:,}: import and matching", file=sys.stderr, flush=True)
    with DiskPeak(_data_directory(spec["url"])) as disk:
        lephi = run_child("lephi", spec)
    return Row(
        db=db,
        size=size,
        lines=sum(f["lines"] for f in generated["files"]),
        generate_s=generated["seconds"],
        baseline_s=baseline["seconds"],
        baseline_rss_mib=baseline["rss_mib"],
        import_s=lephi["import_s"],
        match_s=lephi["match_s"],
        lephi_rss_mib=lephi["rss_mib"],
        exact=lephi["exact"],
        detail=lephi["detail"],
        disk=lephi.get("disk"),
        peak_disk_mib=disk.peak_mib,
        peak_import_mib=disk.peak_between(*lephi["import_window"]),
        peak_wal_mib=disk.peak_wal_mib if disk.path is not None else None,
        peak_temp_mib=disk.peak_temp_mib if disk.path is not None else None,
    )


def table(rows: list[Row]) -> str:
    head = (
        "| database | payments | lines | baseline s | Lephi s (import + matching) | ratio | lines/s | "
        "µs/line | peak RSS MiB (baseline / Lephi) | findings exact | generation s |"
    )
    out = [head, "|" + "---|" * 11]
    for r in rows:
        out.append(
            f"| {r.db} | {r.size:,} | {r.lines:,} | {r.baseline_s:.2f} | {r.lephi_s:.2f} "
            f"({r.import_s:.2f} + {r.match_s:.2f}) | {r.ratio:.2f} | {r.lines / r.lephi_s:,.0f} | "
            f"{r.lephi_s / r.lines * 1e6:.1f} | {r.baseline_rss_mib:.0f} / {r.lephi_rss_mib:.0f} | "
            f"{'yes' if r.exact else 'NO'} | {r.generate_s:.0f} |"
        )
    return "\n".join(out)


def verdicts(rows: list[Row]) -> list[str]:
    lines = []
    for db in dict.fromkeys(r.db for r in rows):
        mine = [r for r in rows if r.db == db]
        biggest = max(mine, key=lambda r: r.size)
        ratio = "met" if biggest.ratio <= TARGET_RATIO else "missed"
        rss = "met" if max(r.lephi_rss_mib for r in mine) <= TARGET_RSS_MIB else "missed"
        growth = ", ".join(f"{r.lephi_s / r.lines * 1e6:.1f}" for r in mine)
        lines.append(
            f"{db}: ratio at {biggest.size:,} payments {biggest.ratio:.2f} (target <= {TARGET_RATIO:g}: {ratio}); "
            f"peak RSS {max(r.lephi_rss_mib for r in mine):.0f} MiB (target <= {TARGET_RSS_MIB}: {rss}); "
            f"µs per line by size {growth} (flat means linear growth)"
        )
        for r in mine:
            written = (
                f"; database grew {r.disk['size']:,.0f} MiB, WAL {r.disk['wal']:,.0f} MiB, temporary files "
                f"{r.disk['temp']:,.0f} MiB"
                if r.disk
                else ""
            )
            if r.peak_disk_mib is not None:
                written += f"; peak disk use {r.peak_disk_mib:,.0f} MiB beyond the start"
                if r.peak_import_mib is not None:
                    written += f" ({r.peak_import_mib:,.0f} MiB while importing)"
                if r.disk:
                    written += f" ({r.peak_disk_mib - r.disk['size']:,.0f} MiB beyond the data kept)"
                if r.peak_wal_mib is not None and r.peak_temp_mib is not None:
                    written += (
                        f"; at their highest the WAL {r.peak_wal_mib:,.0f} MiB, "
                        f"temporary files {r.peak_temp_mib:,.0f} MiB"
                    )
            lines.append(f"  {r.size:,}: {r.detail}{written}")
    return lines


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if args[:1] == ["--child"]:
        kind, spec, out = args[1], json.loads(args[2]), Path(args[3])
        out.write_text(json.dumps(CHILDREN[kind](spec)))
        return 0
    parser = argparse.ArgumentParser(prog="python -m bench.reconcile", description=__doc__.split("\n\n")[0])
    parser.add_argument("--db", choices=["sqlite", "postgres", "both"], default="both")
    parser.add_argument("--sizes", default="10000,100000,1000000", help="payments per run, comma-separated")
    parser.add_argument(
        "--pg-admin-url",
        default=os.environ.get("LEPHI_BENCH_POSTGRES_URL", harness.DEFAULT_PG_ADMIN_URL),
        help="PostgreSQL server where a fresh database is created and dropped (env LEPHI_BENCH_POSTGRES_URL)",
    )
    parser.add_argument(
        "--keep",
        type=Path,
        help="keep each generated day under this directory (the files, and the database: a PostgreSQL template "
        "or a SQLite file) and time on a copy; a later run with the same directory reuses the day",
    )
    parser.add_argument("--generate-only", action="store_true", help="with --keep: generate the days, time nothing")
    options = parser.parse_args(args)
    sizes = [int(s.replace("_", "")) for s in options.sizes.split(",")]
    dbs = ["sqlite", "postgres"] if options.db == "both" else [options.db]
    if "postgres" in dbs:
        harness.check_postgres(options.pg_admin_url)
    print(harness.machine_notes() + "; the machine is shared with other work")
    print(
        f"method: per size, {int(MIX['vnpay'] * 100)}% VNPay / {int(MIX['momo'] * 100)}% MoMo payments of one day, "
        f"{sum(INJECTED.values())} injected discrepancies; baseline, then Lephi, each in its own process",
        flush=True,
    )
    if options.generate_only and options.keep is None:
        parser.error("--generate-only needs --keep")
    rows = []
    for db in dbs:
        for size in sizes:
            if options.keep is None:
                rows.append(measure(db, size, options.pg_admin_url))
            elif row := measure_kept(db, size, options.pg_admin_url, options.keep, options.generate_only):
                rows.append(row)
    if not rows:
        return 0
    print()
    print(table(rows))
    print()
    for line in verdicts(rows):
        print(line)
    print(f"load average at the end: {' '.join(f'{x:.2f}' for x in os.getloadavg())}; {platform.python_version()}")
    return 0 if all(r.exact for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
