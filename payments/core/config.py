"""The payment core's settings. The service reads them, with the other packages' settings, from the environment
(``LEPHI_`` prefix) in its composition root."""

from __future__ import annotations

import ipaddress
import re
from enum import StrEnum
from pathlib import Path
from typing import Annotated

from pydantic import BaseModel, Field, IPvAnyNetwork, SecretStr, field_validator
from redis.asyncio.connection import parse_url

# Built-in secrets make the service start with nothing configured on a developer's machine; outside development
# they are refused so that a production deployment cannot run with a value published in this repository.
DEV_SANDBOX_SECRET = "dev-only-sandbox-secret-do-not-use-in-production"  # noqa: S105
# A DNS name, optionally "*." for every subdomain (LEPHI_WEBHOOK_ALLOWED_PRIVATE_HOSTS).
_HOST_PATTERN = re.compile(r"(\*\.)?([a-z0-9_]([a-z0-9_-]{0,61}[a-z0-9_])?\.)*[a-z0-9_]([a-z0-9_-]{0,61}[a-z0-9_])?")


class Environment(StrEnum):
    development = "development"
    test = "test"
    production = "production"


class PaymentSettings(BaseModel):
    """What the payment core reads; the service's settings (read from the environment) extend it."""

    env: Environment = Environment.development
    data_dir: Path = Path("var")
    database_url: str = ""
    public_url: str = "http://127.0.0.1:8000"

    sqlite_busy_timeout_ms: int = Field(default=10_000, ge=100)
    sqlite_synchronous: str = Field(default="FULL", pattern="^(FULL|NORMAL|EXTRA)$")
    db_pool_size: int = Field(default=10, ge=1, le=200)
    # The PostgreSQL URL points at PgBouncer in transaction pooling (docs/deploy.md#pgbouncer): no server-side
    # prepared statements. PgBouncer before 1.21 (Debian 12 ships 1.18) runs each transaction on whichever server
    # connection is free, where the statement psycopg prepared after 5 runs is missing, or another client's of the
    # same name exists ("prepared statement _pg3_0 already exists"). A worker then polls instead of LISTEN, which such
    # a pool does not carry.
    db_pgbouncer: bool = False
    # Threads for the hot write paths' database work, 0 to run it on the event loop; unset: 0 on SQLite, 4 on
    # PostgreSQL (see Database.offload).
    db_threads: int | None = Field(default=None, ge=0, le=64)
    # PostgreSQL: the hot paths' transactions (dossier and payment create, callbacks) run on the event loop through
    # asyncpg, at most this many at once, instead of psycopg on ``db_threads`` threads (docs/deploy.md).
    db_async: bool = True
    db_async_concurrency: int = Field(default=8, ge=1, le=64)

    max_body_bytes: int = Field(default=64 * 1024, ge=1024)
    # Requests per minute per API key, answered 429 with Retry-After beyond it: across all processes when redis_url
    # is set, per process otherwise.
    api_rate_per_minute: int = Field(default=1200, ge=1)
    # Redis holding the rate limits' counts (redis://host:6379/0); empty: each process counts for itself.
    redis_url: str = ""
    # Connect and reply timeout for each rate limit check: a hanging Redis delays a request by about this much.
    redis_timeout_ms: int = Field(default=100, ge=10, le=5000)
    # How often each process writes when its API keys were last used (one UPDATE for all of them): the console's
    # "last used" lags by at most this much, and a request never pays for a write of its own.
    key_last_used_flush_seconds: float = Field(default=60.0, gt=0)
    page_size_default: int = 20
    page_size_max: int = 100

    # Personal data at rest (payments.core.pii, docs/privacy.md): the AES-256 key, base64, or a file holding it
    # (first line current, further lines older keys still readable); neither set outside production: a key made once
    # in data_dir/pii.key. Older keys during a rotation: comma-separated base64.
    pii_key: SecretStr | None = None
    pii_key_file: Path | None = None
    pii_old_keys: SecretStr | None = None
    # Days after a dossier is closed (paid or refunded) before the payer's e-mail and phone are erased.
    pii_retention_days: int = Field(default=365, ge=1, le=36500)
    # Dossiers the retention job and the key rotation handle per transaction.
    pii_batch_size: int = Field(default=200, ge=1, le=10_000)
    # How often the worker runs the retention job.
    pii_retention_every_seconds: float = Field(default=3600.0, gt=0)

    idempotency_ttl_hours: int = Field(default=24, ge=24)
    # A request that crashed mid-way holds its key this long before a retry may take it over.
    idempotency_lease_seconds: int = Field(default=60, ge=1)

    payment_expiry_seconds: int = Field(default=90 * 60, ge=60)
    # Status queries for a payment still pending, each delay counted from the previous query: they settle a payment
    # whose callback was lost (to a dead API process, say). A gateway with a status query gets one more first, after
    # ``requery_first_seconds`` (0: none), so that such a payment is settled in seconds rather than minutes.
    requery_first_seconds: int = Field(default=30, ge=0)
    requery_schedule_seconds: list[int] = Field(default=[300, 3600, 86400])

    run_worker: bool = True
    worker_poll_seconds: float = Field(default=1.0, gt=0)
    worker_batch_size: int = Field(default=20, ge=1)
    worker_lease_seconds: int = Field(default=120, ge=5)
    # Jobs that wait on the network (webhook deliveries, gateway queries, the T-VAN hand-off) run on this many
    # threads per worker; receipt issuance is CPU-bound and stays one at a time.
    worker_threads: int = Field(default=4, ge=1, le=32)
    # On SIGTERM a worker finishes its running jobs for at most this long, then hands the rest back to the queue.
    worker_shutdown_seconds: float = Field(default=20.0, ge=0)
    # On SIGTERM ``lephi serve`` stops accepting and lets in-flight requests finish for at most this long.
    shutdown_seconds: float = Field(default=20.0, ge=0)

    # TOML file with each gateway's defaults and each agency's merchant credentials (docs/adapters.md).
    gateways_file: Path | None = None

    sandbox_enabled: bool | None = None
    sandbox_secret: str = DEV_SANDBOX_SECRET

    # Signed notifications to client systems (Standard Webhooks): per-attempt timeout and the retry schedule.
    webhook_timeout_seconds: float = Field(default=10.0, gt=0)
    webhook_retry_schedule_seconds: list[int] = Field(default=[5, 30, 300, 1800, 7200, 21600, 86400])
    # Webhook targets (docs/api.md#webhooks): ports beyond 443/8443 (and 80/8080 outside production), and the
    # province's own hosts that may have private addresses: host names (``*.`` for subdomains) or CIDR networks.
    # Metadata, link-local and unspecified addresses are refused whatever is listed here.
    webhook_allowed_ports: list[Annotated[int, Field(ge=1, le=65535)]] = Field(default=[])
    webhook_allowed_private_hosts: list[str] = Field(default=[])

    log_level: str = "INFO"
    log_json: bool = True

    # Reverse proxies whose X-Forwarded-For / X-Forwarded-Proto are believed (addresses or CIDRs, JSON list). Empty:
    # the direct peer is the client, whatever headers it sends (docs/operations.md).
    trusted_proxies: list[IPvAnyNetwork] = Field(default=[])
    # Key that signs the payer pages' form tokens (CSRF); required in production, where several processes serve
    # pages. Unset in development: a random key per process (a form rendered by one process is refused by another).
    form_secret: str | None = Field(default=None, min_length=32)

    @field_validator("redis_url")
    @classmethod
    def _redis_scheme(cls, url: str) -> str:
        # A mistyped URL must stop the start, not fail each request's rate limit check.
        if not url:
            return url
        if not url.startswith(("redis://", "rediss://", "unix://")):
            raise ValueError("LEPHI_REDIS_URL must start with redis://, rediss:// or unix://")
        try:
            parse_url(url)
        except ValueError as exc:
            raise ValueError(f"LEPHI_REDIS_URL is not a Redis URL: {exc}") from None
        return url

    @field_validator("webhook_allowed_private_hosts")
    @classmethod
    def _hosts_or_networks(cls, entries: list[str]) -> list[str]:
        # A mistyped network ("10.0.0.0/33") must stop the start, not become a host name that matches nothing.
        cleaned = [entry.strip().lower() for entry in entries]
        for entry in cleaned:
            try:
                ipaddress.ip_network(entry, strict=False)
            except ValueError:
                if not _HOST_PATTERN.fullmatch(entry):
                    raise ValueError(f"{entry!r} is neither a host name nor a CIDR network") from None
        return cleaned

    @property
    def sandbox_on(self) -> bool:
        """The sandbox gateway takes no real money, so it is off in production unless explicitly enabled."""
        if self.sandbox_enabled is None:
            return self.env is not Environment.production
        return self.sandbox_enabled

    @property
    def effective_database_url(self) -> str:
        return self.database_url or f"sqlite:///{(self.data_dir / 'lephi.db').as_posix()}"
