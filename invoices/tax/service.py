"""Transmission to the tax authority: queue a message with the change it reports, hand it over later, apply replies.

A message is built and stored (``queued``) inside the caller's transaction, so a document and its message exist
together or not at all. :func:`send_pending` hands queued messages to the gateway without holding a database
lock across the hand-over; :func:`apply_replies` matches each reply to our message by its ``MTDTChieu``, keeps it
unchanged in ``tax_reply`` and moves the message on. Both are safe to run twice and from several workers at once.

Status moves (anything else leaves the status as it is, so a late or repeated reply never moves a message back)::

    queued --claim--> sending --handed over--> sent        (a failed hand-over goes back to queued)
    queued | sending | sent                --999 received / 204 without error--> acknowledged
    queued | sending | sent | acknowledged --999 refused / 204 with errors-----> rejected
    queued | sending | sent | acknowledged --202 with MCCQT--------------------> coded

A reply may arrive before its message is marked sent (the provider can be faster than our commit), hence the
``queued`` and ``sending`` sources.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta
from enum import StrEnum
from typing import Any

from sqlalchemy import Connection, and_, bindparam, column, func, insert, literal, or_, update
from sqlalchemy import select as sa_select
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from invoices.config import ReceiptSettings
from invoices.context import ReceiptContext
from invoices.signing import Signer
from invoices.tables import Document
from invoices.tax.envelope import (
    Header,
    MessageType,
    Shell,
    build_envelope,
    carrying,
    message_type_for_series,
    new_message_id,
    shell_for,
)
from invoices.tax.gateway import FileDropGateway, OutgoingMessage, Reply, TaxGateway
from invoices.tax.notice import Notice, signed_notice
from invoices.tax.tables import TaxMessage, TaxMessageKind, TaxMessageStatus, TaxReply
from payments.agency.models import Agency
from payments.core.db import affected, table_of
from payments.core.logging import get_logger
from payments.core.sql import Prepared, Rows, claiming
from payments.core.types import new_id, utcnow
from payments.outbox.models import OutboxJob, OutboxStatus
from payments.outbox.service import enqueue

__all__ = [
    "apply_replies",
    "gateway_for",
    "left_by_failure",
    "message_for_issue",
    "queue_document",
    "queue_issued",
    "queue_notice",
    "queue_summary",
    "send_job_needed",
    "send_pending",
    "send_waiting_read",
]

log = get_logger(__name__)
# The outbox job that hands queued messages to the T-VAN folder (invoices.jobs runs it).
SEND = "tax.send"
# A hand-off job that is due and not yet taken by a worker sends every message queued before it runs (send_pending
# reads again until nothing is left), so a second one would only cost a worker a transaction. One taken already, or
# waiting out a backoff, may have read the queue before this message: then a new one is queued.
_SEND_WAITING = Prepared(
    sa_select(literal(1))
    .select_from(table_of(OutboxJob))
    .where(
        column("kind") == SEND,
        column("status") == OutboxStatus.pending,
        column("locked_until").is_(None),
        column("run_after") <= bindparam("now"),
    )
    .limit(1)
)
Status = TaxMessageStatus
_TAX = table_of(TaxMessage)


class Outcome(StrEnum):
    """What a reply says about our message."""

    received = "received"
    refused = "refused"
    coded = "coded"


_BEFORE_VERDICT = frozenset({Status.queued, Status.sending, Status.sent})
TRANSITIONS: dict[Outcome, tuple[frozenset[TaxMessageStatus], TaxMessageStatus]] = {
    Outcome.received: (_BEFORE_VERDICT, Status.acknowledged),
    Outcome.refused: (_BEFORE_VERDICT | {Status.acknowledged}, Status.rejected),
    Outcome.coded: (_BEFORE_VERDICT | {Status.acknowledged}, Status.coded),
}


def gateway_for(settings: ReceiptSettings) -> TaxGateway | None:
    """The T-VAN file drop, or None when transmission is switched off."""
    if not settings.tax_transmission:
        return None
    return FileDropGateway(settings.effective_tax_drop_dir)


def queue_document(s: Session, settings: ReceiptSettings, document: Document) -> TaxMessage:
    """The message carrying an issued document, built and stored in the caller's transaction; the one already
    queued for it when there is one (only a rejected message makes room for a new one)."""
    existing = s.exec(
        select(TaxMessage)
        .where(TaxMessage.document_id == document.id, TaxMessage.kind == TaxMessageKind.document)
        .where(TaxMessage.status != Status.rejected)
        .order_by(col(TaxMessage.created_at))
    ).first()
    if existing is not None:
        return existing
    agency = s.get(Agency, document.agency_id)
    if agency is None:
        raise LookupError(f"document {document.id} names an unknown agency")
    message_type = message_type_for_series(document.series)
    return _queue(s, settings, agency, TaxMessageKind.document, message_type, [document.xml], document.id)


def queue_notice(
    s: Session,
    settings: ReceiptSettings,
    signer: Signer,
    agency: Agency,
    notice: Notice,
    about: str | None = None,
) -> TaxMessage:
    """Sign the agency's 04/SS-HĐĐT notice and queue it (MLTDiep 300) in the caller's transaction. ``about`` is the
    document the notice reports (the one replaced), kept on the message so that the document's page finds its
    notice; a document's own transmission is always looked up with ``kind == document``."""
    if notice.tax_code != agency.tax_code:
        raise ValueError(f"the notice is about taxpayer {notice.tax_code}, not agency {agency.code}")
    signed = signed_notice(signer, notice)
    return _queue(s, settings, agency, TaxMessageKind.notice, MessageType.notice, [signed], about)


