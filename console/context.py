"""What the console needs from the running service; the composition root's container satisfies it."""

from __future__ import annotations

from typing import Protocol

from console.config import ConsoleSettings
from payments.auth.cache import ApiKeyCache
from payments.core.config import PaymentSettings
from payments.core.db import Database


class ConsoleContext(Protocol):
    @property
    def settings(self) -> PaymentSettings: ...
    @property
    def db(self) -> Database: ...
    @property
    def api_keys(self) -> ApiKeyCache: ...


def console_settings(settings: PaymentSettings) -> ConsoleSettings:
    """The console's own settings, which the service's settings include (``lephi.settings.Settings``)."""
    if not isinstance(settings, ConsoleSettings):
        raise TypeError("the service's settings do not include the console's")
    return settings
