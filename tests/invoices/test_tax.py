"""Transmission to the tax authority through the T-VAN file drop, and the 04/SS-HĐĐT notice.

No tax-authority server stands in anywhere: the tests play the provider's agent by reading ``outgoing/`` and writing
reply files into ``replies/``, as the agent would.
"""

from __future__ import annotations

import os
import re
import threading
import uuid
from collections.abc import Sequence
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import xmlsec
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from lxml import etree  # type: ignore[import-untyped]  # lxml ships no type information and no stubs are installed
from pydantic import ValidationError
from sqlalchemy import func, update
from sqlmodel import col, select
from structlog.testing import capture_logs

from invoices.errors import EnvelopeError, InvalidDocument, MessageConflict, Reason
from invoices.signing import LocalSigner, make_dev_certificate
from invoices.tables import Document
from invoices.tax.envelope import (
    Header,
    MessageType,
    build_envelope,
    carrying,
    documents_in,
    message_type_for_series,
    new_message_id,
    shell_for,
)
from invoices.tax.gateway import FileDropGateway, OutgoingMessage, Reply
from invoices.tax.notice import Notice, NoticeAction, NoticedDocument, notice_xml, signed_notice, validate_notice
from invoices.tax.service import SEND, _claim, apply_replies, gateway_for, queue_document, queue_notice, send_pending
from invoices.tax.tables import TaxMessage, TaxMessageKind, TaxMessageStatus, TaxReply
from invoices.verify import pinned, verify, verify_notice
from invoices.xmldsig import VIETNAM, ds
from lephi.jobs import HANDLERS
from payments.agency.models import Agency
from payments.core.context import AppContext
from payments.core.types import utcnow
from payments.outbox.models import OutboxJob, OutboxStatus
from payments.outbox.worker import Worker
from payments.payment import kinds
from tests.conftest import Api
from tests.factories import dossier_body, payment_body, sandbox_outcome
from tests.invoices.test_signing import receipt

TAX_CODE = "0100000001"  # the test agency's (tests/factories.py)
MESSAGE_ID = re.compile(r"[A-Z0-9]{1,14}[0-9A-F]{32}")
MCCQT = "00A1B2C3D4E5F60718293A4B5C6D7E8F90"
Status = TaxMessageStatus


# --- helpers ---------------------------------------------------------------------------------------------------------


def issued(api: Api) -> Document:
    """A succeeded payment's e-receipt, issued by the worker as in production. Only issuance runs: the tests below
    hand messages over themselves, through their own gateway."""
    code = api.post("/v1/dossiers", dossier_body(copies=3)).json()["code"]
    payment = api.post("/v1/payments", payment_body(code)).json()
    sandbox_outcome(api.client, api.ctx.settings, payment["gateway_reference"], "success")
    with api.ctx.db.write() as s:  # the issuance's own hand-over job is left for the tests to play
        s.execute(update(OutboxJob).where(col(OutboxJob.kind) == "tax.send").values(status=OutboxStatus.done))
    Worker(api.ctx, {kinds.SUCCEEDED: HANDLERS[kinds.SUCCEEDED]}).run_once()
    with api.ctx.db.write() as s:
        s.execute(update(OutboxJob).where(col(OutboxJob.kind) == "tax.send").values(status=OutboxStatus.done))
    with api.ctx.db.read() as s:
        return s.exec(select(Document).where(Document.payment_id == payment["id"])).one()


def queued(api: Api, document: Document) -> TaxMessage:
    with api.ctx.db.write() as s:
        return queue_document(s, api.ctx.settings, document)


def message(ctx: AppContext, message_id: str) -> TaxMessage:
    with ctx.db.read() as s:
        row = s.get(TaxMessage, message_id)
        assert row is not None
        return row


def replies_stored(ctx: AppContext) -> list[TaxReply]:
    with ctx.db.read() as s:
        return list(s.exec(select(TaxReply).order_by(col(TaxReply.id))))


def agency_signer(api: Api) -> Any:
    return api.ctx.signers.for_agency(api.agency_code, TAX_CODE, f"Agency {api.agency_code}")


def drop(root: Path, xml: bytes, name: str | None = None) -> Path:
    """Write a reply as the provider's agent must: under a temporary name, then renamed into place."""
    folder = root / "replies"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / (name or f"{uuid.uuid4().hex}.xml")
    temporary = folder / f".{path.name}.part"
    temporary.write_bytes(xml)
    os.replace(temporary, path)
    return path


def envelope_reply(message_type: int, reference: str, data: str, reply_id: str | None = None) -> bytes:
    reply_id = reply_id or "TCT" + uuid.uuid4().hex.upper()
    return (
        '<?xml version="1.0" encoding="UTF-8"?><TDiep><TTChung><PBan>2.1.0</PBan><MNGui>TCT</MNGui>'
        f"<MNNhan>V0100000000</MNNhan><MLTDiep>{message_type}</MLTDiep><MTDiep>{reply_id}</MTDiep>"
        f"<MTDTChieu>{reference}</MTDTChieu><MST>{TAX_CODE}</MST><SLuong>1</SLuong></TTChung>"
        f"<DLieu>{data}</DLieu></TDiep>"
    ).encode()


