"""staff administration, second factor, forgotten passwords

When a staff account was deactivated and last signed in, its TOTP second factor (secret, enrolment time, last step
used, so that a code cannot be replayed), the stage of a session (a password-only session opens no page but the
second step's), the per-agency policy that makes the second factor mandatory, and the forgotten-password requests
counted by the throttle of the sign-in page's form.

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-03 10:26:19.532539
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel

import payments.core.types
from alembic import op


revision: str = '0012'
down_revision: str | None = '0011'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('staff_policy',
    sa.Column('scope', sqlmodel.sql.sqltypes.AutoString(length=40), nullable=False),
    sa.Column('totp_required', sa.Boolean(), nullable=False),
    sa.Column('updated_at', payments.core.types.UTCDateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('scope')
    )
    op.create_table('staff_reset_request',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('at', payments.core.types.UTCDateTime(timezone=True), nullable=False),
    sa.Column('email', sqlmodel.sql.sqltypes.AutoString(length=254), nullable=False),
    sa.Column('ip', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('staff_reset_request', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_staff_reset_request_at'), ['at'], unique=False)
        batch_op.create_index(batch_op.f('ix_staff_reset_request_email'), ['email'], unique=False)
        batch_op.create_index(batch_op.f('ix_staff_reset_request_ip'), ['ip'], unique=False)

    with op.batch_alter_table('staff_session', schema=None) as batch_op:
        batch_op.add_column(sa.Column('stage', sa.Enum('full', 'totp', 'enrol', name='sessionstage', native_enum=False, length=20), server_default='full', nullable=False))

    with op.batch_alter_table('staff_user', schema=None) as batch_op:
        batch_op.add_column(sa.Column('deactivated_at', payments.core.types.UTCDateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('last_sign_in_at', payments.core.types.UTCDateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('totp_secret', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=True))
        batch_op.add_column(sa.Column('totp_enabled_at', payments.core.types.UTCDateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('totp_last_step', sa.Integer(), nullable=True))



def downgrade() -> None:
    with op.batch_alter_table('staff_user', schema=None) as batch_op:
        batch_op.drop_column('totp_last_step')
        batch_op.drop_column('totp_enabled_at')
        batch_op.drop_column('totp_secret')
        batch_op.drop_column('last_sign_in_at')
        batch_op.drop_column('deactivated_at')

    with op.batch_alter_table('staff_session', schema=None) as batch_op:
        batch_op.drop_column('stage')

    with op.batch_alter_table('staff_reset_request', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_staff_reset_request_ip'))
        batch_op.drop_index(batch_op.f('ix_staff_reset_request_email'))
        batch_op.drop_index(batch_op.f('ix_staff_reset_request_at'))

    op.drop_table('staff_reset_request')
    op.drop_table('staff_policy')
