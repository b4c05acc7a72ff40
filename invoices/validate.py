"""Check document XML against the project's XSD for its format version, before it is signed or accepted.

The XML is parsed with a hardened parser (no entity expansion, no DTD loading, no network, no huge trees) and a
document type declaration is refused outright: a document of ours never has one, and one in a document to sign or
verify is an attack, not a format variant. Each XSD is compiled once per process.
"""

from __future__ import annotations

import threading
from functools import cache
from importlib.resources import files
from typing import Any, TypeAlias

from lxml import etree  # type: ignore[import-untyped]  # lxml ships no type information and no stubs are installed

from invoices.errors import InvalidDocument, Reason
from invoices.format import PROFILES

# lxml objects, untyped for the reason above.
_Tree: TypeAlias = Any
_Schema: TypeAlias = Any
_Parser: TypeAlias = Any


# lxml keeps a validator's error log on the validator object, so two threads validating at once with one compiled
# schema could read each other's errors. Validation takes about a millisecond: serialising it is cheap.
_validate_lock = threading.Lock()


def validate(xml: bytes) -> None:
    """Raise `InvalidDocument` unless `xml` is an HDon valid for the format version its PBan names (reason
    ``schema``, one message per problem in ``errors``)."""
    tree = _parse(xml)
    conform(tree, _xsd_for(tree))


def conform(tree: _Tree, xsd: str) -> None:
    """Raise `InvalidDocument` (reason ``schema``) unless the parsed XML is valid against the package's XSD ``xsd``."""
    schema = _schema(xsd)
    with _validate_lock:
        if schema.validate(tree):
            return
        # The path as well as the line: a built document is one long line, so the line alone locates nothing.
        errors = [f"line {error.line}, {error.path}: {error.message}" for error in schema.error_log]
    raise InvalidDocument(Reason.schema, "; ".join(errors), errors)


def _parser() -> _Parser:
    # A new parser per call: lxml parsers are not meant to be shared between threads.
    return etree.XMLParser(
        resolve_entities=False, no_network=True, load_dtd=False, huge_tree=False, dtd_validation=False
    )


def _parse(xml: bytes) -> _Tree:
    try:
        root = etree.fromstring(xml, _parser())
    except etree.XMLSyntaxError as exc:
        raise InvalidDocument(Reason.parse_error, f"line {exc.lineno}: {exc.msg}") from None
    tree = root.getroottree()
    if tree.docinfo.doctype:
        raise InvalidDocument(
            Reason.doctype, f"line 1: a document type declaration is not allowed ({tree.docinfo.doctype})"
        )
    return tree


def _xsd_for(tree: _Tree) -> str:
    root = tree.getroot()
    version = root.findtext("DLHDon/TTChung/PBan")
    if root.tag != "HDon" or version not in PROFILES:
        where = root.find("DLHDon/TTChung/PBan")
        line = where.sourceline if where is not None else root.sourceline
        raise InvalidDocument(Reason.schema, f"line {line}: not an HDon of a known format version (PBan {version!r})")
    return PROFILES[version].xsd


@cache
def _schema(name: str) -> _Schema:
    source = files("invoices").joinpath("schema", name).read_bytes()
    return etree.XMLSchema(etree.fromstring(source, _parser()))
