"""Dossier fee orders: create or update by code, with the fee computed from the procedure's schedule."""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from sqlalchemy import and_, bindparam, insert, update
from sqlalchemy import select as core_select
from sqlmodel import Session, col, select

from payments.agency.cache import AgencyCache
from payments.agency.models import Agency, FeeKind, Procedure
from payments.agency.versions import procedure_lines, vietnam_day
from payments.auth.access import owned_or_404
from payments.core import pii
from payments.core.db import table_of
from payments.core.errors import AgencyDeactivated, DossierLocked, ValidationFailed
from payments.core.logging import get_logger
from payments.core.pagination import newest_first_page
from payments.core.sql import Prepared, connection, insert_rows
from payments.core.types import new_id, utcnow
from payments.dossier.models import Dossier, DossierFeeLine, DossierStatus
from payments.dossier.schemas import DossierIn, DossierOut, FeeLineOut
from payments.dossier.secret import pay_secret
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
    payer_id_number: str | None = None


class ScheduleLine(Protocol):
    """A fee line of a procedure's schedule, as stored or as cached."""

    @property
    def code(self) -> str: ...
    @property
    def kind(self) -> FeeKind: ...
    @property
    def name(self) -> str: ...
    @property
    def unit_amount(self) -> int: ...
    @property
    def default_quantity(self) -> int: ...
    @property
    def max_quantity(self) -> int: ...
    @property
    def position(self) -> int: ...


def fee_lines(schedule: Sequence[ScheduleLine], items: dict[str, int]) -> list[dict[str, Any]]:
    """The dossier's fee lines (as row values, without the dossier's id): each schedule line at the quantity asked,
    or its default; lines at quantity 0 are left out."""
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
            {
                "fee_code": line.code,
                "kind": line.kind.value,
                "name": line.name,
                "unit_amount": line.unit_amount,
                "quantity": quantity,
                "amount": line.unit_amount * quantity,
                "position": line.position,
            }
        )
    return lines


def compute_lines(schedule: Sequence[ScheduleLine], items: dict[str, int]) -> list[DossierFeeLine]:
    return [DossierFeeLine(dossier_id="", **values) for values in fee_lines(schedule, items)]


def _quantities(data: DossierIn) -> dict[str, int]:
    items: dict[str, int] = {}
    for item in data.items:
        if item.fee_code in items:
            raise ValidationFailed(f"fee code {item.fee_code!r} given twice", field="items")
        items[item.fee_code] = item.quantity
    return items


def _check_total(total: int) -> None:
    if total <= 0 or total > MAX_TOTAL:
        raise ValidationFailed("the dossier owes no fee, or an amount out of range", total=total)


def find_dossier(session: Session, agency_id: str, code: str) -> Dossier:
    own = session.exec(select(Dossier).where(Dossier.agency_id == agency_id, Dossier.code == code)).first()
    # Codes are unique only within an agency: another agency's dossier with this code is the attempt to log.
    found = own or session.exec(select(Dossier).where(Dossier.code == code)).first()
    return owned_or_404(found, agency_id, "dossier with code", code)


def _refuse_deactivated(active: bool) -> None:
    if not active:
        raise AgencyDeactivated("the agency is deactivated: it takes no new or changed dossiers")


def upsert_dossier(session: Session, agency_id: str, data: DossierIn) -> tuple[Dossier, bool]:
    """Create the dossier, or update it while nothing has been paid or started; returns (dossier, created). The fee
    is computed from the schedule in force on the dossier's day: the Vietnam day it was created."""
    agency = session.get(Agency, agency_id)
    _refuse_deactivated(agency is not None and agency.deactivated_at is None)
    dossier = session.exec(select(Dossier).where(Dossier.agency_id == agency_id, Dossier.code == data.code)).first()
    day = vietnam_day(dossier.created_at if dossier is not None else utcnow())
    procedure = session.exec(
        select(Procedure).where(Procedure.agency_id == agency_id, Procedure.code == data.procedure_code)
    ).first()
    schedule = procedure_lines(session, procedure, day) if procedure is not None else None
    if procedure is None or schedule is None:
        raise ValidationFailed(f"no procedure {data.procedure_code!r} for this agency", field="procedure_code")
    lines = compute_lines(schedule, _quantities(data))
    total = sum(line.amount for line in lines)
    _check_total(total)

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
    dossier.payer_id_number = data.payer.id_number
    dossier.payer_passport_number = data.payer.passport_number
    dossier.payer_id_index = _id_index(data.payer.id_number)
    dossier.total_amount = total
    dossier.updated_at = utcnow()
    session.add(dossier)
    session.flush()
    for line in lines:
        line.dossier_id = dossier.id
        session.add(line)
    return dossier, created


