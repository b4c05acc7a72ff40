"""The figures of the home page, per agency, read in one transaction.

Refund requests are built in their own package (``console.refunds``); until it is part of the service the figure is
left out (None), and it appears as soon as the ``refund_request`` table is known, with no change here."""

from __future__ import annotations

import importlib
from collections import defaultdict
from collections.abc import Collection
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Select, Table, func, select
from sqlmodel import Session, SQLModel, col

from console.reports.figures import day_start, today
from invoices.config import ReceiptSettings
from invoices.keys import registered_pins
from invoices.tax.tables import TaxMessage, TaxMessageStatus
from payments.agency.models import Agency
from payments.core.config import PaymentSettings
from payments.payment.models import Payment
from payments.payment.states import PAID
from payments.reconcile.models import ExceptionStatus, ReconException
from payments.transfer.models import HELD, BankCredit
from payments.webhooks.models import DeliveryStatus, WebhookDelivery

# Sent, or waiting to be, with no acceptance yet; or refused (a corrected message must follow).
NOT_ACCEPTED = (TaxMessageStatus.queued, TaxMessageStatus.sending, TaxMessageStatus.sent, TaxMessageStatus.rejected)
CERTIFICATE_WARNING_DAYS = 30


@dataclass
class Figures:
    payments_today: int = 0
    amount_today: int = 0
    reviews: int = 0  # payments a person must look at (late successes, conflicting callbacks)
    held_credits: int = 0
    refund_requests: int | None = None  # None: refund requests are not part of this service
    open_exceptions: int = 0
    failed_deliveries: int = 0
    failing_endpoints: int = 0
    tax_waiting: int = 0
    tax_rejected: int = 0
    certificate_until: datetime | None = None  # when the agency's newest signing certificate expires
    certificate_days: int | None = None


@dataclass
class Dashboard:
    total: Figures
    rows: list[tuple[Agency, Figures]] = field(default_factory=list)
    unassigned_credits: int = 0  # held credits whose reference names no agency: the province's to sort out


def refund_request_table() -> Table | None:
    """The refund requests' table, when that package is part of the service."""
    try:
        importlib.import_module("console.refunds.models")
    except ImportError:
        return None
    return SQLModel.metadata.tables.get("refund_request")


def _by_agency(s: Session, query: Select[*tuple[Any, ...]]) -> dict[str | None, int]:
    return {agency_id: int(n) for agency_id, n in s.execute(query).all()}


def gather(
    s: Session, agencies: Collection[Agency], settings: PaymentSettings, now: datetime | None = None
) -> Dashboard:
    """The figures of ``agencies``, each alone, and their total."""
    now = now or datetime.now(UTC)
    ids = [a.id for a in agencies]
    per: dict[str, Figures] = {a.id: Figures() for a in agencies}
    low = day_start(today())
    for agency_id, n, amount in s.execute(
        select(col(Payment.agency_id), func.count(), func.coalesce(func.sum(Payment.amount), 0))
        .where(
            col(Payment.agency_id).in_(ids),
            col(Payment.status).in_(sorted(PAID)),
            col(Payment.succeeded_at) >= low,
            col(Payment.succeeded_at) < low + timedelta(days=1),
        )
        .group_by(col(Payment.agency_id))
    ).all():
        per[agency_id].payments_today, per[agency_id].amount_today = int(n), int(amount)
    counts = {
        "reviews": select(col(Payment.agency_id), func.count())
        .where(col(Payment.agency_id).in_(ids), col(Payment.requires_review).is_(True))
        .group_by(col(Payment.agency_id)),
        "held_credits": select(col(BankCredit.agency_id), func.count())
        .where(col(BankCredit.agency_id).in_(ids), col(BankCredit.status).in_(sorted(HELD)))
        .group_by(col(BankCredit.agency_id)),
        "open_exceptions": select(col(ReconException.agency_id), func.count())
        .where(col(ReconException.agency_id).in_(ids), col(ReconException.status) == ExceptionStatus.open)
        .group_by(col(ReconException.agency_id)),
        "failed_deliveries": select(col(WebhookDelivery.agency_id), func.count())
        .where(col(WebhookDelivery.agency_id).in_(ids), col(WebhookDelivery.status) == DeliveryStatus.failed)
        .group_by(col(WebhookDelivery.agency_id)),
        "failing_endpoints": select(
            col(WebhookDelivery.agency_id), func.count(func.distinct(col(WebhookDelivery.endpoint_id)))
        )
        .where(col(WebhookDelivery.agency_id).in_(ids), col(WebhookDelivery.status) == DeliveryStatus.failed)
        .group_by(col(WebhookDelivery.agency_id)),
        "tax_waiting": select(col(TaxMessage.agency_id), func.count())
        .where(col(TaxMessage.agency_id).in_(ids), col(TaxMessage.status).in_(sorted(NOT_ACCEPTED)))
        .group_by(col(TaxMessage.agency_id)),
        "tax_rejected": select(col(TaxMessage.agency_id), func.count())
        .where(col(TaxMessage.agency_id).in_(ids), col(TaxMessage.status) == TaxMessageStatus.rejected)
        .group_by(col(TaxMessage.agency_id)),
    }
    for name, query in counts.items():
        for agency_id, n in _by_agency(s, query).items():
            if agency_id in per:
                setattr(per[agency_id], name, n)
    requests = refund_request_table()
    if requests is not None:
        found = _by_agency(
            s,
            select(requests.c.agency_id, func.count())
            .where(requests.c.agency_id.in_(ids), requests.c.status == "pending")
            .group_by(requests.c.agency_id),
        )
        for agency_id, figures in per.items():
            figures.refund_requests = found.get(agency_id, 0)
    if isinstance(settings, ReceiptSettings):
        for agency in agencies:
            pins = registered_pins(settings, [(agency.code, agency.tax_code)])
            if pins:
                until = max(p.certificate.not_valid_after_utc for p in pins)
                per[agency.id].certificate_until = until
                per[agency.id].certificate_days = (until - now).days
    board = Dashboard(total=_total(per.values()))
    board.rows = [(a, per[a.id]) for a in agencies]
    return board


def unassigned_credits(s: Session) -> int:
    """Held bank credits that name no agency: only the province sees them."""
    return int(
        s.execute(
            select(func.count())
            .select_from(BankCredit)
            .where(col(BankCredit.agency_id).is_(None), col(BankCredit.status).in_(sorted(HELD)))
        ).scalar_one()
    )


def _total(figures: Collection[Figures]) -> Figures:
    total = Figures()
    sums: dict[str, int] = defaultdict(int)
    names = (
        "payments_today",
        "amount_today",
        "reviews",
        "held_credits",
        "open_exceptions",
        "failed_deliveries",
        "failing_endpoints",
        "tax_waiting",
        "tax_rejected",
    )
    for f in figures:
        for name in names:
            sums[name] += getattr(f, name)
    for name in names:
        setattr(total, name, sums[name])
    requests = [f.refund_requests for f in figures if f.refund_requests is not None]
    total.refund_requests = sum(requests) if requests or refund_request_table() is not None else None
    soonest = [f for f in figures if f.certificate_until is not None]
    if soonest:
        first = min(soonest, key=lambda f: f.certificate_until or datetime.max.replace(tzinfo=UTC))
        total.certificate_until, total.certificate_days = first.certificate_until, first.certificate_days
    return total
