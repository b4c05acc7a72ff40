"""refund requests

Refunds asked for in the staff console wait here for an approver of the same agency, who is never the requester;
only an approval creates the refund. Check constraints keep the amount positive and the approver apart from the
requester whatever writes the row.

Revision ID: 0013
Revises: 0011
Create Date: 2026-12-03 10:28:42.047920
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel

import payments.core.types
from alembic import op


revision: str = '0013'
down_revision: str | None = '0012'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('refund_request',
    sa.Column('id', sqlmodel.sql.sqltypes.AutoString(length=40), nullable=False),
    sa.Column('agency_id', sqlmodel.sql.sqltypes.AutoString(length=40), nullable=False),
    sa.Column('payment_id', sqlmodel.sql.sqltypes.AutoString(length=40), nullable=False),
    sa.Column('amount', sa.BigInteger(), nullable=False),
    sa.Column('reason', sqlmodel.sql.sqltypes.AutoString(length=500), nullable=False),
    sa.Column('status', sa.Enum('pending', 'approved', 'rejected', 'cancelled', name='requeststatus', native_enum=False, length=20), nullable=False),
    sa.Column('requested_by', sqlmodel.sql.sqltypes.AutoString(length=40), nullable=False),
    sa.Column('requested_at', payments.core.types.UTCDateTime(timezone=True), nullable=False),
    sa.Column('decided_by', sqlmodel.sql.sqltypes.AutoString(length=40), nullable=True),
    sa.Column('decided_at', payments.core.types.UTCDateTime(timezone=True), nullable=True),
    sa.Column('decision_note', sqlmodel.sql.sqltypes.AutoString(length=500), nullable=True),
    sa.Column('refund_id', sqlmodel.sql.sqltypes.AutoString(length=40), nullable=True),
    sa.CheckConstraint("status <> 'approved' OR decided_by <> requested_by", name='ck_refund_request_four_eyes'),
    sa.CheckConstraint('amount > 0', name='ck_refund_request_amount_positive'),
    sa.ForeignKeyConstraint(['agency_id'], ['agency.id'], ),
    sa.ForeignKeyConstraint(['decided_by'], ['staff_user.id'], ),
    sa.ForeignKeyConstraint(['payment_id'], ['payment.id'], ),
    sa.ForeignKeyConstraint(['refund_id'], ['refund.id'], ),
    sa.ForeignKeyConstraint(['requested_by'], ['staff_user.id'], ),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('refund_request', schema=None) as batch_op:
        batch_op.create_index('ix_refund_request_agency_status', ['agency_id', 'status', 'requested_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_refund_request_payment_id'), ['payment_id'], unique=False)



def downgrade() -> None:
    with op.batch_alter_table('refund_request', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_refund_request_payment_id'))
        batch_op.drop_index('ix_refund_request_agency_status')

    op.drop_table('refund_request')
