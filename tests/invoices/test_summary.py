"""The daily summary of e-receipts (01/TH-BLĐT): its layout (golden files, XSD), its signature, and a three-day
scenario whose summaries, sent through the T-VAN file drop, state exactly the documents issued each day."""

from __future__ import annotations

import os
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from lxml import etree  # type: ignore[import-untyped]
from sqlmodel import col, select

from invoices.errors import InvalidDocument
from invoices.service import BuyerChanges, issue_adjustment, issue_receipt, replace_document
from invoices.tables import Document, DocumentPurpose
from invoices.tax.envelope import MessageType, documents_in
from invoices.tax.service import gateway_for, send_pending
from invoices.tax.summary import (
    Summary,
    SummaryLine,
    send_daily_summaries,
    signed_summary,
    summary_xml,
    validate_summary,
)
from invoices.tax.tables import ReceiptSummary, TaxMessage, TaxMessageKind, TaxMessageStatus
from invoices.verify import pinned, verify_summary
from tests.conftest import Api, Cli
from tests.factories import dossier_body, payment_body, sandbox_outcome

GOLDEN = Path(__file__).parent / "golden"
GMT7 = timezone(timedelta(hours=7))


def _summary(lines: tuple[SummaryLine, ...] = (), sequence: int = 1) -> Summary:
    return Summary(
        day=date(2026, 12, 28),
        sequence=sequence,
        created_on=date(2026, 12, 28),
        taxpayer_name="Sở Tư pháp tỉnh Demo",
        tax_code="0100000001",
        lines=lines,
    )


GOLDEN_SUMMARIES = {
    "summary": lambda: _summary(
        (
            SummaryLine(
                "5",
                "K26TLP",
                41,
                45,
                originals=3,
                adjustments=1,
                replacements=1,
                originals_total=300_000,
                adjustments_total=-50_000,
                replacements_total=100_000,
            ),
            SummaryLine("5", "C26TAB", 1, 2, originals=2, originals_total=250_000),
        )
    ),
    "summary_empty_day": lambda: _summary(sequence=2),
}


@pytest.mark.parametrize("name", GOLDEN_SUMMARIES)
def test_golden(name: str) -> None:
    xml = summary_xml(GOLDEN_SUMMARIES[name]())
    path = GOLDEN / f"{name}.xml"
    if os.environ.get("LEPHI_UPDATE_GOLDEN"):
        path.write_bytes(xml)
    assert xml == path.read_bytes()
    validate_summary(xml)


def test_the_schema_refuses_what_the_form_does_not_allow() -> None:
    good = summary_xml(GOLDEN_SUMMARIES["summary"]())
    for old, new in [
        (b"<KHBLai>K26TLP</KHBLai>", b"<KHBLai>X26TLP</KHBLai>"),
        (b"<MSo>01/TH-BL\xc4\x90T</MSo>", b"<MSo>04/SS-H\xc4\x90\xc4\x90T</MSo>"),
        (b"<TSo>41</TSo>", b"<TSo>0</TSo>"),
        (b"<LDau>1</LDau>", b"<LDau>2</LDau>"),
    ]:
        assert old in good
        with pytest.raises(InvalidDocument):
            validate_summary(good.replace(old, new))


def test_a_signed_summary_verifies_and_is_valid(api: Api) -> None:
    signer = api.ctx.signers.for_agency("AGC-A", "0100000001", "Agency AGC-A")
    signed = signed_summary(signer, GOLDEN_SUMMARIES["summary"]())
    validate_summary(signed)
    verified = verify_summary(signed, pinned(signer.certificate))
    assert verified.form == "01/TH-BLĐT" and verified.taxpayer_tax_code == "0100000001"
    with pytest.raises(InvalidDocument):
        verify_summary(signed.replace(b"<TgTien>350000</TgTien>", b"<TgTien>1</TgTien>"), pinned(signer.certificate))


# --- Three days: issue, adjust, replace, and a day with none --------------------------------------------------------


def _paid(api: Api, copies: int = 1) -> str:
    code = api.post("/v1/dossiers", dossier_body(copies=copies)).json()["code"]
    payment = api.post("/v1/payments", payment_body(code)).json()
    sandbox_outcome(api.client, api.ctx.settings, payment["gateway_reference"], "success")
    return str(payment["id"])


