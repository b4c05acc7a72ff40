"""a replacement's corrected payer on its document row

A replacement receipt may correct the payer's name or tax code; the dossier keeps what was first sent. The
receipts search and list read the payer from the dossier, so a replacement was found only by the name it corrected.
``document.buyer_name`` and ``document.buyer_tax_code`` hold what a replacement's signed XML says (NMua/Ten,
NMua/MST); NULL on every other document. The replacements already issued are filled in from their XML.

Revision ID: 0020_document_buyer
Revises: 0019_statement_entry_fk
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from lxml import etree

revision: str = "0020_document_buyer"
down_revision: str | None = "0019_statement_entry_fk"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("document", sa.Column("buyer_name", sa.String(400), nullable=True))
    op.add_column("document", sa.Column("buyer_tax_code", sa.String(14), nullable=True))
    backfill(op.get_bind())


def backfill(conn: sa.Connection) -> int:
    """Each replacement's payer from its signed XML, where the row has none yet; returns how many were filled in."""
    document = sa.table(
        "document",
        sa.column("id", sa.String),
        sa.column("purpose", sa.String),
        sa.column("xml", sa.LargeBinary),
        sa.column("buyer_name", sa.String),
        sa.column("buyer_tax_code", sa.String),
    )
    query = sa.select(document.c.id, document.c.xml).where(
        document.c.purpose == "replacement", document.c.buyer_name.is_(None)
    )
    # Our own signed documents, read with the same hardened settings as anything else (no DTD, no entities).
    parser = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False)
    filled = 0
    for doc_id, xml in conn.execute(query).all():
        buyer = etree.fromstring(bytes(xml), parser).find("DLHDon/NDHDon/NMua")
        if buyer is None:
            continue
        conn.execute(
            document.update()
            .where(document.c.id == doc_id)
            .values(buyer_name=buyer.findtext("Ten") or None, buyer_tax_code=buyer.findtext("MST") or None)
        )
        filled += 1
    return filled


def downgrade() -> None:
    op.drop_column("document", "buyer_tax_code")
    op.drop_column("document", "buyer_name")