def technical(reference: str, *, received: bool = True, errors: tuple[tuple[str, str], ...] = ()) -> bytes:
    """A 999 as the file drop expects it (tag names inside DLieu are the module's assumptions)."""
    reasons = "".join(f"<LDo><MLoi>{code}</MLoi><MTa>{text}</MTa></LDo>" for code, text in errors)
    if received and not errors:
        reasons = "<LDo><MLoi/><MTa>TCT đã nhận thông điệp thành công</MTa></LDo>"  # information, not an error
    status = "0" if received else "1"
    data = (
        f"<TBao><MTDiep>{reference}</MTDiep><MNGui>TCT</MNGui><NNhan>2026-03-01T09:30:05</NNhan>"
        f"<TTTNhan>{status}</TTTNhan><DSLDo>{reasons}</DSLDo></TBao>"
    )
    return envelope_reply(999, reference, data)


def coded(reference: str, document: Document, code: str = MCCQT) -> bytes:
    """A 202: our document returned with the tax authority's code (its own signature left out here)."""
    root = etree.fromstring(document.xml)
    mccqt = etree.Element("MCCQT", Id="MCCQT")
    mccqt.text = code
    root.insert(1, mccqt)
    return envelope_reply(202, reference, etree.tostring(root, encoding="unicode"))


class Counting(FileDropGateway):
    """The real file drop, counting hand-overs; optionally failing them."""

    def __init__(self, root: Path, fail: bool = False) -> None:
        super().__init__(root)
        self.sent: list[str] = []
        self.fail = fail
        self._lock = threading.Lock()

    def send_all(self, messages: Sequence[OutgoingMessage]) -> list[Exception | None]:
        if self.fail:
            raise OSError("the drop folder is not mounted")
        with self._lock:
            self.sent.extend(message.message_id for message in messages)
        return super().send_all(messages)


@pytest.fixture
def gateway(tmp_path: Path) -> Counting:
    return Counting(tmp_path / "drop")


# --- envelope --------------------------------------------------------------------------------------------------------


def test_message_id_is_the_sender_code_and_32_uppercase_hex() -> None:
    first, second = new_message_id("V0100000000"), new_message_id("V0100000000")
    assert MESSAGE_ID.fullmatch(first) and first.startswith("V0100000000") and len(first) == 11 + 32
    assert first != second and first[11:] == first[11:].upper()
    for bad in ("", "v01", "V" * 15, "V-01"):
        with pytest.raises(EnvelopeError):
            new_message_id(bad)


def test_message_type_follows_the_series() -> None:
    assert message_type_for_series("K26TLP") is MessageType.uncoded_document == 203
    assert message_type_for_series("C26TAA") is MessageType.document_for_code == 200
    assert MessageType.notice == 300 and MessageType.technical_reply == 999
    with pytest.raises(EnvelopeError, match="neither coded"):
        message_type_for_series("X26TAA")


def test_the_envelope_carries_the_issued_document_byte_for_byte_and_it_still_verifies(api: Api) -> None:
    document = issued(api)
    row = queued(api, document)
    assert (row.kind, row.message_type, row.status, row.document_id) == (
        TaxMessageKind.document,
        203,
        Status.queued,
        document.id,
    )
    general = etree.fromstring(row.xml).find("TTChung")
    assert [child.tag for child in general] == [
        "PBan", "MNGui", "MNNhan", "MLTDiep", "MTDiep", "MTDTChieu", "MST", "SLuong",
    ]  # fmt: skip
    sender = api.ctx.settings.effective_tax_sender_code
    assert [child.text for child in general] == ["2.1.0", sender, "TCT", "203", row.mtdiep, None, TAX_CODE, "1"]
    assert MESSAGE_ID.fullmatch(row.mtdiep) and row.mtdiep.startswith(sender)

    body = document.xml.split(b"?>", 1)[1].strip()
    assert row.xml.count(body) == 1  # the stored signed bytes, spliced in unchanged
    (carried,) = documents_in(row.xml)
    signer = agency_signer(api)
    verified = verify(carried, pinned(signer.certificate))
    assert (verified.series, verified.number, verified.total) == (document.series, document.number, 115_000)
    inside = etree.fromstring(row.xml).find("DLieu/HDon")
    stored = etree.fromstring(document.xml)
    assert etree.tostring(inside, encoding="UTF-8") == etree.tostring(stored, encoding="UTF-8")

    with api.ctx.db.write() as s:  # queueing the same document again is a no-op
        assert queue_document(s, api.ctx.settings, document).id == row.id
        assert s.exec(select(func.count()).select_from(TaxMessage)).one() == 1


