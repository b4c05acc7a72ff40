"""Every business-day parameter takes exactly YYYY-MM-DD within 2000-01-01..2100-12-31, and every time filter an ISO
8601 time with its offset; anything else is a 422 problem+json (never a 500, never a day or time guessed from a
number) and changes nothing. A list cursor that this API did not make is a 422 too, on SQLite and PostgreSQL."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest

from payments.core.types import FIRST_BUSINESS_DAY, LAST_BUSINESS_DAY
from tests.conftest import Api

BASE = "/v1/reconciliation"
QUERIES = [
    ("/reports/daily", "business_day"),
    ("/reports/exceptions", "business_day"),
    ("/exceptions", "business_day_from"),
    ("/exceptions", "business_day_to"),
    ("/runs", "business_day"),
]
BAD = [
    "0",
    "-1",
    "1700000000",
    "1e3",
    "0001-01-01",
    "9999-12-31",
    "1999-12-31",
    "2101-01-01",
    "2026-1-1",
    "20261120",
    "2026-11-20T00:00:00",
    "2026-11-20 ",
    "2026-02-30",
    "２０２６-１１-２０",
    "",
]


def assert_422(r: Any) -> None:
    assert r.status_code == 422, r.text
    assert r.headers["content-type"].startswith("application/problem+json")


@pytest.mark.parametrize(("path", "name"), QUERIES)
def test_day_query_parameters_refuse_anything_but_a_bounded_iso_day(api: Api, path: str, name: str) -> None:
    for value in BAD:
        assert_422(api.get(BASE + path, params={name: value}))
    for day in (FIRST_BUSINESS_DAY, LAST_BUSINESS_DAY, "2026-11-20"):
        r = api.get(BASE + path, params={name: str(day)})
        assert r.status_code == 200, r.text


def test_a_run_for_a_day_not_written_yyyy_mm_dd_is_refused(api: Api) -> None:
    runs = api.get(f"{BASE}/runs").json()["data"]
    for value in [*BAD, 0, 20261120, None, True]:
        assert_422(api.post(f"{BASE}/runs", {"business_day": value}))
    assert api.get(f"{BASE}/runs").json()["data"] == runs


@pytest.mark.parametrize("path", ["/v1/payments", "/v1/dossiers"])
@pytest.mark.parametrize("name", ["created_from", "created_to"])
def test_time_filters_take_iso_8601_only_never_a_number(api: Api, path: str, name: str) -> None:
    for value in ("0", "1700000000", "1e9", "2026-11-20", "2026-11-20T00:00:00", "0001-01-01T00:00:00+07:00"):
        assert_422(api.get(path, params={name: value}))
    for value in ("2026-11-20T00:00:00Z", "2026-11-20T07:00:00+07:00", "2026-11-20T00:00:00.5+00:00"):
        r = api.get(path, params={name: value})
        assert r.status_code == 200, r.text


def _cursor(*parts: object) -> str:
    return base64.urlsafe_b64encode(json.dumps(list(parts)).encode()).decode().rstrip("=")


@pytest.mark.parametrize("path", ["/v1/payments", "/v1/dossiers", "/v1/bank-credits", f"{BASE}/exceptions"])
def test_a_forged_cursor_is_a_422_on_every_database(api: Api, path: str) -> None:
    moment = "2026-11-20T00:00:00+00:00"
    for cursor in (
        _cursor(moment, "pay_\u0000x"),
        _cursor(moment, "x" * 500),
        _cursor(moment, ["pay_1"]),
        _cursor(moment, 7),
        _cursor("0001-01-01T00:00:00+07:00", "pay_1"),
        _cursor(moment),
    ):
        assert_422(api.get(path, params={"cursor": cursor}))
    assert api.get(path, params={"cursor": _cursor(moment, "pay_1")}).status_code == 200
