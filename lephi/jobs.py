"""Every outbox job handler the service runs: the composition of each package's handlers."""

from __future__ import annotations

from invoices.jobs import HANDLERS as INVOICE_HANDLERS
from invoices.jobs import PERIODIC as INVOICE_PERIODIC
from lephi.container import Container
from payments.outbox.worker import Handler, Periodic
from payments.payment.jobs import HANDLERS as PAYMENT_HANDLERS
from payments.webhooks.jobs import HANDLERS as WEBHOOK_HANDLERS

HANDLERS: dict[str, Handler[Container]] = {**PAYMENT_HANDLERS, **INVOICE_HANDLERS, **WEBHOOK_HANDLERS}
PERIODIC: tuple[Periodic[Container], ...] = (*INVOICE_PERIODIC,)
