"""Fee schedule versions with an effective day.

An agency's fee schedule can now be replaced from a given day (a spreadsheet imported in the console) while the one in
force keeps pricing the dossiers until then. ``fee_schedule_version`` holds each imported schedule's day, file name
and author; each fee line carries the day of the schedule it belongs to and its version (NULL for the schedule the
agency was created with, which applies from 1970-01-01, so existing lines keep pricing exactly as before). A fee code
is unique within a procedure per day rather than per procedure. A line also keeps its legal basis and unit, as
written in the spreadsheet, so that an export gives back what was imported. ``fee_import`` holds an uploaded
spreadsheet's parsed content between its preview and its confirmation. ``agency_logo`` holds an agency's receipt
logo (a checked PNG or JPEG of at most 200 KB), apart from the agency's row that every request reads.

Revision ID: 0015
Revises: 0011
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

import payments.core.types

revision: str = "0015"
down_revision: str | None = "0013"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# SQLite reflects the old unique constraint without a name; this convention names it so that it can be dropped.
_SQLITE_NAMES = {"uq": "uq_%(table_name)s_%(column_0_N_name)s"}


def _old_unique() -> str:
    if op.get_bind().dialect.name == "sqlite":
        return "uq_fee_schedule_line_procedure_id_code"
    return "fee_schedule_line_procedure_id_code_key"


def upgrade() -> None:
    op.create_table(
        "fee_schedule_version",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("agency_id", sqlmodel.sql.sqltypes.AutoString(length=40), nullable=False),
        sa.Column("effective_from", sa.Date(), nullable=False),
        sa.Column("source_name", sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
        sa.Column("created_by", sqlmodel.sql.sqltypes.AutoString(length=40), nullable=False),
        sa.Column("created_at", payments.core.types.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["agency_id"], ["agency.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("agency_id", "effective_from"),
    )
    with op.batch_alter_table("fee_schedule_version", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_fee_schedule_version_agency_id"), ["agency_id"], unique=False)

    with op.batch_alter_table("fee_schedule_line", schema=None, naming_convention=_SQLITE_NAMES) as batch_op:
        batch_op.add_column(sa.Column("effective_from", sa.Date(), server_default="1970-01-01", nullable=False))
        batch_op.add_column(sa.Column("version_id", sa.Integer(), nullable=True))
        batch_op.create_index(batch_op.f("ix_fee_schedule_line_version_id"), ["version_id"], unique=False)
        batch_op.drop_constraint(_old_unique(), type_="unique")
        batch_op.create_unique_constraint("uq_fee_schedule_line_day", ["procedure_id", "code", "effective_from"])
        batch_op.create_foreign_key(
            "fk_fee_schedule_line_version_id", "fee_schedule_version", ["version_id"], ["id"]
        )
        batch_op.add_column(
            sa.Column("legal_basis", sqlmodel.sql.sqltypes.AutoString(length=500), server_default="", nullable=False)
        )
        batch_op.add_column(
            sa.Column("unit", sqlmodel.sql.sqltypes.AutoString(length=100), server_default="", nullable=False)
        )

    op.create_table(
        "fee_import",
        sa.Column("id", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("agency_id", sqlmodel.sql.sqltypes.AutoString(length=40), nullable=False),
        sa.Column("staff_id", sqlmodel.sql.sqltypes.AutoString(length=40), nullable=False),
        sa.Column("source_name", sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
        sa.Column("sha256", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("effective_from", sa.Date(), nullable=False),
        sa.Column("content", sa.JSON(), nullable=False),
        sa.Column("created_at", payments.core.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("applied_at", payments.core.types.UTCDateTime(timezone=True), nullable=True),
        sa.Column("version_id", sa.Integer(), nullable=True),
        sa.ForeignKeyConstraint(["agency_id"], ["agency.id"]),
        sa.ForeignKeyConstraint(["version_id"], ["fee_schedule_version.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("fee_import", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_fee_import_agency_id"), ["agency_id"], unique=False)

    op.create_table(
        "agency_logo",
        sa.Column("agency_id", sqlmodel.sql.sqltypes.AutoString(length=40), nullable=False),
        sa.Column("content_type", sqlmodel.sql.sqltypes.AutoString(length=20), nullable=False),
        sa.Column("data", sa.LargeBinary(), nullable=False),
        sa.Column("sha256", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("updated_at", payments.core.types.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["agency_id"], ["agency.id"]),
        sa.PrimaryKeyConstraint("agency_id"),
    )


def downgrade() -> None:
    op.drop_table("agency_logo")
    with op.batch_alter_table("fee_import", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_fee_import_agency_id"))
    op.drop_table("fee_import")
    # Lines of imported versions cannot fit the old one-line-per-fee-code constraint: they go with their versions.
    op.execute("DELETE FROM fee_schedule_line WHERE version_id IS NOT NULL")
    with op.batch_alter_table("fee_schedule_line", schema=None, naming_convention=_SQLITE_NAMES) as batch_op:
        batch_op.drop_constraint("fk_fee_schedule_line_version_id", type_="foreignkey")
        batch_op.drop_constraint("uq_fee_schedule_line_day", type_="unique")
        batch_op.create_unique_constraint(_old_unique(), ["procedure_id", "code"])
        batch_op.drop_index(batch_op.f("ix_fee_schedule_line_version_id"))
        batch_op.drop_column("version_id")
        batch_op.drop_column("effective_from")
        batch_op.drop_column("legal_basis")
        batch_op.drop_column("unit")

    with op.batch_alter_table("fee_schedule_version", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_fee_schedule_version_agency_id"))

    op.drop_table("fee_schedule_version")
