"""The exceptions queue as finance staff work it: list and read with the trail, resolve and reopen; and the listings of
runs and imports that show what the queue was computed from.

Staff changes are compare-and-set on the exception's status, with the trail row written in the same transaction, so
two people resolving the same exception at once get one success and one conflict, and the trail never disagrees with
the row.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date

from sqlalchemy import update
from sqlmodel import Session, col, select

from payments.auth.access import is_foreign, owned_or_404
from payments.core.db import affected
from payments.core.errors import Conflict
from payments.core.logging import get_logger
from payments.core.pagination import newest_first_page
from payments.core.types import utcnow
from payments.dossier.models import Dossier
from payments.payment.models import Payment
from payments.reconcile.models import (
    Category,
    ExceptionAction,
    ExceptionStatus,
    ReconException,
    ReconExceptionEvent,
    ReconRun,
    StatementEntry,
    StatementImport,
)

log = get_logger(__name__)


class ExceptionNotOpen(Conflict):
    code, title = "exception_not_open", "Only an open exception can be resolved"


class ExceptionNotResolved(Conflict):
    code, title = "exception_not_resolved", "Only a resolved exception can be reopened"


@dataclass(frozen=True)
class ExceptionFilter:
    status: ExceptionStatus | None = None
    category: Category | None = None
    business_day_from: date | None = None
    business_day_to: date | None = None
    payment_id: str | None = None
    dossier_id: str | None = None
    dossier_code: str | None = None


def list_exceptions(
    s: Session, agency_id: str, flt: ExceptionFilter, limit: int, cursor: str | None
) -> tuple[list[ReconException], str | None]:
    """One page of the agency's exceptions, newest first; both day bounds are inclusive."""
    _foreign_filters(s, agency_id, flt)
    query = select(ReconException).where(ReconException.agency_id == agency_id)
    if flt.status is not None:
        query = query.where(ReconException.status == flt.status)
    if flt.category is not None:
        query = query.where(ReconException.category == flt.category)
    if flt.business_day_from is not None:
        query = query.where(col(ReconException.business_day) >= flt.business_day_from)
    if flt.business_day_to is not None:
        query = query.where(col(ReconException.business_day) <= flt.business_day_to)
    if flt.payment_id is not None:
        query = query.where(ReconException.payment_id == flt.payment_id)
    if flt.dossier_id is not None:
        query = query.where(ReconException.dossier_id == flt.dossier_id)
    if flt.dossier_code is not None:
        # Dossier codes are unique only within an agency.
        dossiers = select(Dossier.id).where(Dossier.agency_id == agency_id, Dossier.code == flt.dossier_code)
        query = query.where(col(ReconException.dossier_id).in_(dossiers))
    return newest_first_page(s, query, ReconException, limit, cursor)


def _foreign_filters(s: Session, agency_id: str, flt: ExceptionFilter) -> None:
    """A filter naming another agency's payment or dossier finds nothing, as a missing one does; it is logged."""
    if flt.payment_id is not None:
        is_foreign(s.get(Payment, flt.payment_id), agency_id, flt.payment_id)
    if flt.dossier_id is not None:
        is_foreign(s.get(Dossier, flt.dossier_id), agency_id, flt.dossier_id)


def get_exception(s: Session, agency_id: str, exception_id: str) -> ReconException:
    """The exception if it is the agency's; another agency's answers exactly like a missing one."""
    return owned_or_404(s.get(ReconException, exception_id), agency_id, "reconciliation exception", exception_id)


def exception_events(s: Session, exception_id: str) -> list[ReconExceptionEvent]:
    """The trail in the order it was written."""
    query = (
        select(ReconExceptionEvent)
        .where(ReconExceptionEvent.exception_id == exception_id)
        .order_by(col(ReconExceptionEvent.id))
    )
    return list(s.exec(query))


