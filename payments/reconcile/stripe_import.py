"""Stripe's settlement, read from Stripe's API rather than a file: the balance transactions of one business day
(charges, refunds, fees), imported like a file. The content's hash stands for the file's: the same day read twice
adds nothing, and a later read that finds more (a late refund) adds only the new lines."""

from __future__ import annotations

import hashlib
import json
from datetime import date

import httpx

from adapters.base import GatewayTechnicalError
from adapters.statements.base import StatementError, StatementFormat
from adapters.statements.stripe_balance import stripe_balance_lines
from payments.core.context import AppContext
from payments.reconcile.importer import ImportFailed, ImportResult, import_lines
from payments.reconcile.matching import day_bounds

DEFAULT_API_BASE = "https://api.stripe.com"


def import_stripe(
    ctx: AppContext, agency_code: str, day: date, *, actor: str = "cli", client: httpx.Client | None = None
) -> ImportResult:
    """Import the agency's Stripe balance transactions created on ``day`` (GMT+7), with the agency's own key."""
    settings = ctx.gateway_config.for_agency("stripe", agency_code)
    secret = settings.get("secret_key")
    if not secret:
        raise ImportFailed(f"agency {agency_code} has no Stripe account in the gateways file")
    start, end = day_bounds(day)
    own = client is None
    if client is None:
        base = str(settings.get("api_base") or DEFAULT_API_BASE)
        client = httpx.Client(base_url=base, headers={"Authorization": f"Bearer {secret}"}, timeout=30)
    try:
        lines = list(stripe_balance_lines(client, created_from=int(start.timestamp()), created_to=int(end.timestamp())))
    except StatementError as exc:
        raise ImportFailed(f"Stripe balance history of {day}: {exc}; nothing was imported") from None
    except GatewayTechnicalError as exc:
        raise ImportFailed(f"Stripe could not be read: {exc}; nothing was imported") from None
    finally:
        if own:
            client.close()
    content = [
        [x.external_id, x.kind.value, x.amount, x.fee, x.reference, x.booked_on.isoformat()]
        for x in sorted(lines, key=lambda x: x.external_id)
    ]
    digest = hashlib.sha256(json.dumps(["stripe", day.isoformat(), content]).encode()).hexdigest()
    return import_lines(
        ctx, agency_code, lines, StatementFormat.stripe_api, sha256=digest, file_name=f"stripe {day}", actor=actor
    )
