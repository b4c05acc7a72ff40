"""Fee schedule versions: a dossier is priced by the schedule in force on its day (the Vietnam day it was created),
through the cached copy of POST /v1/dossiers and the uncached update path alike; a schedule effective tomorrow leaves
today's prices alone; withdrawing it restores them; a deactivated agency takes no new dossier or payment."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from typing import Any

import pytest
from sqlmodel import select

from payments.agency.models import Agency, FeeKind, FeeScheduleVersion
from payments.agency.schedule import FeeLineIn, FeeSchedule, ProcedureIn
from payments.agency.versions import add_version, remove_version, vietnam_day
from payments.core.types import utcnow
from payments.dossier import service as dossier_service
from tests.conftest import Api
from tests.factories import PROCEDURE, dossier_body, payment_body


def new_schedule(amount: int = 150_000) -> FeeSchedule:
    return FeeSchedule(
        procedures=[
            ProcedureIn(
                code=PROCEDURE,
                name="Thủ tục thử nghiệm",
                fees=[
                    FeeLineIn(code="LE_PHI", kind=FeeKind.le_phi, name="Lệ phí", amount=amount),
                    FeeLineIn(
                        code="BAN_SAO",
                        kind=FeeKind.phi,
                        name="Bản sao",
                        amount=7_000,
                        default_quantity=0,
                        max_quantity=50,
                    ),
                ],
            )
        ]
    )


def today() -> date:
    return vietnam_day(utcnow())


def add(api: Api, day: date, amount: int = 150_000) -> int:
    with api.ctx.db.write() as s:
        version = add_version(s, api.agency_id, new_schedule(amount), day, "test.csv", "test")
        assert version.id is not None
        return version.id


def at(monkeypatch: pytest.MonkeyPatch, moment: datetime) -> None:
    monkeypatch.setattr(dossier_service, "utcnow", lambda: moment)


def total(response: Any) -> int:
    assert response.status_code in (200, 201), response.text
    return int(response.json()["total_amount"])


def test_a_schedule_effective_tomorrow_prices_only_dossiers_from_tomorrow(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Warm the cache with today's schedule first: the new version must still be seen (agency.version was bumped).
    assert total(api.post("/v1/dossiers", dossier_body("HS-T0", copies=1))) == 105_000
    add(api, today() + timedelta(days=1))
    assert total(api.post("/v1/dossiers", dossier_body("HS-T1", copies=1))) == 105_000

    at(monkeypatch, utcnow() + timedelta(days=1))
    assert total(api.post("/v1/dossiers", dossier_body("HS-T2", copies=1))) == 157_000
    # An update keeps its dossier's day: created today, priced by today's schedule even when updated tomorrow.
    assert total(api.post("/v1/dossiers", dossier_body("HS-T1", copies=2))) == 110_000
    assert total(api.post("/v1/dossiers", dossier_body("HS-T2", copies=2))) == 164_000


def test_two_versions_and_withdrawing_the_future_one(api: Api, monkeypatch: pytest.MonkeyPatch) -> None:
    add(api, today() + timedelta(days=2), amount=300_000)
    add(api, today() + timedelta(days=5), amount=500_000)
    now = utcnow()
    at(monkeypatch, now + timedelta(days=3))
    assert total(api.post("/v1/dossiers", dossier_body("HS-V1", copies=0))) == 300_000
    at(monkeypatch, now + timedelta(days=6))
    assert total(api.post("/v1/dossiers", dossier_body("HS-V2", copies=0))) == 500_000
    monkeypatch.undo()
    with api.ctx.db.write() as s:
        later = s.exec(
            select(FeeScheduleVersion).where(FeeScheduleVersion.effective_from == today() + timedelta(days=5))
        ).one()
        remove_version(s, later, today())
    at(monkeypatch, now + timedelta(days=6))
    assert total(api.post("/v1/dossiers", dossier_body("HS-V3", copies=0))) == 300_000


def test_a_schedule_in_force_cannot_be_withdrawn_and_a_day_takes_one_schedule(api: Api) -> None:
    from payments.core.errors import Conflict

    add(api, today())
    with pytest.raises(Conflict):
        add(api, today())
    with api.ctx.db.write() as s, pytest.raises(Conflict):
        version = s.exec(select(FeeScheduleVersion)).one()
        remove_version(s, version, today())
    assert total(api.post("/v1/dossiers", dossier_body("HS-N", copies=0))) == 150_000


def test_a_deactivated_agency_takes_no_new_dossier_or_payment_but_stays_readable(api: Api) -> None:
    api.post("/v1/dossiers", dossier_body("HS-D1"))
    with api.ctx.db.write() as s:
        agency = s.get(Agency, api.agency_id)
        assert agency is not None
        agency.deactivated_at = utcnow()
        agency.version += 1
    for body in (dossier_body("HS-D2"), dossier_body("HS-D1", copies=3)):
        refused = api.post("/v1/dossiers", body)
        assert refused.status_code == 409 and refused.json()["code"] == "agency_deactivated", refused.text
    refused = api.post("/v1/payments", payment_body("HS-D1"))
    assert refused.status_code == 409 and refused.json()["code"] == "agency_deactivated"
    assert api.get("/v1/dossiers/HS-D1").status_code == 200
