"""Amount in words (domain.md 3.6): the documented examples, edge cases, and a round trip through a strict reader."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from invoices.words import MAX_AMOUNT, amount_in_words

# The table in domain.md 3.6, plus zero.
DOMAIN_EXAMPLES = [
    (0, "Không đồng"),
    (21, "Hai mươi mốt đồng"),
    (105, "Một trăm linh năm đồng"),
    (1_005, "Một nghìn không trăm linh năm đồng"),
    (150_000, "Một trăm năm mươi nghìn đồng"),
    (1_001_000, "Một triệu không trăm linh một nghìn đồng"),
    (2_000_050, "Hai triệu không trăm năm mươi đồng"),
]

EDGE_CASES = [
    (1, "Một đồng"),
    (10, "Mười đồng"),
    (11, "Mười một đồng"),
    (14, "Mười bốn đồng"),
    (15, "Mười lăm đồng"),
    (20, "Hai mươi đồng"),
    (21, "Hai mươi mốt đồng"),
    (24, "Hai mươi bốn đồng"),
    (25, "Hai mươi lăm đồng"),
    (100, "Một trăm đồng"),
    (101, "Một trăm linh một đồng"),
    (110, "Một trăm mười đồng"),
    (115, "Một trăm mười lăm đồng"),
    (1_000, "Một nghìn đồng"),
    (1_010, "Một nghìn không trăm mười đồng"),
    (1_000_001, "Một triệu không trăm linh một đồng"),
    (1_000_100, "Một triệu một trăm đồng"),
    (1_000_000_000, "Một tỷ đồng"),
    (1_000_000_010, "Một tỷ không trăm mười đồng"),
    (
        999_999_999_999,
        "Chín trăm chín mươi chín tỷ chín trăm chín mươi chín triệu chín trăm chín mươi chín nghìn "
        "chín trăm chín mươi chín đồng",
    ),
]


@pytest.mark.parametrize(("amount", "words"), DOMAIN_EXAMPLES + EDGE_CASES)
def test_known_amounts(amount: int, words: str) -> None:
    assert amount_in_words(amount) == words


@pytest.mark.parametrize("amount", [-1, MAX_AMOUNT + 1, -MAX_AMOUNT, 10**15])
def test_out_of_range(amount: int) -> None:
    with pytest.raises(ValueError, match="between"):
        amount_in_words(amount)


@pytest.mark.parametrize("amount", [True, False, 1.0, "5", Decimal(5), None])
def test_not_an_int(amount: object) -> None:
    # The message names the type given, so that the caller's bug can be found from the log line.
    with pytest.raises(ValueError, match=f"must be an int, not {type(amount).__name__}$"):
        amount_in_words(amount)  # type: ignore[arg-type]


# ---- the oracle: a strict reader of the words back into a number, written from the grammar, not from the code ----

_ONE_TO_NINE = {"một": 1, "hai": 2, "ba": 3, "bốn": 4, "năm": 5, "sáu": 6, "bảy": 7, "tám": 8, "chín": 9}
_HUNDREDS = {"không": 0, **_ONE_TO_NINE}
_AFTER_MUOI_TEN = {**{k: v for k, v in _ONE_TO_NINE.items() if v != 5}, "lăm": 5}
_AFTER_MUOI = {**{k: v for k, v in _ONE_TO_NINE.items() if v not in {1, 5}}, "mốt": 1, "lăm": 5}
_TENS = {k: v for k, v in _ONE_TO_NINE.items() if v >= 2}
_SCALE = {"tỷ": 3, "triệu": 2, "nghìn": 1}


def read_words(text: str) -> int:
    """Words -> amount; raises on anything the rules of domain.md 3.6 do not produce."""
    assert text[0].isupper() and text[1:] == text[1:].lower(), "only the first letter is a capital"
    tokens = text[0].lower() + text[1:]
    words = tokens.split(" ")
    assert words[-1] == "đồng", "ends with đồng"
    words = words[:-1]
    if words == ["không"]:
        return 0
    total, last_scale, group = 0, 4, []
    for word in [*words, None]:
        if word is not None and word not in _SCALE:
            group.append(word)
            continue
        scale = _SCALE[word] if word is not None else 0
        assert scale < last_scale, "scales strictly decrease"
        total += _read_group(group, leading=last_scale == 4) * 1000**scale
        last_scale, group = scale, []
        if word is None:
            break
    return total


def _read_group(words: list[str], *, leading: bool) -> int:
    if not words and not leading:
        return 0  # nothing after the last scale word: the units group was zero
    value = 0
    has_hundreds = len(words) >= 2 and words[1] == "trăm"
    if has_hundreds:
        value, words = 100 * _HUNDREDS[words[0]], words[2:]
        assert value or not leading, "the leading group never says không trăm"
    else:
        assert leading, "a group after the first is read in full, from its hundreds"
    match words:
        case []:
            pass
        case ["linh", unit] if has_hundreds:
            value += _ONE_TO_NINE[unit]
        case ["mười"]:
            value += 10
        case ["mười", unit]:
            value += 10 + _AFTER_MUOI_TEN[unit]
        case [tens, "mươi"]:
            value += 10 * _TENS[tens]
        case [tens, "mươi", unit]:
            value += 10 * _TENS[tens] + _AFTER_MUOI[unit]
        case [unit] if not has_hundreds:
            value += _ONE_TO_NINE[unit]
        case _:
            raise AssertionError(f"not a group: {words}")
    assert value > 0, "zero groups are skipped"
    return value


def test_oracle_reads_the_domain_examples() -> None:
    for amount, words in DOMAIN_EXAMPLES + EDGE_CASES:
        assert read_words(words) == amount


@pytest.mark.parametrize(
    "bad",
    [
        "Hai mươi một đồng",  # mốt after mươi
        "Mười năm đồng",  # lăm after mười
        "Hai mươi năm đồng",  # lăm after mươi
        "Một nghìn linh năm đồng",  # a non-leading group is read in full
        "Một triệu không nghìn đồng",  # zero groups are skipped
        "một đồng",  # capital first letter
        "Một",  # ends with đồng
    ],
)
def test_oracle_rejects_wrong_forms(bad: str) -> None:
    with pytest.raises((AssertionError, KeyError)):
        read_words(bad)


# Amounts built from groups, so that zero groups and the special tens/units appear far more often than uniformly.
_GROUP = st.sampled_from([0, 1, 4, 5, 10, 11, 14, 15, 20, 21, 24, 25, 100, 101, 105, 110, 115, 999]) | st.integers(
    0, 999
)
_FROM_GROUPS = st.lists(_GROUP, min_size=1, max_size=4).map(lambda gs: sum(g * 1000**i for i, g in enumerate(gs)))


@settings(max_examples=2000)
@given(st.integers(0, MAX_AMOUNT) | _FROM_GROUPS)
def test_words_read_back_to_the_amount(amount: int) -> None:
    words = amount_in_words(amount)
    assert read_words(words) == amount
    assert len(words) <= 255  # TgTTTBChu
