"""The reconciliation pages: a real settlement file uploaded through the form, the import listed, a day run, the
exceptions with where their line came from, resolve / bulk resolve / reopen with audit rows, undo refused after a
resolve and allowed before, the approval threshold, each role, another agency's ids (404), CSRF, and hostile uploads
and forms answered by a 4xx page that stores nothing. Both databases."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from adapters.statements.base import StatementFormat
from console.audit.models import AuditLog
from console.audit.service import verify
from console.reconcile.imports import UPLOAD_LIMIT
from lephi.container import Container
from payments.reconcile.importer import import_file
from payments.reconcile.matching import run_day
from payments.reconcile.models import ExceptionStatus, ReconException, StatementEntry, StatementImport
from tests.console.conftest import MakeStaff, count, csrf_of, login
from tests.reconcile.test_exceptions_api import DAY, HEADER, _payment, _row

BASE = "/console/reconcile"
NONCE = re.compile(r'nonce="[^"]+"')
BIG = 20_000_000  # above the default approval threshold of 10,000,000 VND


def csv_file(rows: list[str]) -> bytes:
    return (HEADER + "".join(r + "\n" for r in rows)).encode()


GOOD = csv_file(
    [
        _row("T1", "REF-OK", 100_000),
        _row("T2", "REF-MISMATCH", 69_000),
        _row("T3", "REF-UNKNOWN", 12_000),
        _row("T4", "REF-BIG", BIG - 1_000),
    ]
)


def sign_in(client: TestClient, make_staff: MakeStaff, role: str, agency: str | None = "AGC-A") -> str:
    if role == "province_admin":
        agency = None
    staff = make_staff(f"{role}.{agency or 'tinh'}@gov.vn".lower(), role=role, agency=agency)
    assert login(client, staff.email, staff.password).status_code == 303
    return staff.id


def session_csrf(client: TestClient) -> str:
    page = client.get("/console/")
    assert page.status_code == 200
    return csrf_of(page.text)


def html(response: Any, status: int) -> str:
    assert response.status_code == status, (response.status_code, response.text[:800])
    assert response.headers["content-type"].startswith("text/html")
    assert "<main>" in response.text
    return str(response.text)


def upload(
    client: TestClient, content: bytes, csrf: str, name: str = "vnpay-2026-11-20.csv", fmt: str = "vnpay_csv"
) -> Any:
    return client.post(
        f"{BASE}/imports",
        data={"csrf": csrf, "lang": "en", "format": fmt},
        files={"file": (name, content, "text/csv")},
        follow_redirects=False,
    )


def audit(ctx: Container, action: str) -> list[AuditLog]:
    with ctx.db.read() as s:
        return list(s.execute(select(AuditLog).where(AuditLog.action == action).order_by(AuditLog.seq)).scalars())


def exceptions(ctx: Container, agency_id: str) -> dict[str, ReconException]:
    """The agency's exceptions by the reference of their payment or line."""
    with ctx.db.read() as s:
        rows = s.execute(select(ReconException).where(ReconException.agency_id == agency_id)).scalars().all()
        by_ref: dict[str, ReconException] = {}
        for row in rows:
            entry = s.get(StatementEntry, row.entry_id) if row.entry_id else None
            by_ref[(entry.reference if entry else None) or row.category.value] = row
        return by_ref


def stored(ctx: Container) -> tuple[int, int, int, int]:
    return (
        count(ctx, "statement_import"),
        count(ctx, "statement_entry"),
        count(ctx, "recon_exception"),
        count(ctx, "audit_log"),
    )


@pytest.fixture
def payments(ctx: Container, agencies: dict[str, str]) -> dict[str, str]:
    made = {}
    for ref, amount in (("REF-OK", 100_000), ("REF-MISMATCH", 70_000), ("REF-BIG", BIG)):
        made[ref] = _payment(ctx, agencies["AGC-A"], ref, amount).id
    return made


@pytest.fixture
def agency_b(ctx: Container, agencies: dict[str, str], tmp_path: Path) -> dict[str, str]:
    """Agency B's own import and exception, which nobody of agency A may reach."""
    _payment(ctx, agencies["AGC-B"], "REF-B", 50_000)
    path = tmp_path / "b.csv"
    path.write_bytes(csv_file([_row("B1", "REF-B", 49_000)]))
    import_id = import_file(ctx, "AGC-B", path, StatementFormat.vnpay_csv).import_id
    run_day(ctx, agencies["AGC-B"], DAY)
    with ctx.db.read() as s:
        exc = s.execute(select(ReconException).where(ReconException.agency_id == agencies["AGC-B"])).scalars().first()
        assert exc is not None
    return {"import": import_id, "exception": exc.id}


