"""Identifiers: prefixed, unguessable, in the order they were made (so that rows made together sit together in
every index holding their ids), and short enough for every column that stores one."""

from __future__ import annotations

import re
import time
from datetime import UTC, date, datetime
from pathlib import Path

from sqlalchemy import String
from sqlmodel import SQLModel, select

from devtools.generate import generate
from payments.core.context import AppContext
from payments.core.types import ID_RANDOM_BYTES, ID_TIME_DIGITS, new_id
from payments.dossier.models import Dossier
from payments.payment.models import Payment

LAYOUT = re.compile(rf"pay_(?P<time>[0-9a-f]{{{ID_TIME_DIGITS}}})[0-9a-f]{{{2 * ID_RANDOM_BYTES}}}")


def _made_at(identifier: str) -> int:
    found = LAYOUT.fullmatch(identifier)
    assert found, identifier
    return int(found["time"], 16)


def test_an_id_carries_the_second_it_was_made_and_64_random_bits() -> None:
    before = int(time.time())
    made = new_id("pay")
    after = int(time.time())
    assert len(made) == 28  # as long as before the time was added
    assert before <= _made_at(made) <= after
    assert len({new_id("pay")[-16:] for _ in range(1000)}) == 1000  # the random part differs within a second


def test_ids_made_one_after_another_sort_in_that_order() -> None:
    made = []
    for _ in range(3):
        made.append(new_id("pay"))
        time.sleep(1.01)
    assert sorted(made) == made


def test_every_id_column_holds_an_id() -> None:
    import lephi.tables  # noqa: F401 - every table registered

    longest = len(new_id("pay"))
    short = [
        f"{table.name}.{column.name} ({column.type.length})"
        for table in SQLModel.metadata.sorted_tables
        for column in table.columns
        if (column.name == "id" or column.name.endswith("_id"))
        and isinstance(column.type, String)
        and column.type.length is not None
        and column.type.length < longest
    ]
    assert short == []


def test_generated_data_lays_ids_out_as_the_service_does(ctx: AppContext, tmp_path: Path) -> None:
    """The reconciliation benchmark's days are generated: their ids must sit in the indexes as real ones would."""
    manifest = generate(ctx, agency_code="AGC-IDS", day=date(2026, 11, 20), out_dir=tmp_path, payments=50)
    with ctx.db.read() as s:
        payments = s.exec(select(Payment).where(Payment.agency_id == manifest.agency_id)).all()
        dossiers = s.exec(select(Dossier).where(Dossier.agency_id == manifest.agency_id)).all()
    assert payments and dossiers
    for row in (*payments, *dossiers):
        made = int(row.created_at.astimezone(UTC).timestamp())
        assert len(row.id) == len(new_id("pay"))
        assert _made_at(row.id.replace(row.id[:3], "pay", 1)) == made, (row.id, row.created_at)
    assert datetime(2026, 11, 19, tzinfo=UTC).timestamp() < _made_at(payments[0].id)
