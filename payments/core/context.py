"""The long-lived objects of one running service, built once and shared by requests, the worker and the CLI."""

from __future__ import annotations

from dataclasses import dataclass, field

import httpx

from adapters.base import GatewayContext
from adapters.registry import GatewayRegistry, discover
from payments.core.config import Settings
from payments.core.db import Database, make_engine
from payments.idempotency.service import Idempotency


@dataclass
class AppContext:
    settings: Settings
    db: Database
    gateways: GatewayRegistry
    idempotency: Idempotency
    http: httpx.Client | None = field(default=None)

    def callback_url(self, gateway: str) -> str:
        return f"{self.settings.public_url.rstrip('/')}/v1/gateways/{gateway}/callback"

    def close(self) -> None:
        self.db.dispose()


def _gateway_settings(settings: Settings, name: str) -> dict[str, object]:
    if name == "sandbox":
        return {"secret": settings.sandbox_secret}
    return {}


def build_context(settings: Settings, db: Database | None = None, http: httpx.Client | None = None) -> AppContext:
    from payments.gateway.sandbox_store import DbSandboxStore

    database = db or Database(make_engine(settings.effective_database_url, settings))
    factories = discover()
    if not settings.sandbox_on:
        factories.pop("sandbox", None)
    ctx = AppContext(
        settings,
        database,
        GatewayRegistry({}, lambda n: GatewayContext(n, "", "")),
        Idempotency(database, settings),
        http,
    )

    def context_for(name: str) -> GatewayContext:
        store = DbSandboxStore(database) if name == "sandbox" else None
        return GatewayContext(
            name=name,
            public_url=settings.public_url,
            callback_url=ctx.callback_url(name),
            settings=_gateway_settings(settings, name),
            http=ctx.http,
            store=store,
        )

    ctx.gateways = GatewayRegistry(factories, context_for)
    return ctx
