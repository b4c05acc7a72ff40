"""Fee schedule versions: which of an agency's schedules prices a dossier, and adding or withdrawing one.

Each schedule is complete (every procedure the agency offers, with all its fee lines) and applies from its day, in
Vietnam time, until the next schedule's day. A dossier is priced by the schedule in force on its day: the Vietnam
calendar day on which it was created (an update of an unpaid dossier keeps that day). Every change bumps
``agency.version`` in the same transaction, so that each process's cached copy is re-read."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone

from sqlalchemy import delete
from sqlmodel import Session, col, func, select

from payments.agency.models import BASE_DAY, FeeScheduleLine, FeeScheduleVersion, Procedure
from payments.agency.schedule import FeeSchedule
from payments.agency.service import touch
from payments.core.errors import Conflict

VIETNAM = timezone(timedelta(hours=7))


def vietnam_day(moment: datetime) -> date:
    return moment.astimezone(VIETNAM).date()


def day_in_force(s: Session, agency_id: str, day: date) -> date | None:
    """The day of the schedule that prices the agency's dossiers of ``day``, None if the agency has no fee line."""
    found: date | None = s.exec(
        select(func.max(FeeScheduleLine.effective_from))
        .join(Procedure, col(Procedure.id) == FeeScheduleLine.procedure_id)
        .where(Procedure.agency_id == agency_id, col(FeeScheduleLine.effective_from) <= day)
    ).one()
    return found


@dataclass(frozen=True)
class ScheduleInForce:
    effective_from: date | None
    procedures: list[tuple[Procedure, list[FeeScheduleLine]]]


def schedule_on(s: Session, agency_id: str, day: date) -> ScheduleInForce:
    """The procedures and fee lines in force on ``day``, by procedure code then line position."""
    effective = day_in_force(s, agency_id, day)
    if effective is None:
        return ScheduleInForce(None, [])
    rows = s.exec(
        select(Procedure, FeeScheduleLine)
        .join(FeeScheduleLine, col(FeeScheduleLine.procedure_id) == Procedure.id)
        .where(Procedure.agency_id == agency_id, FeeScheduleLine.effective_from == effective)
        .order_by(col(Procedure.code), col(FeeScheduleLine.position), col(FeeScheduleLine.id))
    ).all()
    grouped: dict[str, tuple[Procedure, list[FeeScheduleLine]]] = {}
    for procedure, line in rows:
        grouped.setdefault(procedure.id, (procedure, []))[1].append(line)
    return ScheduleInForce(effective, list(grouped.values()))


def procedure_lines(s: Session, procedure: Procedure, day: date) -> list[FeeScheduleLine] | None:
    """The procedure's fee lines on ``day``, None when the schedule in force does not offer it."""
    effective = day_in_force(s, procedure.agency_id, day)
    if effective is None:
        return None
    lines = list(
        s.exec(
            select(FeeScheduleLine).where(
                FeeScheduleLine.procedure_id == procedure.id, FeeScheduleLine.effective_from == effective
            )
        )
    )
    return lines or None


def versions_of(s: Session, agency_id: str) -> list[FeeScheduleVersion]:
    query = select(FeeScheduleVersion).where(FeeScheduleVersion.agency_id == agency_id)
    return list(s.exec(query.order_by(col(FeeScheduleVersion.effective_from).desc())).all())


def add_version(
    s: Session, agency_id: str, schedule: FeeSchedule, effective_from: date, source_name: str, created_by: str
) -> FeeScheduleVersion:
    """Store ``schedule`` as the agency's schedule from ``effective_from``, in the caller's transaction. A day that
    already has a schedule is refused (undo that one first); a procedure code not seen before becomes a procedure,
    and a known procedure takes the new name."""
    if effective_from <= BASE_DAY:
        raise Conflict("a new fee schedule applies from a day after 1970-01-01")
    taken = s.exec(
        select(FeeScheduleVersion.id).where(
            FeeScheduleVersion.agency_id == agency_id, FeeScheduleVersion.effective_from == effective_from
        )
    ).first()
    if taken is not None:
        raise Conflict(f"a fee schedule already applies from {effective_from.isoformat()}")
    version = FeeScheduleVersion(
        agency_id=agency_id, effective_from=effective_from, source_name=source_name[:200], created_by=created_by
    )
    s.add(version)
    s.flush()
    known = {p.code: p for p in s.exec(select(Procedure).where(Procedure.agency_id == agency_id))}
    for p_index, p in enumerate(schedule.procedures):
        procedure = known.get(p.code)
        if procedure is None:
            procedure = Procedure(agency_id=agency_id, code=p.code, name=p.name)
        procedure.name = p.name
        s.add(procedure)
        s.flush()
        s.add_all(
            FeeScheduleLine(
                procedure_id=procedure.id,
                code=f.code,
                kind=f.kind,
                name=f.name,
                unit_amount=f.amount,
                default_quantity=f.default_quantity,
                max_quantity=f.max_quantity,
                legal_basis=f.legal_basis,
                unit=f.unit,
                position=p_index * 100 + f_index,
                effective_from=effective_from,
                version_id=version.id,
            )
            for f_index, f in enumerate(p.fees)
        )
    s.flush()
    touch(s, agency_id)
    return version


def remove_version(s: Session, version: FeeScheduleVersion, today: date) -> None:
    """Withdraw a schedule that is not in force yet, in the caller's transaction; one already in force has priced
    dossiers and stays."""
    if version.effective_from <= today:
        raise Conflict("this fee schedule is already in force and cannot be withdrawn")
    s.execute(delete(FeeScheduleLine).where(col(FeeScheduleLine.version_id) == version.id))
    s.delete(version)
    s.flush()
    touch(s, version.agency_id)
