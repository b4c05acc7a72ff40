"""Dossier fee orders: create or update by code, with the fee computed from the procedure's schedule."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import update
from sqlmodel import Session, col, select

from payments.agency.models import Agency, FeeScheduleLine, Procedure
from payments.auth.access import owned_or_404
from payments.core.errors import DossierLocked, ValidationFailed
from payments.core.logging import get_logger
from payments.core.pagination import newest_first_page
from payments.core.types import utcnow
from payments.dossier.models import Dossier, DossierFeeLine, DossierStatus
from payments.dossier.schemas import DossierIn, DossierOut, FeeLineOut
from payments.payment.models import Payment
from payments.payment.states import LIVE

log = get_logger(__name__)

# Amounts above this are refused: no procedure fee comes near it, and it bounds every sum the service makes.
MAX_TOTAL = 999_999_999_999


@dataclass(frozen=True)
class DossierFilter:
    status: DossierStatus | None = None
    procedure_code: str | None = None
    created_from: datetime | None = None
    created_to: datetime | None = None


def compute_lines(schedule: list[FeeScheduleLine], items: dict[str, int]) -> list[DossierFeeLine]:
    known = {line.code for line in schedule}
    unknown = sorted(set(items) - known)
    if unknown:
        raise ValidationFailed(f"fee codes not in this procedure's schedule: {unknown}", field="items")
    lines = []
    for line in sorted(schedule, key=lambda x: x.position):
        quantity = items.get(line.code, line.default_quantity)
        if quantity > line.max_quantity:
            raise ValidationFailed(
                f"quantity {quantity} for {line.code!r} is above its maximum {line.max_quantity}",
                field="items",
            )
        if quantity == 0:
            continue
        lines.append(
            DossierFeeLine(
                dossier_id="",
                fee_code=line.code,
                kind=line.kind.value,
                name=line.name,
                unit_amount=line.unit_amount,
                quantity=quantity,
                amount=line.unit_amount * quantity,
                position=line.position,
            )
        )
    return lines


def find_dossier(session: Session, agency_id: str, code: str) -> Dossier:
    own = session.exec(select(Dossier).where(Dossier.agency_id == agency_id, Dossier.code == code)).first()
    # Codes are unique only within an agency: another agency's dossier with this code is the attempt to log.
    found = own or session.exec(select(Dossier).where(Dossier.code == code)).first()
    return owned_or_404(found, agency_id, "dossier with code", code)


def upsert_dossier(session: Session, agency_id: str, data: DossierIn) -> tuple[Dossier, bool]:
    """Create the dossier, or update it while nothing has been paid or started; returns (dossier, created)."""
    procedure = session.exec(
        select(Procedure).where(Procedure.agency_id == agency_id, Procedure.code == data.procedure_code)
    ).first()
    if procedure is None:
        raise ValidationFailed(f"no procedure {data.procedure_code!r} for this agency", field="procedure_code")
    schedule = list(session.exec(select(FeeScheduleLine).where(FeeScheduleLine.procedure_id == procedure.id)))
    items: dict[str, int] = {}
    for item in data.items:
        if item.fee_code in items:
            raise ValidationFailed(f"fee code {item.fee_code!r} given twice", field="items")
        items[item.fee_code] = item.quantity
    lines = compute_lines(schedule, items)
    total = sum(line.amount for line in lines)
    if total <= 0 or total > MAX_TOTAL:
        raise ValidationFailed("the dossier owes no fee, or an amount out of range", total=total)

    dossier = session.exec(select(Dossier).where(Dossier.agency_id == agency_id, Dossier.code == data.code)).first()
    created = dossier is None
    if dossier is None:
        dossier = Dossier(
            agency_id=agency_id,
            code=data.code,
            procedure_id=procedure.id,
            payer_name="",
            total_amount=total,
            pay_token=secrets.token_urlsafe(24),
        )
    else:
        _ensure_editable(session, dossier)
        for old in session.exec(select(DossierFeeLine).where(DossierFeeLine.dossier_id == dossier.id)):
            session.delete(old)
    dossier.procedure_id = procedure.id
    dossier.payer_name = data.payer.name
    dossier.payer_email = data.payer.email
    dossier.payer_phone = data.payer.phone
    dossier.payer_tax_code = data.payer.tax_code
    dossier.payer_address = data.payer.address
    dossier.total_amount = total
    dossier.updated_at = utcnow()
    session.add(dossier)
    session.flush()
    for line in lines:
        line.dossier_id = dossier.id
        session.add(line)
    return dossier, created


def _ensure_editable(session: Session, dossier: Dossier) -> None:
    if dossier.status is not DossierStatus.unpaid:
        raise DossierLocked(f"dossier {dossier.code!r} is {dossier.status.value} and can no longer change")
    live = session.exec(
        select(Payment.id).where(Payment.dossier_id == dossier.id, col(Payment.status).in_(list(LIVE)))
    ).first()
    if live is not None:
        raise DossierLocked(f"dossier {dossier.code!r} has payment {live} in progress", payment_id=live)
    # Bump updated_at with a compare-and-set so two concurrent updates of one dossier cannot interleave.
    session.execute(update(Dossier).where(col(Dossier.id) == dossier.id).values(updated_at=utcnow()))


def to_out(session: Session, dossier: Dossier, public_url: str) -> DossierOut:
    agency = session.get(Agency, dossier.agency_id)
    procedure = session.get(Procedure, dossier.procedure_id)
    assert agency is not None and procedure is not None
    lines = session.exec(
        select(DossierFeeLine).where(DossierFeeLine.dossier_id == dossier.id).order_by(col(DossierFeeLine.position))
    ).all()
    return DossierOut(
        code=dossier.code,
        agency_code=agency.code,
        procedure_code=procedure.code,
        procedure_name=procedure.name,
        payer_name=dossier.payer_name,
        status=dossier.status,
        total_amount=dossier.total_amount,
        fee_lines=[FeeLineOut.model_validate(line, from_attributes=True) for line in lines],
        pay_url=f"{public_url.rstrip('/')}/pay/{dossier.pay_token}",
        created_at=dossier.created_at,
        updated_at=dossier.updated_at,
        paid_at=dossier.paid_at,
    )


def list_dossiers(
    session: Session, agency_id: str, flt: DossierFilter, limit: int, cursor: str | None
) -> tuple[list[Dossier], str | None]:
    query = select(Dossier).where(Dossier.agency_id == agency_id)
    if flt.status:
        query = query.where(Dossier.status == flt.status)
    if flt.procedure_code:
        query = query.join(Procedure, col(Procedure.id) == Dossier.procedure_id).where(
            Procedure.code == flt.procedure_code
        )
    return newest_first_page(session, query, Dossier, limit, cursor, flt.created_from, flt.created_to)
