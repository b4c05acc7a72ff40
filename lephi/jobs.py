"""Every outbox job handler the service runs: the composition of each package's handlers."""

from __future__ import annotations

from collections.abc import Mapping

from invoices.jobs import HANDLERS as INVOICE_HANDLERS
from invoices.jobs import PERIODIC as INVOICE_PERIODIC
from invoices.tax.service import SEND as TAX_SEND
from lephi.container import Container
from payments.outbox.worker import Handler, Periodic
from payments.payment import kinds
from payments.payment.jobs import HANDLERS as PAYMENT_HANDLERS
from payments.privacy.retention import PERIODIC as PRIVACY_PERIODIC
from payments.webhooks.jobs import HANDLERS as WEBHOOK_HANDLERS
from payments.webhooks.service import DELIVER


def merged(*tables: Mapping[str, Handler[Container]]) -> dict[str, Handler[Container]]:
    """One handler per kind: a kind claimed by two packages would silently lose one of them, so it stops the start."""
    handlers: dict[str, Handler[Container]] = {}
    for table in tables:
        for kind, handler in table.items():
            if kind in handlers:
                raise ValueError(f"outbox job kind {kind!r} has two handlers")
            handlers[kind] = handler
    return handlers


HANDLERS = merged(PAYMENT_HANDLERS, INVOICE_HANDLERS, WEBHOOK_HANDLERS)
PERIODIC: tuple[Periodic[Container], ...] = (*INVOICE_PERIODIC, *PRIVACY_PERIODIC)
# Kinds that spend their time waiting on another system (a client's webhook endpoint, a gateway's status or
# cancel API, the T-VAN folder): a worker runs several at once. Receipt issuance (signing) is CPU-bound and is not
# among them.
NETWORK_KINDS = frozenset({DELIVER, kinds.EXPIRE, kinds.REQUERY, kinds.REFUND_RETRY, TAX_SEND})