def test_upload_run_resolve_reopen_and_undo(
    client: TestClient, ctx: Container, make_staff: MakeStaff, agencies: dict[str, str], payments: dict[str, str]
) -> None:
    finance = sign_in(client, make_staff, "finance")
    csrf = session_csrf(client)

    # The upload goes through the CLI's importer and says how many lines it processed; the audit row is written.
    page = html(upload(client, GOOD, csrf), 200)
    assert "vnpay-2026-11-20.csv: 4 lines processed, 4 new" in page
    [uploaded] = audit(ctx, "import.uploaded")
    assert uploaded.actor == finance and uploaded.after is not None
    assert uploaded.after["file_name"] == "vnpay-2026-11-20.csv" and uploaded.after["lines"] == 4
    with ctx.db.read() as s:
        imp = s.execute(select(StatementImport)).scalars().one()
    assert imp.imported_by == f"staff:{finance}"
    # The same bytes again add nothing, and the page says so.
    page = html(upload(client, GOOD, csrf, name="again.csv"), 200)
    assert "again.csv was already imported" in page
    assert count(ctx, "statement_import") == 1 and len(audit(ctx, "import.uploaded")) == 1

    listing = html(client.get(f"{BASE}/imports?lang=en"), 200)
    assert "vnpay-2026-11-20.csv" in listing and "finance.agc-a@gov.vn" in listing
    assert f"{BASE}/imports/{imp.id}/undo" in listing

    # Run the day: the counts are shown, the run is audited.
    ran = html(client.post(f"{BASE}/runs", data={"csrf": csrf, "lang": "en", "business_day": DAY.isoformat()}), 200)
    assert "Matched 20 Nov 2026" in ran and "Amount mismatch" in ran
    [run_row] = audit(ctx, "recon.run")
    assert run_row.after is not None and run_row.after["counts"]["matched"] == 1

    # Each exception about a line shows its provenance, expected vs actual, and the payment link.
    found = exceptions(ctx, agencies["AGC-A"])
    mismatch, unknown, big = found["REF-MISMATCH"], found["REF-UNKNOWN"], found["REF-BIG"]
    queue = html(client.get(f"{BASE}/exceptions?lang=en&status=open"), 200)
    assert "vnpay-2026-11-20.csv, line 3" in queue and "Transaction id: T2" in queue
    assert "Reference: REF-MISMATCH" in queue and "Memo: Le phi" in queue and "VND\u00a069,000" in queue
    assert f'href="/console/payments/{payments["REF-MISMATCH"]}?lang=en"' in queue
    assert "Above the threshold" in queue  # REF-BIG needs an approver
    assert f'value="{big.id}"' not in queue  # so finance gets no box for it
    detail = html(client.get(f"{BASE}/exceptions/{mismatch.id}?lang=en"), 200)
    assert "vnpay-2026-11-20.csv, line 3" in detail and "T2" in detail and "Mark resolved" in detail

    # Resolve one with a note; then undo is refused, and nothing is removed.
    r = client.post(
        f"{BASE}/exceptions/{mismatch.id}/resolve",
        data={"csrf": csrf, "lang": "en", "note": "Phí ngân hàng 1.000 đ"},
        follow_redirects=False,
    )
    assert r.status_code == 303
    assert exceptions(ctx, agencies["AGC-A"])["REF-MISMATCH"].status == ExceptionStatus.resolved
    [resolved] = audit(ctx, "exception.resolved")
    assert resolved.target == mismatch.id and resolved.before is not None and resolved.after is not None
    assert resolved.before["status"] == "open" and resolved.after["status"] == "resolved"
    assert resolved.after["note"] == "Phí ngân hàng 1.000 đ"
    before = stored(ctx)
    refused = html(client.post(f"{BASE}/imports/{imp.id}/undo", data={"csrf": csrf, "lang": "en"}), 409)
    assert mismatch.id in refused and "Reopen them first" in refused
    assert stored(ctx) == before

    # Reopen, then resolve two at once with one note: one transaction, one audit row per exception.
    r = client.post(
        f"{BASE}/exceptions/{mismatch.id}/reopen",
        data={"csrf": csrf, "lang": "en", "note": "Sai"},
        follow_redirects=False,
    )
    assert r.status_code == 303 and len(audit(ctx, "exception.reopened")) == 1
    bulk = {"csrf": csrf, "lang": "en", "note": "Đã đối chiếu sao kê", "id": [mismatch.id, unknown.id]}
    r = client.post(f"{BASE}/exceptions/resolve", data=bulk, follow_redirects=False)
    assert r.status_code == 303 and "count=2" in r.headers["location"]
    assert "Marked 2 exceptions resolved" in html(client.get(r.headers["location"]), 200)
    now = exceptions(ctx, agencies["AGC-A"])
    assert {now["REF-MISMATCH"].status, now["REF-UNKNOWN"].status} == {ExceptionStatus.resolved}
    assert {a.target for a in audit(ctx, "exception.resolved")[1:]} == {mismatch.id, unknown.id}
    # Resolving a resolved exception again is a conflict that changes nothing.
    before = stored(ctx)
    html(client.post(f"{BASE}/exceptions/resolve", data=bulk), 409)
    assert stored(ctx) == before

    # Reopened, the import may be undone: its lines and the exceptions about them go, audited.
    for exc_id in (mismatch.id, unknown.id):
        data = {"csrf": csrf, "lang": "en", "note": "Tệp sai"}
        assert client.post(f"{BASE}/exceptions/{exc_id}/reopen", data=data, follow_redirects=False).status_code == 303
    confirm = html(client.get(f"{BASE}/imports/{imp.id}/undo?lang=en"), 200)
    assert mismatch.id in confirm and "Undo the import" in confirm
    done = html(client.post(f"{BASE}/imports/{imp.id}/undo", data={"csrf": csrf, "lang": "en"}), 200)
    assert "4 lines and 3 exceptions removed" in done, done[-600:]
    assert count(ctx, "statement_import") == 0 and count(ctx, "statement_entry") == 0
    left = exceptions(ctx, agencies["AGC-A"])
    assert "REF-MISMATCH" not in left and "REF-UNKNOWN" not in left
    [undone] = audit(ctx, "import.undone")
    assert undone.target == imp.id and undone.before is not None and undone.before["lines"] == 4
    # The file can be brought in again afterwards.
    assert "4 new" in html(upload(client, GOOD, csrf), 200)
    with ctx.db.read() as s:
        assert verify(s, agencies["AGC-A"], only_scope=True).broken is None


