"""Outbox job handlers of the webhooks package."""

from __future__ import annotations

from payments.core.context import AppContext
from payments.outbox.worker import Handler
from payments.webhooks.service import DELIVER, FANOUT, deliver, fan_out

HANDLERS: dict[str, Handler[AppContext]] = {FANOUT: fan_out, DELIVER: deliver}
