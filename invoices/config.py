"""The e-receipts' settings: the solution provider, signing keys, series, public lookup and T-VAN transmission."""

from __future__ import annotations

from datetime import time
from pathlib import Path

from pydantic import Field

from payments.core.config import PaymentSettings

DEV_PROVIDER_TAX_CODE = "0000000000"
DEV_PROVINCE = "Tỉnh Demo"  # the demo data's province


class ReceiptSettings(PaymentSettings):
    # E-receipts: the tax code of the e-invoice solution provider (MSTTCGP: whoever operates this service), required
    # in production; and where agencies' signing keys are (``<agency code>.p12`` with LEPHI_SIGNING_PASSWORD, or
    # ``<agency code>.key.pem`` + ``.cert.pem``).
    provider_tax_code: str | None = Field(default=None, pattern=r"^[0-9]{10}(-[0-9]{3})?$")
    signing_dir: Path | None = None
    signing_password: str | None = None
    receipt_series: str = Field(default="K26TLP", pattern=r"^[CK]\d{2}[TDLMNBGH][A-Z]{2}$")
    # Public receipt lookup by lookup code (no API key): requests per minute per client address.
    lookup_rate_per_minute: int = Field(default=20, ge=1)

    # Transmission to the tax authority through a licensed T-VAN provider's file-drop folder (docs/receipts.md):
    # messages are written to ``<tax_drop_dir>/outgoing``, the provider's agent writes replies to ``.../replies``.
    tax_transmission: bool = True
    tax_drop_dir: Path | None = None
    # MNGui: the sender code the T-VAN provider assigned (defaults to "V" + the provider tax code).
    tax_sender_code: str | None = Field(default=None, pattern=r"^[A-Z0-9]{1,14}$")
    # The tax office that manages the agencies (MCQT, TCQT) and the place name (DDanh) printed on 04/SS-HĐĐT
    # notices. Without an office code no notice is queued (logged as tax.notice_not_queued).
    tax_office_code: str | None = None
    tax_office_name: str = "Cục Thuế"
    # The province this deployment serves (required in production): the place printed on notices unless
    # LEPHI_NOTICE_PLACE names another.
    province: str = Field(default="", max_length=100)
    notice_place: str | None = Field(default=None, min_length=1, max_length=100)
    # How often the worker hands queued messages to the T-VAN folder and reads its replies.
    tax_sync_seconds: float = Field(default=60.0, gt=0)

    # The daily summary of e-receipts (01/TH-BLĐT, invoices/tax/summary.py): sent each day from this local time
    # (Vietnam), so that it is sent on the day of issue; documents issued later that day go in a supplementary one.
    receipt_summary_at: time = time(22, 0)
    receipt_summary_check_seconds: float = Field(default=300.0, gt=0)

    @property
    def effective_provider_tax_code(self) -> str:
        # Outside production an obvious placeholder: never the demo agency's own tax code.
        return self.provider_tax_code or DEV_PROVIDER_TAX_CODE

    @property
    def effective_notice_place(self) -> str:
        return self.notice_place or self.province or DEV_PROVINCE

    @property
    def effective_tax_drop_dir(self) -> Path:
        return self.tax_drop_dir or self.data_dir / "tax-drop"

    @property
    def effective_tax_sender_code(self) -> str:
        return self.tax_sender_code or f"V{self.effective_provider_tax_code}"
