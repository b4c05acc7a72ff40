"""A fixed sample of mutants of the critical modules, each of which the targeted tests must kill: the regression
guard for the mutation results in docs/testing.md (the full run is ``make mutate``, too slow for every submission).

Each mutant is planted by tests/mutant_plugin.py in a separate pytest process that runs only the tests mapped to its
module; that run must fail. The control runs the same tests without the mutant and they must pass, so a failure
is the mutant's doing.
"""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[1]


@dataclass(frozen=True)
class Mutant:
    name: str
    module: str
    before: str
    after: str
    tests: tuple[str, ...]


WORDS = ("tests/invoices/test_words.py::test_known_amounts",)
TABLE = ("tests/test_transition_table.py",)
NUMBERING = (
    "tests/invoices/test_numbering.py::test_series_year_digits_follow_the_issue_date",
    "tests/invoices/test_numbering.py::test_series_year_digits_are_always_two",
)
MOMO = ("tests/adapters/test_momo.py::test_an_id_of_exactly_fifty_characters_is_kept_a_longer_one_is_hashed",)
SCOPES = (
    "tests/test_auth_units.py::test_a_key_with_the_scope_passes",
    "tests/test_auth_units.py::test_a_key_without_the_scope_is_403_naming_it",
)

MUTANTS = [
    Mutant("words-mot-after-muoi", "invoices.words", '{1: "mốt", 5: "lăm"}', '{1: "một", 5: "lăm"}', WORDS),
    Mutant("words-leading-group-full", "invoices.words", "if full or hundreds:", "if hundreds:", WORDS),
    Mutant("words-muoi-lam", "invoices.words", '"lăm" if unit == 5', '"năm" if unit == 5', WORDS),
    Mutant(
        "table-succeeded-to-failed",
        "payments.payment.states",
        "S.succeeded: frozenset({S.partially_refunded, S.refunded})",
        "S.succeeded: frozenset({S.partially_refunded, S.refunded, S.failed})",
        TABLE,
    ),
    Mutant(
        "table-expired-from-pending-dropped",
        "payments.payment.states",
        "S.pending: frozenset({S.succeeded, S.failed, S.cancelled, S.expired})",
        "S.pending: frozenset({S.succeeded, S.failed, S.cancelled})",
        TABLE,
    ),
    Mutant("numbering-year-digits", "invoices.numbering", "{year % 100:02d}", "{year % 100}", NUMBERING),
    Mutant(
        "momo-id-length", "adapters.momo", "len(candidate) <= MAX_ID_LENGTH", "len(candidate) < MAX_ID_LENGTH", MOMO
    ),
    Mutant("scope-check-inverted", "payments.auth.deps", "if scope.value not in", "if scope.value in", SCOPES),
]


def _pytest(tests: tuple[str, ...], mutant: Mutant | None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LEPHI_TEST_")}
    if mutant is not None:
        env.update(
            LEPHI_TEST_MUTANT_MODULE=mutant.module,
            LEPHI_TEST_MUTANT_FROM=mutant.before,
            LEPHI_TEST_MUTANT_TO=mutant.after,
        )
    # No conftest: the sampled tests need none of its fixtures, and it would import the whole app first.
    args = ["-q", "-x", "-p", "no:cacheprovider", "-p", "tests.mutant_plugin", "--noconftest", "-o", "addopts="]
    return subprocess.run(
        [sys.executable, "-m", "pytest", *args, *tests],
        check=False,
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.parametrize("tests", sorted({m.tests for m in MUTANTS}), ids=lambda t: t[0].split("/")[-1])
def test_the_sampled_tests_pass_without_a_mutant(tests: tuple[str, ...]) -> None:
    run = _pytest(tests, None)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]


@pytest.mark.parametrize("mutant", MUTANTS, ids=lambda m: m.name)
def test_each_sampled_mutant_is_killed(mutant: Mutant) -> None:
    run = _pytest(mutant.tests, mutant)
    assert "occurs" not in run.stderr, run.stderr[-3000:]  # the mutant was planted
    assert run.returncode == 1, f"{mutant.name} survived:\n{run.stdout[-3000:]}{run.stderr[-3000:]}"