def test_a_coded_series_goes_for_a_code(api: Api, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(api.ctx.settings, "receipt_series", "C26TLP")
    document = issued(api)
    assert document.series.startswith("C")
    assert queued(api, document).message_type == MessageType.document_for_code


def dev_signer(tax_code: str = TAX_CODE) -> LocalSigner:
    key_pem, cert_pem = make_dev_certificate(tax_code, "Sở Tư pháp tỉnh Lâm Đồng")
    return LocalSigner.from_pem(key_pem, cert_pem)


def test_envelope_keeps_signatures_of_documents_with_their_own_namespaces() -> None:
    signer = dev_signer("5800123456")
    namespaced = receipt().replace(b"<HDon>", b'<HDon xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">')
    documents = [signer.sign(receipt()), signer.sign(namespaced)]
    header = Header("V0100000000", MessageType.uncoded_document, new_message_id("V0100000000"), "5800123456")
    envelope = build_envelope(header, documents)
    assert etree.fromstring(envelope).findtext("TTChung/SLuong") == "2"
    for carried in documents_in(envelope):
        assert verify(carried, pinned(signer.certificate)).number == 42


@pytest.mark.parametrize(
    ("document", "error"),
    [
        (b'<?xml version="1.0" encoding="ISO-8859-1"?><HDon>x</HDon>', "UTF-8"),
        (b"<?xml version='1.0' encoding='UTF-8'?>\n<!-- before --><HDon>x</HDon>", "one element"),
        (b"<HDon>x</HDon><?pi after?>", "one element"),
        (b'<h:HDon xmlns:h="urn:x">x</h:HDon>', "namespace"),
    ],
)
def test_envelope_refuses_what_it_cannot_carry_unchanged(document: bytes, error: str) -> None:
    header = Header("V0100000000", MessageType.uncoded_document, new_message_id("V0100000000"), TAX_CODE)
    with pytest.raises(EnvelopeError, match=error):
        build_envelope(header, [document])
    with pytest.raises(EnvelopeError, match=error):  # and so does a shell made ahead of the document
        carrying(shell_for(header), document)


def test_a_shell_made_before_the_document_carries_it_as_build_envelope_does() -> None:
    """The issuing path makes the envelope before the document is numbered and signed, then puts it in."""
    signer = dev_signer("5800123456")
    namespaced = receipt().replace(b"<HDon>", b'<HDon xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">')
    for document in (signer.sign(receipt()), signer.sign(namespaced)):
        header = Header("V0100000000", MessageType.uncoded_document, new_message_id("V0100000000"), "5800123456")
        envelope = carrying(shell_for(header), document)
        assert envelope == build_envelope(header, [document])
        (carried,) = documents_in(envelope)
        assert verify(carried, pinned(signer.certificate)).number == 42
    with pytest.raises(InvalidDocument) as refused:
        carrying(shell_for(header), b'<!DOCTYPE HDon [<!ENTITY e "x">]><HDon>&e;</HDon>')
    assert refused.value.reason is Reason.doctype
    with pytest.raises(InvalidDocument, match="MST"):  # the header is checked against the XSD when the shell is made
        shell_for(Header("V0100000000", MessageType.notice, new_message_id("V0100000000"), "12"))


def test_envelope_refuses_a_doctype_and_a_header_that_does_not_hold_together() -> None:
    header = Header("V0100000000", MessageType.uncoded_document, new_message_id("V0100000000"), TAX_CODE)
    with pytest.raises(InvalidDocument) as refused:
        build_envelope(header, [b'<!DOCTYPE HDon [<!ENTITY e "x">]><HDon>&e;</HDon>'])
    assert refused.value.reason is Reason.doctype
    with pytest.raises(EnvelopeError, match="at least one"):
        build_envelope(header, [])
    with pytest.raises(EnvelopeError, match="sender code and 32"):
        Header("V0100000000", MessageType.notice, new_message_id("V0199999999"), TAX_CODE)
    with pytest.raises(InvalidDocument, match="MST"):  # the tdiep XSD checks the header too
        build_envelope(Header("V0100000000", MessageType.notice, new_message_id("V0100000000"), "12"), [b"<a/>"])


# --- file drop -------------------------------------------------------------------------------------------------------


def test_file_drop_writes_each_message_once_and_never_overwrites_another(tmp_path: Path) -> None:
    drop_gateway = FileDropGateway(tmp_path)
    outgoing = OutgoingMessage(new_message_id("V0100000000"), b"<TDiep>one</TDiep>")
    drop_gateway.send(outgoing)
    drop_gateway.send(outgoing)  # a retry after a crash: the same bytes, nothing new
    assert os.listdir(tmp_path / "outgoing") == [f"{outgoing.message_id}.xml"]  # no temporary file left behind
    assert (tmp_path / "outgoing" / f"{outgoing.message_id}.xml").read_bytes() == outgoing.xml
    with pytest.raises(MessageConflict):
        drop_gateway.send(OutgoingMessage(outgoing.message_id, b"<TDiep>two</TDiep>"))
    assert (tmp_path / "outgoing" / f"{outgoing.message_id}.xml").read_bytes() == outgoing.xml
    with pytest.raises(ValueError, match="not a message id"):
        drop_gateway.send(OutgoingMessage("../../etc/passwd", b"<x/>"))


def test_file_drop_publishes_nothing_when_the_write_fails_half_way(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    drop_gateway = FileDropGateway(tmp_path)

    def crash(*_args: Any) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(os, "link", crash)
    with pytest.raises(OSError, match="disk full"):
        drop_gateway.send(OutgoingMessage(new_message_id("V0100000000"), b"<TDiep/>"))
    assert os.listdir(tmp_path / "outgoing") == []  # neither the file nor the temporary one


def test_file_drop_hands_several_over_with_one_flush_of_the_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each file is flushed before its name is published; the folder once for all, after the last one. A message
    that cannot be written fails alone."""
    import invoices.tax.gateway as gateway_module

    synced: list[Path] = []
    real_sync = gateway_module._sync_directory

    def sync(path: Path) -> None:
        synced.append(path)
        real_sync(path)

    monkeypatch.setattr(gateway_module, "_sync_directory", sync)
    drop_gateway = FileDropGateway(tmp_path)
    good = [OutgoingMessage(new_message_id("V0100000000"), f"<TDiep>{n}</TDiep>".encode()) for n in range(3)]
    bad = OutgoingMessage("../escape", b"<x/>")
    outcomes = drop_gateway.send_all([good[0], bad, good[1], good[2]])
    assert [o is None for o in outcomes] == [True, False, True, True]
    assert isinstance(outcomes[1], ValueError)
    assert synced == [tmp_path / "outgoing"]
    assert sorted(os.listdir(tmp_path / "outgoing")) == sorted(f"{m.message_id}.xml" for m in good)
    [again] = drop_gateway.send_all([bad])
    assert isinstance(again, ValueError) and len(synced) == 1  # nothing was written: nothing to flush

    def broken(path: Path) -> None:
        raise OSError("I/O error")

    monkeypatch.setattr(gateway_module, "_sync_directory", broken)
    more = OutgoingMessage(new_message_id("V0100000000"), b"<TDiep>4</TDiep>")
    failed = drop_gateway.send_all([more, bad])
    assert [type(o) for o in failed] == [OSError, ValueError]  # not durable: not handed over


def test_file_drop_fails_every_message_when_its_folder_cannot_be_made(tmp_path: Path) -> None:
    (tmp_path / "drop").write_text("a file where the folder should be")
    drop_gateway = FileDropGateway(tmp_path / "drop")
    messages = [OutgoingMessage(new_message_id("V0100000000"), b"<TDiep/>") for _ in range(2)]
    outcomes = drop_gateway.send_all(messages)
    assert len(outcomes) == 2 and all(isinstance(o, OSError) for o in outcomes)
    with pytest.raises(OSError):
        drop_gateway.send(messages[0])


def test_gateway_follows_the_settings(ctx: AppContext, monkeypatch: pytest.MonkeyPatch) -> None:
    drop_gateway = gateway_for(ctx.settings)
    assert isinstance(drop_gateway, FileDropGateway) and drop_gateway.root == ctx.settings.effective_tax_drop_dir
    monkeypatch.setattr(ctx.settings, "tax_transmission", False)
    assert gateway_for(ctx.settings) is None


# --- sending ---------------------------------------------------------------------------------------------------------


def test_send_pending_hands_each_message_over_once(api: Api, gateway: Counting) -> None:
    rows = [queued(api, issued(api)) for _ in range(2)]
    assert send_pending(api.ctx, gateway) == 2
    assert send_pending(api.ctx, gateway) == 0
    assert sorted(gateway.sent) == sorted(row.mtdiep for row in rows)
    for row in rows:
        sent = message(api.ctx, row.id)
        assert sent.status is Status.sent and sent.sent_at is not None
        assert (gateway.outgoing / f"{row.mtdiep}.xml").read_bytes() == row.xml == sent.xml


def test_concurrent_senders_hand_each_message_over_once(api: Api, gateway: Counting) -> None:
    document = issued(api)
    with api.ctx.db.write() as s:
        agency = s.get(Agency, api.agency_id)
        assert agency is not None
        notice = notice_for(document)
        rows = [queue_notice(s, api.ctx.settings, agency_signer(api), agency, notice) for _ in range(12)]
    threads = [threading.Thread(target=send_pending, args=(api.ctx, gateway, 3)) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    with api.ctx.db.read() as s:  # the receipt's own message, queued when it was issued, goes out too
        everything = [m.mtdiep for m in s.exec(select(TaxMessage))]
    assert len(everything) == len(rows) + 1
    assert sorted(gateway.sent) == sorted(everything)
    assert {message(api.ctx, row.id).status for row in rows} == {Status.sent}


def test_a_claim_takes_no_more_messages_than_its_batch(api: Api, gateway: Counting) -> None:
    """On PostgreSQL the claim's subquery, run again for each row of the table, took every queued message whatever
    the batch (a nested-loop plan, chosen on a table without statistics): 7 of 7 for a batch of 3."""
    document = issued(api)
    with api.ctx.db.write() as s:
        agency = s.get(Agency, api.agency_id)
        assert agency is not None
        for _ in range(6):
            queue_notice(s, api.ctx.settings, agency_signer(api), agency, notice_for(document))
    claimed = [len(batch) for batch in iter(lambda: _claim(api.ctx, 3), [])]
    assert claimed == [3, 3, 1]
    with api.ctx.db.read() as s:
        assert set(s.exec(select(TaxMessage.status))) == {Status.sending}


def _waiting_send_jobs(api: Api) -> int:
    with api.ctx.db.read() as s:
        jobs = s.exec(select(OutboxJob).where(OutboxJob.kind == SEND, OutboxJob.status == OutboxStatus.pending)).all()
    return len(jobs)


def test_a_full_batch_calls_another_sender_to_help_and_a_short_one_does_not(api: Api, gateway: Counting) -> None:
    """Messages beyond a full batch may be waiting: a hand-off job is queued for them (unless one waits already),
    so that another worker shares them; the last, short batch leaves none behind."""
    document = issued(api)
    with api.ctx.db.write() as s:
        s.execute(update(OutboxJob).where(col(OutboxJob.kind) == SEND).values(status=OutboxStatus.done))
        agency = s.get(Agency, api.agency_id)
        assert agency is not None
        for _ in range(4):
            queue_notice(s, api.ctx.settings, agency_signer(api), agency, notice_for(document))
    assert _waiting_send_jobs(api) == 0
    assert send_pending(api.ctx, gateway, 3) == 5  # two batches of 3 (the receipt's message and 4 notices): 3, 2
    assert _waiting_send_jobs(api) == 1  # called after the first, full batch; not again while it waits
    with api.ctx.db.write() as s:
        s.execute(update(OutboxJob).where(col(OutboxJob.kind) == SEND).values(status=OutboxStatus.done))
        for _ in range(2):
            queue_notice(s, api.ctx.settings, agency_signer(api), agency, notice_for(document))
    assert send_pending(api.ctx, gateway, 3) == 2
    assert _waiting_send_jobs(api) == 0


def test_a_failed_hand_over_stays_queued_and_goes_out_later(api: Api, tmp_path: Path) -> None:
    row = queued(api, issued(api))
    assert send_pending(api.ctx, Counting(tmp_path / "drop", fail=True)) == 0
    failed = message(api.ctx, row.id)
    assert failed.status is Status.queued and "not mounted" in (failed.error or "")
    assert send_pending(api.ctx, Counting(tmp_path / "drop")) == 1
    assert message(api.ctx, row.id).status is Status.sent


def test_a_claim_left_by_a_dead_sender_is_taken_over(api: Api, gateway: Counting) -> None:
    row = queued(api, issued(api))
    with api.ctx.db.write() as s:
        s.execute(
            update(TaxMessage)
            .where(col(TaxMessage.id) == row.id)
            .values(status=Status.sending, updated_at=utcnow() - timedelta(seconds=1))
        )
    assert send_pending(api.ctx, gateway) == 0  # still within the lease: its sender may be alive
    with api.ctx.db.write() as s:
        long_ago = utcnow() - timedelta(hours=1)
        s.execute(update(TaxMessage).where(col(TaxMessage.id) == row.id).values(updated_at=long_ago))
    assert send_pending(api.ctx, gateway) == 1 and message(api.ctx, row.id).status is Status.sent


# --- replies ---------------------------------------------------------------------------------------------------------


@pytest.fixture
def sent(api: Api, gateway: Counting) -> TaxMessage:
    row = queued(api, issued(api))
    send_pending(api.ctx, gateway)
    return message(api.ctx, row.id)


def test_a_technical_acceptance_acknowledges_the_message(api: Api, gateway: Counting, sent: TaxMessage) -> None:
    reply = technical(sent.mtdiep)
    path = drop(gateway.root, reply)
    assert apply_replies(api.ctx, gateway) == 1
    row = message(api.ctx, sent.id)
    assert row.status is Status.acknowledged and row.error is None
    (stored,) = replies_stored(api.ctx)
    assert (stored.tax_message_id, stored.message_type, stored.xml) == (sent.id, 999, reply)  # kept unchanged
    assert not path.exists() and (gateway.done / path.name).read_bytes() == reply
    assert apply_replies(api.ctx, gateway) == 0


def test_a_technical_refusal_rejects_with_the_reasons(api: Api, gateway: Counting, sent: TaxMessage) -> None:
    errors = (("10001", "Sai định dạng MST"), ("10002", "Chữ ký số không hợp lệ"))
    drop(gateway.root, technical(sent.mtdiep, received=False, errors=errors))
    assert apply_replies(api.ctx, gateway) == 1
    row = message(api.ctx, sent.id)
    assert row.status is Status.rejected
    assert row.error == "10001: Sai định dạng MST; 10002: Chữ ký số không hợp lệ"


def test_a_coded_document_stores_the_code_and_a_late_acknowledgement_does_not_undo_it(
    api: Api, gateway: Counting, sent: TaxMessage
) -> None:
    with api.ctx.db.read() as s:
        document = s.get(Document, sent.document_id)
    assert document is not None
    drop(gateway.root, coded(sent.mtdiep, document), "a.xml")
    drop(gateway.root, technical(sent.mtdiep), "b.xml")  # out of order: the 999 is read after the 202
    assert apply_replies(api.ctx, gateway) == 2
    row = message(api.ctx, sent.id)
    assert (row.status, row.mccqt) == (Status.coded, MCCQT)
    assert [reply.message_type for reply in replies_stored(api.ctx)] == [202, 999]


def test_a_reply_relayed_twice_is_applied_once(api: Api, gateway: Counting, sent: TaxMessage) -> None:
    reply = technical(sent.mtdiep, received=False, errors=(("1", "x"),))
    drop(gateway.root, reply, "first.xml")
    drop(gateway.root, reply, "again.xml")
    assert apply_replies(api.ctx, gateway) == 1
    assert len(replies_stored(api.ctx)) == 1 and sorted(os.listdir(gateway.done)) == ["again.xml", "first.xml"]
    drop(gateway.root, reply, "first.xml")  # the same name again: the first copy kept in done/ is not replaced
    apply_replies(api.ctx, gateway)
    assert len(os.listdir(gateway.done)) == 3 and len(replies_stored(api.ctx)) == 1


def test_a_reply_to_no_message_of_ours_is_kept_aside_and_logged(api: Api, gateway: Counting, sent: TaxMessage) -> None:
    stranger = technical("V0100000000" + "F" * 32)
    path = drop(gateway.root, stranger)
    with capture_logs() as logs:
        assert apply_replies(api.ctx, gateway) == 0
    assert any(entry["event"] == "tax.reply_unmatched" and entry["file"] == path.name for entry in logs)
    assert (gateway.unmatched / path.name).read_bytes() == stranger and not path.exists()
    assert replies_stored(api.ctx) == [] and message(api.ctx, sent.id).status is Status.sent


@pytest.mark.parametrize(
    "content",
    [
        b"not xml at all",
        b'<?xml version="1.0"?><!DOCTYPE TDiep [<!ENTITY e "999">]>'
        b"<TDiep><TTChung><MLTDiep>&e;</MLTDiep></TTChung></TDiep>",
        b"<HDon/>",
        b"<TDiep><TTChung><MLTDiep>999</MLTDiep></TTChung></TDiep>",  # no MTDiep
        b"\xff\xfe<TDiep/>",
    ],
    ids=["not-xml", "doctype-entity", "not-a-tdiep", "no-mtdiep", "bad-bytes"],
)
def test_an_unreadable_reply_is_rejected_and_changes_nothing(
    api: Api, gateway: Counting, sent: TaxMessage, content: bytes
) -> None:
    path = drop(gateway.root, content)
    with capture_logs() as logs:
        assert apply_replies(api.ctx, gateway) == 0
    assert any(entry["event"] == "tax.reply_unreadable" for entry in logs)
    assert (gateway.rejected / path.name).read_bytes() == content and not path.exists()
    assert replies_stored(api.ctx) == [] and message(api.ctx, sent.id).status is Status.sent


@pytest.mark.parametrize(
    "reply",
    [
        lambda ref: envelope_reply(999, ref, "<TBao><MTDiep>x</MTDiep></TBao>"),  # no TTTNhan
        lambda ref: envelope_reply(202, ref, "<HDon><MCCQT>TOO-SHORT</MCCQT></HDon>"),
        lambda ref: envelope_reply(202, ref, "<HDon/>"),  # no code at all
    ],
    ids=["999-without-status", "202-bad-code", "202-without-code"],
)
def test_a_reply_without_what_its_type_must_say_is_rejected(
    api: Api, gateway: Counting, sent: TaxMessage, reply: Any
) -> None:
    path = drop(gateway.root, reply(sent.mtdiep))
    assert apply_replies(api.ctx, gateway) == 0
    assert (gateway.rejected / path.name).exists()
    assert replies_stored(api.ctx) == [] and message(api.ctx, sent.id).status is Status.sent


def test_replies_a_worker_cannot_read_are_left_for_the_next(gateway: Counting) -> None:
    drop(gateway.root, technical("V0100000000" + "A" * 32), "x.xml")
    (gateway.inbox / "y.xml.part").write_bytes(b"<TDi")  # the agent is still writing this one
    (reply,) = gateway.replies()
    assert isinstance(reply, Reply) and reply.accepted is True and reply.errors[0].code == ""
    assert (gateway.inbox / "y.xml.part").exists()


# --- the 04/SS-HĐĐT notice -------------------------------------------------------------------------------------------


def notice_for(document: Document, **changes: Any) -> Notice:
    line = NoticedDocument.from_document(document, 1, NoticeAction.explain, "Sai địa chỉ người nộp")
    values: dict[str, Any] = {
        "tax_office_code": "10100",
        "tax_office_name": "Cục Thuế thành phố Hà Nội",
        "taxpayer_name": "Agency AGC-A",
        "tax_code": TAX_CODE,
        "place": "Hà Nội",
        "notice_date": document.issue_date,
        "documents": (line,),
    }
    return Notice(**{**values, **changes})


def sample_notice(**changes: Any) -> Notice:
    values: dict[str, Any] = {
        "tax_office_code": "10100",
        "tax_office_name": "Cục Thuế thành phố Hà Nội",
        "taxpayer_name": "Sở Tư pháp thành phố Hà Nội",
        "tax_code": TAX_CODE,
        "place": "Hà Nội",
        "notice_date": date(2026, 3, 2),
        "documents": (
            NoticedDocument(
                line_no=1,
                template="5",
                series="K26TLP",
                number=42,
                issue_date=date(2026, 3, 1),
                action=NoticeAction.replace,
                reason="Sai tên người nộp & số bản sao <3>",
            ),
            NoticedDocument(
                line_no=2,
                template="5",
                series="K26TLP",
                number=43,
                issue_date=date(2026, 3, 1),
                action=NoticeAction.adjust,
                reason="Sai số tiền",
            ),
        ),
    }
    return Notice(**{**values, **changes})


def xmlsec_verify(signed: bytes, certificate: x509.Certificate) -> None:
    """The C library's verdict on the taxpayer signature (as tests/invoices/test_signing.py does for documents)."""
    root = etree.fromstring(signed)
    context = xmlsec.SignatureContext()
    for node in root.iter(etree.Element):
        if node.get("Id"):
            context.register_id(node, "Id")
    public_pem = certificate.public_key().public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo)
    context.key = xmlsec.Key.from_memory(public_pem, xmlsec.constants.KeyDataFormatPem)
    context.verify(root.find(f"DSCKS/NNT/{ds('Signature')}"))


def test_notice_xml_is_deterministic_and_valid() -> None:
    notice = sample_notice()
    xml = notice_xml(notice)
    assert xml == notice_xml(sample_notice())
    validate_notice(xml)
    data = etree.fromstring(xml).find("DLTBao")
    assert data.get("Id") == "DLTBao"
    assert [child.tag for child in data] == [
        "PBan", "MSo", "Ten", "Loai", "MCQT", "TCQT", "TNNT", "MST", "DDanh", "NTBao", "DSHDon",
    ]  # fmt: skip
    assert (data.findtext("MSo"), data.findtext("Loai"), data.findtext("NTBao")) == ("04/SS-HĐĐT", "1", "2026-03-02")
    assert data.findtext("Ten") == "Thông báo hóa đơn điện tử có sai sót"
    first = data.find("DSHDon/HDon")
    assert [child.tag for child in first] == ["STT", "KHMSHDon", "KHHDon", "SHDon", "Ngay", "LADHDDT", "TCTBao", "LDo"]
    assert [child.text for child in first][:7] == ["1", "5", "K26TLP", "42", "2026-03-01", "1", "3"]
    assert first.findtext("LDo") == "Sai tên người nộp & số bản sao <3>"
    assert etree.fromstring(notice_xml(sample_notice(number="12/TB"))).findtext("DLTBao/So") == "12/TB"


def test_notice_signs_and_verifies_here_and_with_xmlsec() -> None:
    signer = dev_signer()
    signed = signed_notice(signer, sample_notice())
    validate_notice(signed)  # the signature sits where the XSD admits it
    verified = verify_notice(signed, pinned(signer.certificate))
    assert (verified.form, verified.taxpayer_tax_code, verified.signer_tax_code) == ("04/SS-HĐĐT", TAX_CODE, TAX_CODE)
    assert verified.signed_data.tag == "DLTBao" and verified.signing_time.tzinfo is not None
    signature = etree.fromstring(signed).find(f"DSCKS/NNT/{ds('Signature')}")
    assert signature.get("Id").startswith("NNT-")
    xmlsec_verify(signed, signer.certificate)

    tampered = signed.replace(b"<SHDon>42</SHDon>", b"<SHDon>44</SHDon>")
    with pytest.raises(xmlsec.Error):
        xmlsec_verify(tampered, signer.certificate)
    with pytest.raises(InvalidDocument) as refused:
        verify_notice(tampered, pinned(signer.certificate))
    assert refused.value.reason is Reason.digest_mismatch
    with pytest.raises(InvalidDocument) as untrusted:
        verify_notice(signed, pinned(dev_signer().certificate))
    assert untrusted.value.reason is Reason.untrusted_certificate
    with pytest.raises(InvalidDocument, match="HDon root"):  # a notice is not a document, nor the other way round
        verify(signed, pinned(signer.certificate))
    with pytest.raises(InvalidDocument, match="TBao root"):
        verify_notice(signer.sign(receipt()), pinned(signer.certificate))
    with pytest.raises(InvalidDocument, match="already holds a signature"):
        signer.sign_notice(signed)


def test_notice_signature_keeps_its_signing_time() -> None:
    key_pem, cert_pem = make_dev_certificate(TAX_CODE, "Sở Tư pháp")
    at = datetime.now(VIETNAM).replace(microsecond=0)
    signer = LocalSigner.from_pem(key_pem, cert_pem, clock=lambda: at)
    assert verify_notice(signed_notice(signer, sample_notice()), pinned(signer.certificate)).signing_time == at


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"action": 5}, "TCTBao must be 1 (cancel), 2 (adjust), 3 (replace) or 4 (explain)"),
        ({"action": True}, "TCTBao must be"),
        ({"reason": "   "}, "must not be blank"),
        ({"reason": "x" * 256}, "at most 255"),
        ({"series": "C26"}, "series"),
        ({"line_no": 2}, "line numbers"),
        ({"issue_date": date(2026, 3, 3)}, "dated before"),
    ],
)
def test_an_invalid_notice_is_refused_by_the_model(change: dict[str, Any], message: str) -> None:
    first = sample_notice().documents[0].model_dump()
    with pytest.raises(ValidationError, match=re.escape(message)):
        sample_notice(documents=(NoticedDocument(**{**first, **change}),))


