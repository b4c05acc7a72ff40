"""When each API key was last used.

``api_key.last_used_at`` is written by each process's key cache at most once per
``LEPHI_KEY_LAST_USED_FLUSH_SECONDS`` (payments/auth/cache.py), never by the request itself, and only forward. NULL:
not used since this column exists.

Revision ID: 0016
Revises: 0015
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import payments.core.types

revision: str = "0016"
down_revision: str | None = "0015"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("api_key", schema=None) as batch_op:
        batch_op.add_column(sa.Column("last_used_at", payments.core.types.UTCDateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("api_key", schema=None) as batch_op:
        batch_op.drop_column("last_used_at")
