"""Outbox job handlers of the invoices package."""

from __future__ import annotations

from typing import Any

from invoices.context import ReceiptContext
from invoices.errors import HandOffFailed, OriginalNotIssued
from invoices.service import issue_adjustment, issue_receipt, issue_receipts
from invoices.tax.service import SEND, apply_replies, gateway_for, left_by_failure, send_pending
from invoices.tax.summary import send_daily_summaries
from payments.core import requestid
from payments.outbox.worker import Batched, Handler, Periodic, RetryLater
from payments.payment import kinds

# An adjustment waits this long for the receipt it corrects (issued by an earlier job of the same outbox).
ADJUSTMENT_WAIT_SECONDS = 30.0


def issue(ctx: ReceiptContext, payload: dict[str, Any]) -> None:
    issue_receipt(ctx, ctx.signers, str(payload["payment_id"]))


def issue_many(ctx: ReceiptContext, payloads: list[dict[str, Any]]) -> None:
    """Several receipt jobs claimed together: their receipts in one transaction, each series' counter row locked
    once for all of its documents instead of once each (the worker runs them one by one should this fail)."""
    asked: dict[str, object] = {}
    for payload in payloads:  # a payment's job queued twice asks for one receipt
        asked.setdefault(str(payload["payment_id"]), payload.get(requestid.PAYLOAD_KEY))
    issue_receipts(ctx, ctx.signers, list(asked), request_ids=list(asked.values()))


def adjust(ctx: ReceiptContext, payload: dict[str, Any]) -> None:
    try:
        issue_adjustment(ctx, ctx.signers, str(payload["refund_id"]))
    except OriginalNotIssued:
        raise RetryLater(ADJUSTMENT_WAIT_SECONDS) from None


def tax_sync(ctx: ReceiptContext) -> None:
    """Hand queued messages to the T-VAN folder and apply its replies (a job after each issuance, and periodic)."""
    gateway = gateway_for(ctx.settings)
    if gateway is None:
        return
    send_pending(ctx, gateway)
    apply_replies(ctx, gateway)


def daily_summaries(ctx: ReceiptContext) -> None:
    send_daily_summaries(ctx)


def send(ctx: ReceiptContext, payload: dict[str, Any]) -> None:
    tax_sync(ctx)
    if waiting := left_by_failure(ctx):
        # The folder could not be written (full, read-only, unmounted): the job fails, so that the outbox retries it
        # with backoff and shows the error; the periodic sync keeps trying on its own interval as well.
        raise HandOffFailed(f"{waiting} message(s) could not be handed to the T-VAN folder")


HANDLERS: dict[str, Handler[ReceiptContext]] = {
    kinds.SUCCEEDED: Batched(issue, issue_many),
    kinds.REFUND_SUCCEEDED: adjust,
    SEND: send,
}
PERIODIC: tuple[Periodic[ReceiptContext], ...] = (
    Periodic("tax.sync", lambda ctx: ctx.settings.tax_sync_seconds, tax_sync),
    # The daily summary of e-receipts, due on the day of issue (invoices/rules2026.py).
    Periodic("receipts.summary", lambda ctx: ctx.settings.receipt_summary_check_seconds, daily_summaries),
)