def _imported_and_run(ctx: Container, agencies: dict[str, str], tmp_path: Path) -> dict[str, ReconException]:
    path = tmp_path / "a.csv"
    path.write_bytes(GOOD)
    import_file(ctx, "AGC-A", path, StatementFormat.vnpay_csv)
    run_day(ctx, agencies["AGC-A"], DAY)
    return exceptions(ctx, agencies["AGC-A"])


def test_above_the_threshold_only_an_approver_resolves(
    client: TestClient,
    ctx: Container,
    make_staff: MakeStaff,
    agencies: dict[str, str],
    payments: dict[str, str],
    tmp_path: Path,
) -> None:
    found = _imported_and_run(ctx, agencies, tmp_path)
    big, small = found["REF-BIG"], found["REF-MISMATCH"]
    assert big.expected_amount == BIG
    sign_in(client, make_staff, "finance")
    csrf = session_csrf(client)
    before = stored(ctx)
    page = html(client.post(f"{BASE}/exceptions/{big.id}/resolve", data={"csrf": csrf, "note": "x", "lang": "en"}), 403)
    assert "Only an approver" in page and big.id in page
    # A batch with one exception above the threshold changes none of them.
    bulk = {"csrf": csrf, "note": "x", "id": [small.id, big.id]}
    html(client.post(f"{BASE}/exceptions/resolve", data=bulk), 403)
    assert stored(ctx) == before
    assert {e.status for e in exceptions(ctx, agencies["AGC-A"]).values()} == {ExceptionStatus.open}

    sign_in(client, make_staff, "approver")
    csrf = session_csrf(client)
    r = client.post(f"{BASE}/exceptions/resolve", data={**bulk, "csrf": csrf}, follow_redirects=False)
    assert r.status_code == 303
    now = exceptions(ctx, agencies["AGC-A"])
    assert now["REF-BIG"].status == now["REF-MISMATCH"].status == ExceptionStatus.resolved
    assert len(audit(ctx, "exception.resolved")) == 2


# role, may upload / run / undo, may resolve (below the threshold), the exception it tries to resolve
ROLES = [
    ("viewer", False, False, "REF-MISMATCH"),
    ("approver", False, True, "REF-MISMATCH"),
    ("agency_admin", True, False, "REF-UNKNOWN"),
    ("finance", True, True, "REF-UNKNOWN"),
]


