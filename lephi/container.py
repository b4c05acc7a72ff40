"""The process-wide objects of one running service, built once and shared by requests, the worker and the CLI.

Domain packages never import this module: they declare what they need as Protocols (``payments.core.context.
AppContext``, ``invoices.context.ReceiptContext``) and the container has it all, under those names."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import httpx

from adapters.base import GatewayContext
from adapters.registry import GatewayRegistry, discover
from invoices.keys import SignerStore
from invoices.service import current_document
from lephi.settings import Settings
from payments.agency.cache import AgencyCache
from payments.agency.demo import DEMO_AGENCY, demo_vietqr_settings
from payments.auth.cache import ApiKeyCache
from payments.core import pii
from payments.core.config import Environment
from payments.core.context import ContextMethods, callback_url
from payments.core.db import Database, make_engine
from payments.core.ratelimit import Limiter, RateLimiter, RedisLimiter, RedisStore
from payments.gateway.config import GatewayConfig
from payments.gateway.sandbox_store import DbSandboxStore
from payments.idempotency.service import Idempotency


@dataclass(frozen=True, eq=False)
class Container(ContextMethods):
    settings: Settings
    db: Database
    gateways: GatewayRegistry
    gateway_config: GatewayConfig
    idempotency: Idempotency
    signers: SignerStore
    api_limiter: Limiter
    agencies: AgencyCache
    api_keys: ApiKeyCache
    lookup_limiter: Limiter
    webhook_http: httpx.Client
    http: httpx.Client | None = None
    agency_codes: dict[str, str] = field(default_factory=dict)
    callback_agencies: set[str] = field(default_factory=set)

    def receipt_code(self, payment_id: str) -> str | None:
        with self.db.read() as s:
            document = current_document(s, payment_id)
            return document.lookup_code if document is not None else None

    async def aclose_limiters(self) -> None:
        await self.api_limiter.aclose()
        await self.lookup_limiter.aclose()

    def close(self) -> None:
        self.webhook_http.close()
        self.db.dispose()


def webhook_client(settings: Settings) -> httpx.Client:
    # Never follow redirects: the registered URL is the only place a signed message goes. No proxy from the
    # environment: the connection must go to the address that was checked. No kept-alive connections: one made
    # (and certificate-checked) for one endpoint's name must not carry another endpoint's message to the same address.
    return httpx.Client(
        timeout=settings.webhook_timeout_seconds,
        follow_redirects=False,
        trust_env=False,
        limits=httpx.Limits(max_keepalive_connections=0),
    )


def _builtin_settings(settings: Settings, name: str) -> dict[str, Any]:
    if name == "sandbox":
        return {"secret": settings.sandbox_secret}
    return {}


def limiters(settings: Settings) -> tuple[Limiter, Limiter]:
    """The API's and the public lookup's limits: shared through Redis when it is configured, else per process.
    Redis down: the API goes on uncounted (refusing paying clients is worse than a runaway one for a while), the
    lookup refuses (its limit is what stops codes being guessed)."""
    if not settings.redis_url:
        return RateLimiter(settings.api_rate_per_minute), RateLimiter(settings.lookup_rate_per_minute)
    store = RedisStore(settings.redis_url, settings.redis_timeout_ms / 1000)
    return (
        RedisLimiter(store, "api", settings.api_rate_per_minute, fail_open=True),
        RedisLimiter(store, "lookup", settings.lookup_rate_per_minute, fail_open=False),
    )


def build_container(
    settings: Settings,
    db: Database | None = None,
    http: httpx.Client | None = None,
    webhook_http: httpx.Client | None = None,
) -> Container:
    # Before any row is read or written: the sealed columns open with it (payments.core.pii).
    pii.install(pii.keyring_from_settings(settings))
    database = db or Database(make_engine(settings.effective_database_url, settings), settings.db_threads)
    factories = discover()
    if not settings.sandbox_on:
        factories.pop("sandbox", None)
    config = GatewayConfig.load(settings.gateways_file)
    if settings.env is not Environment.production and settings.sandbox_on:
        # The demo agency's transfers and bank statements need a VietQR account; a gateways file's own wins.
        demo = config.agencies.setdefault(DEMO_AGENCY, {})
        demo.setdefault("vietqr", demo_vietqr_settings(settings.sandbox_secret))

    def context_for(name: str, agency_code: str | None) -> GatewayContext:
        return GatewayContext(
            name=name,
            public_url=settings.public_url,
            callback_url=callback_url(settings.public_url, name, agency_code),
            settings={**_builtin_settings(settings, name), **config.for_agency(name, agency_code)},
            http=http,
            store=DbSandboxStore(database) if name == "sandbox" else None,
        )

    api_limiter, lookup_limiter = limiters(settings)
    return Container(
        settings=settings,
        db=database,
        gateways=GatewayRegistry(factories, context_for),
        gateway_config=config,
        idempotency=Idempotency(database, settings),
        signers=SignerStore(settings),
        api_limiter=api_limiter,
        agencies=AgencyCache(),
        api_keys=ApiKeyCache(database, flush_seconds=settings.key_last_used_flush_seconds),
        lookup_limiter=lookup_limiter,
        webhook_http=webhook_http or webhook_client(settings),
        http=http,
    )
