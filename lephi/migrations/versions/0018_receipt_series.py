"""receipt series as data per agency (the templates and series an agency issues receipts from, per year), and the
daily summaries of e-receipts sent to the tax authority

The series used so far (the deployment's LEPHI_RECEIPT_SERIES, numbered in ``series_counter``) become rows of
origin ``default``: per agency and template, the series of the latest year it numbered in stays open, the others are
closed. Agencies that issued nothing get their default row on their first receipt (invoices/series.py).

Revision ID: 0018_receipt_series
Revises: 0017_pii
"""

from collections.abc import Sequence
from datetime import UTC, datetime

import sqlalchemy as sa
import sqlmodel
from alembic import op

import payments.core.types

revision: str = "0018_receipt_series"
down_revision: str | None = "0017_pii"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    table = op.create_table(
        "receipt_series",
        sa.Column("id", sqlmodel.sql.sqltypes.AutoString(length=40), nullable=False),
        sa.Column("agency_id", sqlmodel.sql.sqltypes.AutoString(length=40), nullable=False),
        sa.Column("template", sqlmodel.sql.sqltypes.AutoString(length=1), nullable=False),
        sa.Column("series", sqlmodel.sql.sqltypes.AutoString(length=6), nullable=False),
        sa.Column("year", sa.Integer(), nullable=False),
        sa.Column("status", sa.Enum("open", "closed", name="seriesstatus", native_enum=False, length=20), nullable=False),
        sa.Column(
            "origin", sa.Enum("default", "registered", name="seriesorigin", native_enum=False, length=20), nullable=False
        ),
        sa.Column("registered_at", payments.core.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("registered_by", sqlmodel.sql.sqltypes.AutoString(length=200), nullable=True),
        sa.Column("closed_at", payments.core.types.UTCDateTime(timezone=True), nullable=True),
        sa.Column("closed_by", sqlmodel.sql.sqltypes.AutoString(length=200), nullable=True),
        sa.ForeignKeyConstraint(["agency_id"], ["agency.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("agency_id", "template", "series"),
    )
    with op.batch_alter_table("receipt_series", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_receipt_series_agency_id"), ["agency_id"], unique=False)
        batch_op.create_index(
            "ux_receipt_series_open",
            ["agency_id", "template", "year"],
            unique=True,
            sqlite_where=sa.text("status = 'open'"),
            postgresql_where=sa.text("status = 'open'"),
        )
    _seed_from_counters(table)
    op.create_table(
        "receipt_summary",
        sa.Column("id", sqlmodel.sql.sqltypes.AutoString(length=40), nullable=False),
        sa.Column("agency_id", sqlmodel.sql.sqltypes.AutoString(length=40), nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("sequence", sa.Integer(), nullable=False),
        sa.Column("tax_message_id", sqlmodel.sql.sqltypes.AutoString(length=40), nullable=False),
        sa.Column("documents", sa.Integer(), nullable=False),
        sa.Column("total", sa.Integer(), nullable=False),
        sa.Column("created_at", payments.core.types.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["agency_id"], ["agency.id"]),
        sa.ForeignKeyConstraint(["tax_message_id"], ["tax_message.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("agency_id", "day", "sequence"),
    )
    with op.batch_alter_table("receipt_summary", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_receipt_summary_agency_id"), ["agency_id"], unique=False)


def _seed_from_counters(table: sa.Table) -> None:
    conn = op.get_bind()
    counters = conn.execute(
        sa.text("SELECT id, agency_id, template, series, year FROM series_counter ORDER BY year, id")
    ).all()
    latest: dict[tuple[str, str], tuple[str, int]] = {}
    for _id, agency_id, template, series, year in counters:
        latest[(agency_id, template)] = (series, year)  # ordered: the last one seen is the latest
    now = datetime.now(UTC)
    rows = []
    for index, (_id, agency_id, template, series, year) in enumerate(counters):
        is_open = latest[(agency_id, template)] == (series, year)
        rows.append(
            {
                "id": f"ser_m{index:012d}",
                "agency_id": agency_id,
                "template": template,
                "series": series,
                "year": year,
                "status": "open" if is_open else "closed",
                "origin": "default",
                "registered_at": now,
                "registered_by": "migration",
                "closed_at": None if is_open else now,
                "closed_by": None if is_open else "migration",
            }
        )
    if rows:
        op.bulk_insert(table, rows)


def downgrade() -> None:
    with op.batch_alter_table("receipt_summary", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_receipt_summary_agency_id"))
    op.drop_table("receipt_summary")
    with op.batch_alter_table("receipt_series", schema=None) as batch_op:
        batch_op.drop_index("ux_receipt_series_open", sqlite_where=sa.text("status = 'open'"), postgresql_where=sa.text("status = 'open'"))
        batch_op.drop_index(batch_op.f("ix_receipt_series_agency_id"))
    op.drop_table("receipt_series")
