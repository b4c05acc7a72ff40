"""/v1/reconciliation: running a day, the exceptions queue (list, detail with trail, resolve, reopen), runs and
imports, on both databases."""

from __future__ import annotations

import secrets
import threading
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func
from sqlmodel import select

from adapters.statements.base import StatementFormat
from invoices.tables import Document, DocumentPurpose
from payments.agency.models import Procedure
from payments.auth.service import create_key
from payments.core.context import AppContext
from payments.dossier.models import Dossier, DossierStatus
from payments.idempotency.models import IdempotencyRecord
from payments.payment.models import Payment
from payments.payment.states import PaymentStatus
from payments.reconcile.importer import import_file
from payments.reconcile.matching import GMT7, run_day
from payments.reconcile.models import ReconException, ReconExceptionEvent, ReconRun
from tests.conftest import Api
from tests.factories import seed_agency

BASE = "/v1/reconciliation"
DAY = date(2026, 11, 20)
NOON = datetime(2026, 11, 20, 5, 0, tzinfo=UTC)  # 12:00 in GMT+7
HEADER = "Mã GD VNPAY,Mã tham chiếu,Ngày GD,Loại GD,Số tiền,Phí,Ngân hàng,Nội dung\n"
READ, WRITE = "reconciliation:read", "reconciliation:write"


# --- data, made like tests/reconcile/test_matching.py -------------------------------------------------------------
def _payment(
    ctx: AppContext, agency: str, ref: str, amount: int, *, receipt: bool = True, at: datetime = NOON
) -> Payment:
    with ctx.db.write() as s:
        procedure = s.exec(select(Procedure.id).where(Procedure.agency_id == agency)).first()
        assert procedure is not None
        dossier = Dossier(
            agency_id=agency,
            code=f"HS-{ref}",
            procedure_id=procedure,
            payer_name="Nguyễn Văn An",
            total_amount=amount,
            status=DossierStatus.paid,
            pay_token=f"t-{ref}",
        )
        s.add(dossier)
        s.flush()
        p = Payment(
            agency_id=agency,
            dossier_id=dossier.id,
            gateway="vnpay",
            amount=amount,
            status=PaymentStatus.succeeded,
            gateway_token=f"g-{ref}",
            gateway_reference=ref,
            return_url="https://x.example/",
            description="d",
            expires_at=at,
            succeeded_at=at,
            created_at=at,
        )
        s.add(p)
        s.flush()
        if receipt:
            s.add(
                Document(
                    agency_id=agency,
                    payment_id=p.id,
                    purpose=DocumentPurpose.original,
                    template="5",
                    series="K26TLP",
                    year=2026,
                    number=int(secrets.randbelow(9_000_000)) + 1,
                    issue_date=at.astimezone(GMT7).date(),
                    total=amount,
                    lookup_code=ref[:12].ljust(12, "X"),
                    xml=b"<HDon/>",
                )
            )
        return p


def _row(txn: str, ref: str, amount: int, day: str = "20/11/2026 12:05:00") -> str:
    return f'{txn},{ref},{day},Thanh toán,"{amount:,}",1000,NCB,Le phi'


def _import(ctx: AppContext, agency_code: str, tmp_path: Path, rows: list[str], name: str = "vnpay.csv") -> str:
    path = tmp_path / name
    path.write_text(HEADER + "".join(r + "\n" for r in rows), encoding="utf-8")
    return import_file(ctx, agency_code, path, StatementFormat.vnpay_csv).import_id


def _key(api: Api, scopes: list[str], agency_code: str = "AGC-A") -> tuple[str, str]:
    """(the actor the key writes as, the raw key)"""
    with api.ctx.db.write() as s:
        key, raw = create_key(s, agency_code, "finance", scopes)
    return f"api_key:{key.id}", raw


