"""Every console route, for every role, with hostile input: never a 5xx, always a page.

The routes are read from the app itself, so a page added later is covered without changing this file. Each page
has its own tests of what it refuses and why; this one only holds the floor: whatever a signed-in user (or an
anonymous visitor) sends, with or without a valid CSRF token, the answer is an HTML page below 500."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient
from starlette.routing import Route

from tests.console.conftest import MakeStaff, csrf_of, login

ROLES = ["province_admin", "agency_admin", "finance", "approver", "viewer"]
# Values a form or a query may carry that no page of ours sends.
HOSTILE = ["", "x" * 5000, "\x00", "<script>alert(1)</script>", "-1", "1e309", "９９", "2026-02-30"]
# Field names the console's forms use (a form ignores those it does not know).
FIELDS = [
    "name", "email", "role", "amount", "reason", "note", "code", "tax_code", "address", "phone", "day", "from", "to",
    "agency", "method", "scope", "status", "format", "password", "password_confirm", "id", "ids", "effective_from",
    "payment", "payment_id", "bank_account", "bank_name", "required", "totp", "action", "undo", "page", "before",
]  # fmt: skip
PATH_VALUES = ["pay_" + "a" * 24, "9" * 30, "..%2F%00"]


def console_routes(app: object) -> Iterator[tuple[str, set[str]]]:
    def walk(routes: list[object]) -> Iterator[Route]:
        for route in routes:
            included = getattr(route, "original_router", None)
            if included is not None:
                yield from walk(included.routes)
            elif isinstance(route, Route):
                yield route

    for route in walk(app.routes):  # type: ignore[attr-defined]
        if route.path.startswith("/console") and "{rest:path}" not in route.path:
            yield route.path, set(route.methods or ())


def paths(template: str) -> list[str]:
    if "{" not in template:
        return [template]
    return [re.sub(r"\{[^}]+\}", value, template) for value in PATH_VALUES]


def page_below_500(response: object, what: str) -> None:
    status = response.status_code  # type: ignore[attr-defined]
    assert status < 500, (what, status, response.text[:300])  # type: ignore[attr-defined]
    kind = response.headers.get("content-type", "")  # type: ignore[attr-defined]
    # Downloads (CSV, XLSX, PDF, templates) answer their own types; everything else is a page, never problem+json.
    assert "json" not in kind, (what, kind)


@pytest.mark.parametrize("role", [None, *ROLES])
def test_no_console_route_answers_a_5xx_to_hostile_input(
    client: TestClient, make_staff: MakeStaff, agencies: dict[str, str], role: str | None
) -> None:
    csrf = ""
    if role is not None:
        agency = None if role == "province_admin" else "AGC-A"
        staff = make_staff(f"{role}@fuzz.gov.vn", role=role, agency=agency)
        assert login(client, staff.email, staff.password).status_code == 303
        csrf = csrf_of(client.get("/console/account").text)
    for template, methods in console_routes(client.app):
        for path in paths(template):
            if "GET" in methods:
                for value in HOSTILE[1:5]:
                    query = {"lang": "en", "agency": value, "page": value, "q": value, "from": value, "status": value}
                    page_below_500(client.get(path, params=query, follow_redirects=False), f"GET {path}")
            if "POST" not in methods or path in ("/console/logout",):
                continue
            bodies: list[dict[str, str]] = [{}, {"csrf": csrf, "lang": "xx"}]
            bodies += [{"csrf": csrf, "lang": "en", **dict.fromkeys(FIELDS, value)} for value in HOSTILE]
            for body in bodies:
                page_below_500(client.post(path, data=body, follow_redirects=False), f"POST {path}")
            files = {name: ("x.bin", b"\x00PK\x03\x04" + b"\xff" * 4096, "application/octet-stream")
                     for name in ("file", "certificate", "key", "logo", "p12", "pem")}  # fmt: skip
            response = client.post(path, data={"csrf": csrf, "lang": "en"}, files=files, follow_redirects=False)
            page_below_500(response, f"POST {path} (files)")
