"""What the payment core needs from the running service: the process-wide objects, named. The service's composition
root builds one object that has them all (``lephi.container.Container``); code here depends only on this shape."""

from __future__ import annotations

from typing import Protocol

import httpx

from adapters.base import PaymentGateway
from adapters.registry import GatewayRegistry
from payments.agency.cache import AgencyCache
from payments.agency.models import Agency
from payments.auth.cache import ApiKeyCache
from payments.core.config import PaymentSettings
from payments.core.db import Database
from payments.core.ratelimit import Limiter
from payments.gateway.config import GatewayConfig
from payments.idempotency.service import Idempotency


class AppContext(Protocol):
    @property
    def settings(self) -> PaymentSettings: ...
    @property
    def db(self) -> Database: ...
    @property
    def gateways(self) -> GatewayRegistry: ...
    @property
    def gateway_config(self) -> GatewayConfig: ...
    @property
    def idempotency(self) -> Idempotency: ...
    @property
    def http(self) -> httpx.Client | None:
        """The client gateways' adapters call their servers with (None: each adapter makes its own)."""

    @property
    def webhook_http(self) -> httpx.Client:
        """The client signed notifications go out with; see ``payments.webhooks.service``."""

    @property
    def api_limiter(self) -> Limiter:
        """Requests per minute per API key; fails open when its store is down."""

    @property
    def agencies(self) -> AgencyCache:
        """Agencies and their fee schedules, re-read when their version changes."""

    @property
    def api_keys(self) -> ApiKeyCache:
        """API keys held in memory, checked against the key version row (``payments.auth.cache``)."""

    @property
    def callback_agencies(self) -> set[str]:
        """Agency codes seen on callback URLs (agencies are never deleted, so only found codes are kept)."""

    def callback_url(self, gateway: str, agency_code: str | None = None) -> str: ...
    def agency_code(self, agency_id: str) -> str: ...
    def gateway(self, name: str, agency_id: str) -> PaymentGateway: ...
    def receipt_code(self, payment_id: str) -> str | None:
        """The public lookup code of the payment's receipt once issued: the payer page links to it."""


def callback_url(public_url: str, gateway: str, agency_code: str | None = None) -> str:
    """Where a gateway sends an agency's callbacks (the agency's code in the path picks its credentials)."""
    base = f"{public_url.rstrip('/')}/v1/gateways/{gateway}/callback"
    return f"{base}/{agency_code}" if agency_code else base


class ContextMethods:
    """The behaviour every context shares, for the composition root's container to inherit."""

    settings: PaymentSettings
    db: Database
    gateways: GatewayRegistry
    agency_codes: dict[str, str]

    def callback_url(self, gateway: str, agency_code: str | None = None) -> str:
        return callback_url(self.settings.public_url, gateway, agency_code)

    def agency_code(self, agency_id: str) -> str:
        """Agency codes never change, so they are cached for the life of the process."""
        code = self.agency_codes.get(agency_id)
        if code is None:
            with self.db.read() as s:
                agency = s.get(Agency, agency_id)
                if agency is None:
                    raise KeyError(agency_id)
                code = self.agency_codes[agency_id] = agency.code
        return code

    def gateway(self, name: str, agency_id: str) -> PaymentGateway:
        """The adapter holding this agency's merchant account at that gateway."""
        return self.gateways.get(name, self.agency_code(agency_id))
