"""Money and dates as a reader of each language expects them, by Babel's locale data.

Vietnamese: ``200.000 ₫`` and ``03/12/2026 10:05``. English: ``VND 200,000`` (an English reader takes "200.000" for
two hundred) and ``3 Dec 2026, 10:05`` (a month name, never an ambiguous 12/03). Times are Vietnam time (UTC+7), the
time every payer and clerk of the province lives in. The space inside an amount is a no-break space, so that a
phone never wraps the currency onto a line of its own."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal

from babel.dates import format_date, format_datetime
from babel.numbers import format_decimal

VIETNAM = timezone(timedelta(hours=7))
NBSP = "\u00a0"
_LOCALE = {"vi": "vi_VN", "en": "en_GB"}


def _locale(lang: str) -> str:
    return _LOCALE.get(lang, "vi_VN")


def number(value: int | Decimal, lang: str) -> str:
    return str(format_decimal(value, locale=_locale(lang)))


def money(amount: int | Decimal, lang: str) -> str:
    """An amount in đồng (VND has no minor unit)."""
    digits = number(amount, lang)
    return f"{digits}{NBSP}₫" if lang == "vi" else f"VND{NBSP}{digits}"


def local(moment: datetime) -> datetime:
    # Naive timestamps in the database are UTC.
    aware = moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)
    return aware.astimezone(VIETNAM)


def when(moment: datetime, lang: str) -> str:
    """A date and time of day, Vietnam time."""
    at = local(moment)
    if lang == "vi":
        return at.strftime("%d/%m/%Y %H:%M")
    return str(format_datetime(at, "d MMM y, HH:mm", locale=_locale(lang)))


def day(value: date | datetime, lang: str) -> str:
    """A calendar date (a datetime is first put in Vietnam time)."""
    d = local(value).date() if isinstance(value, datetime) else value
    if lang == "vi":
        return d.strftime("%d/%m/%Y")
    return str(format_date(d, "d MMM y", locale=_locale(lang)))
