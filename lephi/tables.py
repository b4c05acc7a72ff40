"""Imports every table so that the metadata (and Alembic) sees them all."""

from sqlmodel import SQLModel

from console.audit.models import AuditHead, AuditLog
from console.fees.models import FeeImport
from console.refunds.models import RefundRequest
from console.staff.models import LoginFailure, ResetRequest, StaffPolicy, StaffSession, StaffToken, StaffUser
from invoices.tables import Document, ReceiptSeries, SeriesCounter
from invoices.tax.tables import ReceiptSummary, TaxMessage, TaxReply
from payments.agency.models import Agency, AgencyLogo, FeeScheduleLine, FeeScheduleVersion, Procedure
from payments.auth.models import ApiKey
from payments.dossier.models import Dossier, DossierFeeLine
from payments.gateway.models import SandboxTransaction
from payments.idempotency.models import IdempotencyRecord
from payments.outbox.models import OutboxJob
from payments.payment.models import GatewayInbox, Payment, PaymentEvent, Refund
from payments.reconcile.models import (
    ReconException,
    ReconExceptionEvent,
    ReconRun,
    StatementEntry,
    StatementImport,
)
from payments.transfer.models import BankCredit
from payments.webhooks.models import WebhookDelivery, WebhookEndpoint, WebhookMessage

metadata = SQLModel.metadata

__all__ = [
    "Agency",
    "AgencyLogo",
    "ApiKey",
    "AuditHead",
    "AuditLog",
    "BankCredit",
    "Document",
    "Dossier",
    "DossierFeeLine",
    "FeeImport",
    "FeeScheduleLine",
    "FeeScheduleVersion",
    "GatewayInbox",
    "IdempotencyRecord",
    "LoginFailure",
    "OutboxJob",
    "Payment",
    "PaymentEvent",
    "Procedure",
    "ReceiptSeries",
    "ReceiptSummary",
    "ReconException",
    "ReconExceptionEvent",
    "ReconRun",
    "Refund",
    "RefundRequest",
    "ResetRequest",
    "SandboxTransaction",
    "SeriesCounter",
    "StaffPolicy",
    "StaffSession",
    "StaffToken",
    "StaffUser",
    "StatementEntry",
    "StatementImport",
    "TaxMessage",
    "TaxReply",
    "WebhookDelivery",
    "WebhookEndpoint",
    "WebhookMessage",
    "metadata",
]
