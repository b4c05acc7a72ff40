"""Outbox job handlers of the webhooks package."""

from __future__ import annotations

from payments.core.context import AppContext
from payments.outbox.worker import Handler
from payments.webhooks.service import deliver, fan_out

HANDLERS: dict[str, Handler[AppContext]] = {"webhook.fanout": fan_out, "webhook.deliver": deliver}
