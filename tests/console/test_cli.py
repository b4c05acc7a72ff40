"""``lephi staff create|reset-password``: accounts made from the command line, with their one-time link printed;
bad input is refused with ``error: ...`` and exit code 2, and nothing is stored."""

from __future__ import annotations

import re

import pytest
from sqlalchemy import select, text
from sqlalchemy.exc import IntegrityError

from console.audit.models import AuditLog
from console.staff.models import Role, StaffToken, TokenPurpose
from console.staff.service import digest, find_by_email
from lephi.container import Container
from tests.conftest import Api, Cli
from tests.console.conftest import counts

LINK = re.compile(r"https?://\S+/console/set-password/(\S+)")


def test_create_prints_a_set_password_link(cli: Cli, ctx: Container) -> None:
    result = cli("staff", "create", "--agency", "AGC-A", "--role", "finance", "--email", "Ke.Toan@AGC-A.gov.vn")
    assert result.exit_code == 0, result.output
    token = LINK.search(result.output)
    assert token, result.output
    with ctx.db.read() as s:
        user = find_by_email(s, "ke.toan@agc-a.gov.vn")
        assert user is not None and user.role is Role.finance and user.password_hash is None
        stored = s.execute(select(StaffToken).where(StaffToken.user_id == user.id)).scalars().one()
        assert stored.token_hash == digest(token.group(1)) and stored.purpose is TokenPurpose.set_password
        assert round((stored.expires_at - stored.created_at).total_seconds() / 3600) == 72
        audit = s.execute(select(AuditLog)).scalars().one()
        assert (audit.actor, audit.action, audit.agency_id, audit.target) == (
            "cli",
            "staff.created",
            user.agency_id,
            user.id,
        )


def test_province_admin_has_no_agency(cli: Cli, ctx: Container) -> None:
    result = cli("staff", "create", "--role", "province_admin", "--email", "tinh@province.gov.vn")
    assert result.exit_code == 0, result.output
    with ctx.db.read() as s:
        user = find_by_email(s, "tinh@province.gov.vn")
        assert user is not None and user.agency_id is None


def test_bad_input_is_refused_and_stores_nothing(cli: Cli, ctx: Container) -> None:
    assert (
        cli("staff", "create", "--agency", "AGC-A", "--role", "viewer", "--email", "first@agc-a.gov.vn").exit_code == 0
    )
    before = counts(ctx)
    cases = {
        ("--agency", "NOPE", "--role", "finance", "--email", "x@agc-a.gov.vn"): "no agency with code 'NOPE'",
        ("--agency", "AGC-A", "--role", "boss", "--email", "x@agc-a.gov.vn"): "unknown role 'boss'",
        ("--agency", "AGC-A", "--role", "finance", "--email", "FIRST@agc-a.gov.vn"): "already exists",
        ("--agency", "AGC-A", "--role", "province_admin", "--email", "x@agc-a.gov.vn"): "give no --agency",
        ("--role", "finance", "--email", "x@agc-a.gov.vn"): "give --agency CODE",
        ("--agency", "AGC-A", "--role", "finance", "--email", "not-an-email"): "not valid",
    }
    for args, message in cases.items():
        result = cli("staff", "create", *args)
        assert result.exit_code == 2, (args, result.output)
        assert "error: " in result.stderr and message in result.stderr, (args, result.stderr)
    assert counts(ctx) == before


def test_reset_password_prints_a_24_hour_link_and_closes_older_ones(cli: Cli, ctx: Container) -> None:
    created = cli("staff", "create", "--agency", "AGC-A", "--role", "viewer", "--email", "v@agc-a.gov.vn")
    first = LINK.search(created.output)
    result = cli("staff", "reset-password", "--email", "V@agc-a.gov.vn")
    assert result.exit_code == 0, result.output
    second = LINK.search(result.output)
    assert first and second
    with ctx.db.read() as s:
        old = s.execute(select(StaffToken).where(StaffToken.token_hash == digest(first.group(1)))).scalars().one()
        new = s.execute(select(StaffToken).where(StaffToken.token_hash == digest(second.group(1)))).scalars().one()
    assert old.used_at is not None
    assert new.purpose is TokenPurpose.reset_password and new.used_at is None
    assert round((new.expires_at - new.created_at).total_seconds() / 3600) == 24
    unknown = cli("staff", "reset-password", "--email", "nobody@agc-a.gov.vn")
    assert unknown.exit_code == 2 and "no staff account" in unknown.stderr


def test_the_database_holds_the_agency_rule(ctx: Container, api: Api) -> None:
    """Only a province admin has no agency, even for a writer that bypasses the service."""
    insert = text(
        "INSERT INTO staff_user (id, email, agency_id, role, active, created_at, updated_at) "
        "VALUES ('stf_x', 'x@y.vn', :agency, :role, true, CURRENT_TIMESTAMP, CURRENT_TIMESTAMP)"
    )
    for role, agency in (("province_admin", api.agency_id), ("finance", None)):
        with pytest.raises(IntegrityError), ctx.db.write() as s:
            s.execute(insert, {"agency": agency, "role": role})