def test_each_role(
    client: TestClient,
    ctx: Container,
    make_staff: MakeStaff,
    agencies: dict[str, str],
    payments: dict[str, str],
    tmp_path: Path,
) -> None:
    found = _imported_and_run(ctx, agencies, tmp_path)
    for n, (role, uploads, resolves, target) in enumerate(ROLES):
        sign_in(client, make_staff, role)
        csrf = session_csrf(client)
        for page in ("imports", "exceptions", "credits", f"exceptions/{found['REF-MISMATCH'].id}"):
            html(client.get(f"{BASE}/{page}?lang=en"), 200)
        nav = client.get(f"{BASE}/imports?lang=en").text
        assert f'href="{BASE}/imports?lang=en"' in nav and f'href="{BASE}/exceptions?lang=en"' in nav, role
        assert ('enctype="multipart/form-data"' in nav) == uploads, role
        before = stored(ctx)
        imports = count(ctx, "statement_import")
        r = upload(client, csv_file([_row(f"R{n}", "REF-OK", 100_000)]), csrf, name=f"{role}.csv")
        run = client.post(f"{BASE}/runs", data={"csrf": csrf, "business_day": DAY.isoformat()})
        undo_page = client.get(f"{BASE}/imports/{_import_id(ctx)}/undo")
        if uploads:
            assert (r.status_code, run.status_code, undo_page.status_code) == (200, 200, 200), role
            assert count(ctx, "statement_import") == imports + 1
        else:
            assert (r.status_code, run.status_code, undo_page.status_code) == (403, 403, 403), role
            assert stored(ctx) == before
        data = {"csrf": csrf, "note": "ok"}
        r = client.post(f"{BASE}/exceptions/{found[target].id}/resolve", data=data, follow_redirects=False)
        assert r.status_code == (303 if resolves else 403), role
        status = exceptions(ctx, agencies["AGC-A"])[target].status
        assert status == (ExceptionStatus.resolved if resolves else ExceptionStatus.open), role


def _import_id(ctx: Container) -> str:
    with ctx.db.read() as s:
        return s.execute(select(StatementImport.id).order_by(StatementImport.created_at)).scalars().first() or ""


def test_province_admin_reads_any_agency_and_changes_nothing(
    client: TestClient, ctx: Container, make_staff: MakeStaff, agencies: dict[str, str], agency_b: dict[str, str]
) -> None:
    sign_in(client, make_staff, "province_admin")
    csrf = session_csrf(client)
    picker = html(client.get(f"{BASE}/exceptions?lang=en"), 200)
    assert "agency=AGC-B" in picker
    page = html(client.get(f"{BASE}/exceptions?lang=en&agency=AGC-B"), 200)
    assert "b.csv, line 2" in page
    html(client.get(f"{BASE}/imports?lang=en&agency=AGC-B"), 200)
    html(client.get(f"{BASE}/exceptions?lang=en&agency=NOPE"), 404)
    before = stored(ctx)
    html(upload(client, GOOD, csrf), 403)
    html(client.post(f"{BASE}/exceptions/{agency_b['exception']}/resolve", data={"csrf": csrf, "note": "x"}), 403)
    assert stored(ctx) == before


def test_another_agencys_ids_answer_404_and_change_nothing(
    client: TestClient,
    ctx: Container,
    make_staff: MakeStaff,
    agencies: dict[str, str],
    payments: dict[str, str],
    agency_b: dict[str, str],
    tmp_path: Path,
) -> None:
    found = _imported_and_run(ctx, agencies, tmp_path)
    sign_in(client, make_staff, "finance")
    csrf = session_csrf(client)
    b_exc, b_imp = agency_b["exception"], agency_b["import"]
    unknown = html(client.get(f"{BASE}/exceptions/exc_doesnotexist"), 404)
    foreign = html(client.get(f"{BASE}/exceptions/{b_exc}"), 404)
    assert NONCE.sub("", foreign.replace(b_exc, "ID")) == NONCE.sub("", unknown.replace("exc_doesnotexist", "ID"))
    html(client.get(f"{BASE}/imports/{b_imp}/undo"), 404)
    html(client.get(f"{BASE}/exceptions?agency=AGC-B"), 404)
    html(client.get(f"{BASE}/credits?agency=AGC-B"), 404)
    queue = html(client.get(f"{BASE}/exceptions?lang=en"), 200)
    assert "b.csv" not in queue and b_exc not in queue
    before = stored(ctx)
    html(client.post(f"{BASE}/imports/{b_imp}/undo", data={"csrf": csrf}), 404)
    html(client.post(f"{BASE}/exceptions/{b_exc}/resolve", data={"csrf": csrf, "note": "x"}), 404)
    bulk = {"csrf": csrf, "note": "x", "id": [found["REF-MISMATCH"].id, b_exc]}
    html(client.post(f"{BASE}/exceptions/resolve", data=bulk), 404)
    assert stored(ctx) == before
    assert {e.status for e in exceptions(ctx, agencies["AGC-A"]).values()} == {ExceptionStatus.open}