def queue_summary(s: Session, settings: ReceiptSettings, agency: Agency, signed: bytes) -> TaxMessage:
    """Queue the agency's signed daily summary of e-receipts (MLTDiep 400) in the caller's transaction."""
    return _queue(s, settings, agency, TaxMessageKind.summary, MessageType.summary, [signed], None)


def message_for_issue(settings: ReceiptSettings, tax_code: str, series: str) -> Shell:
    """The envelope of the message that will carry a document about to be issued in ``series``, made before the
    document is numbered (see ``Shell``)."""
    return shell_for(_header(settings, message_type_for_series(series), tax_code))


def queue_issued(conn: Connection, shell: Shell, agency_id: str, document_id: str, xml: bytes) -> None:
    """The message carrying a document issued in this same transaction, which no message can carry yet: written
    with one Core INSERT on the transaction's connection, for the path every issued document takes."""
    header = shell.header
    now, message_id = utcnow(), new_id("txm")
    _INSERT_MESSAGE.write(
        conn,
        {
            "id": message_id,
            "agency_id": agency_id,
            "document_id": document_id,
            "kind": TaxMessageKind.document,
            "message_type": int(header.message_type),
            "mtdiep": header.message_id,
            "status": Status.queued,
            "xml": carrying(shell, xml),
            "mccqt": None,
            "error": None,
            "created_at": now,
            "sent_at": None,
            "updated_at": now,
        },
    )
    log.info(
        "tax.message_queued",
        message_id=message_id,
        mtdiep=header.message_id,
        type=int(header.message_type),
        document=document_id,
    )


_INSERT_MESSAGE = Prepared(insert(table_of(TaxMessage)))


def _header(settings: ReceiptSettings, message_type: MessageType, tax_code: str) -> Header:
    sender = settings.effective_tax_sender_code
    return Header(sender, message_type, new_message_id(sender), tax_code)


def _queue(
    s: Session,
    settings: ReceiptSettings,
    agency: Agency,
    kind: TaxMessageKind,
    message_type: MessageType,
    documents: Sequence[bytes],
    document_id: str | None,
) -> TaxMessage:
    header = _header(settings, message_type, agency.tax_code)
    row = TaxMessage(
        agency_id=agency.id,
        document_id=document_id,
        kind=kind,
        message_type=int(message_type),
        mtdiep=header.message_id,
        xml=build_envelope(header, documents),
    )
    s.add(row)
    s.flush()
    log.info("tax.message_queued", message_id=row.id, mtdiep=row.mtdiep, type=row.message_type, document=document_id)
    return row


@dataclass(frozen=True)
class _Claimed:
    id: str
    mtdiep: str
    xml: bytes


