"""Dates in statements that no calendar day can hold (year 1 in GMT+7, epochs beyond the platform's range) are a
StatementError naming the line, like any other bad value, never an unhandled OverflowError or OSError."""

from __future__ import annotations

from typing import Any

import pytest

from adapters.statements import camt053, csvfile, stripe_balance
from adapters.statements.base import StatementError


@pytest.mark.parametrize("fmt", ["unix", "unix_ms"])
@pytest.mark.parametrize("text", ["99999999999999999999", "9" * 40])
def test_an_epoch_beyond_the_platforms_range_is_a_value_error(fmt: str, text: str) -> None:
    with pytest.raises(ValueError):
        csvfile.date_reader(fmt)(text)
    assert str(csvfile.date_reader(fmt)("1700000000000" if fmt == "unix_ms" else "1700000000")) == "2023-11-15"


@pytest.mark.parametrize("moment", ["9999-12-31T23:59:59-05:00", "0001-01-01T00:00:00+07:00"])
def test_a_camt_time_without_a_gmt7_day_is_a_statement_error(moment: str) -> None:
    with pytest.raises(StatementError):
        camt053._date({"BookgDt/DtTm": moment}, "BookgDt", 7)


def _balance_item(**changes: Any) -> dict[str, Any]:
    return {"id": "txn_1", "amount": 150000, "fee": 0, "created": 1700000000, "currency": "vnd", **changes}


@pytest.mark.parametrize("changes", [{"created": 10**20}, {"available_on": 10**20}, {"available_on": "soon"}])
def test_a_stripe_balance_timestamp_out_of_range_is_a_statement_error(changes: dict[str, Any]) -> None:
    assert stripe_balance.balance_line(_balance_item(), 3).booked_on.isoformat() == "2023-11-15"
    with pytest.raises(StatementError) as caught:
        stripe_balance.balance_line(_balance_item(**changes), 3)
    assert caught.value.line == 3
