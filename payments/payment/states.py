"""The payment state machine: one transition table, checked in one place."""

from __future__ import annotations

from enum import StrEnum


class PaymentStatus(StrEnum):
    created = "created"
    pending = "pending"
    succeeded = "succeeded"
    failed = "failed"
    cancelled = "cancelled"
    expired = "expired"
    partially_refunded = "partially_refunded"
    refunded = "refunded"


S = PaymentStatus

TRANSITIONS: dict[PaymentStatus, frozenset[PaymentStatus]] = {
    S.created: frozenset({S.pending, S.succeeded, S.failed, S.cancelled, S.expired}),
    S.pending: frozenset({S.succeeded, S.failed, S.cancelled, S.expired}),
    S.succeeded: frozenset({S.partially_refunded, S.refunded}),
    # A second partial refund keeps the status; it is still a recorded transition with its own event.
    S.partially_refunded: frozenset({S.partially_refunded, S.refunded}),
    S.failed: frozenset(),
    S.cancelled: frozenset(),
    S.expired: frozenset(),
    S.refunded: frozenset(),
}

LIVE = frozenset({S.created, S.pending})
PAID = frozenset({S.succeeded, S.partially_refunded, S.refunded})
FINISHED = frozenset(s for s in PaymentStatus if s not in LIVE)


def can_transition(current: PaymentStatus, target: PaymentStatus) -> bool:
    return target in TRANSITIONS[current]
