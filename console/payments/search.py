"""The payments search: its filters read from the query string, and the SQL that applies them.

Every query starts from the agency's payments (or, for a province admin who named none, every agency's), so another
agency's rows never leave the database. Filters are checked before any query: a value our form cannot have sent (a
non-number amount, an impossible date, an unknown status, an over-long text, control characters, a cursor we did not
make) raises ``BadFilter``, which the pages answer with the 400 page."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta, timezone
from typing import Any

from sqlalchemy import and_, func, or_
from sqlalchemy import select as select_columns
from sqlmodel import Session, col, select

from invoices.tables import Document, DocumentPurpose
from payments.agency.models import Agency
from payments.core import pii
from payments.core.errors import ValidationFailed
from payments.core.pagination import decode_cursor, encode_cursor
from payments.dossier.models import Dossier
from payments.dossier.schemas import ID_NUMBER_PATTERN
from payments.payment.models import Payment
from payments.payment.states import PaymentStatus

VIETNAM = timezone(timedelta(hours=7))
_DAY = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
PAGE_SIZE = 50
MIN_YEAR, MAX_YEAR = 1970, 9998
MAX_AMOUNT = 999_999_999_999_999
STATUSES = [s.value for s in PaymentStatus]
# The query parameters the filter form sends, with the longest value each may have.
LIMITS = {"dossier": 21, "payer": 400, "amount": 24, "min": 24, "max": 24, "from": 10, "to": 10, "method": 40}
LIMITS |= {"status": 20, "before": 200, "after": 200}


class BadFilter(Exception):
    """A filter value our form cannot have sent."""


@dataclass(frozen=True)
class Filters:
    dossier: str = ""
    payer: str = ""
    amount: int | None = None
    min_amount: int | None = None
    max_amount: int | None = None
    since: date | None = None
    until: date | None = None
    method: str = ""
    status: PaymentStatus | None = None

    def query(self) -> dict[str, str]:
        """The filters as query parameters again, for links that keep them (pagination, exports)."""
        values = {
            "dossier": self.dossier,
            "payer": self.payer,
            "amount": "" if self.amount is None else str(self.amount),
            "min": "" if self.min_amount is None else str(self.min_amount),
            "max": "" if self.max_amount is None else str(self.max_amount),
            "from": self.since.isoformat() if self.since else "",
            "to": self.until.isoformat() if self.until else "",
            "method": self.method,
            "status": self.status.value if self.status else "",
        }
        return {k: v for k, v in values.items() if v}


@dataclass(frozen=True)
class Cursor:
    """Where a page starts: rows older than ``before``, or rows newer than ``after`` (the newer link)."""

    before: tuple[datetime, str] | None = None
    after: tuple[datetime, str] | None = None


def _text(q: Mapping[str, str], name: str) -> str:
    value = q.get(name, "").strip()
    if len(value) > LIMITS[name] or any(ord(c) < 32 or ord(c) == 127 or c == "\ufffd" for c in value):
        raise BadFilter
    return value


def _amount(q: Mapping[str, str], name: str) -> int | None:
    # Staff write amounts with thousands separators ("200.000" or "200,000"); đồng have no minor unit.
    value = _text(q, name).replace(".", "").replace(",", "").replace(" ", "").replace("\u00a0", "")
    if not value:
        return None
    if not value.isascii() or not value.isdigit() or int(value) > MAX_AMOUNT:
        raise BadFilter
    return int(value)


def _day(q: Mapping[str, str], name: str) -> date | None:
    value = _text(q, name)
    if not value:
        return None
    # The date input's own form only: fromisoformat would also take "20261201" and the like.
    if not _DAY.fullmatch(value):
        raise BadFilter
    try:
        day = date.fromisoformat(value)
    except ValueError as exc:
        raise BadFilter from exc
    # Days at the ends of the calendar would overflow once moved to UTC or to the next day.
    if not MIN_YEAR <= day.year <= MAX_YEAR:
        raise BadFilter
    return day


def parse_filters(q: Mapping[str, str]) -> Filters:
    dossier = _text(q, "dossier")
    # A star is allowed only at the end, where it asks for a prefix.
    if "*" in dossier.rstrip("*") or dossier.count("*") > 1:
        raise BadFilter
    method = _text(q, "method")
    if method and not all(c.isascii() and (c.isalnum() or c in "_-") for c in method):
        raise BadFilter
    status_text = _text(q, "status")
    if status_text and status_text not in STATUSES:
        raise BadFilter
    return Filters(
        dossier=dossier,
        payer=_text(q, "payer"),
        amount=_amount(q, "amount"),
        min_amount=_amount(q, "min"),
        max_amount=_amount(q, "max"),
        since=_day(q, "from"),
        until=_day(q, "to"),
        method=method,
        status=PaymentStatus(status_text) if status_text else None,
    )


def parse_cursor(q: Mapping[str, str]) -> Cursor:
    before, after = _text(q, "before"), _text(q, "after")
    if before and after:
        raise BadFilter
    try:
        return Cursor(
            before=decode_cursor(before) if before else None,
            after=decode_cursor(after) if after else None,
        )
    except ValidationFailed as exc:
        raise BadFilter from exc


def day_start(day: date) -> datetime:
    # Staff think in Vietnam's calendar days.
    return datetime(day.year, day.month, day.day, tzinfo=VIETNAM).astimezone(UTC)


def conditions(flt: Filters, agency_id: str | None) -> list[Any]:
    """The WHERE clauses of a search, over ``payment`` joined to its ``dossier``."""
    where: list[Any] = []
    if agency_id is not None:
        where.append(col(Payment.agency_id) == agency_id)
    if flt.dossier.endswith("*"):
        where.append(col(Dossier.code).startswith(flt.dossier[:-1], autoescape=True))
    elif flt.dossier:
        where.append(col(Dossier.code) == flt.dossier)
    if flt.payer:
        # E-mails and phones are sealed at rest (payments.core.pii): no part of them can be searched. A citizen ID
        # is found whole, through its blind index.
        payer = [col(Dossier.payer_name).icontains(flt.payer, autoescape=True)]
        if re.fullmatch(ID_NUMBER_PATTERN, flt.payer):
            payer.append(col(Dossier.payer_id_index).in_(pii.keyring().blind_indexes(flt.payer)))
        where.append(or_(*payer))
    if flt.amount is not None:
        where.append(col(Payment.amount) == flt.amount)
    if flt.min_amount is not None:
        where.append(col(Payment.amount) >= flt.min_amount)
    if flt.max_amount is not None:
        where.append(col(Payment.amount) <= flt.max_amount)
    if flt.since:
        where.append(col(Payment.created_at) >= day_start(flt.since))
    if flt.until:
        where.append(col(Payment.created_at) < day_start(flt.until + timedelta(days=1)))
    if flt.method:
        where.append(col(Payment.gateway) == flt.method)
    if flt.status:
        where.append(col(Payment.status) == flt.status)
    return where


@dataclass(frozen=True)
class Row:
    id: str
    created_at: datetime
    agency_code: str
    dossier_code: str
    payer_name: str
    payer_email: str | None
    payer_phone: str | None
    amount: int
    method: str
    status: PaymentStatus
    gateway_reference: str | None
    receipt: str | None = None


def _select() -> Any:
    return (
        select_columns(
            col(Payment.id),
            col(Payment.created_at),
            col(Agency.code),
            col(Dossier.code),
            col(Dossier.payer_name),
            col(Dossier.payer_email),
            col(Dossier.payer_phone),
            col(Payment.amount),
            col(Payment.gateway),
            col(Payment.status),
            col(Payment.gateway_reference),
        )
        .join(Dossier, col(Dossier.id) == col(Payment.dossier_id))
        .join(Agency, col(Agency.id) == col(Payment.agency_id))
    )


def _rows(s: Session, query: Any) -> list[Row]:
    return [Row(*r) for r in s.execute(query).all()]


def _receipts(s: Session, rows: list[Row], where: list[Any] | None = None) -> list[Row]:
    """The rows with the number of the receipt in force for each: one query for the page (or for the export's whole
    search, through ``where``), never one per row."""
    purposes = [DocumentPurpose.original, DocumentPurpose.replacement]
    names = ("payment_id", "id", "related_document_id", "purpose", "template", "series", "number", "created_at")
    query: Any = select_columns(*(col(getattr(Document, name)) for name in names))
    query = query.where(col(Document.purpose).in_(purposes))
    if where is None:
        query = query.where(col(Document.payment_id).in_([r.id for r in rows]))
    else:
        ids = select(Payment.id).join(Dossier, col(Dossier.id) == col(Payment.dossier_id)).where(*where)
        query = query.where(col(Document.payment_id).in_(ids))
    found: dict[str, list[Any]] = {}
    for doc in s.execute(query.order_by(col(Document.created_at), col(Document.year), col(Document.number))).all():
        found.setdefault(doc.payment_id, []).append(doc)
    numbers: dict[str, str] = {}
    for payment_id, docs in found.items():
        replaced = {d.related_document_id for d in docs if d.purpose == DocumentPurpose.replacement}
        live = [d for d in docs if d.id not in replaced]
        if live:
            last = live[-1]
            numbers[payment_id] = receipt_number(last.template, last.series, last.number)
    return [Row(**{**r.__dict__, "receipt": numbers.get(r.id)}) for r in rows]


def receipt_number(template: str, series: str, number: int) -> str:
    """As printed on the receipt: the template digit and series, then the number (``1K26TLP-00000042``)."""
    return f"{template}{series}-{number:08d}"


@dataclass(frozen=True)
class Found:
    rows: list[Row]
    count: int
    total: int
    newer: str | None  # the cursor of the newer page's link, when there is one
    older: str | None


def search(s: Session, flt: Filters, agency_id: str | None, cursor: Cursor) -> Found:
    """One page of matches, newest first, with the number and sum of all matches."""
    where = conditions(flt, agency_id)
    count, total = s.exec(
        select(func.count(), func.coalesce(func.sum(Payment.amount), 0))
        .select_from(Payment)
        .join(Dossier, col(Dossier.id) == col(Payment.dossier_id))
        .where(*where)
    ).one()
    created, pid = col(Payment.created_at), col(Payment.id)
    query = _select().where(*where)
    if cursor.after is not None:
        at, row_id = cursor.after
        query = query.where(or_(created > at, and_(created == at, pid > row_id)))
        rows = _rows(s, query.order_by(created.asc(), pid.asc()).limit(PAGE_SIZE + 1))
        more_newer = len(rows) > PAGE_SIZE
        rows = list(reversed(rows[:PAGE_SIZE]))
        more_older = True
    else:
        if cursor.before is not None:
            at, row_id = cursor.before
            query = query.where(or_(created < at, and_(created == at, pid < row_id)))
        rows = _rows(s, query.order_by(created.desc(), pid.desc()).limit(PAGE_SIZE + 1))
        more_older = len(rows) > PAGE_SIZE
        rows = rows[:PAGE_SIZE]
        more_newer = cursor.before is not None
    rows = _receipts(s, rows)
    newer = encode_cursor(rows[0].created_at, rows[0].id) if rows and more_newer else None
    older = encode_cursor(rows[-1].created_at, rows[-1].id) if rows and more_older else None
    return Found(rows, int(count), int(total), newer, older)


def count_matches(s: Session, flt: Filters, agency_id: str | None) -> int:
    query = (
        select(func.count())
        .select_from(Payment)
        .join(Dossier, col(Dossier.id) == col(Payment.dossier_id))
        .where(*conditions(flt, agency_id))
    )
    return int(s.exec(query).one())


def all_matches(s: Session, flt: Filters, agency_id: str | None, limit: int) -> list[Row]:
    """Every match, newest first, at most ``limit`` (the caller has counted them first)."""
    where = conditions(flt, agency_id)
    query = _select().where(*where).order_by(col(Payment.created_at).desc(), col(Payment.id).desc()).limit(limit)
    return _receipts(s, _rows(s, query), where)


def methods_of(s: Session, agency_id: str | None) -> list[str]:
    """The payment methods to offer in the filter: those the agency (or any agency) takes."""
    query = select(Agency.payment_methods)
    if agency_id is not None:
        query = query.where(col(Agency.id) == agency_id)
    found: set[str] = set()
    for methods in s.exec(query).all():
        found.update(methods or [])
    return sorted(found)
