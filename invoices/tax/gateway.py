"""The way to the tax authority: a licensed T-VAN provider's file drop (domain.md 3.5, T-VAN [I]).

:class:`TaxGateway` is the seam; :class:`FileDropGateway` is the one implementation. The provider runs an agent on
the same host (or a shared volume) that picks up our messages, relays them, and writes back what the tax authority
answers. Folder layout under ``LEPHI_TAX_DROP_DIR``::

    outgoing/<MTDiep>.xml     our TDiep messages, one file each, written atomically and never rewritten (the
                              agent must take only *.xml: a file being written is named .<MTDiep>.<hex>.tmp)
    replies/*.xml             replies relayed by the agent, which must write them under another name (not ending
                              in .xml) and rename them, so that a half-written file is never read
    replies/done/             replies applied to a message here, kept unchanged
    replies/unmatched/        replies that answer no message of ours, kept for an operator
    replies/rejected/         files that are not a reply this module can read, kept for an operator

A reply is a TDiep envelope like ours: ``TTChung`` with ``MLTDiep`` (its type), ``MTDiep`` (its own id) and
``MTDTChieu`` (the MTDiep of our message it answers) [V: the envelope]. What a reply carries inside ``DLieu`` is
not in the public tables; the element names read here are assumptions [I], named once in :data:`REPLY_TAGS`:

- 999 technical reply: ``DLieu/TBao/TTTNhan``, 0 = received without error, anything else = refused, with the
  reasons in ``DSLDo/LDo`` (``MLoi`` code, ``MTa`` description);
- 202 coded document: the document returned with its tax-authority code in ``DLieu/HDon/MCCQT`` (or, as some
  providers relay it, ``DLieu/TBao/MCCQT``);
- 204 check result: refused when it lists an error (an ``LDo`` with an ``MLoi``), accepted otherwise.

Replies are parsed with the hardened parser (no DTD, no entities, size-limited). The tax authority's own signature
on a 202 is not checked here: its certificate is not pinned in this service yet.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, NamedTuple, Protocol, TypeAlias

from invoices.errors import InvalidDocument, MessageConflict, UnreadableReply
from invoices.tax.envelope import MESSAGE_ID, MessageType
from invoices.xmldsig import MAX_XML_BYTES, parse_xml
from payments.core.logging import get_logger

__all__ = [
    "REPLY_TAGS",
    "FileDropGateway",
    "OutgoingMessage",
    "Reply",
    "ReplyError",
    "ReplyTags",
    "TaxGateway",
    "parse_reply",
]

log = get_logger(__name__)

_Element: TypeAlias = Any  # an lxml element, untyped (lxml ships no type information)


@dataclass(frozen=True)
class ReplyTags:
    """Where a reply keeps what this service reads, relative to the TDiep root. All [I] but the envelope's."""

    message_type: str = "TTChung/MLTDiep"  # [V]
    message_id: str = "TTChung/MTDiep"  # [V]
    reference: str = "TTChung/MTDTChieu"  # [V]
    receipt_status: str = "DLieu/TBao/TTTNhan"
    received: str = "0"
    errors: str = "DLieu//DSLDo/LDo"
    error_code: str = "MLoi"
    error_text: str = "MTa"
    code: tuple[str, ...] = ("DLieu/HDon/MCCQT", "DLieu/TBao/MCCQT")
    code_length: int = 34  # [V]


REPLY_TAGS: Final = ReplyTags()


@dataclass(frozen=True)
class OutgoingMessage:
    message_id: str  # MTDiep, also the file name
    xml: bytes  # the TDiep, exactly as stored


class ReplyError(NamedTuple):
    """One DSLDo/LDo: a reason listed in a reply. Without a code it is information (a 999 says "received")."""

    code: str  # MLoi
    text: str  # MTa

    def __str__(self) -> str:
        return f"{self.code}: {self.text}" if self.code else self.text


