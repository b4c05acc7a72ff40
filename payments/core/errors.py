"""Domain errors with an HTTP status and a stable code, rendered as RFC 9457 problem+json."""

from __future__ import annotations

from typing import Any, ClassVar

PROBLEM_TYPE_BASE = "urn:lephi:problem:"


class LephiError(Exception):
    """Base of every error the API reports on purpose. ``code`` is stable; clients may branch on it."""

    status: ClassVar[int] = 400
    code: ClassVar[str] = "bad_request"
    title: ClassVar[str] = "Bad request"
    # A transient error is not stored under an Idempotency-Key: the same request may succeed later.
    transient: ClassVar[bool] = False

    def __init__(self, detail: str | None = None, **extra: Any) -> None:
        super().__init__(detail or self.title)
        self.detail = detail or self.title
        self.extra = extra
        self.headers: dict[str, str] = {}

    def problem(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "type": PROBLEM_TYPE_BASE + self.code,
            "title": self.title,
            "status": self.status,
            "detail": self.detail,
            "code": self.code,
        }
        body.update(self.extra)
        return body


class MalformedRequest(LephiError):
    status, code, title = 400, "malformed_request", "The request body could not be read"


class ValidationFailed(LephiError):
    status, code, title = 422, "validation_error", "The request is not valid"


class PayloadTooLarge(LephiError):
    status, code, title = 413, "payload_too_large", "The request body is too large"


class Unauthenticated(LephiError):
    status, code, title = 401, "unauthenticated", "A valid API key is required"


class Forbidden(LephiError):
    status, code, title = 403, "insufficient_scope", "The API key lacks the scope for this operation"


class ForeignOrigin(LephiError):
    status, code, title = 403, "foreign_origin", "The request was sent from another site"


class RateLimited(LephiError):
    status, code, title = 429, "rate_limited", "Too many requests"
    transient = True


class NotFound(LephiError):
    status, code, title = 404, "not_found", "Not found"


class Conflict(LephiError):
    status, code, title = 409, "conflict", "The request conflicts with the current state"


class IdempotencyKeyMissing(LephiError):
    status, code, title = 400, "idempotency_key_missing", "An Idempotency-Key header is required"


class IdempotencyKeyInvalid(LephiError):
    status, code, title = 400, "idempotency_key_invalid", "The Idempotency-Key header is not valid"


class IdempotencyKeyReused(LephiError):
    status, code, title = (
        422,
        "idempotency_key_reused",
        "This Idempotency-Key was used with a different request",
    )


class IdempotencyKeyInProgress(LephiError):
    status, code, title = (
        409,
        "idempotency_key_in_progress",
        "A request with this Idempotency-Key is in progress",
    )
    transient = True


class PaymentInProgress(Conflict):
    code, title = "payment_in_progress", "The dossier already has a payment in progress"
    transient = True


class DossierNotPayable(Conflict):
    code, title = "dossier_not_payable", "The dossier cannot be paid in its current state"


class DossierLocked(Conflict):
    code, title = "dossier_locked", "The dossier has a payment in progress or completed and cannot be changed"


class InvalidTransition(Conflict):
    code, title = "invalid_transition", "The payment cannot make this change in its current state"


class RefundExceedsAvailable(LephiError):
    status, code, title = 422, "refund_exceeds_available", "The refund is larger than the amount available"


class MethodNotEnabled(LephiError):
    status, code, title = 422, "method_not_enabled", "This payment method is not enabled for the agency"


class GatewayUnavailable(LephiError):
    status, code, title = 503, "gateway_unavailable", "The payment gateway could not be reached; retry later"
    transient = True


class DatabaseUnavailable(LephiError):
    status, code, title = 503, "database_unavailable", "The database could not be reached; retry later"
    transient = True


class UnknownGateway(NotFound):
    code, title = "unknown_gateway", "No such payment gateway"


class AgencyDeactivated(Conflict):
    code, title = "agency_deactivated", "The agency is deactivated and takes no new dossiers or payments"
