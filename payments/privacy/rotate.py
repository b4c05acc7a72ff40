"""Re-sealing every sealed column under the keyring's current key (``lephi keys rotate-pii``).

In batches, each its own short transaction; stateless, so an interrupted run is resumed by running it again: it
looks for values not under the current key, and there are fewer each time. Safe beside a running service: a row is
rewritten only if it still holds what this run read (compare-and-set on every sealed value), so a change made in
between is never overwritten; the pass then sees the row again if it still needs re-sealing. Processes writing
meanwhile must already have the new key as their current one (docs/privacy.md), or the run goes on finding rows."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import ColumnElement, String, Table, and_, false, func, or_, select, type_coerce, update

from payments.core.db import Database
from payments.core.pii import PREFIX, Keyring
from payments.core.sql import connection


@dataclass(frozen=True)
class SealedTable:
    """A table's sealed columns, and its blind index column with the sealed column it indexes."""

    table: Table
    columns: tuple[str, ...]
    index: tuple[str, str] | None = None

    def raw(self, name: str) -> ColumnElement[str]:
        # The stored text, without the column type's opening or sealing.
        return type_coerce(self.table.c[name], String())


@dataclass
class Progress:
    table: str
    pending: int
    done: int = 0
    conflicts: int = 0


def _stale(st: SealedTable, ring: Keyring) -> ColumnElement[bool]:
    current = f"{PREFIX}{ring.current_id}:%"
    stale: list[ColumnElement[bool]] = [
        and_(st.raw(name).is_not(None), ~st.raw(name).like(current)) for name in st.columns
    ]
    if st.index is not None:
        index, _source = st.index
        stale.append(and_(st.table.c[index].is_not(None), ~st.table.c[index].like(f"{ring.current_id}:%")))
    return or_(false(), *stale)


def pending(db: Database, st: SealedTable, ring: Keyring) -> int:
    with db.read() as s:
        return int(
            connection(s).execute(select(func.count()).select_from(st.table).where(_stale(st, ring))).scalar_one()
        )


def _reseal(st: SealedTable, ring: Keyring, row: Any) -> dict[str, Any] | None:
    values: dict[str, Any] = {}
    plain: dict[str, str | None] = {}
    for name in st.columns:
        stored = getattr(row, name)
        plain[name] = None if stored is None else ring.open(stored, _sealed_name(st, name))
        if stored is not None and ring.stored_key_id(stored) != ring.current_id:
            values[name] = type_coerce(ring.seal(plain[name] or "", _sealed_name(st, name)), String())
    if st.index is not None:
        index, source = st.index
        value = plain[source]
        wanted = ring.blind_index(value) if value else None
        if getattr(row, index) != wanted:
            values[index] = wanted
    return values or None


def _sealed_name(st: SealedTable, name: str) -> str:
    column_type: Any = st.table.c[name].type
    return str(getattr(column_type, "column", f"{st.table.name}.{name}"))


def rotate_table(
    db: Database, st: SealedTable, ring: Keyring, batch: int, report: Callable[[Progress], None] | None = None
) -> Progress:
    """One table re-sealed, in passes until one finds nothing left to do (or nothing it can do)."""
    key = next(iter(st.table.primary_key.columns))
    progress = Progress(st.table.name, pending(db, st, ring))
    wanted = [key, *(st.raw(name).label(name) for name in st.columns)]
    if st.index is not None:
        wanted.append(st.table.c[st.index[0]])
    for _pass in range(10):
        after: Any = None
        changed_in_pass = 0
        while True:
            query = select(*wanted).where(_stale(st, ring)).order_by(key).limit(batch)
            if after is not None:
                query = query.where(key > after)
            with db.write() as s:
                conn = connection(s)
                rows = conn.execute(query).all()
                for row in rows:
                    values = _reseal(st, ring, row)
                    if values is None:
                        continue
                    same = [
                        st.raw(name).is_(None) if getattr(row, name) is None else st.raw(name) == getattr(row, name)
                        for name in st.columns
                    ]
                    result = conn.execute(update(st.table).where(key == row[0], *same).values(values))
                    if result.rowcount:
                        progress.done += 1
                        changed_in_pass += 1
                    else:
                        progress.conflicts += 1
            if report is not None and rows:
                report(progress)
            if len(rows) < batch:
                break
            after = rows[-1][0]
        if changed_in_pass == 0 or pending(db, st, ring) == 0:
            break
    return progress


def rotate(
    db: Database, tables: Sequence[SealedTable], ring: Keyring, batch: int, report: Callable[[Progress], None] | None
) -> list[Progress]:
    return [rotate_table(db, st, ring, batch, report) for st in tables]
