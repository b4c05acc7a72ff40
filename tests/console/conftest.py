"""Staff accounts made directly through the service, and a browser-like sign-in through the pages."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select, text

from console.staff.models import StaffUser
from console.staff.service import create_staff, use_token
from lephi.container import Container
from lephi.tables import metadata
from tests.conftest import Api
from tests.factories import seed_agency

PASSWORD = "correct horse battery"


@dataclass
class Staff:
    id: str
    email: str
    password: str
    agency_id: str | None


MakeStaff = Callable[..., Staff]


@pytest.fixture
def make_staff(ctx: Container) -> MakeStaff:
    def make(email: str, role: str = "finance", agency: str | None = "AGC-A", password: str = PASSWORD) -> Staff:
        with ctx.db.write() as s:
            user, token = create_staff(s, email=email, role=role, agency_code=agency)
        with ctx.db.write() as s:
            use_token(s, token, password)
        return Staff(user.id, user.email, password, user.agency_id)

    return make


@pytest.fixture
def agencies(api: Api, ctx: Container) -> dict[str, str]:
    """AGC-A (seeded by ``api``) and AGC-B: code -> id."""
    with ctx.db.write() as s:
        b = seed_agency(s, "AGC-B", tax_code="0100000002")
    return {"AGC-A": api.agency_id, "AGC-B": b.id}


CSRF = re.compile(r'name="csrf" value="([^"]+)"')


def csrf_of(html: str) -> str:
    match = CSRF.search(html)
    assert match, html
    return match.group(1)


def login(client: TestClient, email: str, password: str, lang: str = "vi") -> object:
    page = client.get(f"/console/login?lang={lang}")
    assert page.status_code == 200
    return client.post(
        "/console/login",
        data={"email": email, "password": password, "csrf": csrf_of(page.text), "lang": lang},
        follow_redirects=False,
    )


def count(ctx: Container, table: str) -> int:
    with ctx.db.read() as s:
        return int(s.execute(select(func.count()).select_from(metadata.tables[table])).scalar_one())


def counts(ctx: Container) -> dict[str, int]:
    return {
        t: count(ctx, t) for t in ("staff_session", "staff_token", "staff_login_failure", "audit_log", "staff_user")
    }


def sql(ctx: Container, statement: str, **params: object) -> None:
    with ctx.db.write() as s:
        s.execute(text(statement), params)


def user_row(ctx: Container, user_id: str) -> StaffUser:
    with ctx.db.read() as s:
        user = s.get(StaffUser, user_id)
        assert user is not None
        return user
