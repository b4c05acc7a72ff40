"""Onboarding an agency: its identity, the payment methods it offers and its fee schedule, checked before anything
is stored and stored in one transaction."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone

from pydantic import Field, ValidationError, field_validator
from sqlalchemy import update
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, func, select

from payments.agency.models import Agency, FeeScheduleLine, Procedure
from payments.agency.rules import AGENCY_CODE_RULE, TAX_CODE_RULE, is_agency_code, is_tax_code
from payments.agency.schedule import FeeSchedule
from payments.core.errors import Conflict, NotFound, ValidationFailed
from payments.core.schemas import StrictModel


class AgencyIn(StrictModel):
    code: str
    name: str = Field(min_length=1, max_length=400)
    tax_code: str
    address: str = Field(min_length=1, max_length=400)
    payment_methods: list[str] = Field(min_length=1, max_length=20)
    bank_account: str = Field(default="", max_length=40, pattern=r"^[0-9A-Za-z]*$")
    bank_name: str = Field(default="", max_length=200)
    # The payer's contacts for the agency: digits with spaces, dots, dashes or a leading +; an e-mail address.
    phone: str = Field(default="", max_length=40, pattern=r"^(\+?[0-9][0-9 .\-]{5,38})?$")
    email: str = Field(default="", max_length=200, pattern=r"^([^@\s]{1,64}@[^@\s]{1,190}\.[A-Za-z]{2,24})?$")

    @field_validator("code")
    @classmethod
    def _code(cls, value: str) -> str:
        if not is_agency_code(value):
            raise ValueError(f"an agency code is {AGENCY_CODE_RULE}")
        return value

    @field_validator("tax_code")
    @classmethod
    def _tax_code(cls, value: str) -> str:
        if not is_tax_code(value):
            raise ValueError(f"a tax code is {TAX_CODE_RULE}")
        return value


def agency_in(**values: object) -> AgencyIn:
    """The agency's details, or ValidationFailed naming each field at fault."""
    try:
        return AgencyIn.model_validate(values)
    except ValidationError as exc:
        faults = "; ".join(
            f"{'.'.join(str(p) for p in e['loc'])}: {str(e['msg']).removeprefix('Value error, ')}" for e in exc.errors()
        )
        raise ValidationFailed(faults) from exc


def create_agency(s: Session, data: AgencyIn, schedule: FeeSchedule | None, known_methods: Iterable[str]) -> Agency:
    """Store the agency with its procedures and fee lines, in the caller's transaction. Without a schedule (made in
    the console) the agency offers no procedure until a fee schedule is imported for it."""
    known = set(known_methods)
    unknown = sorted(set(data.payment_methods) - known)
    if unknown:
        raise ValidationFailed(f"unknown payment methods {unknown}; this service knows {sorted(known)}")
    if s.exec(select(Agency.id).where(Agency.code == data.code)).first() is not None:
        raise Conflict(f"an agency with code {data.code!r} already exists")
    # A receipt verifies in the name of the agencies registered for its tax code: two agencies sharing one could each
    # issue documents that verify as the other's.
    if s.exec(select(Agency.code).where(Agency.tax_code == data.tax_code)).first() is not None:
        raise Conflict(f"an agency with tax code {data.tax_code} already exists; each agency has its own")
    agency = Agency(
        code=data.code,
        name=data.name,
        tax_code=data.tax_code,
        address=data.address,
        bank_account=data.bank_account,
        bank_name=data.bank_name,
        phone=data.phone,
        email=data.email,
        payment_methods=list(dict.fromkeys(data.payment_methods)),
    )
    s.add(agency)
    try:
        s.flush()
    except IntegrityError as exc:  # the same code created at the same moment by someone else
        raise Conflict(f"an agency with code {data.code!r} already exists") from exc
    for p_index, p in enumerate(schedule.procedures if schedule is not None else []):
        procedure = Procedure(agency_id=agency.id, code=p.code, name=p.name)
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
            )
            for f_index, f in enumerate(p.fees)
        )
    s.flush()
    return agency


def touch(s: Session, agency_id: str) -> None:
    """Mark the agency, its procedures or its fees as changed, in the caller's transaction: every process's cached
    copy (payments/agency/cache.py) is re-read on its next use."""
    s.execute(update(Agency).where(col(Agency.id) == agency_id).values(version=col(Agency.version) + 1))


@dataclass(frozen=True)
class AgencyDetail:
    agency: Agency
    procedures: list[tuple[Procedure, list[FeeScheduleLine]]]


def list_agencies(s: Session) -> list[tuple[Agency, int]]:
    """Every agency with its number of procedures, by code."""
    counts = select(Procedure.agency_id, func.count().label("n")).group_by(col(Procedure.agency_id)).subquery("counts")
    query = (
        select(Agency, func.coalesce(counts.c.n, 0))
        .join(counts, counts.c.agency_id == Agency.id, isouter=True)
        .order_by(col(Agency.code))
    )
    return [(agency, int(n)) for agency, n in s.exec(query).all()]


def agency_detail(s: Session, code: str) -> AgencyDetail:
    agency = s.exec(select(Agency).where(Agency.code == code)).first()
    if agency is None:
        raise NotFound(f"no agency with code {code!r}")
    procedures = s.exec(select(Procedure).where(Procedure.agency_id == agency.id).order_by(col(Procedure.code))).all()
    ids = [p.id for p in procedures]
    # The schedule in force today (Vietnam time); later ones are listed by the console's fee schedule page.
    today = datetime.now(UTC).astimezone(timezone(timedelta(hours=7))).date()
    in_force = s.exec(
        select(func.max(FeeScheduleLine.effective_from)).where(
            col(FeeScheduleLine.procedure_id).in_(ids), col(FeeScheduleLine.effective_from) <= today
        )
    ).one()
    lines = s.exec(
        select(FeeScheduleLine)
        .where(col(FeeScheduleLine.procedure_id).in_(ids), FeeScheduleLine.effective_from == in_force)
        .order_by(col(FeeScheduleLine.position), col(FeeScheduleLine.id))
    ).all()
    offered = [(p, [line for line in lines if line.procedure_id == p.id]) for p in procedures]
    return AgencyDetail(agency, [(p, p_lines) for p, p_lines in offered if p_lines])