@dataclass(frozen=True)
class Reply:
    """One reply as received (``xml``, unchanged) and what was read from it."""

    name: str  # where it came from (the file name), for acknowledge / set_aside
    xml: bytes
    message_type: int  # MLTDiep; kept as a number, a type unknown here is still stored
    message_id: str  # the reply's own MTDiep
    reference: str | None  # MTDTChieu: our message it answers
    accepted: bool | None  # the verdict of a 999 or 204; None for a type that carries none
    errors: tuple[ReplyError, ...]
    code: str | None  # MCCQT of a 202


class TaxGateway(Protocol):
    def send(self, message: OutgoingMessage) -> None:
        """Hand the message over; sending the same message again is harmless (idempotent per MTDiep)."""

    def send_all(self, messages: Sequence[OutgoingMessage]) -> list[Exception | None]:
        """Hand several messages over, as ``send`` does each: for each, in order, None when it was handed over or
        the error that stopped it. What was handed over is durably so when this returns."""

    def replies(self) -> Iterable[Reply]:
        """Replies waiting to be applied; unreadable ones are set apart and logged, never returned."""

    def acknowledge(self, reply: Reply) -> None:
        """The reply was applied (or had been): it is not returned again."""

    def set_aside(self, reply: Reply) -> None:
        """The reply answers no message of ours: kept for an operator, not returned again."""


class FileDropGateway:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.outgoing = root / "outgoing"
        self.inbox = root / "replies"
        self.done = self.inbox / "done"
        self.unmatched = self.inbox / "unmatched"
        self.rejected = self.inbox / "rejected"

    def send(self, message: OutgoingMessage) -> None:
        (error,) = self.send_all([message])
        if error is not None:
            raise error

    def send_all(self, messages: Sequence[OutgoingMessage]) -> list[Exception | None]:
        outcomes: list[Exception | None] = []
        try:
            self.outgoing.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            return [exc] * len(messages)
        for message in messages:
            try:
                self._publish(message)
            except Exception as exc:  # this message only: the others are still handed over
                outcomes.append(exc)
            else:
                outcomes.append(None)
        if any(outcome is None for outcome in outcomes):
            # Each file was flushed to disk before its name was published; one flush of the folder then makes
            # every new name durable at once, rather than one flush a message.
            try:
                _sync_directory(self.outgoing)
            except OSError as exc:
                outcomes = [exc if outcome is None else outcome for outcome in outcomes]
        return outcomes

    def _publish(self, message: OutgoingMessage) -> None:
        """Write the message under its name (not yet durable: see ``send_all``)."""
        if not MESSAGE_ID.fullmatch(message.message_id):  # it becomes a file name: nothing but [A-Z0-9]
            raise ValueError(f"{message.message_id!r} is not a message id")
        target = self.outgoing / f"{message.message_id}.xml"
        if _holds(target, message.xml):
            return
        temporary = self.outgoing / f".{message.message_id}.{uuid.uuid4().hex}.tmp"
        try:
            _write_durably(temporary, message.xml)
            # A hard link publishes the complete file under its name at once, and unlike os.replace it fails
            # rather than replace a file another writer published in the meantime.
            os.link(temporary, target)
        except FileExistsError:
            if not _holds(target, message.xml):
                raise MessageConflict(f"{target.name} already holds a different message") from None
        finally:
            temporary.unlink(missing_ok=True)

    def replies(self) -> Iterator[Reply]:
        for path in sorted(self.inbox.glob("*.xml")):
            try:
                data = _read_limited(path)
            except FileNotFoundError:
                continue  # another consumer took it
            try:
                reply = parse_reply(data, path.name)
            except UnreadableReply as exc:
                log.warning("tax.reply_unreadable", file=path.name, reason=str(exc)[:500])
                _move(path, self.rejected)
                continue
            yield reply

    def acknowledge(self, reply: Reply) -> None:
        _move(self._inbox_path(reply), self.done)

    def set_aside(self, reply: Reply) -> None:
        _move(self._inbox_path(reply), self.unmatched)

    def _inbox_path(self, reply: Reply) -> Path:
        path = self.inbox / reply.name
        if path.parent != self.inbox:
            raise ValueError(f"{reply.name!r} is not a file of the replies folder")
        return path


