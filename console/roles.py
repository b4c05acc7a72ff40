"""Who may do what in the console, in one place: the menu (``console.nav``) shows each page to the roles listed here
for it, and the page itself refuses every other role with these same sets, so that the menu never offers a page the
server refuses nor hides one it allows. What a role may change on a page it can open (an action) is listed here too.
"""

from __future__ import annotations

from console.staff.models import Role

ALL_ROLES = frozenset(Role)
ADMINS = frozenset({Role.province_admin, Role.agency_admin})
PROVINCE_ADMIN = frozenset({Role.province_admin})
# Reads the agency's configuration without changing it.
CONFIG_READERS = frozenset({*ADMINS, Role.finance, Role.viewer})

# The pages of the menu: who may open each.
HOME = ALL_ROLES
PAYMENTS = ALL_ROLES
RECEIPTS = ALL_ROLES
REFUNDS = frozenset({Role.finance, Role.approver, Role.viewer, Role.agency_admin})
RECONCILE = ALL_ROLES
REPORTS = ALL_ROLES
PROVINCE_REPORT = PROVINCE_ADMIN
AGENCIES = ADMINS  # a province admin: every agency; an agency admin: their own
FEES = CONFIG_READERS
GATEWAYS = CONFIG_READERS
CERTIFICATE = CONFIG_READERS
STAFF = ADMINS
KEYS = ADMINS
AUDIT = ADMINS
ACCOUNT = ALL_ROLES

# Actions, within the pages above.
REFUND_MAKERS = frozenset({Role.finance})  # asks for a refund, cancels their request
REFUND_CHECKERS = frozenset({Role.approver})  # approves or rejects another's request
RECONCILE_UPLOADERS = frozenset({Role.finance, Role.agency_admin})  # imports and undoes files, runs a day
RECONCILE_RESOLVERS = frozenset({Role.finance, Role.approver})  # works the exceptions queue
RECEIPT_REPLACERS = frozenset({Role.finance, Role.agency_admin})  # replaces a receipt with wrong payer details
CONFIG_WRITERS = ADMINS  # fees, gateways, the signing certificate

# Who sees payers' contacts and identity numbers in full (personal data, docs/privacy.md): those who deal with the
# payer about a payment or a refund. Everyone else who may open the page sees them masked.
PERSONAL_DATA = frozenset({Role.finance, Role.approver, Role.agency_admin})
