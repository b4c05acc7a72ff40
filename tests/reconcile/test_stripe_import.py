"""Stripe's settlement read from its API (a real localstripe server): card payments and refunds made through
Lephi are matched by their balance transactions; reading the same day again adds nothing."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlmodel import select

from lephi.jobs import HANDLERS
from payments.outbox.worker import Worker
from payments.reconcile.importer import ImportFailed
from payments.reconcile.matching import run_day
from payments.reconcile.models import ReconException, StatementEntry
from payments.reconcile.stripe_import import import_stripe
from tests.adapters.localstripe_server import LocalStripe, run_localstripe
from tests.adapters.test_statements import WithoutCreatedFilter
from tests.conftest import Api, agency_api
from tests.factories import dossier_body, payment_body

GMT7 = timezone(timedelta(hours=7))


@pytest.fixture(scope="module")
def localstripe() -> Iterator[LocalStripe]:
    with run_localstripe() as server:
        yield server


@pytest.fixture
def card_api(database_url: str, tmp_path: Path, localstripe: LocalStripe) -> Iterator[Api]:
    gateways = f"""
[agencies."AGC-S".stripe]
secret_key = "{localstripe.secret_key}"
publishable_key = "{localstripe.publishable_key}"
webhook_secrets = ["whsec_test_0123456789"]
api_base = "{localstripe.url}"
send_description = false
"""
    with agency_api(database_url, tmp_path, "AGC-S", ["stripe"], gateways) as api:
        yield api


def _paid_by_card(api: Api, ls: LocalStripe) -> dict[str, Any]:
    code = api.post("/v1/dossiers", dossier_body()).json()["code"]
    payment = api.post("/v1/payments", payment_body(code, method="stripe")).json()
    card = {"type": "card", "card[number]": "4242424242424242", "card[exp_month]": "12", "card[exp_year]": "2034"}
    method = httpx.post(f"{ls.url}/v1/payment_methods", auth=(ls.secret_key, ""), data={**card, "card[cvc]": "123"})
    r = api.client.post(
        f"/pay/card/{payment['gateway_reference']}/confirm", json={"payment_method": method.json()["id"]}
    )
    assert r.json()["payment_status"] == "succeeded", r.text
    return dict(payment)


def _client(ls: LocalStripe) -> httpx.Client:
    # localstripe refuses Stripe's created[...] filters; the import checks the window itself as well.
    return httpx.Client(
        base_url=ls.url,
        headers={"Authorization": f"Bearer {ls.secret_key}"},
        transport=WithoutCreatedFilter(),
        timeout=10,
    )


def test_card_payments_and_refunds_are_matched_from_stripes_balance_history(
    card_api: Api, localstripe: LocalStripe
) -> None:
    first, second = _paid_by_card(card_api, localstripe), _paid_by_card(card_api, localstripe)
    refund = card_api.post(f"/v1/payments/{first['id']}/refunds", {"amount": 10_000, "reason": "một phần"})
    assert refund.json()["status"] == "succeeded"
    Worker(card_api.ctx, HANDLERS).run_once()  # receipts and the adjustment
    today = datetime.now(GMT7).date()
    with _client(localstripe) as client:
        result = import_stripe(card_api.ctx, "AGC-S", today, client=client)
    with card_api.ctx.db.read() as s:
        mine = [
            e
            for e in s.exec(select(StatementEntry))
            if e.reference in {first["gateway_reference"], second["gateway_reference"]}
        ]
    assert sorted((e.kind, e.amount) for e in mine) == [("payment", 110_000), ("payment", 110_000), ("refund", -10_000)]
    assert result.new_lines == result.lines >= 3
    run = run_day(card_api.ctx, card_api.agency_id, today)
    assert run.counts["matched"] == 2 and run.counts["refund_not_settled"] == 0
    assert run.counts["paid_not_settled"] == 0 and run.counts["amount_mismatch"] == 0
    with card_api.ctx.db.read() as s:
        ours = [x for x in s.exec(select(ReconException)) if x.payment_id in {first["id"], second["id"]}]
    assert ours == []
    # The same day read again: the same content, nothing added.
    with _client(localstripe) as client:
        again = import_stripe(card_api.ctx, "AGC-S", today, client=client)
    assert again.duplicate_file and again.new_lines == 0


def test_an_agency_without_a_stripe_account_is_refused(api: Api) -> None:
    with pytest.raises(ImportFailed, match="no Stripe account"):
        import_stripe(api.ctx, api.agency_code, datetime.now(GMT7).date())
