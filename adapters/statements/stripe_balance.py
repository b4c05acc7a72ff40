"""Stripe's balance history (``GET /v1/balance_transactions``) as statement lines.

Stripe has no settlement file to upload: its balance transactions are the settlement record. They are fetched one
page at a time (``starting_after`` cursor), with ``source`` expanded so that a charge or refund names its
PaymentIntent, which is Lephi's gateway reference for a Stripe payment.

Mapping of one balance transaction:

- ``external_id``: its id (``txn_...``); ``source_line``: its position in the listing (1-based, newest first, as
  Stripe lists them).
- ``kind``: ``charge``/``payment`` -> payment; ``refund``, ``payment_refund``, ``payment_failure_refund``,
  ``refund_failure`` -> refund; ``stripe_fee``, ``tax_fee`` -> fee; ``payout``, ``payout_cancel``,
  ``payout_failure`` -> payout; anything else -> other.
- ``amount``: ``amount`` as Stripe signs it (a refund or a payout is negative); ``fee``: ``fee``. VND is a
  zero-decimal currency at Stripe, so both are whole đồng already.
- ``booked_on``: ``created`` in GMT+7; ``value_on``: ``available_on`` in GMT+7.
- ``reference``: the PaymentIntent id of the source charge or refund; for other sources the source id.
- ``description``: ``description``.

Balance transactions are in the account's settlement currency. An account settling in anything but VND (Stripe
converts VND charges into it) gives lines this importer refuses: they are never converted here.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from datetime import date, datetime
from typing import Any

import httpx

from adapters.base import GatewayTechnicalError
from adapters.http import request_with_retries
from adapters.statements.base import GMT7, LineKind, StatementError, StatementLine, check_currency

PATH = "/v1/balance_transactions"
PAGE_SIZE = 100  # Stripe's maximum for list endpoints

TYPE_KINDS = {
    "charge": LineKind.payment,
    "payment": LineKind.payment,
    "refund": LineKind.refund,
    "payment_refund": LineKind.refund,
    "payment_failure_refund": LineKind.refund,
    "refund_failure": LineKind.refund,
    "stripe_fee": LineKind.fee,
    "tax_fee": LineKind.fee,
    "payout": LineKind.payout,
    "payout_cancel": LineKind.payout,
    "payout_failure": LineKind.payout,
}


def stripe_balance_lines(
    client: httpx.Client, *, created_from: int, created_to: int, page_size: int = PAGE_SIZE
) -> Iterator[StatementLine]:
    """Balance transactions created in [created_from, created_to) (unix seconds).

    ``client`` carries the API base (``base_url``, e.g. ``https://api.stripe.com``) and the
    ``Authorization: Bearer sk_...`` header. Network errors, 429 and 5xx are retried; a listing that still cannot
    be read raises ``GatewayTechnicalError``; a balance transaction that cannot be mapped raises
    ``StatementError``.
    """
    if not 1 <= page_size <= PAGE_SIZE:
        raise ValueError(f"page_size must be 1..{PAGE_SIZE}")
    cursor: str | None = None
    position = 0
    while True:
        page = _page(client, created_from, created_to, page_size, cursor)
        data = page["data"]
        for item in data:
            position += 1
            line = balance_line(item, position)
            # Checked again here: a server that ignored the filter must not bring another day's lines in.
            if created_from <= int(item["created"]) < created_to:
                yield line
        if not page.get("has_more"):
            return
        if not data:  # a cursor that cannot advance would loop for ever
            raise GatewayTechnicalError(f"Stripe list {PATH}: has_more with an empty page")
        cursor = str(data[-1]["id"])


def _page(client: httpx.Client, created_from: int, created_to: int, limit: int, cursor: str | None) -> Any:
    params: list[tuple[str, str | int]] = [
        ("limit", limit),
        ("created[gte]", created_from),
        ("created[lt]", created_to),
        ("expand[]", "data.source"),
    ]
    if cursor is not None:
        params.append(("starting_after", cursor))
    response = request_with_retries(client, "GET", PATH, params=params)
    if not response.is_success:
        raise GatewayTechnicalError(f"Stripe list {PATH}: HTTP {response.status_code} {response.text[:200]}")
    try:
        page = response.json()
    except ValueError as exc:
        raise GatewayTechnicalError(f"Stripe list {PATH}: the answer is not JSON") from exc
    if not isinstance(page, dict) or not isinstance(page.get("data"), list):
        raise GatewayTechnicalError(f"Stripe list {PATH}: the answer has no data list")
    return page


def balance_line(item: Mapping[str, Any], position: int) -> StatementLine:
    """One balance transaction (a Stripe API object, ``source`` expanded or not) as a line."""
    txn_id = str(item.get("id") or "")
    try:
        amount, fee, created = _int(item["amount"]), _int(item.get("fee", 0)), _int(item["created"])
        available_on = item.get("available_on")
        currency = str(item["currency"])
    except (KeyError, TypeError, ValueError) as exc:
        raise StatementError(f"balance transaction {txn_id!r} is malformed ({exc})", position) from None
    if not txn_id:
        raise StatementError("a balance transaction has no id", position)
    try:
        check_currency(currency, position)
    except StatementError as exc:
        raise StatementError(f"balance transaction {txn_id}: {exc.message}", position) from None
    return StatementLine(
        source_line=position,
        external_id=txn_id,
        kind=TYPE_KINDS.get(str(item.get("type")), LineKind.other),
        amount=amount,
        fee=fee,
        booked_on=_day(created, position),
        value_on=None if available_on is None else _day(available_on, position),
        reference=_reference(item.get("source")),
        description=str(item.get("description") or ""),
    )


def _int(value: Any) -> int:
    if type(value) is not int:  # bool is an int subclass, and a float amount would hide a wrong currency
        raise ValueError(f"{value!r} is not an integer")
    return value


def _day(epoch: object, position: int) -> date:
    try:
        return datetime.fromtimestamp(_int(epoch), GMT7).date()
    except (ValueError, OverflowError, OSError):  # not an integer, or beyond what the platform's time functions take
        raise StatementError(f"{epoch!r} is not a Stripe timestamp", position) from None


def _reference(source: Any) -> str:
    """The PaymentIntent id behind a charge or refund; otherwise the source's own id."""
    if isinstance(source, Mapping):
        intent = source.get("payment_intent")
        if isinstance(intent, Mapping):
            intent = intent.get("id")
        return str(intent or source.get("id") or "")
    return str(source or "")
