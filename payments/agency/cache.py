"""Agencies and their fee schedules kept in memory, checked against ``agency.version`` on every use.

Every change to an agency, its procedures or its fee lines bumps the version in the same transaction
(``payments.agency.service.touch``); a request that reads the version anyway (for its dossier, say) compares it with
the cached copy's and re-reads only when another process (or this one) changed something.
"""

from __future__ import annotations

import bisect
import threading
from dataclasses import dataclass
from datetime import date

from sqlalchemy import select
from sqlalchemy.orm import Session
from sqlmodel import col

from payments.agency.models import Agency, FeeKind, FeeScheduleLine, Procedure


@dataclass(frozen=True)
class FeeLine:
    code: str
    kind: FeeKind
    name: str
    unit_amount: int
    default_quantity: int
    max_quantity: int
    position: int


@dataclass(frozen=True)
class ProcedureView:
    id: str
    code: str
    name: str
    lines: tuple[FeeLine, ...]


@dataclass(frozen=True)
class AgencyView:
    id: str
    code: str
    version: int
    payment_methods: tuple[str, ...]
    # False once the province has deactivated the agency: no new dossiers, no new payments.
    active: bool
    # Each schedule's first day, ascending, and its procedures by code (payments/agency/versions.py).
    days: tuple[date, ...]
    schedules: tuple[dict[str, ProcedureView], ...]

    def procedures_on(self, day: date) -> dict[str, ProcedureView]:
        """The procedures of the schedule in force on ``day`` (empty before the first one)."""
        index = bisect.bisect_right(self.days, day) - 1
        return self.schedules[index] if index >= 0 else {}


class AgencyCache:
    """One process's copy; safe to share between threads (a stale read only costs a re-read)."""

    def __init__(self) -> None:
        self._views: dict[str, AgencyView] = {}
        self._lock = threading.Lock()

    def get(self, s: Session, agency_id: str, version: int | None = None) -> AgencyView | None:
        """The agency as of ``version`` (read here when the caller has not read it already), or None if it is gone."""
        if version is None:
            version = s.execute(select(col(Agency.version)).where(col(Agency.id) == agency_id)).scalar()
            if version is None:
                return None
        view = self._views.get(agency_id)
        if view is not None and view.version == version:
            return view
        view = load(s, agency_id)
        if view is not None:
            with self._lock:
                self._views[agency_id] = view
        return view

    def clear(self) -> None:
        with self._lock:
            self._views.clear()


def load(s: Session, agency_id: str) -> AgencyView | None:
    agency = s.execute(
        select(col(Agency.code), col(Agency.version), col(Agency.payment_methods), col(Agency.deactivated_at)).where(
            col(Agency.id) == agency_id
        )
    ).first()
    if agency is None:
        return None
    procedures = s.execute(
        select(col(Procedure.id), col(Procedure.code), col(Procedure.name)).where(col(Procedure.agency_id) == agency_id)
    ).all()
    by_day: dict[date, dict[str, list[FeeLine]]] = {}
    if procedures:
        rows = s.execute(
            select(FeeScheduleLine)
            .where(col(FeeScheduleLine.procedure_id).in_([p.id for p in procedures]))
            .order_by(col(FeeScheduleLine.position), col(FeeScheduleLine.id))
        ).scalars()
        for line in rows:
            by_day.setdefault(line.effective_from, {}).setdefault(line.procedure_id, []).append(
                FeeLine(
                    line.code,
                    line.kind,
                    line.name,
                    line.unit_amount,
                    line.default_quantity,
                    line.max_quantity,
                    line.position,
                )
            )
    days = tuple(sorted(by_day))
    schedules = tuple(
        {
            p.code: ProcedureView(p.id, p.code, p.name, tuple(by_day[day][p.id]))
            for p in procedures
            if p.id in by_day[day]
        }
        for day in days
    )
    return AgencyView(
        id=agency_id,
        code=agency.code,
        version=agency.version,
        payment_methods=tuple(agency.payment_methods),
        active=agency.deactivated_at is None,
        days=days,
        schedules=schedules,
    )
