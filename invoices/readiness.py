"""Whether an agency is ready to issue e-receipts only, as the 2026 rules require from 1 January 2027
(invoices/rules2026.py; the guide is docs/receipts.md). Each check says what is missing, in words an operator acts
on; nothing is changed."""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import UTC, date, datetime, time

from sqlmodel import Session, select

from invoices import rules2026
from invoices.context import ReceiptContext
from invoices.errors import InvoiceError
from invoices.series import receipt_template
from invoices.tables import ReceiptSeries, SeriesOrigin, SeriesStatus
from invoices.tax.notice import check_office_code
from payments.agency.models import Agency

__all__ = ["Check", "readiness"]


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str


def readiness(s: Session, ctx: ReceiptContext, agency: Agency, on: date | None = None) -> list[Check]:
    """The checks for issuing from ``on`` (the day e-receipts become the only receipts, unless given)."""
    on = on or rules2026.E_RECEIPTS_ONLY_FROM
    return [_certificate(ctx, agency, on), _series(s, agency, on), _tvan(ctx), _office(ctx)]


def _certificate(ctx: ReceiptContext, agency: Agency, on: date) -> Check:
    name = "certificate"
    try:
        certificate = ctx.signers.for_agency(agency.code, agency.tax_code, agency.name).certificate
    except (InvoiceError, OSError, ValueError, TypeError) as exc:
        return Check(name, False, f"no usable signing key and certificate: {exc}")
    until = certificate.not_valid_after_utc
    # Valid through the whole first day, and not only before it starts.
    if until < datetime.combine(on, time.max, tzinfo=UTC):
        return Check(name, False, f"the signing certificate expires on {until:%Y-%m-%d}, before {on:%Y-%m-%d}")
    return Check(name, True, f"valid until {until:%Y-%m-%d}")


def _series(s: Session, agency: Agency, on: date) -> Check:
    name = "series"
    template = receipt_template()
    rows = s.exec(
        select(ReceiptSeries).where(
            ReceiptSeries.agency_id == agency.id,
            ReceiptSeries.template == template,
            ReceiptSeries.year == on.year,
            ReceiptSeries.status == SeriesStatus.open,
        )
    ).all()
    registered = [r for r in rows if r.origin is SeriesOrigin.registered]
    if not registered:
        return Check(
            name,
            False,
            f"no series of template {template} registered for {on.year}: "
            f"lephi receipts series register --agency {agency.code} --series K{on.year % 100:02d}T..",
        )
    return Check(name, True, ", ".join(f"{r.template}{r.series}" for r in registered))


def _tvan(ctx: ReceiptContext) -> Check:
    name = "t-van"
    settings = ctx.settings
    missing = []
    if not settings.tax_transmission:
        missing.append("transmission is off (LEPHI_TAX_TRANSMISSION)")
    if not settings.provider_tax_code:
        missing.append("LEPHI_PROVIDER_TAX_CODE is not set")
    if settings.tax_drop_dir is None:
        missing.append("LEPHI_TAX_DROP_DIR is not set")
    else:
        outgoing = settings.tax_drop_dir / "outgoing"
        if not (outgoing.is_dir() and os.access(outgoing, os.W_OK)):
            missing.append(f"{outgoing} is not a writable folder")
    if missing:
        return Check(name, False, "; ".join(missing))
    return Check(name, True, f"sender {settings.effective_tax_sender_code}, folder {settings.tax_drop_dir}")


def _office(ctx: ReceiptContext) -> Check:
    name = "tax-office"
    code = ctx.settings.tax_office_code
    if not code:
        return Check(name, False, "LEPHI_TAX_OFFICE_CODE is not set: 04/SS-HĐĐT notices cannot be sent")
    try:
        check_office_code(code)
    except ValueError:
        return Check(name, False, f"LEPHI_TAX_OFFICE_CODE {code!r} is not a tax office code (3-5 digits)")
    return Check(name, True, code)
