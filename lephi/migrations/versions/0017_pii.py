"""Payers' personal data sealed at rest.

The payer's e-mail and phone, the new identity and passport numbers and the staff's TOTP secret are stored sealed
(AES-GCM, payments/core/pii.py): the columns widen to hold the sealed text. ``dossier.payer_id_index`` is the
identity number's blind index; ``dossier.pii_redacted_at`` records the retention job's erasure.

Rows written before this revision keep their values in clear, which the code still reads; ``lephi keys rotate-pii``
seals them (docs/privacy.md). The migration does not: it has no key (keys belong to the running service's settings).

Revision ID: 0017_pii
Revises: 0016
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import payments.core.types

revision: str = "0017_pii"
down_revision: str | None = "0016"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# payments.core.pii.sealed_length of 254, 20, 12, 20 and 64 characters.
EMAIL, PHONE, ID_NUMBER, PASSPORT, TOTP = 1406, 158, 118, 158, 394


def upgrade() -> None:
    with op.batch_alter_table("dossier", schema=None) as batch_op:
        batch_op.alter_column("payer_email", existing_type=sa.String(254), type_=sa.String(EMAIL))
        batch_op.alter_column("payer_phone", existing_type=sa.String(20), type_=sa.String(PHONE))
        batch_op.add_column(sa.Column("payer_id_number", sa.String(ID_NUMBER), nullable=True))
        batch_op.add_column(sa.Column("payer_passport_number", sa.String(PASSPORT), nullable=True))
        batch_op.add_column(sa.Column("payer_id_index", sa.String(80), nullable=True))
        batch_op.add_column(
            sa.Column("pii_redacted_at", payments.core.types.UTCDateTime(timezone=True), nullable=True)
        )
        batch_op.create_index("ix_dossier_payer_id_index", ["payer_id_index"], unique=False)
    with op.batch_alter_table("staff_user", schema=None) as batch_op:
        batch_op.alter_column("totp_secret", existing_type=sa.String(64), type_=sa.String(TOTP))


def downgrade() -> None:
    with op.batch_alter_table("staff_user", schema=None) as batch_op:
        batch_op.alter_column("totp_secret", existing_type=sa.String(TOTP), type_=sa.String(64))
    with op.batch_alter_table("dossier", schema=None) as batch_op:
        batch_op.drop_index("ix_dossier_payer_id_index")
        batch_op.drop_column("pii_redacted_at")
        batch_op.drop_column("payer_id_index")
        batch_op.drop_column("payer_passport_number")
        batch_op.drop_column("payer_id_number")
        batch_op.alter_column("payer_phone", existing_type=sa.String(PHONE), type_=sa.String(20))
        batch_op.alter_column("payer_email", existing_type=sa.String(EMAIL), type_=sa.String(254))
