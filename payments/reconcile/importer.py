"""Importing settlement files and bank statements: streamed from the file into ``statement_entry`` in one
transaction, so a malformed file imports nothing, and keyed so that nothing counts twice (the file's SHA-256 per
agency; each line's source transaction id per agency and source).

Bank statement credits also feed the VietQR matching (``payments.transfer``): a credit whose memo carries a payment
reference settles that payment if the amount is exact, or is held with its reason, exactly as a bank notification
would; the bank transaction counts once whichever arrives first.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date
from pathlib import Path

from sqlalchemy import text
from sqlmodel import Session, col, select

from adapters.statements.base import (
    LineFields,
    LineKind,
    StatementError,
    StatementFormat,
    StatementLine,
    fields_of,
    file_sha256,
)
from adapters.statements.csvfile import ColumnMapping
from adapters.statements.formats import parse_file_fields
from adapters.vietqr import find_reference
from payments.agency.models import Agency
from payments.core.context import AppContext
from payments.core.errors import LephiError, NotFound
from payments.core.logging import get_logger
from payments.reconcile.models import StatementEntry, StatementImport
from payments.transfer.models import BankCredit
from payments.transfer.service import Credit, apply_credit

log = get_logger(__name__)

BATCH = 5000
BANK = "bank"
SOURCE_OF_FORMAT: dict[StatementFormat, str] = {
    StatementFormat.vnpay_csv: "vnpay",
    StatementFormat.momo_csv: "momo",
    StatementFormat.zalopay_csv: "zalopay",
    StatementFormat.stripe_api: "stripe",
    StatementFormat.mt940: BANK,
    StatementFormat.camt053: BANK,
    StatementFormat.bank_csv: BANK,
}
# The gateway whose payments a source's lines settle: bank statements carry VietQR transfers.
GATEWAY_OF_SOURCE = {"vnpay": "vnpay", "momo": "momo", "zalopay": "zalopay", "stripe": "stripe", BANK: "vietqr"}
Progress = Callable[[int, int], None]  # (lines so far, bytes read so far)
# Called in the import's transaction once a new file's lines are in: what the caller writes there (an audit row) is
# committed with the lines or not at all.
OnImported = Callable[[Session, "ImportResult"], None]


class ImportFailed(LephiError):
    status, code, title = 422, "import_failed", "The file could not be imported"


@dataclass(frozen=True)
class ImportResult:
    import_id: str
    duplicate_file: bool
    lines: int
    new_lines: int
    total_amount: int
    first_day: date | None
    last_day: date | None
    credits_applied: int = 0


def import_file(
    ctx: AppContext,
    agency_code: str,
    path: Path,
    fmt: StatementFormat,
    *,
    mapping: ColumnMapping | None = None,
    actor: str = "cli",
    progress: Progress | None = None,
    file_name: str | None = None,
    on_done: OnImported | None = None,
) -> ImportResult:
    """Import one file for one agency. The same bytes a second time add nothing and say so. ``file_name`` is the
    name to record when ``path`` is a copy (an upload's temporary file)."""
    if fmt is StatementFormat.stripe_api:
        raise ImportFailed("Stripe settlement is read from Stripe's API, not from a file: use import_lines")
    sha256 = file_sha256(path)
    with path.open("rb") as raw:

        def lines() -> Iterator[LineFields]:
            yield from parse_file_fields(raw, fmt, mapping)

        def tick(count: int) -> None:
            # The file's position, not a count of bytes handed to the parser: parsers read ahead and rewind.
            if progress is not None:
                progress(count, raw.tell())

        result = _import(
            ctx,
            agency_code,
            lines(),
            fmt,
            sha256=sha256,
            file_name=file_name or path.name,
            actor=actor,
            tick=tick,
            on_done=on_done,
        )
    return _with_statistics(ctx, result)


def import_lines(
    ctx: AppContext,
    agency_code: str,
    lines: Iterable[StatementLine],
    fmt: StatementFormat,
    *,
    sha256: str,
    file_name: str,
    actor: str,
    tick: Callable[[int], None] | None = None,
    on_done: OnImported | None = None,
) -> ImportResult:
    fields = map(fields_of, lines)
    result = _import(
        ctx, agency_code, fields, fmt, sha256=sha256, file_name=file_name, actor=actor, tick=tick, on_done=on_done
    )
    return _with_statistics(ctx, result)


def _with_statistics(ctx: AppContext, result: ImportResult) -> ImportResult:
    if result.new_lines and ctx.db.dialect == "postgresql":
        _refresh_statistics(ctx, result.new_lines)
    return result


# Autovacuum's default rule: analyze once the rows changed since the last ANALYZE exceed 50 + 10% of the table.
_STALE = text(
    """
    SELECT coalesce(s.n_mod_since_analyze, 0) + :new > 50 + 0.1 * greatest(c.reltuples, 0)
    FROM pg_class c LEFT JOIN pg_stat_user_tables s ON s.relid = c.oid
    WHERE c.oid = 'statement_entry'::regclass
    """
)


# The columns the reconciliation's plans filter, join and group on. The others (free text, amounts, and the
# transaction id and reference, nearly unique, whose distinct count PostgreSQL keeps as a fraction of the rows) keep
# the statistics autovacuum last gave them: sampling them is most of ANALYZE's cost and changes no plan.
ANALYZED_COLUMNS = ("agency_id", "import_id", "source", "kind", "booked_on", "payment_id")
_ANALYZE = text(f"ANALYZE statement_entry ({', '.join(ANALYZED_COLUMNS)})")


def _refresh_statistics(ctx: AppContext, new_lines: int) -> None:
    """Matching usually runs right after an import, before autovacuum has looked at the table (if it runs at all):
    with statistics of a nearly empty table, PostgreSQL plans the day's per-payment lookups as scans of every line
    of the agency, and a day of a million lines takes hours instead of seconds. So the import applies autovacuum's
    rule itself, in a transaction of its own so that ANALYZE's lock is not held by the import."""
    with ctx.db.write() as s:
        if s.execute(_STALE, {"new": new_lines}).scalar_one():
            s.execute(_ANALYZE)


def _import(
    ctx: AppContext,
    agency_code: str,
    lines: Iterable[LineFields],
    fmt: StatementFormat,
    *,
    sha256: str,
    file_name: str,
    actor: str,
    tick: Callable[[int], None] | None,
    on_done: OnImported | None = None,
) -> ImportResult:
    source = SOURCE_OF_FORMAT[fmt]
    with ctx.db.write() as s:
        agency_id = s.exec(select(Agency.id).where(Agency.code == agency_code)).first()
        if agency_id is None:
            raise NotFound(f"no agency {agency_code!r}")
        earlier = s.exec(
            select(StatementImport).where(StatementImport.agency_id == agency_id, StatementImport.sha256 == sha256)
        ).first()
        if earlier is not None:
            log.info("reconcile.import_duplicate", import_id=earlier.id, file=file_name)
            return ImportResult(
                earlier.id, True, earlier.line_count, 0, earlier.total_amount, earlier.first_day, earlier.last_day
            )
        row = StatementImport(
            agency_id=agency_id,
            source=source,
            format=fmt.value,
            file_name=file_name[:300],
            sha256=sha256,
            imported_by=actor,
        )
        s.add(row)
        s.flush()
        try:
            with sqlite_cache(s):
                totals = _insert(s, ctx.db.dialect, agency_id, row.id, source, lines, tick)
        except StatementError as exc:
            raise ImportFailed(f"{file_name}: {exc}; nothing was imported", line=exc.line) from None
        count, new_lines, total, first, last = totals.count, totals.new, totals.amount, totals.first, totals.last
        row.line_count, row.new_lines, row.total_amount, row.first_day, row.last_day = (
            count,
            new_lines,
            total,
            first,
            last,
        )
        s.add(row)
        credits = _apply_bank_credits(s, agency_code, row.id) if source == BANK else 0
        log.info(
            "reconcile.imported", import_id=row.id, file=file_name, lines=count, new_lines=new_lines, credits=credits
        )
        result = ImportResult(row.id, False, count, new_lines, total, first, last, credits)
        if on_done is not None:
            on_done(s, result)
        return result


# Inserted at the driver, below the ORM: a million lines through per-row dictionaries and bind processing cost
# several times the database's own work. Each file is staged first, in a temporary table without index or
# constraint (COPY on PostgreSQL, one executemany on SQLite), with only what varies per line: the agency, the import
# and the source are constants of the set-based statement that then moves the lines into ``statement_entry``,
# which skips what an overlapping file already brought (the same transaction counts once) and links each new line to
# the payment its reference names, by the rule matching links by (``matching._LINK``, which still links whatever is
# left). The values are already the column types (text, integers, ISO dates).
_STAGED = "line_no, external_id, kind, amount, fee, currency, booked_on, value_on, reference, counterparty, description"
_COLUMNS = f"agency_id, import_id, source, {_STAGED}"
_STAGE_TYPES = (
    "line_no integer, external_id text, kind text, amount bigint, fee bigint, currency text, booked_on {date}, "
    "value_on {date}, reference text, counterparty text, description text"
)
_PG_LOAD = f"CREATE TEMPORARY TABLE statement_entry_load ({_STAGE_TYPES.format(date='date')}) ON COMMIT DROP"
_SQLITE_LOAD = f"CREATE TEMPORARY TABLE statement_entry_load ({_STAGE_TYPES.format(date='text')})"
_SQLITE_STAGE = "INSERT INTO statement_entry_load VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
_PG_DECLARE = "SELECT statement_entry_declare_import(%s, %s)"
_CONFLICT = "ON CONFLICT (agency_id, source, external_id) DO NOTHING"
_STAGED_SELECT = ", ".join("l." + c.strip() for c in _STAGED.split(","))
# In file order, so that ids follow the file and the first of two lines with one transaction id is the one kept.
# The parameters are the agency, the import, the source and the gateway whose payments the source settles.
_PG_INSERT = f"""
    INSERT INTO statement_entry ({_COLUMNS}, payment_id)
    SELECT %(agency)s, %(import)s, %(source)s, {_STAGED_SELECT}, p.id
    FROM statement_entry_load l
    LEFT JOIN payment p ON p.gateway = %(gateway)s AND p.gateway_reference = l.reference AND p.agency_id = %(agency)s
    ORDER BY l.line_no
    {_CONFLICT}
"""  # noqa: S608 - constants only
# SQLite has no hash join: the payment is one index lookup per line either way, as a subquery it stays one. "WHERE
# true" is SQLite's own rule for an upsert from a SELECT (it parses ON CONFLICT otherwise as a join constraint).
_SQLITE_INSERT = f"""
    INSERT INTO statement_entry ({_COLUMNS}, payment_id)
    SELECT :agency, :import, :source, {_STAGED_SELECT},
           (SELECT p.id FROM payment p
             WHERE p.gateway = :gateway AND p.gateway_reference = l.reference AND p.agency_id = :agency)
    FROM statement_entry_load l
    WHERE true
    ORDER BY l.rowid
    {_CONFLICT}
"""  # noqa: S608 - constants only
# The sort of a million staged lines stays in memory rather than spilling to disk at the default 4 MB (69 MB were
# spilled at a million lines): sized by the staged lines, for the import's transaction only. Below the default it is
# left alone: on small files a larger setting measured no faster.
WORK_MEM_BYTES_PER_LINE = 160
WORK_MEM_MAX_KIB = 256 * 1024
WORK_MEM_DEFAULT_KIB = 4 * 1024
# The matching run's per-payment hash of the day's lines.
MATCHING_WORK_MEM = "256MB"


def work_mem_kib(lines: int) -> int | None:
    """The ``work_mem`` for moving this many staged lines, or None to keep the server's."""
    kib = min(WORK_MEM_MAX_KIB, lines * WORK_MEM_BYTES_PER_LINE // 1024)
    return kib if kib > WORK_MEM_DEFAULT_KIB else None


# SQLite's default page cache is 2 MB; a bulk import or a matching run over a million lines touches indexes far
# larger, at random. Raised for the one transaction, then given back, so pooled connections keep the default. The
# cache is the process's memory: at a million lines 256 MB of it took the import to 400 MiB, and 64, 96 and 256 MB
# ran equally fast (the operating system's file cache holds the pages the smaller cache gives back).
SQLITE_CACHE_KIB = 96 * 1024

Entry = tuple[int, str, str, int, int, str, str, str | None, str | None, str | None, str]


@contextmanager
def sqlite_cache(s: Session, kib: int = SQLITE_CACHE_KIB) -> Iterator[None]:
    """A larger SQLite page cache for the rest of this transaction (nothing on PostgreSQL)."""
    conn = s.connection()
    if conn.dialect.name != "sqlite":
        yield
        return
    before = conn.exec_driver_sql("PRAGMA cache_size").scalar_one()
    conn.exec_driver_sql(f"PRAGMA cache_size = -{int(kib)}")
    try:
        yield
    finally:
        conn.exec_driver_sql(f"PRAGMA cache_size = {int(before)}")


@dataclass
class _Totals:
    count: int = 0
    new: int = 0
    amount: int = 0
    first: date | None = None
    last: date | None = None


def _insert(
    s: Session,
    dialect: str,
    agency_id: str,
    import_id: str,
    source: str,
    lines: Iterable[LineFields],
    tick: Callable[[int], None] | None,
) -> _Totals:
    totals = _Totals()
    params = {"agency": agency_id, "import": import_id, "source": source, "gateway": GATEWAY_OF_SOURCE[source]}
    conn = s.connection()
    rows = _rows(source, lines, totals)
    if dialect == "postgresql":
        with conn.connection.driver_connection.cursor() as cur:  # type: ignore[union-attr]
            # The lines' import, checked once for all of them (migration 0021) rather than per line.
            cur.execute(_PG_DECLARE, (import_id, agency_id))
            cur.execute(_PG_LOAD)
            # Straight from the parser into COPY, one row at a time: no batch is held in memory.
            with cur.copy(f"COPY statement_entry_load ({_STAGED}) FROM STDIN") as copy:
                write = copy.write_row
                for row in rows:
                    write(row)
                    if tick is not None and not totals.count % BATCH:
                        tick(totals.count)
            if (kib := work_mem_kib(totals.count)) is not None:
                cur.execute(f"SET LOCAL work_mem = '{kib}kB'")
            cur.execute(_PG_INSERT, params)
            totals.new = cur.rowcount
            cur.execute("DROP TABLE statement_entry_load")
    else:
        cur = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
        try:
            cur.execute(_SQLITE_LOAD)
            while batch := list(itertools.islice(rows, BATCH)):
                cur.executemany(_SQLITE_STAGE, batch)
                if tick is not None:
                    tick(totals.count)
            cur.execute(_SQLITE_INSERT, params)
            totals.new = cur.rowcount
            cur.execute("DROP TABLE statement_entry_load")
        finally:
            cur.close()
    if tick is not None:
        tick(totals.count)
    return totals


def _rows(source: str, lines: Iterable[LineFields], totals: _Totals) -> Iterator[Entry]:
    """The staged row of each line, from the parser's tuple: the values as stored (text cut to the column, no
    empty reference, a bank line's memo searched for a payment reference), dates printed once per day."""
    bank = source == BANK
    days: dict[date, str] = {}
    for n, external_id, kind, amount, fee, currency, day, value_on, reference, counterparty, description in lines:
        totals.count += 1
        totals.amount += amount
        printed = days.get(day)
        if printed is None:
            printed = days[day] = day.isoformat()
            totals.first = day if totals.first is None or day < totals.first else totals.first
            totals.last = day if totals.last is None or day > totals.last else totals.last
        yield (
            n,
            external_id[:100],
            kind.value,
            amount,
            fee,
            currency,
            printed,
            None if value_on is None else value_on.isoformat(),
            (find_reference(reference) if bank else reference[:100]) or None,
            counterparty[:200] if counterparty else None,
            (description or (reference if bank else ""))[:500],
        )


def _apply_bank_credits(s: Session, agency_code: str, import_id: str) -> int:
    """Credits naming a VietQR payment settle it (or are held) like a bank notification; each bank transaction once.

    Transactions already recorded (by a notification, or an overlapping statement) are left out here rather than
    one by one in ``apply_credit``, which would answer "duplicate" for each: on a statement whose credits were all
    notified, that is every line."""
    known = select(BankCredit.id).where(
        BankCredit.gateway == "vietqr", BankCredit.bank_transaction_id == StatementEntry.external_id
    )
    rows = s.execute(
        select(StatementEntry.external_id, StatementEntry.amount, StatementEntry.reference, StatementEntry.description)
        .where(
            StatementEntry.import_id == import_id,
            StatementEntry.kind == LineKind.credit.value,
            col(StatementEntry.reference).is_not(None),
            ~known.exists(),
        )
        .order_by(col(StatementEntry.id))
    ).all()
    applied = 0
    for external_id, amount, reference, description in rows:
        credit = Credit(
            gateway="vietqr",
            bank_transaction_id=external_id,
            amount=amount,
            reference=reference or "",
            memo=description,
            source="statement",
        )
        status, _ = apply_credit(s, credit, agency_code)
        applied += status is not None
    return applied
