"""The invoices package's errors share one root, and a document refused for any reason is one exception type."""

from __future__ import annotations

import importlib
import inspect
import pkgutil

import pytest

import invoices
from invoices.errors import InvalidDocument, InvoiceError, Reason
from invoices.validate import validate
from invoices.verify import pinned, verify
from invoices.xmldsig import parse_xml
from payments.core.errors import Conflict


def _package_exceptions() -> set[type[BaseException]]:
    found: set[type[BaseException]] = set()
    for info in pkgutil.walk_packages(invoices.__path__, "invoices."):
        module = importlib.import_module(info.name)
        for _name, value in inspect.getmembers(module, inspect.isclass):
            if issubclass(value, BaseException) and value.__module__.startswith("invoices."):
                found.add(value)
    return found


def test_every_invoices_exception_is_an_invoice_error() -> None:
    exceptions = _package_exceptions()
    assert InvalidDocument in exceptions
    assert [e.__qualname__ for e in exceptions if not issubclass(e, InvoiceError)] == []
    assert [e.__qualname__ for e in exceptions if e.__name__ == "InvalidDocument"] == ["InvalidDocument"]


def test_unsafe_xml_unsigned_xml_and_xsd_violations_raise_the_same_class() -> None:
    with pytest.raises(InvalidDocument) as unsafe:
        parse_xml(b'<!DOCTYPE HDon [<!ENTITY x "y">]><HDon/>')
    with pytest.raises(InvalidDocument) as off_format:
        validate(b"<HDon><DLHDon><TTChung><PBan>2.1.0</PBan></TTChung></DLHDon></HDon>")
    with pytest.raises(InvalidDocument) as unsigned:
        verify(b'<HDon><DLHDon Id="x"/></HDon>', pinned())
    assert (unsafe.value.reason, off_format.value.reason, unsigned.value.reason) == (
        Reason.doctype,
        Reason.schema,
        Reason.no_signature,
    )
    assert off_format.value.errors and all(e.startswith("line ") for e in off_format.value.errors)


def test_conflicts_a_client_causes_stay_http_conflicts() -> None:
    from invoices.errors import DocumentAdjusted, DocumentReplaced

    for error in (DocumentReplaced("x"), DocumentAdjusted("x")):
        assert isinstance(error, InvoiceError) and isinstance(error, Conflict)
        assert error.problem()["status"] == 409
