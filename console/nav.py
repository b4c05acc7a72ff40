"""The console's menu: one entry per page, with the roles that may open it. A page is added here, and the header
of every signed-in page lists the entries the user's role may open. The roles are those the page itself checks, from
``console.roles``: the menu and the server cannot disagree."""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass

from console import roles
from console.staff.models import Role


@dataclass(frozen=True)
class NavItem:
    href: str
    label: str  # a key of the console's texts
    roles: Collection[Role]


NAV: list[NavItem] = [
    # Daily work first, administration after, the user's own account last.
    NavItem("/console/", "home_title", roles.HOME),
    NavItem("/console/payments", "payments_title", roles.PAYMENTS),
    NavItem("/console/receipts", "receipts_title", roles.RECEIPTS),
    NavItem("/console/refunds", "refunds_title", roles.REFUNDS),
    NavItem("/console/reconcile/imports", "recon_imports_title", roles.RECONCILE),
    NavItem("/console/reconcile/exceptions", "recon_exceptions_title", roles.RECONCILE),
    NavItem("/console/reports", "reports_title", roles.REPORTS),
    NavItem("/console/province", "province_title", roles.PROVINCE_REPORT),
    # One page, two labels: every agency for a province admin, their own for an agency admin.
    NavItem("/console/agencies", "agencies_title", roles.AGENCIES & roles.PROVINCE_ADMIN),
    NavItem("/console/agencies", "agencies_own", roles.AGENCIES - roles.PROVINCE_ADMIN),
    NavItem("/console/fees", "fees_title", roles.FEES),
    NavItem("/console/gateways", "gw_title", roles.GATEWAYS),
    NavItem("/console/certificate", "cert_title", roles.CERTIFICATE),
    NavItem("/console/staff", "staff_title", roles.STAFF),
    NavItem("/console/keys", "keys_title", roles.KEYS),
    NavItem("/console/audit", "audit_title", roles.AUDIT),
    NavItem("/console/account", "staff_account_title", roles.ACCOUNT),
]


def nav_for(role: Role) -> list[NavItem]:
    return [item for item in NAV if role in item.roles]
