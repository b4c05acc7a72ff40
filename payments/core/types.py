"""Column types and id helpers shared by every table."""

from __future__ import annotations

import re
import secrets
import time
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import UTC, date, datetime
from enum import StrEnum
from typing import Annotated, Any

from pydantic import AfterValidator, AwareDatetime, BeforeValidator
from sqlalchemy import DateTime, Enum
from sqlalchemy.engine import Dialect
from sqlalchemy.types import TypeDecorator


class UTCDateTime(TypeDecorator[datetime]):
    """Stores UTC and always returns an aware datetime, on SQLite (which keeps no zone) as on PostgreSQL."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        assert isinstance(value, datetime)
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _to_utc(value: datetime) -> datetime:
    try:
        return value.astimezone(UTC)
    except OverflowError as exc:
        raise ValueError("the datetime is out of range once converted to UTC") from exc


_ISO_MOMENT = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}[T ][0-9]{2}:[0-9]{2}[0-9:.+\-Zz]*")


def _iso_moment(value: object) -> object:
    # Lax parsing would take "0" or "1700000000" for a Unix time: a client writes an ISO 8601 date and time.
    if isinstance(value, datetime) or (isinstance(value, str) and _ISO_MOMENT.fullmatch(value)):
        return value
    raise ValueError("a time is written YYYY-MM-DDTHH:MM[:SS[.ffffff]] with Z or an offset")


# An aware datetime from a client, normalised to UTC; one that cannot be expressed in UTC is a validation error.
UtcDatetime = Annotated[AwareDatetime, BeforeValidator(_iso_moment), AfterValidator(_to_utc)]


FIRST_BUSINESS_DAY = date(2000, 1, 1)
LAST_BUSINESS_DAY = date(2100, 12, 31)
_ISO_DAY = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")


def _iso_day(value: object) -> object:
    # Lax parsing would read 0 as 1970-01-01 and accept timestamps and datetimes: only YYYY-MM-DD is a day.
    if isinstance(value, date) and not isinstance(value, datetime):
        return value
    if not isinstance(value, str) or not _ISO_DAY.fullmatch(value):
        raise ValueError("a day is written YYYY-MM-DD")
    return value


def _bounded_day(value: date) -> date:
    # Far-off days overflow once turned into GMT+7 datetimes; none of them can be a business day here.
    if not FIRST_BUSINESS_DAY <= value <= LAST_BUSINESS_DAY:
        raise ValueError(f"the day must be between {FIRST_BUSINESS_DAY} and {LAST_BUSINESS_DAY}")
    return value


# A business day (or any calendar day) from a client: strictly YYYY-MM-DD, within 2000-01-01..2100-12-31.
BusinessDay = Annotated[date, BeforeValidator(_iso_day), AfterValidator(_bounded_day)]


# The moment the service's own writes are stamped with, when set: the demo history records past days through the
# ordinary services (``clock_at``). Context-local, so a request served meanwhile by another thread keeps the real time.
_CLOCK: ContextVar[datetime | None] = ContextVar("lephi_clock", default=None)


def utcnow() -> datetime:
    moment = _CLOCK.get()
    return datetime.now(UTC) if moment is None else moment


@contextmanager
def clock_at(moment: datetime) -> Iterator[None]:
    """Within the block, ``utcnow`` answers ``moment`` (aware) in this thread or task."""
    if moment.tzinfo is None:
        raise ValueError("the clock needs an aware datetime")
    token = _CLOCK.set(moment.astimezone(UTC))
    try:
        yield
    finally:
        _CLOCK.reset(token)


# An identifier is the prefix, the second it was made (8 hexadecimal digits of seconds since 1970) and 64 random
# bits: ``pay_6b13619d`` + 16 digits, 28 characters as before the time was added, so that ids built from ids (a
# payer's ``payer:<dossier id>``) still fit their columns. The random part keeps it unguessable; the leading time
# keeps the ids made together next to each other in every index that holds them. With random ids, each new row lands
# on a random page of the index: at ten million statement lines the index on their payment no longer fits in memory,
# and a seven-million-line insert took 52 s against 21 s for the same rows with time-ordered ids (and wrote a third
# more WAL, each page rewritten whole after every checkpoint).
ID_TIME_DIGITS = 8
ID_RANDOM_BYTES = 8


def id_time(moment: float) -> str:
    """The time part of an identifier made at ``moment`` (seconds since 1970)."""
    return f"{int(moment):0{ID_TIME_DIGITS}x}"


def new_id(prefix: str) -> str:
    """Prefixed, unguessable identifiers (``pay_...``) that say what they name in logs and support tickets, in the
    order they were made (to the second)."""
    return f"{prefix}_{id_time(time.time())}{secrets.token_hex(ID_RANDOM_BYTES)}"


def str_enum(enum: type[StrEnum], length: int = 20) -> Enum:
    """A StrEnum stored as plain VARCHAR values: adding a status later needs no ALTER TYPE on PostgreSQL."""
    return Enum(
        enum,
        native_enum=False,
        create_constraint=False,
        length=length,
        values_callable=lambda e: [m.value for m in e],
        validate_strings=True,
    )
