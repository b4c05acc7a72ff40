"""Outbox job handlers of the invoices package."""

from __future__ import annotations

from typing import Any

from invoices.errors import OriginalNotIssued
from invoices.keys import SignerStore
from invoices.service import issue_adjustment, issue_receipt
from invoices.tax.service import apply_replies, gateway_for, send_pending
from payments.core.context import AppContext
from payments.outbox.worker import Handler, Periodic, RetryLater

# An adjustment waits this long for the receipt it corrects (issued by an earlier job of the same outbox).
ADJUSTMENT_WAIT_SECONDS = 30.0


def signers(ctx: AppContext) -> SignerStore:
    return ctx.shared("signers", SignerStore, lambda: SignerStore(ctx.settings))


def issue(ctx: AppContext, payload: dict[str, Any]) -> None:
    issue_receipt(ctx, signers(ctx), str(payload["payment_id"]))


def adjust(ctx: AppContext, payload: dict[str, Any]) -> None:
    try:
        issue_adjustment(ctx, signers(ctx), str(payload["refund_id"]))
    except OriginalNotIssued:
        raise RetryLater(ADJUSTMENT_WAIT_SECONDS) from None


def tax_sync(ctx: AppContext) -> None:
    """Hand queued messages to the T-VAN folder and apply its replies (a job after each issuance, and periodic)."""
    gateway = gateway_for(ctx.settings)
    if gateway is None:
        return
    send_pending(ctx, gateway)
    apply_replies(ctx, gateway)


def send(ctx: AppContext, payload: dict[str, Any]) -> None:
    tax_sync(ctx)


HANDLERS: dict[str, Handler] = {"receipt.issue": issue, "receipt.adjust": adjust, "tax.send": send}
PERIODIC = (Periodic("tax.sync", lambda ctx: ctx.settings.tax_sync_seconds, tax_sync),)
