"""The service's settings, read from the environment with the prefix ``LEPHI_`` (and a ``.env`` file)."""

from __future__ import annotations

from functools import lru_cache

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from console.config import ConsoleSettings
from invoices.config import ReceiptSettings
from payments.core.config import DEV_SANDBOX_SECRET, Environment


class Settings(ReceiptSettings, ConsoleSettings, BaseSettings):
    model_config = SettingsConfigDict(env_prefix="LEPHI_", env_file=".env", extra="ignore")

    # Prometheus metrics (lephi.metrics, docs/operations.md): off by default; when on, each process serves them on
    # this address (host:port), which stays on the loopback interface unless the operator names another.
    metrics: bool = False
    metrics_address: str = "127.0.0.1:9464"
    # How long the gauges read from the database are reused between scrapes.
    metrics_cache_seconds: float = Field(default=5.0, ge=0, le=300)

    @field_validator("metrics_address")
    @classmethod
    def _host_and_port(cls, value: str) -> str:
        host, _, port = value.rpartition(":")
        if not host or not port.isdigit() or not 0 <= int(port) <= 65535:
            raise ValueError("LEPHI_METRICS_ADDRESS must be host:port, e.g. 127.0.0.1:9464")
        return value

    @model_validator(mode="after")
    def _refuse_dev_defaults(self) -> Settings:
        if self.env is Environment.production:
            if self.sandbox_on and self.sandbox_secret == DEV_SANDBOX_SECRET:
                raise ValueError("LEPHI_SANDBOX_SECRET must be set to a secret of your own outside development")
            if not self.database_url:
                raise ValueError("LEPHI_DATABASE_URL must be set outside development")
            if not self.form_secret:
                raise ValueError("LEPHI_FORM_SECRET (32 characters or more) must be set: it signs the pay forms")
            if not self.provider_tax_code:
                raise ValueError("LEPHI_PROVIDER_TAX_CODE (MSTTCGP, the service operator's tax code) must be set")
            if not self.province and not self.notice_place:
                raise ValueError("LEPHI_PROVINCE (the province this service runs for) must be set")
            if not self.pii_key and not self.pii_key_file:
                raise ValueError("LEPHI_PII_KEY or LEPHI_PII_KEY_FILE (payers' personal data key) must be set")
        return self


@lru_cache
def get_settings() -> Settings:
    return Settings()
