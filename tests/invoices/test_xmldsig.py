"""The XML-DSig profile is stated once, and modules of the package use each other's public names only."""

from __future__ import annotations

import ast
from pathlib import Path

from signxml.algorithms import CanonicalizationMethod, DigestAlgorithm, SignatureMethod

import invoices
from invoices import xmldsig


def test_profile_algorithms_are_the_ones_signxml_names() -> None:
    assert CanonicalizationMethod.CANONICAL_XML_1_0.value == xmldsig.C14N
    assert SignatureMethod.RSA_SHA256.value == xmldsig.RSA_SHA256
    assert DigestAlgorithm.SHA256.value == xmldsig.SHA256


def test_no_module_imports_another_modules_private_names() -> None:
    root = Path(invoices.__file__).parent
    offending = []
    for path in sorted(root.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("invoices"):
                offending += [f"{path.relative_to(root)}: {a.name}" for a in node.names if a.name.startswith("_")]
    assert offending == []
