"""outbox fact kinds

The payment domain now announces facts (payment.succeeded, refund.succeeded) that the invoices package acts on,
instead of naming the invoices' work (receipt.issue, receipt.adjust). Jobs not yet run keep their meaning.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-03 05:00:00.000000
"""

from collections.abc import Sequence

from alembic import op


revision: str = '0009'
down_revision: str | None = '0008'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

RENAMED = (('receipt.issue', 'payment.succeeded'), ('receipt.adjust', 'refund.succeeded'))


def upgrade() -> None:
    for old, new in RENAMED:
        op.execute(f"UPDATE outbox SET kind = '{new}' WHERE kind = '{old}'")


def downgrade() -> None:
    for old, new in RENAMED:
        op.execute(f"UPDATE outbox SET kind = '{old}' WHERE kind = '{new}'")
