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
    # Daily work first, administration after, the user's own account last.
    NavItem("/console/", "home_title", ALL),
    NavItem("/console/payments", "payments_title", ALL),
    NavItem("/console/receipts", "receipts_title", ALL),
    NavItem("/console/refunds", "refunds_title", {Role.finance, Role.approver, Role.viewer, Role.agency_admin}),
    NavItem("/console/reconcile/imports", "recon_imports_title", ALL),
    NavItem("/console/reconcile/exceptions", "recon_exceptions_title", ALL),
    NavItem("/console/reports", "reports_title", ALL),
    NavItem("/console/province", "province_title", frozenset({Role.province_admin})),
    NavItem("/console/agencies", "agencies_title", {Role.province_admin}),
    NavItem("/console/agencies", "agencies_own", {Role.agency_admin}),
    NavItem("/console/fees", "fees_title", {Role.province_admin, Role.agency_admin, Role.finance, Role.viewer}),
    NavItem("/console/gateways", "gw_title", frozenset({*ADMINS, Role.finance, Role.viewer})),
    NavItem("/console/certificate", "cert_title", frozenset({*ADMINS, Role.finance, Role.viewer})),
    NavItem("/console/staff", "staff_title", ADMINS),
    NavItem("/console/keys", "keys_title", ADMINS),
    NavItem("/console/audit", "audit_title", ADMINS),
    NavItem("/console/account", "staff_account_title", ALL),
]


def nav_for(role: Role) -> list[NavItem]:
    return [item for item in NAV if role in item.roles]
