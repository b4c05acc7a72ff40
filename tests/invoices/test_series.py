"""Receipt templates and series as data per agency: the default series registered on first use, registering and
closing series, and issuance refused (the job kept, failed with the reason) without an open series."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import update
from sqlmodel import col, select

from invoices.errors import SeriesNotOpen
from invoices.series import close_series
from invoices.service import issue_receipt
from invoices.tables import Document, ReceiptSeries, SeriesOrigin, SeriesStatus
from lephi.jobs import HANDLERS
from payments.core.types import utcnow
from payments.outbox.models import OutboxJob, OutboxStatus
from payments.outbox.worker import Worker
from payments.payment import kinds
from tests.conftest import Api, Cli
from tests.factories import dossier_body, payment_body, sandbox_outcome


def _paid(api: Api) -> str:
    code = api.post("/v1/dossiers", dossier_body()).json()["code"]
    payment = api.post("/v1/payments", payment_body(code)).json()
    sandbox_outcome(api.client, api.ctx.settings, payment["gateway_reference"], "success")
    return str(payment["id"])


def _issue(api: Api) -> Document | None:
    payment_id = _paid(api)
    Worker(api.ctx, HANDLERS).run_once()
    with api.ctx.db.read() as s:
        return s.exec(select(Document).where(Document.payment_id == payment_id)).first()


def _series(api: Api) -> list[ReceiptSeries]:
    with api.ctx.db.read() as s:
        rows = s.exec(select(ReceiptSeries).where(ReceiptSeries.agency_id == api.agency_id))
        return sorted(rows, key=lambda r: r.registered_at)


def _year() -> int:
    return (utcnow() + timedelta(hours=7)).year


def test_an_agency_without_series_gets_the_default_registered_on_its_first_receipt(api: Api) -> None:
    assert _series(api) == []
    first, second = _issue(api), _issue(api)
    assert first is not None and second is not None
    (row,) = _series(api)
    assert (row.template, row.series, row.year) == ("5", f"K{_year() % 100:02d}TLP", _year())
    assert row.origin is SeriesOrigin.default and row.status is SeriesStatus.open
    assert (first.series, first.number, second.number) == (row.series, 1, 2)


def test_a_registered_series_numbers_from_one_after_the_default_is_closed(api: Api) -> None:
    assert _issue(api) is not None
    default = f"K{_year() % 100:02d}TLP"
    mine = f"C{_year() % 100:02d}TAB"
    r = api.post("/v1/receipt-series", {"series": mine})
    assert r.status_code == 409 and "close it" in r.json()["detail"], r.text  # one open series per year
    r = api.post("/v1/receipt-series/close", {"template": "5", "series": default})
    assert r.status_code == 200 and r.json()["status"] == "closed" and r.json()["last_number"] == 1, r.text
    r = api.post("/v1/receipt-series", {"series": mine})
    assert r.status_code == 201, r.text
    assert r.json() | {"registered_at": None} == {
        "template": "5",
        "series": mine,
        "symbol": f"5{mine}",
        "year": _year(),
        "status": "open",
        "origin": "registered",
        "last_number": 0,
        "registered_at": None,
        "registered_by": r.json()["registered_by"],
        "closed_at": None,
        "closed_by": None,
    }
    doc = _issue(api)
    assert doc is not None and (doc.series, doc.number) == (mine, 1)
    listed = api.get("/v1/receipt-series").json()
    assert [(x["series"], x["status"], x["last_number"]) for x in listed] == [(mine, "open", 1), (default, "closed", 1)]


def _job(api: Api, payment_id: str) -> OutboxJob:
    with api.ctx.db.read() as s:
        jobs = s.exec(select(OutboxJob).where(OutboxJob.kind == kinds.SUCCEEDED)).all()
    (job,) = [j for j in jobs if j.payload.get("payment_id") == payment_id]
    return job


def test_without_an_open_series_the_receipt_job_fails_with_the_reason_and_issues_once_one_is_registered(
    api: Api,
) -> None:
    assert _issue(api) is not None
    default = f"K{_year() % 100:02d}TLP"
    assert api.post("/v1/receipt-series/close", {"template": "5", "series": default}).status_code == 200
    payment_id = _paid(api)
    Worker(api.ctx, HANDLERS).run_once()
    job = _job(api, payment_id)
    assert job.status is OutboxStatus.pending and job.attempts == 1
    assert "SeriesNotOpen" in (job.last_error or "") and default in (job.last_error or "")
    with api.ctx.db.read() as s:
        assert s.exec(select(Document).where(Document.payment_id == payment_id)).first() is None
    # The closed series was not reopened behind the agency's back, and no default was registered instead.
    assert [(r.series, r.status) for r in _series(api)] == [(default, SeriesStatus.closed)]

    assert api.post("/v1/receipt-series", {"series": f"K{_year() % 100:02d}TAB"}).status_code == 201
    with api.ctx.db.write() as s:
        s.exec(update(OutboxJob).where(col(OutboxJob.id) == job.id).values(run_after=utcnow()))  # type: ignore[call-overload]
    Worker(api.ctx, HANDLERS).run_once()
    assert _job(api, payment_id).status is OutboxStatus.done
    with api.ctx.db.read() as s:
        doc = s.exec(select(Document).where(Document.payment_id == payment_id)).one()
    assert (doc.series, doc.number) == (f"K{_year() % 100:02d}TAB", 1)


def test_a_year_without_a_registered_series_is_refused_once_the_agency_registers_its_own(api: Api) -> None:
    r = api.post("/v1/receipt-series", {"series": f"K{_year() % 100:02d}TAB"})
    assert r.status_code == 201, r.text
    payment_id = _paid(api)
    next_year = datetime(_year() + 1, 1, 1, 3, 0, tzinfo=UTC)  # 10:00 in Vietnam on 1 January
    try:
        issue_receipt(api.ctx, api.ctx.signers, payment_id, now=next_year)
    except SeriesNotOpen as exc:
        assert f"registered for {_year() + 1}" in str(exc)
    else:
        raise AssertionError("a receipt was issued from an unregistered series")
    assert api.post("/v1/receipt-series", {"series": f"K{(_year() + 1) % 100:02d}TAB"}).status_code == 201
    doc_id = issue_receipt(api.ctx, api.ctx.signers, payment_id, now=next_year)
    with api.ctx.db.read() as s:
        doc = s.get(Document, doc_id)
    assert doc is not None and (doc.series, doc.year, doc.number) == (f"K{(_year() + 1) % 100:02d}TAB", _year() + 1, 1)


def test_bad_registrations_are_refused_and_change_nothing(api: Api) -> None:
    yy = _year() % 100
    for body, status in [
        ({"series": "X26TAB"}, 422),
        ({"series": f"K{yy:02d}TAB", "template": "0"}, 422),
        ({"series": f"K{yy:02d}TAB", "extra": 1}, 422),
        ({"series": f"K{yy:02d}tab"}, 422),
        ({"series": f"K{yy - 1:02d}TAB"}, 422),  # a past year
        ({"series": "<script>"}, 422),
    ]:
        r = api.post("/v1/receipt-series", body)
        assert r.status_code == status, (body, r.text)
        assert r.headers["content-type"].startswith("application/problem+json")
    assert _series(api) == []
    assert api.post("/v1/receipt-series/close", {"series": f"K{yy:02d}TZZ"}).status_code == 404
    assert api.post("/v1/receipt-series", {"series": f"K{yy:02d}TAB"}).status_code == 201
    again = api.post("/v1/receipt-series", {"series": f"K{yy:02d}TAB"})
    assert again.status_code == 409 and "already registered" in again.json()["detail"]
    assert api.post("/v1/receipt-series/close", {"series": f"K{yy:02d}TAB"}).status_code == 200
    assert api.post("/v1/receipt-series/close", {"series": f"K{yy:02d}TAB"}).status_code == 409


def test_the_series_api_wants_the_admin_scope(api: Api) -> None:
    key = api.new_key(["receipts:write", "payments:read"])
    r = api.client.get("/v1/receipt-series", headers={"Authorization": f"Bearer {key}"})
    assert r.status_code == 403 and r.json()["required_scope"] == "receipts:admin"


def test_cli_registers_lists_and_closes_series(api: Api, cli: Cli) -> None:
    yy = _year() % 100
    result = cli("receipts", "series", "register", "--agency", "AGC-A", "--series", f"K{yy:02d}TAB")
    assert result.exit_code == 0 and f"registered 5K{yy:02d}TAB for {_year()}" in result.output, result.output
    result = cli("receipts", "series", "register", "--agency", "AGC-A", "--series", f"K{yy:02d}TAC")
    assert result.exit_code == 2 and "close it" in result.output, result.output
    result = cli("receipts", "series", "register", "--agency", "NOPE", "--series", f"K{yy:02d}TAB")
    assert result.exit_code == 2 and "no agency" in result.output
    result = cli("receipts", "series", "list", "--agency", "AGC-A")
    assert f"5K{yy:02d}TAB" in result.output and "open" in result.output and "registered" in result.output
    result = cli("receipts", "series", "close", "--agency", "AGC-A", "--series", f"K{yy:02d}TAB")
    assert result.exit_code == 0 and "closed" in result.output, result.output
    assert [(r.series, r.status) for r in _series(api)] == [(f"K{yy:02d}TAB", SeriesStatus.closed)]


def test_nothing_is_numbered_in_a_series_after_its_close_commits(api: Api) -> None:
    """A receipt being issued while the series is closed: the close waits for documents holding the counter row,
    and a document that reaches the counter row after the close waits for it and then sees the series closed."""
    import threading
    import time

    assert _issue(api) is not None  # the default series and its counter row exist
    series = f"K{_year() % 100:02d}TLP"
    payment_id = _paid(api)
    closing, closed = threading.Event(), threading.Event()

    def close() -> None:
        with api.ctx.db.write() as s:
            close_series(s, api.agency_id, "5", series, "test")
            closing.set()
            time.sleep(1.0)  # the issuance below starts meanwhile and must wait for this transaction
        closed.set()

    closer = threading.Thread(target=close)
    closer.start()
    assert closing.wait(10)
    try:
        issue_receipt(api.ctx, api.ctx.signers, payment_id)
    except SeriesNotOpen:
        pass
    else:
        raise AssertionError("a receipt was numbered in a series closed while it was being issued")
    closer.join(10)
    assert closed.is_set()
    with api.ctx.db.read() as s:
        assert s.exec(select(Document).where(Document.payment_id == payment_id)).first() is None
