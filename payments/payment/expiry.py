"""Settling a payment by asking its gateway, and expiring one left unfinished (outbox jobs and the card page).

No database transaction is held open across a gateway call: read, ask, then apply the answer in a short write."""

from __future__ import annotations

from adapters.base import GatewayStatus, GatewayTechnicalError
from payments.core.context import AppContext
from payments.payment.lifecycle import apply_gateway_status, status_query, transition
from payments.payment.queries import get_payment
from payments.payment.states import LIVE, PaymentStatus

S = PaymentStatus


def settle_by_query(ctx: AppContext, payment_id: str, actor: str) -> PaymentStatus:
    """Ask the gateway and apply the answer; raises GatewayTechnicalError when it cannot be asked."""
    with ctx.db.read() as s:
        payment = get_payment(s, payment_id)
    if payment.status not in LIVE:
        return payment.status
    result = ctx.gateway(payment.gateway, payment.agency_id).query_status(status_query(payment))
    with ctx.db.write() as s:
        payment = get_payment(s, payment_id)
        apply_gateway_status(
            s,
            payment,
            result.status,
            actor=actor,
            kind="gateway.status_query",
            amount=result.amount,
            gateway_reference=result.gateway_reference,
            raw_code=result.raw_code,
        )
        return payment.status


def expire_payment(ctx: AppContext, payment_id: str) -> PaymentStatus:
    """Expire a payment left unfinished, after asking the gateway and cancelling there first."""
    actor = "worker:payment.expire"
    status = settle_by_query(ctx, payment_id, actor)
    if status not in LIVE:
        return status
    with ctx.db.read() as s:
        payment = get_payment(s, payment_id)
    result = ctx.gateway(payment.gateway, payment.agency_id).cancel(status_query(payment))
    with ctx.db.write() as s:
        payment = get_payment(s, payment_id)
        if result.status in (GatewayStatus.cancelled, GatewayStatus.unknown, GatewayStatus.failed):
            transition(s, payment, S.expired, actor=actor, kind="payment.expired")
        else:
            apply_gateway_status(
                s,
                payment,
                result.status,
                actor=actor,
                kind="gateway.status_query",
                amount=result.amount,
                raw_code=result.raw_code,
            )
        status = payment.status
    if status in LIVE:
        raise GatewayTechnicalError("the gateway still reports the payment as pending")
    return status
