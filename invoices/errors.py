"""Every error the invoices package raises on purpose, under one root, so a caller can tell an invoicing refusal
from a bug with one ``except InvoiceError``.

Errors a client can cause through the API (a replaced or adjusted document) are also the payments package's HTTP
errors, so the problem+json handler renders them without a mapping of its own. An unverifiable upload is mapped by
the endpoint instead: its :class:`Reason` goes into the response.
"""

from __future__ import annotations

from collections.abc import Sequence
from enum import StrEnum

from payments.core.errors import Conflict

__all__ = [
    "DocumentAdjusted",
    "DocumentReplaced",
    "EnvelopeError",
    "InvalidDocument",
    "InvoiceError",
    "MessageConflict",
    "MissingSigningKey",
    "OriginalNotIssued",
    "Reason",
    "SeriesExhausted",
    "SeriesNotOpen",
    "UnreadableReply",
]


class InvoiceError(Exception):
    """The root of the invoices package's errors."""


class Reason(StrEnum):
    """Why a document was refused; the value is a stable code for logs and API errors."""

    too_large = "too-large"
    parse_error = "parse-error"
    doctype = "doctype"
    malformed = "malformed"
    no_signature = "no-signature"
    untrusted_certificate = "untrusted-certificate"
    certificate_not_valid = "certificate-not-valid"
    algorithm = "algorithm"
    reference = "reference"
    digest_mismatch = "digest-mismatch"
    bad_signature = "bad-signature"
    wrong_seller = "wrong-seller"  # a valid signature, by a certificate not registered for the seller it names
    unsigned_content = "unsigned-content"  # comments, or elements the signature does not cover where none belong
    schema = "schema"  # not a document of the format (XSD)


class InvalidDocument(InvoiceError, ValueError):
    """The XML is not a document that may be signed, stored or trusted: unsafe or malformed XML, a signature that
    does not verify, or content the format (XSD) rejects. ``errors`` lists every problem found, one message each
    (for XSD violations, with its line and path); ``detail`` sums them up."""

    def __init__(self, reason: Reason, detail: str, errors: Sequence[str] = ()) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail
        self.errors = list(errors) or [detail]


class OriginalNotIssued(InvoiceError):
    """An adjustment waits for the document it corrects; the outbox runs the job again later."""


class DocumentReplaced(InvoiceError, Conflict):
    code, title = "document_replaced", "The document has been replaced; correct its replacement instead"


class DocumentAdjusted(InvoiceError, Conflict):
    code, title = "document_adjusted", "The document has adjustments and can no longer be replaced"


class SeriesExhausted(InvoiceError):
    """The series has used all 8-digit numbers this year; the agency must register a new series."""


class SeriesNotOpen(InvoiceError, Conflict):
    """No open series of the template is registered for the agency and the issue year (never registered, or
    closed): nothing is issued until the agency registers one. The issuing job fails with this message and stays
    in the outbox, to be retried once the series is registered."""

    code, title = "series_not_open", "No open receipt series is registered for this agency and year"


class MissingSigningKey(InvoiceError):
    """No key is configured for this agency: documents cannot be issued until one is."""


class EnvelopeError(InvoiceError, ValueError):
    """The envelope cannot be built as asked; nothing was stored or sent."""


class UnreadableReply(InvoiceError, ValueError):
    """Not a reply this service can read: not XML, a DOCTYPE, not a TDiep, or a field missing."""


class MessageConflict(InvoiceError):
    """A different message already lies under this MTDiep: it is never overwritten."""


class HandOffFailed(InvoiceError):
    """Messages for the tax authority could not be handed to the T-VAN folder; they stay queued."""