def send_pending(ctx: ReceiptContext, gateway: TaxGateway, limit: int | None = None) -> int:
    """Hand every queued message to the gateway; returns how many were handed over by this call.

    Stops at the first batch with a failure, so that a provider outage is not retried in a tight loop. A batch is
    claimed in one statement and its outcomes recorded in one transaction: a message handed over but not yet marked
    sent (the process died between) is claimed again when its lease runs out, and handing it over again is harmless.
    """
    batch = limit or ctx.settings.worker_batch_size
    total = 0
    while claimed := _claim(ctx, batch):
        if len(claimed) == batch:
            _call_for_help(ctx)
        sent: list[str] = []
        failed: dict[str, str] = {}
        for message, error in zip(claimed, _send_all(gateway, claimed), strict=True):
            if error is None:
                sent.append(message.id)
            else:
                failed[message.id] = error
        _record_hand_over(ctx, sent, failed)
        total += len(sent)
        if failed:
            break
    return total


def _call_for_help(ctx: ReceiptContext) -> None:
    """A full batch: more messages may be waiting behind it. A hand-off job queued for them, unless one waits
    already, lets another worker (or another of this worker's threads) hand them over beside this one: after a burst
    of receipts the queue empties at the pace of every worker, not of the one that took the first job."""
    with ctx.db.write() as s:
        if send_job_needed(s.connection()):
            enqueue(s, SEND, {})


def left_by_failure(ctx: ReceiptContext) -> int:
    """Messages a failed hand-over put back in the queue (they carry its error until one succeeds)."""
    with ctx.db.read() as s:
        query = (
            select(func.count())
            .select_from(TaxMessage)
            .where(col(TaxMessage.status) == Status.queued, col(TaxMessage.error).is_not(None))
        )
        return int(s.exec(query).one())


def _claimable(stale_before: Any) -> Any:
    # A claim older than the lease belongs to a sender that died: the same bytes may be handed over again.
    return or_(
        _TAX.c.status == Status.queued,
        and_(_TAX.c.status == Status.sending, _TAX.c.updated_at < stale_before),
    )


def _claim_statement(dialect: str) -> Any:
    due = (
        sa_select(_TAX.c.id)
        .where(_claimable(bindparam("stale_before")))
        .order_by(_TAX.c.created_at)
        .limit(bindparam("batch"))
    )
    return (
        update(_TAX)
        .where(claiming(_TAX, due, dialect), _claimable(bindparam("stale_before")))
        .values(status=Status.sending, updated_at=bindparam("now"))
        .returning(_TAX.c.id, _TAX.c.mtdiep, _TAX.c.xml, _TAX.c.created_at)
    )


_CLAIM = {dialect: _claim_statement(dialect) for dialect in ("postgresql", "sqlite")}
_MARK_SENT = (
    update(_TAX)
    .where(_TAX.c.id.in_(bindparam("ids", expanding=True)), _TAX.c.status == Status.sending)
    .values(status=Status.sent, sent_at=bindparam("now"), updated_at=bindparam("now"), error=None)
)


def _claim(ctx: ReceiptContext, limit: int) -> list[_Claimed]:
    """Take up to ``limit`` messages, the oldest first, in one statement."""
    now = utcnow()
    params = {"now": now, "stale_before": now - timedelta(seconds=ctx.settings.worker_lease_seconds), "batch": limit}
    with ctx.db.write() as s:
        rows = s.connection().execute(_CLAIM[ctx.db.dialect], params).all()
    return [_Claimed(r.id, r.mtdiep, r.xml) for r in sorted(rows, key=lambda r: (r.created_at, r.id))]


def _send_all(gateway: TaxGateway, claimed: list[_Claimed]) -> list[str | None]:
    """Hand the claimed messages over; for each, the error if it failed."""
    try:
        outcomes = gateway.send_all([OutgoingMessage(message.mtdiep, message.xml) for message in claimed])
    except Exception as exc:  # the gateway failed as a whole: every message goes back to the queue
        outcomes = [exc] * len(claimed)
    errors: list[str | None] = []
    for message, outcome in zip(claimed, outcomes, strict=True):
        if outcome is None:
            log.info("tax.message_sent", message_id=message.id, mtdiep=message.mtdiep)
            errors.append(None)
        else:  # the message goes back to the queue and the next batch is not tried
            log.warning("tax.send_failed", message_id=message.id, mtdiep=message.mtdiep, error=str(outcome)[:500])
            errors.append(f"{type(outcome).__name__}: {outcome}"[:2000])
    return errors


