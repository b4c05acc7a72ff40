"""Retention: the payer's e-mail and phone erased once a closed dossier is older than ``LEPHI_PII_RETENTION_DAYS``.

What accounting law requires stays: the signed receipt (its XML untouched, with the buyer as it was issued) and the
dossier's name, tax code, address, identity numbers and amounts, which the receipt and the books refer to. The
contacts served only to reach the payer about a payment that is now over (docs/privacy.md)."""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import func, or_, select, update
from sqlmodel import col

from payments.core.context import AppContext
from payments.core.db import Database
from payments.core.logging import get_logger
from payments.core.sql import connection
from payments.core.types import utcnow
from payments.dossier.models import Dossier, DossierStatus
from payments.outbox.worker import Periodic

log = get_logger(__name__)
CLOSED = (DossierStatus.paid, DossierStatus.refunded)


def redact_expired(db: Database, days: int, batch: int, now: datetime | None = None) -> int:
    """Erase the contacts of closed dossiers closed more than ``days`` ago; returns how many dossiers."""
    now = now or utcnow()
    cutoff = now - timedelta(days=days)
    closed_at = func.coalesce(col(Dossier.paid_at), col(Dossier.updated_at))
    due = (
        col(Dossier.status).in_(CLOSED),
        col(Dossier.pii_redacted_at).is_(None),
        closed_at < cutoff,
        or_(col(Dossier.payer_email).is_not(None), col(Dossier.payer_phone).is_not(None)),
    )
    total = 0
    while True:
        with db.write() as s:
            conn = connection(s)
            ids = list(
                conn.execute(select(col(Dossier.id)).where(*due).order_by(col(Dossier.id)).limit(batch)).scalars()
            )
            if ids:
                # The conditions again: a dossier changed since it was read is left for the next run.
                conn.execute(
                    update(Dossier)
                    .where(col(Dossier.id).in_(ids), *due)
                    .values(payer_email=None, payer_phone=None, pii_redacted_at=now)
                )
        total += len(ids)
        if len(ids) < batch:
            break
    if total:
        log.info("privacy.redacted", dossiers=total, retention_days=days)
    return total


def run(ctx: AppContext) -> None:
    """The worker's periodic job."""
    redact_expired(ctx.db, ctx.settings.pii_retention_days, ctx.settings.pii_batch_size)


PERIODIC: tuple[Periodic[AppContext], ...] = (
    Periodic("privacy.retention", lambda ctx: ctx.settings.pii_retention_every_seconds, run),
)