def test_notice_level_rules() -> None:
    with pytest.raises(ValidationError, match="at least 1"):
        sample_notice(documents=())
    twice = sample_notice().documents[0]
    second = twice.model_copy(update={"line_no": 2})
    with pytest.raises(ValidationError, match="listed twice"):
        sample_notice(documents=(twice, second))
    with pytest.raises(ValidationError, match="tax office code"):
        sample_notice(tax_office_code="HN")


def test_the_xsd_refuses_a_notice_edited_outside_the_model() -> None:
    xml = notice_xml(sample_notice())
    for edited in (
        xml.replace(b"<TCTBao>3</TCTBao>", b"<TCTBao>7</TCTBao>"),
        xml.replace("04/SS-HĐĐT".encode(), b"05/SS"),
        xml.replace(b"<LDo>Sai s\xe1\xbb\x91 ti\xe1\xbb\x81n</LDo>", b"<LDo></LDo>"),
        xml.replace(b"<DDanh>", b"<Extra/><DDanh>"),
    ):
        assert edited != xml
        with pytest.raises(InvalidDocument):
            validate_notice(edited)
    with pytest.raises(InvalidDocument, match="a DOCTYPE is not allowed"):
        validate_notice(b'<!DOCTYPE TBao [<!ENTITY e "x">]><TBao>&e;</TBao>')


