"""An amount of VND in Vietnamese words, for `TgTTTBChu` (domain.md 3.6).

Rules: groups of three digits from the top; every group after the leading one is read in full ("không trăm",
then "linh" when the tens digit is 0); all-zero groups are skipped with their scale word; "mười" for 10-19,
"X mươi" from 20; after "mươi" the unit 1 is "mốt", 5 is "lăm" and 4 is "bốn" (this project chooses "bốn"
over the equally correct "tư", as the more common form on invoices); after "mười" 5 is "lăm"; scales "nghìn",
"triệu", "tỷ"; the first letter is capitalised and the text ends with "đồng".
"""

from __future__ import annotations

MAX_AMOUNT = 999_999_999_999
CURRENCY_WORD = "đồng"

_DIGITS = ("không", "một", "hai", "ba", "bốn", "năm", "sáu", "bảy", "tám", "chín")
# Index = position of the group counted from the right: units, thousands, millions, billions.
_SCALES = ("", "nghìn", "triệu", "tỷ")


def amount_in_words(amount: int) -> str:
    """Read 0..999_999_999_999 VND aloud, e.g. 1_005 -> "Một nghìn không trăm linh năm đồng"."""
    # bool is an int subclass; True VND is a bug at the caller, not one đồng.
    if isinstance(amount, bool) or not isinstance(amount, int):
        raise ValueError(f"amount must be an int, not {type(amount).__name__}")
    if not 0 <= amount <= MAX_AMOUNT:
        raise ValueError(f"amount must be between 0 and {MAX_AMOUNT}, not {amount}")
    words = _read_number(amount) if amount else [_DIGITS[0]]
    text = " ".join([*words, CURRENCY_WORD])
    return text[0].upper() + text[1:]


def _read_number(amount: int) -> list[str]:
    groups = _groups(amount)
    words: list[str] = []
    for scale, group in reversed(list(enumerate(groups))):
        if group == 0:
            continue
        # Only the leading group may drop its empty hundreds and tens ("năm", not "không trăm linh năm").
        words += _read_group(group, full=bool(words))
        if _SCALES[scale]:
            words.append(_SCALES[scale])
    return words


def _groups(amount: int) -> list[int]:
    """Groups of three digits, least significant first."""
    groups = []
    while amount:
        amount, group = divmod(amount, 1000)
        groups.append(group)
    return groups


def _read_group(group: int, *, full: bool) -> list[str]:
    hundreds, rest = divmod(group, 100)
    tens, unit = divmod(rest, 10)
    words: list[str] = []
    if full or hundreds:
        words += [_DIGITS[hundreds], "trăm"]
    if tens == 0:
        if unit:
            words += ["linh", _DIGITS[unit]] if words else [_DIGITS[unit]]
    elif tens == 1:
        words.append("mười")
        if unit:
            words.append("lăm" if unit == 5 else _DIGITS[unit])
    else:
        words += [_DIGITS[tens], "mươi"]
        if unit:
            words.append(_after_muoi(unit))
    return words


def _after_muoi(unit: int) -> str:
    return {1: "mốt", 5: "lăm"}.get(unit, _DIGITS[unit])
