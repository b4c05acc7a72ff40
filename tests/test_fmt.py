"""Money and dates per language (payments.pages.fmt)."""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal

from payments.pages import fmt


def test_money_vietnamese_uses_dots_and_the_dong_sign_after() -> None:
    assert fmt.money(200_000, "vi") == "200.000\u00a0₫"
    assert fmt.money(1_234_567_890, "vi") == "1.234.567.890\u00a0₫"
    assert fmt.money(0, "vi") == "0\u00a0₫"


def test_money_english_cannot_be_read_as_a_decimal() -> None:
    assert fmt.money(200_000, "en") == "VND\u00a0200,000"
    assert fmt.money(Decimal(5), "en") == "VND\u00a05"


def test_times_are_vietnam_time_and_unambiguous_in_english() -> None:
    moment = datetime(2026, 12, 2, 20, 5, tzinfo=UTC)  # 03:05 on the 3rd in Vietnam
    assert fmt.when(moment, "vi") == "03/12/2026 03:05"
    assert fmt.when(moment, "en") == "3 Dec 2026, 03:05"
    assert fmt.when(moment.replace(tzinfo=None), "vi") == "03/12/2026 03:05"  # naive = UTC
    assert fmt.day(moment, "en") == "3 Dec 2026"
    assert fmt.day(date(2026, 1, 9), "vi") == "09/01/2026"


def test_an_unknown_language_falls_back_to_vietnamese_digits() -> None:
    assert fmt.number(1000, "xx") == "1.000"