def test_csrf_missing_or_wrong_is_refused_and_changes_nothing(
    client: TestClient,
    ctx: Container,
    make_staff: MakeStaff,
    agencies: dict[str, str],
    payments: dict[str, str],
    tmp_path: Path,
) -> None:
    found = _imported_and_run(ctx, agencies, tmp_path)
    exc_id, imp_id = found["REF-MISMATCH"].id, _import_id(ctx)
    sign_in(client, make_staff, "finance")
    before = stored(ctx)
    for csrf in ("", "wrong"):
        html(upload(client, csv_file([_row("T8", "REF-OK", 1)]), csrf), 403)
        html(client.post(f"{BASE}/runs", data={"csrf": csrf, "business_day": DAY.isoformat()}), 403)
        html(client.post(f"{BASE}/imports/{imp_id}/undo", data={"csrf": csrf}), 403)
        html(client.post(f"{BASE}/exceptions/{exc_id}/resolve", data={"csrf": csrf, "note": "x"}), 403)
        html(client.post(f"{BASE}/exceptions/resolve", data={"csrf": csrf, "note": "x", "id": exc_id}), 403)
    assert stored(ctx) == before and count(ctx, "recon_run") == 1


def test_hostile_uploads_and_forms_get_a_4xx_page_and_store_nothing(
    client: TestClient, ctx: Container, make_staff: MakeStaff, agencies: dict[str, str], payments: dict[str, str]
) -> None:
    sign_in(client, make_staff, "finance")
    csrf = session_csrf(client)
    before = stored(ctx)
    # Over the limit: refused as the body arrives.
    html(upload(client, b"x" * (UPLOAD_LIMIT + 100 * 1024), csrf), 413)
    # A malformed line is named, and nothing of the file is kept.
    bad = csv_file([_row("T1", "REF-OK", 100_000), 'T2,REF-X,20/11/2026 12:05:00,Thanh toán,"abc",1000,NCB,Le phi'])
    page = html(upload(client, bad, csrf), 422)
    assert "line 3" in page and "no line was stored" in page
    # Not the format chosen at all: binary bytes as camt.053, or as CSV.
    html(upload(client, b"\x00\xff\xfe PK\x03\x04" * 200, csrf, name="s.xml", fmt="camt053"), 422)
    html(upload(client, b"\x00\xff\xfe" * 200, csrf, name="s.csv"), 422)
    # An unknown format, an over-long name, no file at all.
    html(upload(client, GOOD, csrf, fmt="stripe_api"), 400)
    html(upload(client, GOOD, csrf, name="a" * 300 + ".csv"), 400)
    html(client.post(f"{BASE}/imports", data={"csrf": csrf, "format": "vnpay_csv"}), 400)
    # Days that are no day, in the future or long ago.
    for value in ("2026-13-01", "0", "9999-01-01", "2019-12-31", "２０２６-11-20"):
        html(client.post(f"{BASE}/runs", data={"csrf": csrf, "business_day": value}), 400)
    assert stored(ctx) == before and count(ctx, "recon_run") == 0

    # Notes: missing, over-long, with control characters; ids over-long or too many.
    exc_url = f"{BASE}/exceptions/exc_x/resolve"
    html(client.post(exc_url, data={"csrf": csrf, "note": ""}), 400)
    html(client.post(exc_url, data={"csrf": csrf, "note": "x" * 1001}), 400)
    html(client.post(exc_url, data={"csrf": csrf, "note": "a\x00b"}), 400)
    html(client.post(f"{BASE}/exceptions/resolve", data={"csrf": csrf, "note": "x", "id": "e" * 41}), 400)
    html(
        client.post(f"{BASE}/exceptions/resolve", data={"csrf": csrf, "note": "x", "id": [f"e{i}" for i in range(51)]}),
        400,
    )
    html(client.post(f"{BASE}/exceptions/resolve", data={"csrf": csrf, "note": "x"}), 400)
    # Filters our pages never send.
    for query in ("from=20-11-2026", "to=x", "category=nope", "source=cash", "status=gone", "page=0", "page=x"):
        html(client.get(f"{BASE}/exceptions?{query}"), 400)
    html(client.get(f"{BASE}/imports?page=-1"), 400)
    html(client.get(f"{BASE}/credits?page=99999999"), 400)
    assert stored(ctx) == before
