"""Formats of an agency's identifiers, in one place for onboarding and for signing."""

from __future__ import annotations

import re

# A Vietnamese tax code (mã số thuế): 10 digits, or 10 digits, a dash and 3 digits for a dependent unit.
TAX_CODE = re.compile(r"[0-9]{10}(-[0-9]{3})?")
TAX_CODE_RULE = "10 digits, or 10 digits, a dash and 3 digits (e.g. 0101234567 or 0101234567-001)"

# It appears in callback URLs and file names: capitals, digits and single dashes, as in DEMO-STP.
AGENCY_CODE = re.compile(r"[A-Z0-9]+(-[A-Z0-9]+)*")
AGENCY_CODE_RULE = "2 to 40 capital letters, digits and single dashes (e.g. STP-HCM)"


def is_tax_code(value: str) -> bool:
    return TAX_CODE.fullmatch(value) is not None


def is_agency_code(value: str) -> bool:
    return 2 <= len(value) <= 40 and AGENCY_CODE.fullmatch(value) is not None