_DOSSIER = table_of(Dossier)
_LINE = table_of(DossierFeeLine)
_AGENCY = table_of(Agency)
_INSERT_DOSSIER = Prepared(insert(_DOSSIER))
# The agency's version (for its cached copy and fee schedule) and whether the dossier exists, in one statement.
_VERSION_AND_DOSSIER = Prepared(
    core_select(_AGENCY.c.version, _DOSSIER.c.id)
    .select_from(
        _AGENCY.outerjoin(_DOSSIER, and_(_DOSSIER.c.agency_id == _AGENCY.c.id, _DOSSIER.c.code == bindparam("code")))
    )
    .where(_AGENCY.c.id == bindparam("agency_id"))
)


def put_dossier(
    s: Session, agencies: AgencyCache, agency_id: str, data: DossierIn, public_url: str
) -> tuple[DossierOut, bool]:
    """Create the dossier or update it (see ``upsert_dossier``); returns (what to answer, created). A new dossier,
    the common case, is computed from the cached fee schedule and written with two Core statements."""
    found = _VERSION_AND_DOSSIER(s, {"agency_id": agency_id, "code": data.code}).first()
    if found is None or found.id is not None:
        dossier, created = upsert_dossier(s, agency_id, data)
        return to_out(s, dossier, public_url), created
    agency = agencies.get(s, agency_id, found.version)
    assert agency is not None
    _refuse_deactivated(agency.active)
    now = utcnow()
    procedure = agency.procedures_on(vietnam_day(now)).get(data.procedure_code)
    if procedure is None:
        raise ValidationFailed(f"no procedure {data.procedure_code!r} for this agency", field="procedure_code")
    lines = fee_lines(procedure.lines, _quantities(data))
    total = sum(line["amount"] for line in lines)
    _check_total(total)
    values = {
        "id": new_id("dos"),
        "agency_id": agency_id,
        "code": data.code,
        "procedure_id": procedure.id,
        "payer_name": data.payer.name,
        "payer_email": data.payer.email,
        "payer_phone": data.payer.phone,
        "payer_tax_code": data.payer.tax_code,
        "payer_address": data.payer.address,
        "payer_id_number": data.payer.id_number,
        "payer_passport_number": data.payer.passport_number,
        "payer_id_index": _id_index(data.payer.id_number),
        "total_amount": total,
        "status": DossierStatus.unpaid,
        "pay_token": secrets.token_urlsafe(24),
        "created_at": now,
        "updated_at": now,
        "paid_at": None,
        "pii_redacted_at": None,
    }
    conn = connection(s)
    _INSERT_DOSSIER(conn, values)
    insert_rows(conn, _LINE, [{**line, "dossier_id": values["id"]} for line in lines])
    out = DossierOut(
        code=data.code,
        agency_code=agency.code,
        procedure_code=procedure.code,
        procedure_name=procedure.name,
        payer_name=data.payer.name,
        status=DossierStatus.unpaid,
        total_amount=total,
        fee_lines=[FeeLineOut(**line) for line in lines],
        pay_url=f"{public_url.rstrip('/')}/pay/{values['pay_token']}",
        pay_secret=pay_secret(values["pay_token"]),
        created_at=now,
        updated_at=now,
        paid_at=None,
    )
    return out, True


def _id_index(id_number: str | None) -> str | None:
    return pii.keyring().blind_index(id_number) if id_number else None


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
        pay_secret=pay_secret(dossier.pay_token),
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
    if flt.payer_id_number:
        # Rows not yet re-sealed by a rotation carry an older key's index.
        query = query.where(col(Dossier.payer_id_index).in_(pii.keyring().blind_indexes(flt.payer_id_number)))
    if flt.procedure_code:
        query = query.join(Procedure, col(Procedure.id) == Dossier.procedure_id).where(
            Procedure.code == flt.procedure_code
        )
    return newest_first_page(session, query, Dossier, limit, cursor, flt.created_from, flt.created_to)
