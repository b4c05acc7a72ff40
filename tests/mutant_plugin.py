"""A pytest plugin (``-p tests.mutant_plugin``) that plants one mutation before any test module is imported.

LEPHI_TEST_MUTANT_MODULE names the module, LEPHI_TEST_MUTANT_FROM the exact source text to replace (it must occur
exactly once) and LEPHI_TEST_MUTANT_TO its replacement. The module's source is changed in memory and run again in
the module's own namespace, so every later ``from module import name`` gets the mutant. Used by
tests/test_mutant_sample.py; inert when the variables are not set.
"""

from __future__ import annotations

import importlib
import inspect
import os

_MODULE = os.environ.get("LEPHI_TEST_MUTANT_MODULE")

if _MODULE:
    module = importlib.import_module(_MODULE)
    source = inspect.getsource(module)
    before, after = os.environ["LEPHI_TEST_MUTANT_FROM"], os.environ["LEPHI_TEST_MUTANT_TO"]
    found = source.count(before)
    if found != 1:
        raise RuntimeError(f"{_MODULE}: the text to mutate occurs {found} times, not once: {before!r}")
    exec(compile(source.replace(before, after), module.__file__ or _MODULE, "exec"), module.__dict__)
