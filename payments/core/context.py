"""The long-lived objects of one running service, built once and shared by requests, the worker and the CLI."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import httpx

from adapters.base import GatewayContext, PaymentGateway
from adapters.registry import GatewayRegistry, discover
from payments.auth.cache import ApiKeyCache
from payments.core.config import Settings
from payments.core.db import Database, make_engine
from payments.gateway.config import GatewayConfig
from payments.idempotency.service import Idempotency

T = TypeVar("T")


@dataclass
class AppContext:
    settings: Settings
    db: Database
    gateways: GatewayRegistry
    idempotency: Idempotency
    http: httpx.Client | None = field(default=None)
    gateway_config: GatewayConfig = field(default_factory=lambda: GatewayConfig({}, {}))
    # API keys held in memory, checked against the key version row (payments/auth/cache.py).
    api_keys: ApiKeyCache = field(init=False)
    _agency_codes: dict[str, str] = field(default_factory=dict)
    # Long-lived objects of other packages (e.g. the invoices' signing keys), built once per process on first use.
    extras: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.api_keys = ApiKeyCache(self.db)

    def callback_url(self, gateway: str, agency_code: str | None = None) -> str:
        base = f"{self.settings.public_url.rstrip('/')}/v1/gateways/{gateway}/callback"
        return f"{base}/{agency_code}" if agency_code else base

    def agency_code(self, agency_id: str) -> str:
        """Agency codes never change, so they are cached for the life of the process."""
        if agency_id not in self._agency_codes:
            from payments.agency.models import Agency

            with self.db.read() as s:
                agency = s.get(Agency, agency_id)
                if agency is None:
                    raise KeyError(agency_id)
                self._agency_codes[agency_id] = agency.code
        return self._agency_codes[agency_id]

    def shared(self, name: str, kind: type[T], build: Callable[[], T]) -> T:
        """A long-lived object of another package (signing keys, rate limiters, an HTTP client), built on first use
        and kept for the life of the process; tests may put their own under ``name`` beforehand."""
        value = self.extras.get(name)
        if value is None:
            value = self.extras[name] = build()
        if not isinstance(value, kind):
            raise TypeError(f"ctx.extras[{name!r}] is a {type(value).__name__}, not a {kind.__name__}")
        return value

    def gateway(self, name: str, agency_id: str) -> PaymentGateway:
        """The adapter holding this agency's merchant account at that gateway."""
        return self.gateways.get(name, self.agency_code(agency_id))

    def close(self) -> None:
        self.db.dispose()


def _builtin_settings(settings: Settings, name: str) -> dict[str, Any]:
    if name == "sandbox":
        return {"secret": settings.sandbox_secret}
    return {}


def build_context(settings: Settings, db: Database | None = None, http: httpx.Client | None = None) -> AppContext:
    from payments.gateway.sandbox_store import DbSandboxStore

    database = db or Database(make_engine(settings.effective_database_url, settings))
    factories = discover()
    if not settings.sandbox_on:
        factories.pop("sandbox", None)
    config = GatewayConfig.load(settings.gateways_file)
    ctx = AppContext(
        settings,
        database,
        GatewayRegistry({}, lambda n, a: GatewayContext(n, "", "")),
        Idempotency(database, settings),
        http,
        config,
    )

    def context_for(name: str, agency_code: str | None) -> GatewayContext:
        return GatewayContext(
            name=name,
            public_url=settings.public_url,
            callback_url=ctx.callback_url(name, agency_code),
            settings={**_builtin_settings(settings, name), **config.for_agency(name, agency_code)},
            http=ctx.http,
            store=DbSandboxStore(database) if name == "sandbox" else None,
        )

    ctx.gateways = GatewayRegistry(factories, context_for)
    return ctx
