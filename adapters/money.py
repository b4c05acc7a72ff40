"""Amounts received from outside (callbacks, gateway answers, forms), parsed one strict way.

An amount is a whole number of the currency's smallest unit (VND has no minor unit). It is refused, never rounded
or cleaned up, when it carries a sign, a space, a decimal point or separator, non-ASCII digits, or is a JSON float or
boolean: a lenient parser turns ``"8000.99"`` into 8000 and makes a forged or garbled amount look right. The upper
bound keeps every amount, and sums of many, inside a signed 64-bit database column.
"""

from __future__ import annotations

import re

# 13 digits: the longest amount a VietQR payload can carry, and far above any fee.
MAX_AMOUNT = 9_999_999_999_999
_DIGITS = re.compile(r"[1-9][0-9]{0,17}|0")


def amount_from_text(text: object, *, minimum: int = 1, maximum: int = MAX_AMOUNT) -> int:
    """A string of ASCII digits (no sign, space, separator, decimal point or leading zero) within the bounds."""
    if not isinstance(text, str) or not _DIGITS.fullmatch(text):
        raise ValueError("an amount must be written with the digits 0-9 only")
    return _bounded(int(text), minimum, maximum)


def amount_from_json(value: object, *, minimum: int = 1, maximum: int = MAX_AMOUNT) -> int:
    """A JSON integer within the bounds; a float, a string or a boolean is refused."""
    # bool is an int subclass: true would otherwise be an amount of 1.
    if type(value) is not int:
        raise ValueError("an amount must be a JSON integer")
    return _bounded(value, minimum, maximum)


def amount_from_json_or_text(value: object, *, minimum: int = 1, maximum: int = MAX_AMOUNT) -> int:
    """For protocols that print the same amount as a number in one message and as text in another (MoMo)."""
    if isinstance(value, str):
        return amount_from_text(value, minimum=minimum, maximum=maximum)
    return amount_from_json(value, minimum=minimum, maximum=maximum)


def _bounded(amount: int, minimum: int, maximum: int) -> int:
    if not minimum <= amount <= maximum:
        raise ValueError(f"the amount must be between {minimum} and {maximum}")
    return amount