def resolve_exception(s: Session, agency_id: str, exception_id: str, actor: str, note: str) -> ReconException:
    """Mark an open exception resolved by ``actor`` with the reason; a later run keeps the resolution."""
    now = utcnow()
    result = s.execute(
        update(ReconException)
        .where(
            col(ReconException.id) == exception_id,
            col(ReconException.agency_id) == agency_id,
            col(ReconException.status) == ExceptionStatus.open,
        )
        .values(status=ExceptionStatus.resolved, resolved_by=actor, resolved_at=now, note=note, updated_at=now)
    )
    if affected(result) != 1:
        row = get_exception(s, agency_id, exception_id)
        raise ExceptionNotOpen(f"exception {exception_id} is {row.status.value}; only an open exception is resolved")
    return _after_change(s, agency_id, exception_id, ExceptionAction.resolved, actor, note)


def reopen_exception(s: Session, agency_id: str, exception_id: str, actor: str, note: str) -> ReconException:
    """Put a resolved exception back in the queue. Who resolved it and when stays in the trail; the note becomes the
    reason it was reopened, the one staff now need to read."""
    now = utcnow()
    result = s.execute(
        update(ReconException)
        .where(
            col(ReconException.id) == exception_id,
            col(ReconException.agency_id) == agency_id,
            col(ReconException.status) == ExceptionStatus.resolved,
        )
        .values(status=ExceptionStatus.open, resolved_by=None, resolved_at=None, note=note, updated_at=now)
    )
    if affected(result) != 1:
        row = get_exception(s, agency_id, exception_id)
        raise ExceptionNotResolved(
            f"exception {exception_id} is {row.status.value}; only a resolved exception is reopened"
        )
    return _after_change(s, agency_id, exception_id, ExceptionAction.reopened, actor, note)


def _after_change(
    s: Session, agency_id: str, exception_id: str, action: ExceptionAction, actor: str, note: str
) -> ReconException:
    s.add(ReconExceptionEvent(exception_id=exception_id, action=action, actor=actor, note=note))
    s.flush()
    return get_exception(s, agency_id, exception_id)


def list_runs(
    s: Session, agency_id: str, business_day: date | None, limit: int, cursor: str | None
) -> tuple[list[ReconRun], str | None]:
    """One page of the agency's matching runs, the latest started first."""
    query = select(ReconRun).where(ReconRun.agency_id == agency_id)
    if business_day is not None:
        query = query.where(ReconRun.business_day == business_day)
    return newest_first_page(s, query, ReconRun, limit, cursor, created_attr="started_at")


def list_imports(
    s: Session, agency_id: str, source: str | None, limit: int, cursor: str | None
) -> tuple[list[StatementImport], str | None]:
    """One page of the agency's imported files, newest first."""
    query = select(StatementImport).where(StatementImport.agency_id == agency_id)
    if source is not None:
        query = query.where(StatementImport.source == source)
    return newest_first_page(s, query, StatementImport, limit, cursor)


@dataclass(frozen=True)
class Provenance:
    """Where the statement line behind an exception came from: the file and its line, and what the line said."""

    import_id: str
    file_name: str
    source: str
    line_no: int
    external_id: str
    reference: str | None
    memo: str
    amount: int


def provenance(s: Session, agency_id: str, entry_ids: Iterable[int | None]) -> dict[int, Provenance]:
    """The provenance of each of the agency's statement lines among ``entry_ids`` (the ``entry_id`` of exceptions),
    in one query."""
    ids = sorted({i for i in entry_ids if i is not None})
    if not ids:
        return {}
    query = (
        select(StatementEntry, StatementImport.file_name)
        .join(StatementImport, col(StatementImport.id) == col(StatementEntry.import_id))
        .where(StatementEntry.agency_id == agency_id, col(StatementEntry.id).in_(ids))
    )
    found: dict[int, Provenance] = {}
    for entry, file_name in s.exec(query):
        assert entry.id is not None
        found[entry.id] = Provenance(
            entry.import_id,
            file_name,
            entry.source,
            entry.line_no,
            entry.external_id,
            entry.reference,
            entry.description,
            entry.amount,
        )
    return found
