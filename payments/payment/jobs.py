"""Outbox job handlers of the payment domain."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from payments.core.context import AppContext
from payments.core.types import utcnow
from payments.outbox.service import enqueue
from payments.outbox.worker import Handler
from payments.payment import kinds
from payments.payment.expiry import expire_payment, settle_by_query
from payments.payment.refunds import retry_refund
from payments.payment.states import LIVE


def expire(ctx: AppContext, payload: dict[str, Any]) -> None:
    expire_payment(ctx, str(payload["payment_id"]))


def requery(ctx: AppContext, payload: dict[str, Any]) -> None:
    """Settle a payment whose callback never came; schedule the next query while it stays pending. Step -1 is the
    early query (``payments.payment.create.first_requery``): the next one is the schedule's first."""
    payment_id, step = str(payload["payment_id"]), int(payload.get("step", 0))
    status = settle_by_query(ctx, payment_id, actor="worker:payment.requery")
    schedule = ctx.settings.requery_schedule_seconds
    if status in LIVE and step + 1 < len(schedule):
        with ctx.db.write() as s:
            enqueue(
                s,
                kinds.REQUERY,
                {"payment_id": payment_id, "step": step + 1},
                run_after=utcnow() + timedelta(seconds=schedule[step + 1]),
            )


def refund(ctx: AppContext, payload: dict[str, Any]) -> None:
    retry_refund(ctx, str(payload["refund_id"]))


HANDLERS: dict[str, Handler[AppContext]] = {
    kinds.EXPIRE: expire,
    kinds.REQUERY: requery,
    kinds.REFUND_RETRY: refund,
}
