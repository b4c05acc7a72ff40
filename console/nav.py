"""The console's menu: one entry per page, with the roles that may open it. A page is added here, and the header
of every signed-in page lists the entries the user's role may open (the server still checks the role on the page)."""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass

from console.staff.models import Role

ALL = frozenset(Role)
ADMINS = frozenset({Role.province_admin, Role.agency_admin})


@dataclass(frozen=True)
class NavItem:
    href: str
    label: str  # a key of the console's texts
    roles: Collection[Role]


NAV: list[NavItem] = [
    NavItem("/console/", "home_title", ALL),
    NavItem("/console/keys", "keys_title", ADMINS),
    NavItem("/console/audit", "audit_title", ADMINS),
    NavItem("/console/agencies", "agencies_title", {Role.province_admin}),
    NavItem("/console/agencies", "agencies_own", {Role.agency_admin}),
    NavItem("/console/fees", "fees_title", {Role.province_admin, Role.agency_admin, Role.finance, Role.viewer}),
]


def nav_for(role: Role) -> list[NavItem]:
    return [item for item in NAV if role in item.roles]
