"""Undoing a statement import that was a mistake (the wrong agency's file, the wrong format, a test file).

Its lines go, with the exceptions that were only about them (those whose ``entry_id`` is one of its lines) and their
trails. It is refused while any of those exceptions is resolved: a staff decision rests on the lines, and it is not
for an undo to erase it (reopen the exception first).

Bank statements also fed VietQR matching: each credit line was recorded as a bank credit. A credit that found no
payment (held as ``unmatched``) touched nothing else and goes with the import. A credit that reached a payment (it
settled it, or it was held against it and flagged the payment for review) changed that payment's history, which an
undo cannot honestly take back: such an import is refused, and staff deal with the payment first.

Payments the removed lines had settled are not changed here; the next run of their day finds them unsettled again.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import delete
from sqlmodel import Session, col, select

from payments.auth.access import owned_or_404
from payments.core.db import affected
from payments.core.errors import Conflict
from payments.core.logging import get_logger
from payments.reconcile.importer import BANK
from payments.reconcile.models import (
    ExceptionStatus,
    ReconException,
    ReconExceptionEvent,
    StatementEntry,
    StatementImport,
)
from payments.transfer.models import BankCredit

log = get_logger(__name__)
STATEMENT = "statement"  # BankCredit.source of credits recorded from an imported statement


class ImportHasResolvedExceptions(Conflict):
    code, title = "import_has_resolved_exceptions", "An import with resolved exceptions cannot be undone"


class ImportCreditsApplied(Conflict):
    code, title = "import_credits_applied", "An import whose bank credits reached a payment cannot be undone"


@dataclass(frozen=True)
class UndoResult:
    import_id: str
    file_name: str
    source: str
    sha256: str
    lines: int
    exceptions: int
    credits: int


def undo_import(s: Session, agency_id: str, import_id: str, actor: str) -> UndoResult:
    """Remove the agency's import ``import_id`` in the caller's transaction. Another agency's import answers like a
    missing one (NotFound); see the module for what is refused (Conflict) and why."""
    row = owned_or_404(s.get(StatementImport, import_id), agency_id, "statement import", import_id)
    lines = select(StatementEntry.id).where(StatementEntry.import_id == row.id)
    exceptions = list(
        s.exec(
            select(ReconException).where(ReconException.agency_id == agency_id, col(ReconException.entry_id).in_(lines))
        ).all()
    )
    resolved = sorted(e.id for e in exceptions if e.status == ExceptionStatus.resolved)
    if resolved:
        raise ImportHasResolvedExceptions(
            f"import {row.id} has resolved exceptions: {', '.join(resolved)}; reopen them first", exceptions=resolved
        )
    credits: list[BankCredit] = []
    if row.source == BANK:
        external = select(StatementEntry.external_id).where(StatementEntry.import_id == row.id)
        credits = list(
            s.exec(
                select(BankCredit).where(
                    BankCredit.gateway == "vietqr",
                    BankCredit.source == STATEMENT,
                    col(BankCredit.bank_transaction_id).in_(external),
                )
            ).all()
        )
        used = sorted(c.id for c in credits if c.payment_id is not None)
        if used:
            raise ImportCreditsApplied(
                f"import {row.id} recorded bank credits that reached a payment: {', '.join(used)}", credits=used
            )
    exception_ids = [e.id for e in exceptions]
    if exception_ids:
        s.execute(delete(ReconExceptionEvent).where(col(ReconExceptionEvent.exception_id).in_(exception_ids)))
        s.execute(delete(ReconException).where(col(ReconException.id).in_(exception_ids)))
    if credits:
        s.execute(delete(BankCredit).where(col(BankCredit.id).in_([c.id for c in credits])))
    removed = affected(s.execute(delete(StatementEntry).where(col(StatementEntry.import_id) == row.id)))
    result = UndoResult(row.id, row.file_name, row.source, row.sha256, removed, len(exception_ids), len(credits))
    s.execute(delete(StatementImport).where(col(StatementImport.id) == row.id))
    log.info("reconcile.import_undone", import_id=row.id, lines=result.lines, exceptions=result.exceptions, actor=actor)
    return result