def parse_reply(xml: bytes, name: str, tags: ReplyTags = REPLY_TAGS) -> Reply:
    try:
        root = parse_xml(xml)
    except InvalidDocument as exc:
        raise UnreadableReply(str(exc)) from None
    if root.tag != "TDiep":
        raise UnreadableReply(f"the root element is {root.tag!r}, not TDiep")
    type_text = _text(root, tags.message_type)
    if not (type_text.isascii() and type_text.isdigit() and len(type_text) == 3):
        raise UnreadableReply(f"MLTDiep {type_text!r} is not a message type")
    message_type = int(type_text)
    message_id = _text(root, tags.message_id)
    if not message_id or len(message_id) > 64 or not message_id.isprintable() or " " in message_id:
        raise UnreadableReply("the reply has no usable MTDiep")
    errors = _errors(root, tags)
    return Reply(
        name=name,
        xml=xml,
        message_type=message_type,
        message_id=message_id,
        reference=_text(root, tags.reference) or None,
        accepted=_verdict(root, message_type, errors, tags),
        errors=errors,
        code=_code(root, tags) if message_type == MessageType.coded_document else None,
    )


def _verdict(root: _Element, message_type: int, errors: tuple[ReplyError, ...], tags: ReplyTags) -> bool | None:
    if message_type == MessageType.technical_reply:
        status = _text(root, tags.receipt_status)
        if not status:
            raise UnreadableReply(f"a technical reply without {tags.receipt_status}")
        return status == tags.received
    if message_type == MessageType.check_result:
        return not any(error.code for error in errors)
    if message_type == MessageType.coded_document:
        return True
    return None


def _errors(root: _Element, tags: ReplyTags) -> tuple[ReplyError, ...]:
    found = []
    for reason in root.findall(tags.errors):
        code = (reason.findtext(tags.error_code) or "").strip()
        text = (reason.findtext(tags.error_text) or "").strip()
        if code or text:
            found.append(ReplyError(code, text))
    return tuple(found)


def _code(root: _Element, tags: ReplyTags) -> str:
    for path in tags.code:
        code = _text(root, path)
        if code:
            if len(code) != tags.code_length or not (code.isascii() and code.isalnum()):
                raise UnreadableReply(f"MCCQT {code!r} is not {tags.code_length} letters and digits")
            return code
    raise UnreadableReply("a coded-document reply without MCCQT")


def _text(root: _Element, path: str) -> str:
    return str(root.findtext(path, "") or "").strip()


def _holds(path: Path, data: bytes) -> bool:
    try:
        return path.read_bytes() == data
    except FileNotFoundError:
        return False


def _write_durably(path: Path, data: bytes) -> None:
    # O_EXCL: a fresh file of our own; the mode follows the umask, so the provider's agent can read it.
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    with os.fdopen(fd, "wb") as file:
        file.write(data)
        file.flush()
        os.fsync(file.fileno())


def _sync_directory(path: Path) -> None:
    """Make the new name itself durable: after a crash the file is there or not, never an empty name."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _read_limited(path: Path) -> bytes:
    with path.open("rb") as file:
        return file.read(MAX_XML_BYTES + 1)  # parse_xml refuses anything longer, without reading all of it


def _move(path: Path, folder: Path) -> None:
    """Move without ever replacing a file already kept there (a reply relayed twice under one name)."""
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / path.name
    try:
        if target.exists():
            target = folder / f"{path.stem}.{uuid.uuid4().hex}{path.suffix}"
        os.link(path, target)
    except FileNotFoundError:
        return  # another consumer moved it first
    except FileExistsError:
        target = folder / f"{path.stem}.{uuid.uuid4().hex}{path.suffix}"
        os.link(path, target)
    path.unlink(missing_ok=True)
