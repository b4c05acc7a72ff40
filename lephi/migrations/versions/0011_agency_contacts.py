"""agency contacts and deactivation

The phone and e-mail a payer is shown to reach the agency, and when (if ever) the agency was deactivated.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-03 10:21:24.673891
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel

import payments.core.types
from alembic import op


revision: str = '0011'
down_revision: str | None = '0010'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('agency', schema=None) as batch_op:
        batch_op.add_column(sa.Column('phone', sqlmodel.sql.sqltypes.AutoString(length=40), server_default='', nullable=False))
        batch_op.add_column(sa.Column('email', sqlmodel.sql.sqltypes.AutoString(length=200), server_default='', nullable=False))
        batch_op.add_column(sa.Column('deactivated_at', payments.core.types.UTCDateTime(timezone=True), nullable=True))



def downgrade() -> None:
    with op.batch_alter_table('agency', schema=None) as batch_op:
        batch_op.drop_column('deactivated_at')
        batch_op.drop_column('email')
        batch_op.drop_column('phone')

