"""Outbox job kinds of the payment domain.

The first three are work this package does itself (its handlers are in ``payments.payment.jobs``). The last two are
facts it announces, in the transaction that makes them true, for the packages built on it: the invoices package
issues the e-receipt on ``SUCCEEDED`` and the adjustment on ``REFUND_SUCCEEDED``. The payment domain never names
its readers; the composition root's job table (``lephi.jobs``) routes each kind to exactly one handler."""

from __future__ import annotations

EXPIRE = "payment.expire"
REQUERY = "payment.requery"
REFUND_RETRY = "refund.retry"

SUCCEEDED = "payment.succeeded"
REFUND_SUCCEEDED = "refund.succeeded"
