"""The payment state machine's transition table, pinned by a list written out here rather than read from the code.

tests/test_state_machine.py drives payments through the API and checks each move against ``TRANSITIONS`` itself, so
a wrong entry in that table would be obeyed by the code and by the test alike. This list is the specification: every
ordered pair of states is either allowed below or forbidden, and both ``can_transition`` and the table must agree.
"""

from __future__ import annotations

from itertools import product

import pytest

from payments.payment.states import FINISHED, LIVE, PAID, TRANSITIONS, PaymentStatus, can_transition

# Every allowed move, one per line. A move not listed is forbidden.
ALLOWED: frozenset[tuple[str, str]] = frozenset(
    {
        # A payment attempt is created, handed to the payer, then settles one way or the other. A gateway may report
        # the outcome before the service has marked the attempt pending, so each outcome is reachable from created.
        ("created", "pending"),
        ("created", "succeeded"),
        ("created", "failed"),
        ("created", "cancelled"),
        ("created", "expired"),
        ("pending", "succeeded"),
        ("pending", "failed"),
        ("pending", "cancelled"),
        ("pending", "expired"),
        # Refunds, only of money received; a second partial refund is a move of its own (with its own event).
        ("succeeded", "partially_refunded"),
        ("succeeded", "refunded"),
        ("partially_refunded", "partially_refunded"),
        ("partially_refunded", "refunded"),
    }
)

STATES = [
    "created",
    "pending",
    "succeeded",
    "failed",
    "cancelled",
    "expired",
    "partially_refunded",
    "refunded",
]
PAIRS = list(product(STATES, STATES))


def test_the_states_are_these_eight() -> None:
    """A new state must be placed in the list above (and so decided for each pair) before this passes."""
    assert sorted(s.value for s in PaymentStatus) == sorted(STATES)
    assert set(TRANSITIONS) == set(PaymentStatus)


@pytest.mark.parametrize(("current", "target"), PAIRS, ids=[f"{a}->{b}" for a, b in PAIRS])
def test_each_pair_is_allowed_or_forbidden_as_written(current: str, target: str) -> None:
    expected = (current, target) in ALLOWED
    assert can_transition(PaymentStatus(current), PaymentStatus(target)) is expected
    assert (PaymentStatus(target) in TRANSITIONS[PaymentStatus(current)]) is expected


def test_the_counts_of_allowed_and_forbidden_moves() -> None:
    allowed = [(a, b) for a, b in PAIRS if can_transition(PaymentStatus(a), PaymentStatus(b))]
    assert len(allowed) == 13 and len(PAIRS) - len(allowed) == 51


def test_the_groups_of_states() -> None:
    """The groups the rest of the code branches on (live attempts, money received, no further attempt)."""
    assert {s.value for s in LIVE} == {"created", "pending"}
    assert {s.value for s in PAID} == {"succeeded", "partially_refunded", "refunded"}
    assert {s.value for s in FINISHED} == set(STATES) - {"created", "pending"}
    # Terminal states allow nothing; money once received never goes back to an unpaid state.
    for terminal in ("failed", "cancelled", "expired", "refunded"):
        assert not TRANSITIONS[PaymentStatus(terminal)], terminal
    for paid in ("succeeded", "partially_refunded", "refunded"):
        assert not {b for a, b in ALLOWED if a == paid} & {"created", "pending", "failed", "cancelled", "expired"}