def _issue(api: Api, at: datetime, copies: int = 1) -> tuple[str, str]:
    payment_id = _paid(api, copies)
    document_id = issue_receipt(api.ctx, api.ctx.signers, payment_id, now=at)
    assert document_id is not None
    return payment_id, document_id


def _summaries(api: Api, day: date) -> list[tuple[ReceiptSummary, TaxMessage]]:
    with api.ctx.db.read() as s:
        rows = s.exec(
            select(ReceiptSummary, TaxMessage)
            .join(TaxMessage, col(TaxMessage.id) == ReceiptSummary.tax_message_id)
            .where(ReceiptSummary.agency_id == api.agency_id, ReceiptSummary.day == day)
            .order_by(col(ReceiptSummary.sequence))
        ).all()
    return [(summary, message) for summary, message in rows]


def _stated(message: TaxMessage) -> dict[str, Any]:
    """What the summary carried in its envelope says, line by line."""
    (body,) = documents_in(message.xml)
    root = etree.fromstring(body)
    general = root.find("DLBTHop/TTChung")
    lines = {}
    for line in root.iterfind("DLBTHop/NDBTHDLieu/DSDLieu/DLieu"):
        fields = {child.tag: child.text for child in line}
        lines[fields["KHMSBLai"] + fields["KHBLai"]] = {
            key: int(fields[key])
            for key in ("SLuong", "TSo", "DSo", "SLGoc", "SLHuy", "SLDChinh", "SLTThe", "TgTien", "TgTDChinh")
        }
    return {"day": general.findtext("KDLieu"), "count": int(general.findtext("SLBLai")), "lines": lines}


def _issued(api: Api, day: date) -> dict[str, Any]:
    """The same, computed from the documents issued that day."""
    with api.ctx.db.read() as s:
        docs = s.exec(select(Document).where(Document.agency_id == api.agency_id, Document.issue_date == day)).all()
    lines: dict[str, dict[str, int]] = {}
    for doc in sorted(docs, key=lambda d: d.number):
        line = lines.setdefault(
            doc.template + doc.series,
            {
                "SLuong": 0,
                "TSo": doc.number,
                "DSo": 0,
                "SLGoc": 0,
                "SLHuy": 0,
                "SLDChinh": 0,
                "SLTThe": 0,
                "TgTien": 0,
                "TgTDChinh": 0,
            },
        )
        line["SLuong"] += 1
        line["DSo"] = doc.number
        line["TgTien"] += doc.total
        if doc.purpose is DocumentPurpose.original:
            line["SLGoc"] += 1
        elif doc.purpose is DocumentPurpose.adjustment:
            line["SLDChinh"] += 1
            line["TgTDChinh"] += doc.total
        else:
            line["SLTThe"] += 1
    return {"day": day.isoformat(), "count": len(docs), "lines": lines}


