"""Personal data across the packages: which columns are sealed (for the key rotation) and what Lephi holds about a
person (subject access, ``lephi privacy export``). Here because only the service knows every package's tables."""

from __future__ import annotations

from typing import Any

from sqlmodel import col, select

from console.staff.models import StaffUser
from invoices.tables import Document
from payments.agency.models import Agency, Procedure
from payments.core.db import Database, table_of
from payments.core.pii import Keyring, mask
from payments.dossier.models import Dossier
from payments.payment.models import Payment
from payments.privacy.rotate import SealedTable

SEALED = (
    SealedTable(
        table_of(Dossier),
        ("payer_email", "payer_phone", "payer_id_number", "payer_passport_number"),
        index=("payer_id_index", "payer_id_number"),
    ),
    SealedTable(table_of(StaffUser), ("totp_secret",)),
)


def subject_access(db: Database, ring: Keyring, id_number: str) -> dict[str, Any]:
    """Every dossier whose payer gave this identity number, with its payments and receipts, in clear: the answer
    to the person's own request, handed to them, never logged."""
    out: list[dict[str, Any]] = []
    with db.read() as s:
        dossiers = s.exec(
            select(Dossier)
            .where(col(Dossier.payer_id_index).in_(ring.blind_indexes(id_number)))
            .order_by(col(Dossier.created_at))
        ).all()
        for d in dossiers:
            agency = s.get(Agency, d.agency_id)
            procedure = s.get(Procedure, d.procedure_id)
            payments = s.exec(select(Payment).where(Payment.dossier_id == d.id).order_by(col(Payment.created_at))).all()
            documents = s.exec(
                select(Document)
                .where(col(Document.payment_id).in_([p.id for p in payments]))
                .order_by(col(Document.created_at))
            ).all()
            out.append(
                {
                    "agency": agency.code if agency else d.agency_id,
                    "dossier_code": d.code,
                    "procedure": procedure.name if procedure else d.procedure_id,
                    "status": d.status.value,
                    "created_at": d.created_at.isoformat(),
                    "payer": {
                        "name": d.payer_name,
                        "id_number": d.payer_id_number,
                        "passport_number": d.payer_passport_number,
                        "tax_code": d.payer_tax_code,
                        "address": d.payer_address,
                        "email": d.payer_email,
                        "phone": d.payer_phone,
                    },
                    "contacts_erased_at": d.pii_redacted_at.isoformat() if d.pii_redacted_at else None,
                    "payments": [
                        {
                            "id": p.id,
                            "gateway": p.gateway,
                            "amount": p.amount,
                            "status": p.status.value,
                            "created_at": p.created_at.isoformat(),
                        }
                        for p in payments
                    ],
                    "receipts": [
                        {
                            "purpose": doc.purpose.value,
                            "template": doc.template,
                            "series": doc.series,
                            "number": doc.number,
                            "lookup_code": doc.lookup_code,
                            "issued_at": doc.created_at.isoformat(),
                        }
                        for doc in documents
                    ],
                }
            )
    return {"id_number": mask(id_number), "dossiers": out}