def test_a_queued_notice_travels_signed_in_a_300_message(api: Api, gateway: Counting) -> None:
    document = issued(api)
    signer = agency_signer(api)
    with api.ctx.db.write() as s:
        agency = s.get(Agency, api.agency_id)
        assert agency is not None
        row = queue_notice(s, api.ctx.settings, signer, agency, notice_for(document))
        with pytest.raises(ValueError, match="not agency AGC-A"):
            queue_notice(s, api.ctx.settings, signer, agency, notice_for(document, tax_code="0312345678"))
    assert (row.kind, row.message_type, row.document_id) == (TaxMessageKind.notice, 300, None)
    assert etree.fromstring(row.xml).findtext("TTChung/MLTDiep") == "300"
    (carried,) = documents_in(row.xml)
    verified = verify_notice(carried, pinned(signer.certificate))
    assert verified.signed_data.findtext("DSHDon/HDon/SHDon") == str(document.number)
    xmlsec_verify(carried, signer.certificate)

    assert send_pending(api.ctx, gateway) == 2  # the notice, and the receipt's own message queued at issue
    assert row.mtdiep in gateway.sent
    drop(gateway.root, technical(row.mtdiep))
    assert apply_replies(api.ctx, gateway) == 1
    assert message(api.ctx, row.id).status is Status.acknowledged