def test_three_days_of_summaries_state_exactly_the_documents_of_each_day(api: Api) -> None:
    base = datetime.now(GMT7).date() + timedelta(days=10)
    day1, day2, day3 = base, base + timedelta(days=1), base + timedelta(days=2)

    def at(day: date, hour: int, minute: int = 0) -> datetime:
        return datetime(day.year, day.month, day.day, hour, minute, tzinfo=GMT7)

    # Day 1: three receipts, the summary at 22:00, then a fourth receipt and a supplementary summary.
    paid = [_issue(api, at(day1, 9 + i), copies=i + 1) for i in range(3)]
    # Before the hour only the day before is due (empty: the agency issued nothing then).
    assert send_daily_summaries(api.ctx, now=at(day1, 21, 59)) == 1
    assert _summaries(api, day1) == [] and _summaries(api, day1 - timedelta(days=1))[0][0].documents == 0
    assert send_daily_summaries(api.ctx, now=at(day1, 22, 5)) == 1
    assert send_daily_summaries(api.ctx, now=at(day1, 22, 10)) == 0  # nothing changed since
    _issue(api, at(day1, 23, 0))
    send_daily_summaries(api.ctx, now=at(day1, 23, 5))
    ((first, _), (second, message1)) = _summaries(api, day1)
    assert (first.sequence, first.documents, second.sequence, second.documents) == (1, 3, 2, 4)
    assert _stated(message1) == _issued(api, day1)
    assert _stated(message1)["lines"] and all(line["SLuong"] == 4 for line in _stated(message1)["lines"].values())

    # Day 2: a refund's adjustment of one receipt, a replacement of another, one new receipt.
    refund = api.post(f"/v1/payments/{paid[1][0]}/refunds", {"amount": 10_000, "reason": "Hồ sơ bị trả lại"}).json()
    assert refund["status"] == "succeeded", refund
    assert issue_adjustment(api.ctx, api.ctx.signers, refund["id"], now=at(day2, 9)) is not None
    with api.ctx.db.write() as s:
        replace_document(
            s,
            api.ctx,
            api.ctx.signers,
            api.agency_id,
            paid[2][1],
            BuyerChanges(name="Trần Thị Bình"),
            "Sai tên người nộp",
            "test",
            now=at(day2, 10),
        )
    _issue(api, at(day2, 11))
    send_daily_summaries(api.ctx, now=at(day2, 22, 1))
    ((_, message2),) = _summaries(api, day2)
    stated = _stated(message2)
    assert stated == _issued(api, day2)
    (line,) = stated["lines"].values()
    assert (line["SLuong"], line["SLGoc"], line["SLDChinh"], line["SLTThe"], line["SLHuy"]) == (3, 1, 1, 1, 0)
    assert line["TgTDChinh"] == -10_000 and (line["TSo"], line["DSo"]) == (5, 7)

    # Day 3: no receipt; the rule has an empty summary sent all the same.
    send_daily_summaries(api.ctx, now=at(day3, 22, 1))
    ((empty, message3),) = _summaries(api, day3)
    assert empty.documents == 0 and _stated(message3) == {"day": day3.isoformat(), "count": 0, "lines": {}}

    # Every summary is a signed TDiep 400 handed to the T-VAN folder, tracked like the other messages.
    gateway = gateway_for(api.ctx.settings)
    assert gateway is not None
    send_pending(api.ctx, gateway)
    with api.ctx.db.read() as s:
        messages = s.exec(select(TaxMessage).where(TaxMessage.kind == TaxMessageKind.summary)).all()
    assert {m.message_type for m in messages} == {int(MessageType.summary)}
    assert {m.status for m in messages} == {TaxMessageStatus.sent}
    outgoing = {p.name for p in (api.ctx.settings.effective_tax_drop_dir / "outgoing").iterdir()}
    assert all(any(m.mtdiep in name for name in outgoing) for m in messages)


def test_a_rejected_summary_is_sent_again(api: Api) -> None:
    day = datetime.now(GMT7).date() + timedelta(days=10)
    noon = datetime(day.year, day.month, day.day, 12, tzinfo=GMT7)
    _issue(api, noon)
    send_daily_summaries(api.ctx, now=noon.replace(hour=22, minute=30))
    ((summary, message),) = _summaries(api, day)
    with api.ctx.db.write() as s:
        row = s.get(TaxMessage, message.id)
        assert row is not None
        row.status, row.error = TaxMessageStatus.rejected, "sai định dạng"
        s.add(row)
    send_daily_summaries(api.ctx, now=noon.replace(hour=22, minute=40))
    ((_, first), (again, second)) = _summaries(api, day)
    assert first.status is TaxMessageStatus.rejected and second.status is TaxMessageStatus.queued
    assert again.sequence == 2 and again.documents == summary.documents
    assert _stated(second) == _issued(api, day)


def test_cli_queues_shows_and_resends_a_days_summary(api: Api, cli: Cli) -> None:
    day = datetime.now(GMT7).date()
    _issue(api, datetime.now(GMT7))
    result = cli("receipts", "summary", "--agency", "AGC-A", "--day", day.isoformat())
    assert result.exit_code == 0 and "queued summary no. 1" in result.output, result.output
    assert "1 document(s)" in result.output and "queued" in result.output
    result = cli("receipts", "summary", "--agency", "AGC-A", "--day", day.isoformat())
    assert result.exit_code == 0 and "still states the day" in result.output, result.output
    result = cli("receipts", "summary", "--agency", "AGC-A", "--day", day.isoformat(), "--resend")
    assert result.exit_code == 0 and "queued summary no. 2" in result.output, result.output
    assert [s.sequence for s, _ in _summaries(api, day)] == [1, 2]
    result = cli("receipts", "summary", "--agency", "AGC-A", "--day", "31/12/2026")
    assert result.exit_code == 2 and "not a date" in result.output