def bearer(raw: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {raw}"}


@pytest.fixture
def day_data(api: Api, tmp_path: Path) -> dict[str, Any]:
    """Agency A's day: one payment of each kind of trouble, the settlement file, nothing matched yet."""
    ctx, agency = api.ctx, api.agency_id
    ok = _payment(ctx, agency, "REF-OK", 100_000)
    unsettled = _payment(ctx, agency, "REF-UNSETTLED", 50_000)
    mismatch = _payment(ctx, agency, "REF-MISMATCH", 70_000)
    no_receipt = _payment(ctx, agency, "REF-NORECEIPT", 20_000, receipt=False)
    import_id = _import(
        ctx,
        "AGC-A",
        tmp_path,
        [
            _row("1", "REF-OK", 100_000),
            _row("2", "REF-MISMATCH", 69_000),
            _row("3", "REF-NORECEIPT", 20_000),
            _row("4", "REF-UNKNOWN", 12_000),
        ],
    )
    return {"ok": ok, "unsettled": unsettled, "mismatch": mismatch, "no_receipt": no_receipt, "import_id": import_id}


def _exceptions(api: Api, **params: Any) -> list[dict[str, Any]]:
    r = api.get(f"{BASE}/exceptions", params={"limit": 100, **params})
    assert r.status_code == 200, r.text
    assert r.json()["next_cursor"] is None
    return list(r.json()["data"])


def _one(api: Api, category: str) -> dict[str, Any]:
    (found,) = _exceptions(api, category=category)
    return found


def _state(ctx: AppContext) -> tuple[list[tuple[Any, ...]], int]:
    """Every exception's staff-visible fields, and the number of trail rows."""
    with ctx.db.read() as s:
        rows = [
            (e.id, e.status, e.note, e.resolved_by, e.resolved_at, e.updated_at)
            for e in s.exec(select(ReconException).order_by(ReconException.id))
        ]
        events = s.exec(select(func.count()).select_from(ReconExceptionEvent)).one()
    return rows, int(events)


# --- running a day ------------------------------------------------------------------------------------------------
def test_running_a_day_through_the_api_opens_the_exceptions(api: Api, day_data: dict[str, Any]) -> None:
    actor, raw = _key(api, [WRITE])
    r = api.post(f"{BASE}/runs", {"business_day": DAY.isoformat()}, key="run-1", headers=bearer(raw))
    assert r.status_code == 201, r.text
    run = r.json()
    assert run["id"].startswith("rcn_") and run["business_day"] == "2026-11-20"
    assert run["created_by"] == actor and run["finished_at"] is not None
    assert run["opened"] == 4 and run["cleared"] == 0
    assert run["counts"]["matched"] == 2  # OK and NORECEIPT
    assert {k: v for k, v in run["counts"].items() if v and k != "matched"} == {
        "paid_not_settled": 1,
        "amount_mismatch": 1,
        "paid_without_receipt": 1,
        "settled_unknown": 1,
    }
    assert [i["import_id"] for i in run["inputs"]] == [day_data["import_id"]]

    found = _exceptions(api)
    assert sorted(e["category"] for e in found) == [
        "amount_mismatch",
        "paid_not_settled",
        "paid_without_receipt",
        "settled_unknown",
    ]
    assert all(e["status"] == "open" and e["business_day"] == "2026-11-20" for e in found)
    mismatch = _one(api, "amount_mismatch")
    assert mismatch["payment_id"] == day_data["mismatch"].id
    assert mismatch["dossier_id"] == day_data["mismatch"].dossier_id
    assert (mismatch["expected_amount"], mismatch["actual_amount"]) == (70_000, 69_000)
    assert isinstance(mismatch["entry_id"], int)
    assert set(mismatch) == {
        "id",
        "category",
        "business_day",
        "status",
        "payment_id",
        "dossier_id",
        "document_id",
        "refund_id",
        "entry_id",
        "expected_amount",
        "actual_amount",
        "detail",
        "note",
        "resolved_by",
        "resolved_at",
        "created_at",
        "updated_at",
        "source_file",
        "source_line",
        "external_id",
        "reference",
        "memo",
        "line_amount",
    }
    # Where the line came from: the file, its line number and what the line said.
    assert mismatch["source_file"] == "vnpay.csv" and isinstance(mismatch["source_line"], int)
    assert (mismatch["reference"], mismatch["line_amount"], mismatch["memo"]) == ("REF-MISMATCH", 69_000, "Le phi")
    assert (mismatch["external_id"], mismatch["source_line"]) == ("2", 3)
    detail = api.get(f"{BASE}/exceptions/{mismatch['id']}").json()
    assert detail["source_file"] == "vnpay.csv" and detail["source_line"] == mismatch["source_line"]
    assert [(e["action"], e["actor"], e["run_id"]) for e in detail["events"]] == [("opened", actor, run["id"])]

    # The same key answers the same run; a new key runs the day again, which opens nothing new.
    again = api.post(f"{BASE}/runs", {"business_day": DAY.isoformat()}, key="run-1", headers=bearer(raw))
    assert again.status_code == 201 and again.json() == run and again.headers["idempotent-replayed"] == "true"
    second = api.post(f"{BASE}/runs", {"business_day": DAY.isoformat()}, headers=bearer(raw))
    assert second.status_code == 201 and second.json()["opened"] == 0 and second.json()["id"] != run["id"]

    runs = api.get(f"{BASE}/runs").json()
    assert [x["id"] for x in runs["data"]] == [second.json()["id"], run["id"]]
    assert set(runs["data"][0]) == {"id", "business_day", "counts", "inputs", "created_by", "started_at", "finished_at"}
    assert api.get(f"{BASE}/runs", params={"business_day": "2026-11-19"}).json()["data"] == []
    page = api.get(f"{BASE}/runs", params={"limit": 1}).json()
    assert [x["id"] for x in page["data"]] == [second.json()["id"]]
    rest = api.get(f"{BASE}/runs", params={"limit": 1, "cursor": page["next_cursor"]}).json()
    assert [x["id"] for x in rest["data"]] == [run["id"]] and rest["next_cursor"] is None


def test_imports_are_listed_newest_first(api: Api, tmp_path: Path) -> None:
    first = _import(api.ctx, "AGC-A", tmp_path, [_row("1", "REF-A", 1_000)], "a.csv")
    second = _import(api.ctx, "AGC-A", tmp_path, [_row("2", "REF-B", 2_000), _row("3", "REF-C", 3_000)], "b.csv")
    listed = api.get(f"{BASE}/imports").json()["data"]
    assert [i["id"] for i in listed] == [second, first]
    assert listed[0] | {"sha256": None, "created_at": None} == {
        "id": second,
        "source": "vnpay",
        "format": "vnpay_csv",
        "file_name": "b.csv",
        "sha256": None,
        "line_count": 2,
        "new_lines": 2,
        "total_amount": 5_000,
        "first_day": "2026-11-20",
        "last_day": "2026-11-20",
        "imported_by": "cli",
        "created_at": None,
    }
    assert len(listed[0]["sha256"]) == 64
    assert api.get(f"{BASE}/imports", params={"source": "bank"}).json()["data"] == []
    page = api.get(f"{BASE}/imports", params={"limit": 1}).json()
    assert [i["id"] for i in page["data"]] == [second] and page["next_cursor"]


@pytest.mark.parametrize(
    "body",
    [
        {"business_day": "2019-12-31"},
        {"business_day": "future"},
        {"business_day": "2026-02-30"},
        {"business_day": "20/11/2026"},
        {},
        {"business_day": "2026-11-20", "agency_id": "agc_other"},
    ],
    ids=["before-2020", "tomorrow", "no-such-date", "not-iso", "missing", "unknown-field"],
)
def test_a_run_for_a_future_or_impossible_day_is_422(api: Api, body: dict[str, Any]) -> None:
    if body.get("business_day") == "future":
        body = {"business_day": (datetime.now(GMT7).date() + timedelta(days=1)).isoformat()}
    r = api.post(f"{BASE}/runs", body)
    assert r.status_code == 422, r.text
    assert r.json()["code"] == "validation_error"
    with api.ctx.db.read() as s:
        assert s.exec(select(ReconRun)).all() == []


def test_today_and_the_first_day_can_be_run(api: Api) -> None:
    for day in (datetime.now(GMT7).date(), date(2020, 1, 1)):
        r = api.post(f"{BASE}/runs", {"business_day": day.isoformat()})
        assert r.status_code == 201, r.text
        assert r.json()["opened"] == 0


# --- listing ------------------------------------------------------------------------------------------------------
def test_list_filters_and_pagination(api: Api) -> None:
    ctx, agency = api.ctx, api.agency_id
    days = [DAY - timedelta(days=2), DAY - timedelta(days=1), DAY]
    payments = []
    for n, day in enumerate(days):
        at = datetime(day.year, day.month, day.day, 5, tzinfo=UTC)
        payments.append(_payment(ctx, agency, f"REF-U{n}", 10_000 * (n + 1), at=at))  # unsettled
        payments.append(_payment(ctx, agency, f"REF-R{n}", 1_000, at=at, receipt=False))  # unsettled, no receipt
        run_day(ctx, agency, day)
    everything = _exceptions(api)
    assert len(everything) == 9  # per day: two unsettled, one without receipt
    # Newest first: a later run's exceptions before an earlier run's.
    assert [e["business_day"] for e in everything] == sorted((e["business_day"] for e in everything), reverse=True)

    assert {e["business_day"] for e in _exceptions(api, business_day_from=days[1].isoformat())} == {
        days[1].isoformat(),
        days[2].isoformat(),
    }
    assert {e["business_day"] for e in _exceptions(api, business_day_to=days[1].isoformat())} == {
        days[0].isoformat(),
        days[1].isoformat(),
    }
    same_day = days[1].isoformat()
    assert len(_exceptions(api, business_day_from=same_day, business_day_to=same_day)) == 3
    assert len(_exceptions(api, category="paid_without_receipt")) == 3
    assert len(_exceptions(api, category="paid_without_receipt", business_day_from=DAY.isoformat())) == 1
    target = payments[2]
    by_payment = _exceptions(api, payment_id=target.id)
    assert {e["category"] for e in by_payment} == {"paid_not_settled"}
    assert _exceptions(api, dossier_id=target.dossier_id) == by_payment
    assert _exceptions(api, dossier_code="HS-REF-U1") == by_payment
    assert _exceptions(api, dossier_code="HS-NONE") == []

    # Resolve one: the status filter splits the queue.
    resolved = api.post(f"{BASE}/exceptions/{by_payment[0]['id']}/resolve", {"note": "đã đối chiếu"})
    assert resolved.status_code == 200, resolved.text
    assert [e["id"] for e in _exceptions(api, status="resolved")] == [by_payment[0]["id"]]
    assert len(_exceptions(api, status="open")) == 8
    assert _exceptions(api, status="cleared") == []

    # Pages of two walk the whole list once, in the same order.
    seen: list[str] = []
    cursor = None
    while True:
        params: dict[str, Any] = {"limit": 2}
        if cursor:
            params["cursor"] = cursor
        page = api.get(f"{BASE}/exceptions", params=params).json()
        assert len(page["data"]) <= 2
        seen += [e["id"] for e in page["data"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == [e["id"] for e in everything]

    for params in (
        {"limit": 0},
        {"limit": 101},
        {"cursor": "not-a-cursor"},
        {"status": "closed"},
        {"category": "nope"},
        {"business_day_from": "2026-13-01"},
    ):
        r = api.get(f"{BASE}/exceptions", params=params)
        assert r.status_code == 422, (params, r.text)


# --- resolve and reopen -------------------------------------------------------------------------------------------
def test_resolve_then_reopen_leaves_the_whole_trail(api: Api, day_data: dict[str, Any]) -> None:
    run_day(api.ctx, api.agency_id, DAY)
    exc = _one(api, "paid_not_settled")
    anh, anh_key = _key(api, [READ, WRITE])
    binh, binh_key = _key(api, [WRITE])

    r = api.post(f"{BASE}/exceptions/{exc['id']}/resolve", {"note": "  Tiền về ngày 21/11  "}, headers=bearer(anh_key))
    assert r.status_code == 200, r.text
    resolved = r.json()
    assert resolved["status"] == "resolved" and resolved["note"] == "Tiền về ngày 21/11"
    assert resolved["resolved_by"] == anh and resolved["resolved_at"] is not None
    assert [(e["action"], e["actor"], e["note"]) for e in resolved["events"]] == [
        ("opened", "system:reconciliation", None),
        ("resolved", anh, "Tiền về ngày 21/11"),
    ]
    assert api.get(f"{BASE}/exceptions/{exc['id']}").json() == resolved

    r = api.post(f"{BASE}/exceptions/{exc['id']}/reopen", {"note": "Ngân hàng báo chưa nhận"}, headers=bearer(binh_key))
    assert r.status_code == 200, r.text
    reopened = r.json()
    assert reopened["status"] == "open" and reopened["resolved_by"] is None and reopened["resolved_at"] is None
    assert reopened["note"] == "Ngân hàng báo chưa nhận"
    trail = [(e["action"], e["actor"], e["note"]) for e in reopened["events"]]
    assert trail == [
        ("opened", "system:reconciliation", None),
        ("resolved", anh, "Tiền về ngày 21/11"),
        ("reopened", binh, "Ngân hàng báo chưa nhận"),
    ]
    times = [e["created_at"] for e in reopened["events"]]
    assert times == sorted(times)
    assert reopened["updated_at"] >= resolved["updated_at"]

    # A reopened exception can be resolved again, and a run of the day keeps a resolution.
    r = api.post(f"{BASE}/exceptions/{exc['id']}/resolve", {"note": "Xác nhận lại"})
    assert r.status_code == 200 and len(r.json()["events"]) == 4
    run_day(api.ctx, api.agency_id, DAY)
    after = api.get(f"{BASE}/exceptions/{exc['id']}").json()
    assert after["status"] == "resolved" and after["note"] == "Xác nhận lại"
    assert len(after["events"]) == 4


def test_resolving_twice_or_reopening_an_open_one_is_409(api: Api, day_data: dict[str, Any]) -> None:
    run_day(api.ctx, api.agency_id, DAY)
    exc = _one(api, "amount_mismatch")
    r = api.post(f"{BASE}/exceptions/{exc['id']}/reopen", {"note": "x"})
    assert r.status_code == 409 and r.json()["code"] == "exception_not_resolved", r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    assert api.post(f"{BASE}/exceptions/{exc['id']}/resolve", {"note": "first"}).status_code == 200
    before = _state(api.ctx)
    r = api.post(f"{BASE}/exceptions/{exc['id']}/resolve", {"note": "second"})
    assert r.status_code == 409 and r.json()["code"] == "exception_not_open", r.text
    assert "resolved" in r.json()["detail"]
    assert _state(api.ctx) == before


def test_a_cleared_exception_cannot_be_resolved_or_reopened(api: Api, day_data: dict[str, Any], tmp_path: Path) -> None:
    run_day(api.ctx, api.agency_id, DAY)
    exc = _one(api, "paid_not_settled")
    _import(api.ctx, "AGC-A", tmp_path, [_row("9", "REF-UNSETTLED", 50_000, "21/11/2026 09:00:00")], "late.csv")
    run_day(api.ctx, api.agency_id, DAY)
    assert api.get(f"{BASE}/exceptions/{exc['id']}").json()["status"] == "cleared"
    before = _state(api.ctx)
    assert api.post(f"{BASE}/exceptions/{exc['id']}/resolve", {"note": "x"}).json()["code"] == "exception_not_open"
    assert api.post(f"{BASE}/exceptions/{exc['id']}/reopen", {"note": "x"}).json()["code"] == "exception_not_resolved"
    assert _state(api.ctx) == before


def test_the_same_key_replays_the_resolution(api: Api, day_data: dict[str, Any]) -> None:
    run_day(api.ctx, api.agency_id, DAY)
    exc = _one(api, "settled_unknown")
    first = api.post(f"{BASE}/exceptions/{exc['id']}/resolve", {"note": "phí thử"}, key="res-1")
    again = api.post(f"{BASE}/exceptions/{exc['id']}/resolve", {"note": "phí thử"}, key="res-1")
    assert first.status_code == again.status_code == 200
    assert again.json() == first.json() and again.headers["idempotent-replayed"] == "true"
    assert len(api.get(f"{BASE}/exceptions/{exc['id']}").json()["events"]) == 2
    other = api.post(f"{BASE}/exceptions/{exc['id']}/resolve", {"note": "khác"}, key="res-1")
    assert other.status_code == 422 and other.json()["code"] == "idempotency_key_reused"
    missing = api.post(f"{BASE}/exceptions/{exc['id']}/resolve", {"note": "x"}, key=False)
    assert missing.status_code == 400 and missing.json()["code"] == "idempotency_key_missing"


def test_concurrent_resolves_give_one_success(api: Api, day_data: dict[str, Any]) -> None:
    run_day(api.ctx, api.agency_id, DAY)
    exc = _one(api, "paid_without_receipt")
    n = 8
    keys = [_key(api, [WRITE]) for _ in range(n)]
    barrier = threading.Barrier(n)
    results: list[Any] = [None] * n

    def resolve(i: int) -> None:
        barrier.wait()
        results[i] = api.post(
            f"{BASE}/exceptions/{exc['id']}/resolve", {"note": f"người {i}"}, headers=bearer(keys[i][1])
        )

    threads = [threading.Thread(target=resolve, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    statuses = sorted(r.status_code for r in results)
    assert statuses == [200] + [409] * (n - 1), [r.text for r in results]
    (winner,) = [i for i, r in enumerate(results) if r.status_code == 200]
    assert all(r.json()["code"] == "exception_not_open" for r in results if r.status_code == 409)
    final = api.get(f"{BASE}/exceptions/{exc['id']}").json()
    assert final["resolved_by"] == keys[winner][0] and final["note"] == f"người {winner}"
    assert [e["action"] for e in final["events"]] == ["opened", "resolved"]


@pytest.mark.parametrize(
    "body",
    [None, {}, {"note": ""}, {"note": "   "}, {"note": "x" * 2001}, {"note": 5}, {"note": "ok", "status": "open"}],
    ids=["no-body", "no-note", "empty", "blank", "too-long", "not-text", "unknown-field"],
)
@pytest.mark.parametrize("action", ["resolve", "reopen"])
def test_resolve_and_reopen_need_a_note(api: Api, day_data: dict[str, Any], action: str, body: Any) -> None:
    run_day(api.ctx, api.agency_id, DAY)
    exc = _one(api, "amount_mismatch")
    if action == "reopen":
        assert api.post(f"{BASE}/exceptions/{exc['id']}/resolve", {"note": "đã xử lý"}).status_code == 200
    before = _state(api.ctx)
    with api.ctx.db.read() as s:
        records = len(s.exec(select(IdempotencyRecord)).all())
    r = api.post(f"{BASE}/exceptions/{exc['id']}/{action}", body)
    assert r.status_code == 422, r.text
    assert r.json()["code"] == "validation_error"
    assert _state(api.ctx) == before
    with api.ctx.db.read() as s:
        assert len(s.exec(select(IdempotencyRecord)).all()) == records


def test_another_agency_sees_none_of_it(api: Api, day_data: dict[str, Any], capsys: pytest.CaptureFixture[str]) -> None:
    run_day(api.ctx, api.agency_id, DAY)
    exc = _one(api, "amount_mismatch")
    assert api.post(f"{BASE}/exceptions/{exc['id']}/resolve", {"note": "đã xử lý"}).status_code == 200
    with api.ctx.db.write() as s:
        seed_agency(s, "AGC-B")
    _, b = _key(api, [READ, WRITE], "AGC-B")
    before = _state(api.ctx)
    capsys.readouterr()

    answers = [
        api.client.get(f"{BASE}/exceptions/{exc['id']}", headers=bearer(b)),
        api.post(f"{BASE}/exceptions/{exc['id']}/reopen", {"note": "x"}, headers=bearer(b)),
        api.post(f"{BASE}/exceptions/{exc['id']}/resolve", {"note": "x"}, headers=bearer(b)),
    ]
    for r in answers:
        assert r.status_code == 404 and r.json()["code"] == "not_found", r.text
    assert capsys.readouterr().err.count("auth.cross_agency_access") == 3
    missing = api.client.get(f"{BASE}/exceptions/exc_000000000000000000000000", headers=bearer(b))
    assert missing.status_code == 404
    assert missing.json()["detail"] == answers[0].json()["detail"].replace(exc["id"], "exc_000000000000000000000000")
    assert _state(api.ctx) == before
    for path in ("exceptions", "runs", "imports"):
        r = api.client.get(f"{BASE}/{path}", headers=bearer(b))
        assert r.status_code == 200 and r.json() == {"data": [], "next_cursor": None}, (path, r.text)
    # B running the same day finds nothing of A's.
    r = api.post(f"{BASE}/runs", {"business_day": DAY.isoformat()}, headers=bearer(b))
    assert r.status_code == 201 and r.json()["opened"] == 0 and r.json()["inputs"] == []
    assert len(_exceptions(api)) == 4


def test_reading_needs_read_and_changing_needs_write(api: Api, day_data: dict[str, Any]) -> None:
    run_day(api.ctx, api.agency_id, DAY)
    exc = _one(api, "amount_mismatch")
    _, reader = _key(api, [READ])
    _, writer = _key(api, [WRITE])
    r = api.post(f"{BASE}/exceptions/{exc['id']}/resolve", {"note": "x"}, headers=bearer(reader))
    assert r.status_code == 403 and r.json()["required_scope"] == WRITE
    r = api.client.get(f"{BASE}/exceptions/{exc['id']}", headers=bearer(writer))
    assert r.status_code == 403 and r.json()["required_scope"] == READ
    for path in ("exceptions", "runs", "imports", "reports/daily?business_day=2026-11-20"):
        assert api.client.get(f"{BASE}/{path}", headers=bearer(writer)).status_code == 403, path
        assert api.client.get(f"{BASE}/{path}", headers=bearer(reader)).status_code == 200, path
    assert _one(api, "amount_mismatch")["status"] == "open"


def test_a_resolve_waiting_on_another_sees_it_resolved(api: Api, day_data: dict[str, Any]) -> None:
    """The compare-and-set itself, interleaved by hand: the second transaction waits for the first and then finds
    the exception no longer open, instead of resolving it a second time."""
    from payments.reconcile.exceptions import ExceptionNotOpen, resolve_exception

    run_day(api.ctx, api.agency_id, DAY)
    exc_id = _one(api, "paid_not_settled")["id"]
    first_wrote = threading.Event()
    outcome: dict[str, Any] = {}

    def first() -> None:
        with api.ctx.db.write() as s:
            resolve_exception(s, api.agency_id, exc_id, "staff:a", "first")
            first_wrote.set()
            threading.Event().wait(0.5)  # hold the transaction open while the second one tries

    def second() -> None:
        first_wrote.wait(10)
        try:
            with api.ctx.db.write() as s:
                resolve_exception(s, api.agency_id, exc_id, "staff:b", "second")
            outcome["second"] = "resolved"
        except ExceptionNotOpen:
            outcome["second"] = "conflict"

    threads = [threading.Thread(target=first), threading.Thread(target=second)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert outcome == {"second": "conflict"}
    detail = api.get(f"{BASE}/exceptions/{exc_id}").json()
    assert (detail["resolved_by"], detail["note"]) == ("staff:a", "first")
    assert [e["actor"] for e in detail["events"]] == ["system:reconciliation", "staff:a"]
