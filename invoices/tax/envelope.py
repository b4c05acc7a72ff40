"""The transmission envelope ``TDiep`` that carries documents and notices to the tax authority (domain.md 3.5).

Layout (no namespace)::

    <TDiep>
      <TTChung>
        <PBan>2.1.0</PBan> <MNGui>sender</MNGui> <MNNhan>TCT</MNNhan> <MLTDiep>203</MLTDiep>
        <MTDiep>sender + 32 uppercase hex</MTDiep> <MTDTChieu/> <MST>the agency's tax code</MST> <SLuong>1</SLuong>
      </TTChung>
      <DLieu><HDon>...the signed document, byte for byte...</HDon></DLieu>
    </TDiep>

A signed document goes into ``DLieu`` as the very bytes that were signed and stored: they are spliced into the
envelope rather than re-serialised, so the legal original is what travels, and its signature verifies once the
element is taken out again. The envelope declares no namespace, so the inclusive C14N of the embedded signed data
is the same inside it as outside. ``MTDTChieu`` is written empty in a first message [I]; the envelope is validated
against ``invoices/schema/tdiep-2.1.0.xsd`` before it is stored.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from enum import IntEnum
from typing import Any, Final, TypeAlias

from lxml import etree  # type: ignore[import-untyped]  # lxml ships no type information and no stubs are installed

from invoices.errors import EnvelopeError
from invoices.format import CURRENT
from invoices.validate import conform
from invoices.xmldsig import parse_xml

__all__ = [
    "RECEIVER",
    "Header",
    "MessageType",
    "Shell",
    "build_envelope",
    "carrying",
    "documents_in",
    "message_type_for_series",
    "new_message_id",
    "shell_for",
]

_Element: TypeAlias = Any  # an lxml element, untyped for the reason above

RECEIVER: Final = "TCT"
ENVELOPE_VERSION: Final = CURRENT.version
XSD: Final = "tdiep-2.1.0.xsd"
SENDER = re.compile(r"[A-Z0-9]{1,14}")
MESSAGE_ID = re.compile(r"[A-Z0-9]{1,14}[0-9A-F]{32}")
_DECLARATION = re.compile(rb"\A(?:\xef\xbb\xbf)?<\?xml\s[^>]*\?>")
_BLANK = b" \t\r\n"


class MessageType(IntEnum):
    """MLTDiep. Lephi sends 200, 203, 300 and 400; the others arrive as replies and are only read."""

    document_for_code = 200
    coded_document = 202
    uncoded_document = 203
    check_result = 204
    notice = 300
    summary = 400
    technical_reply = 999


def message_type_for_series(series: str) -> MessageType:
    """A series starting with C is coded by the tax authority (sent for a code), one with K is sent as data."""
    if series[:1] == "C":
        return MessageType.document_for_code
    if series[:1] == "K":
        return MessageType.uncoded_document
    raise EnvelopeError(f"series {series!r} is neither coded (C...) nor uncoded (K...)")


def new_message_id(sender: str) -> str:
    """MTDiep: the sender code and 32 uppercase hexadecimal digits, unique without asking anyone."""
    if not SENDER.fullmatch(sender):
        raise EnvelopeError(f"sender code {sender!r} is not 1-14 uppercase letters or digits")
    return sender + uuid.uuid4().hex.upper()


@dataclass(frozen=True)
class Header:
    """TDiep/TTChung, without SLuong (the number of documents carried, counted when the envelope is built)."""

    sender: str  # MNGui
    message_type: MessageType  # MLTDiep
    message_id: str  # MTDiep
    tax_code: str  # MST: the agency, the taxpayer the message is about
    reference: str | None = None  # MTDTChieu

    def __post_init__(self) -> None:
        if not SENDER.fullmatch(self.sender):
            raise EnvelopeError(f"sender code {self.sender!r} is not 1-14 uppercase letters or digits")
        if not self.message_id.startswith(self.sender) or not MESSAGE_ID.fullmatch(self.message_id):
            raise EnvelopeError(f"message id {self.message_id!r} is not the sender code and 32 uppercase hex")
        if self.reference is not None and not MESSAGE_ID.fullmatch(self.reference):
            raise EnvelopeError(f"reference {self.reference!r} is not a message id")


def build_envelope(header: Header, documents: Sequence[bytes]) -> bytes:
    """The TDiep carrying ``documents`` (signed XML, each one element after an optional XML declaration).

    Raises ``EnvelopeError`` for a document that cannot travel unchanged, ``invoices.errors.InvalidDocument`` for
    one that is not safe XML or whose header breaks the TDiep schema.
    """
    if not documents:
        raise EnvelopeError("an envelope carries at least one document")
    bodies = [_element_bytes(document) for document in documents]
    marker = b"<DLieu></DLieu>"
    shell = _shell(header, len(documents))
    assert shell.count(marker) == 1  # text is escaped by lxml, so only the element itself can match
    envelope = shell.replace(marker, b"<DLieu>" + b"".join(bodies) + b"</DLieu>")
    _check(envelope, documents)
    return envelope


@dataclass(frozen=True)
class Shell:
    """An envelope for one document, built and checked against the schema before the document exists. For the
    issuing path: a document is signed while its series' counter row is locked, and all that is done between the
    signature and the commit makes the other workers wait."""

    header: Header
    before: bytes
    after: bytes


def shell_for(header: Header) -> Shell:
    shell = _shell(header, 1)
    marker = b"<DLieu></DLieu>"
    # Any element of no namespace stands for the document: the schema does not look inside DLieu's elements.
    conform(parse_xml(shell.replace(marker, b"<DLieu><HDon/></DLieu>")), XSD)
    before, after = shell.split(marker)
    return Shell(header, before + b"<DLieu>", b"</DLieu>" + after)


def carrying(shell: Shell, document: bytes) -> bytes:
    """The envelope with the signed document in it, byte for byte: what ``build_envelope`` makes of the same header
    and document. The document's root element is checked as there; the rest of that function's checks hold by
    construction: the shell passed the schema, and as it declares no namespace and no ``xml:`` attribute, the
    document canonicalises inside it as it does alone."""
    return shell.before + _element_bytes(document) + shell.after


def documents_in(envelope: bytes) -> list[bytes]:
    """The documents an envelope carries, each serialised on its own as a UTF-8 document."""
    data = parse_xml(envelope).find("DLieu")
    if data is None:
        raise EnvelopeError("the envelope has no DLieu")
    return [_serialise(child) for child in data if isinstance(child.tag, str)]


def _shell(header: Header, count: int) -> bytes:
    root = etree.Element("TDiep")
    general = etree.SubElement(root, "TTChung")
    values = [
        ("PBan", ENVELOPE_VERSION),
        ("MNGui", header.sender),
        ("MNNhan", RECEIVER),
        ("MLTDiep", str(int(header.message_type))),
        ("MTDiep", header.message_id),
        ("MTDTChieu", header.reference or ""),
        ("MST", header.tax_code),
        ("SLuong", str(count)),
    ]
    for tag, text in values:
        etree.SubElement(general, tag).text = text
    etree.SubElement(root, "DLieu").text = ""  # "" rather than None: serialised as a start and an end tag
    shell: bytes = etree.tostring(root, encoding="UTF-8", xml_declaration=True)
    return shell


def _element_bytes(document: bytes) -> bytes:
    """The bytes of the document's root element exactly as given, or a refusal: never a re-serialised copy."""
    root = parse_xml(document)  # hardened: no DTD, no entities, size-limited
    encoding = (root.getroottree().docinfo.encoding or "").upper()
    if encoding != "UTF-8":
        raise EnvelopeError(f"a document must be UTF-8 to travel in the envelope, not {encoding or 'unknown'}")
    if not isinstance(root.tag, str) or root.prefix is not None or root.tag.startswith("{"):
        raise EnvelopeError("a document's root element must have no namespace")
    body = _DECLARATION.sub(b"", document, count=1).strip(_BLANK)
    tag = root.tag.encode()
    opens = body.startswith(b"<" + tag) and body[len(tag) + 1 : len(tag) + 2] in (b">", b"/", b" ", b"\t", b"\r", b"\n")
    # Nothing but whitespace, comments and processing instructions may follow the root element, and none of them
    # ends like an end tag or an empty-element tag.
    if not opens or not (body.endswith(b"</" + tag + b">") or body.endswith(b"/>")):
        raise EnvelopeError("a document must be one element, with no comment or processing instruction around it")
    return body


def _check(envelope: bytes, documents: Sequence[bytes]) -> None:
    root = parse_xml(envelope)
    conform(root, XSD)
    carried = list(root.find("DLieu"))
    # The property the signatures depend on: each document canonicalises inside the envelope as it did alone.
    for inside, document in zip(carried, documents, strict=True):
        if _c14n(inside) != _c14n(parse_xml(document)):
            raise EnvelopeError("a document changed on its way into the envelope")


def _c14n(element: _Element) -> bytes:
    canonical: bytes = etree.tostring(element, method="c14n")
    return canonical


def _serialise(element: _Element) -> bytes:
    serialised: bytes = etree.tostring(element, encoding="UTF-8", xml_declaration=True, with_tail=False)
    return serialised
