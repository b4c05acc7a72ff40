"""GET /v1/province/stats: the province's month for its operations centre. Figures equal to what the test wrote,
every agency's whatever agency the key belongs to, aggregates only, and only for a key with the scope
``province:read``."""

from __future__ import annotations

import json
from datetime import date, timedelta

from lephi.container import Container
from payments.auth.service import create_key
from tests.conftest import Api
from tests.console.report_data import at, exception, pay, unpaid_dossier
from tests.factories import seed_agency

D1 = date(2026, 11, 2)


def test_the_month_of_every_agency_for_a_province_key(api: Api, ctx: Container) -> None:
    with ctx.db.write() as s:
        b = seed_agency(s, "AGC-B", tax_code="0100000002")
        created = at(D1, 8)
        pay(s, api.agency_id, 100_000, created + timedelta(minutes=10), created=created)
        pay(s, api.agency_id, 200_000, created + timedelta(minutes=20), created=created, method="vnpay")
        unpaid_dossier(s, api.agency_id, 50_000, created)
        pay(s, b.id, 70_000, created + timedelta(minutes=60), created=created, method="momo")
        pay(s, b.id, 999_000, at(date(2026, 10, 31), 12))  # October
        exception(s, b.id, D1)
        # The key is B's: its scope, not its agency, opens the province's figures.
        _, raw = create_key(s, "AGC-B", "trung tâm điều hành", ["province:read"])
    response = api.client.get("/v1/province/stats?month=2026-11", headers={"Authorization": f"Bearer {raw}"})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["month"] == "2026-11"
    rows = {row["agency_code"]: row for row in body["agencies"]}
    assert rows["AGC-A"] == {
        "agency_code": "AGC-A",
        "agency_name": "Agency AGC-A",
        "dossiers_with_fees": 3,
        "dossiers_paid_online": 2,
        "cashless_share": 2 / 3,
        "payments": 2,
        "amount": 300_000,
        "amount_by_method": {"sandbox": 100_000, "vnpay": 200_000},
        "median_minutes_to_payment": 15.0,
        "open_exceptions": 0,
    }
    assert rows["AGC-B"]["amount"] == 70_000 and rows["AGC-B"]["open_exceptions"] == 1
    total = body["total"]
    assert (total["payments"], total["amount"], total["dossiers_with_fees"]) == (3, 370_000, 4)
    assert total["amount_by_method"] == {"momo": 70_000, "sandbox": 100_000, "vnpay": 200_000}
    # Aggregates only: no payment, dossier or payer anywhere in the answer.
    text = json.dumps(body)
    assert "pay_" not in text and "dos_" not in text and "Nguyễn" not in text
    october = api.client.get("/v1/province/stats?month=2026-10", headers={"Authorization": f"Bearer {raw}"})
    assert october.json()["total"]["amount"] == 999_000


def test_the_feed_wants_its_scope_and_a_month(api: Api, ctx: Container) -> None:
    with ctx.db.write() as s:
        _, other = create_key(s, "AGC-A", "kế toán", ["payments:read", "reconciliation:read"])
        _, province = create_key(s, "AGC-A", "tỉnh", ["province:read"])
    assert api.client.get("/v1/province/stats").status_code == 401
    refused = api.client.get("/v1/province/stats", headers={"Authorization": f"Bearer {other}"})
    assert refused.status_code == 403 and refused.json()["code"] == "insufficient_scope"
    headers = {"Authorization": f"Bearer {province}"}
    assert api.client.get("/v1/province/stats", headers=headers).status_code == 200  # the current month
    for month in ("2026-13", "2026-1", "abc", "2026-11-01", "1999-01", "2026-11%00", "9" * 5000):
        bad = api.client.get(f"/v1/province/stats?month={month}", headers=headers)
        assert bad.status_code == 422 and bad.headers["content-type"] == "application/problem+json", month
