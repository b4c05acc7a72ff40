"""Outbox job handlers of the invoices package."""

from __future__ import annotations

from typing import Any

from invoices.keys import SignerStore
from invoices.service import issue_receipt
from payments.core.context import AppContext
from payments.outbox.worker import Handler


def signers(ctx: AppContext) -> SignerStore:
    store = ctx.extras.get("signers")
    if store is None:
        store = ctx.extras["signers"] = SignerStore(ctx.settings)
    assert isinstance(store, SignerStore)
    return store


def issue(ctx: AppContext, payload: dict[str, Any]) -> None:
    issue_receipt(ctx, signers(ctx), str(payload["payment_id"]))


HANDLERS: dict[str, Handler] = {"receipt.issue": issue}