def _record_hand_over(ctx: ReceiptContext, sent: list[str], failed: dict[str, str]) -> None:
    """Sent ones become ``sent``, failed ones ``queued`` with their error; a reply that came first (it may: the
    provider can be faster than this commit) has moved the message on, and there it stays."""
    with ctx.db.write() as s:
        if sent:
            s.connection().execute(_MARK_SENT, {"ids": sent, "now": utcnow()})
        for message_id, error in failed.items():
            _compare_and_set(s, message_id, {Status.sending}, status=Status.queued, error=error)


def _compare_and_set(s: Session, message_id: str, sources: set[TaxMessageStatus], **values: Any) -> bool:
    result = s.execute(
        update(TaxMessage)
        .where(col(TaxMessage.id) == message_id, col(TaxMessage.status).in_(sources))
        .values(updated_at=utcnow(), **values)
    )
    return affected(result) == 1


class _Applied(StrEnum):
    applied = "applied"
    duplicate = "duplicate"
    unmatched = "unmatched"


def apply_replies(ctx: ReceiptContext, gateway: TaxGateway) -> int:
    """Store and apply every waiting reply; returns how many were new replies to our messages."""
    applied = 0
    for reply in gateway.replies():
        try:
            result = _apply(ctx, reply)
        except IntegrityError:
            result = _Applied.duplicate  # another worker stored the same reply first
        if result is _Applied.unmatched:
            log.warning("tax.reply_unmatched", file=reply.name, type=reply.message_type, reference=reply.reference)
            gateway.set_aside(reply)
            continue
        gateway.acknowledge(reply)
        applied += result is _Applied.applied
    return applied


def _apply(ctx: ReceiptContext, reply: Reply) -> _Applied:
    with ctx.db.write() as s:
        if reply.reference is None:
            return _Applied.unmatched
        query = select(TaxMessage).where(TaxMessage.mtdiep == reply.reference)
        if ctx.db.dialect == "postgresql":
            query = query.with_for_update()  # one reply at a time per message
        message = s.exec(query).first()
        if message is None:
            return _Applied.unmatched
        if s.exec(select(TaxReply.id).where(TaxReply.mtdiep == reply.message_id)).first() is not None:
            log.info("tax.reply_duplicate", message_id=message.id, reply=reply.message_id)
            return _Applied.duplicate
        s.add(
            TaxReply(tax_message_id=message.id, mtdiep=reply.message_id, message_type=reply.message_type, xml=reply.xml)
        )
        s.flush()
        _transition(s, message, reply)
        return _Applied.applied


def _transition(s: Session, message: TaxMessage, reply: Reply) -> None:
    outcome = _outcome(reply)
    if outcome is None:
        log.info("tax.reply_stored", message_id=message.id, type=reply.message_type)
        return
    sources, target = TRANSITIONS[outcome]
    values: dict[str, Any] = {"status": target, "error": None}
    if outcome is Outcome.refused:
        reasons = "; ".join(str(error) for error in reply.errors)
        values["error"] = reasons or f"refused without a reason (MLTDiep {reply.message_type})"
    if outcome is Outcome.coded:
        values["mccqt"] = reply.code
    if message.status in sources and _compare_and_set(s, message.id, set(sources), **values):
        log.info("tax.message_" + target.value, message_id=message.id, type=reply.message_type)
    else:
        log.info("tax.reply_ignored", message_id=message.id, status=message.status, outcome=outcome.value)


def _outcome(reply: Reply) -> Outcome | None:
    if reply.code is not None:
        return Outcome.coded
    if reply.accepted is None:
        return None
    return Outcome.received if reply.accepted else Outcome.refused


def send_waiting_read() -> tuple[Prepared, dict[str, Any]]:
    """The read ``send_job_needed`` judges, for a caller that runs it together with others (``together``)."""
    return _SEND_WAITING, {"now": utcnow()}


def send_job_needed(conn: Connection, waiting: Rows | None = None) -> bool:
    """Whether a message queued in this transaction needs a hand-off job of its own (see ``_SEND_WAITING``).
    ``waiting``: what ``send_waiting_read`` returned, when the caller ran it already."""
    if waiting is None:
        waiting = _SEND_WAITING(conn, {"now": utcnow()})
    return waiting.first() is None
