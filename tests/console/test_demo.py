"""The demo's staff accounts: one per role, passwords kept in the data directory, stable across restarts; and its
month of history, written through the product's own services."""

from __future__ import annotations

import itertools
import os
import secrets
import shutil
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url
from sqlmodel import Session, col, func, select

from console.audit.models import AuditLog
from console.dashboard.figures import gather
from console.demo import DEMO_STAFF, seed_demo_staff
from console.demo_history import DAYS, MARKER, Summary, claim_marker, seed_demo_history, staff_since
from console.reports.figures import Grain, report
from console.staff import passwords
from console.staff.models import Role
from console.staff.service import sign_in
from invoices.keys import signing_dir, write_dev_certificate
from invoices.tables import Document, DocumentPurpose
from invoices.verification import verify_upload
from lephi.container import Container, build_container
from lephi.migrate import upgrade
from payments.agency.demo import DEMO_AGENCY, seed_demo
from payments.agency.models import Agency
from payments.core.db import Database, make_engine, normalise_url
from payments.core.types import utcnow
from payments.dossier.models import Dossier
from payments.payment.models import Payment, Refund
from payments.reconcile.matching import GMT7
from payments.reconcile.models import Category, ReconException, ReconRun, StatementEntry
from payments.transfer.models import BankCredit
from tests.conftest import _CHEAP_HASHER, BACKENDS, PG_URL, Api, make_settings


def test_demo_staff_sign_in_and_keep_their_passwords(api: Api, ctx: Container, tmp_path: Path) -> None:
    with ctx.db.write() as s:
        first = seed_demo_staff(s, "AGC-A", tmp_path)
    assert [(u.email, u.role) for u in first] == DEMO_STAFF
    assert (tmp_path / "demo-staff.txt").stat().st_mode & 0o777 == 0o600
    with ctx.db.write() as s:
        again = seed_demo_staff(s, "AGC-A", tmp_path)
    assert again == first  # a restart prints the same passwords
    # A lost file gives new passwords that work, and the old ones stop working.
    (tmp_path / "demo-staff.txt").unlink()
    with ctx.db.write() as s:
        fresh = seed_demo_staff(s, "AGC-A", tmp_path)
    finance = next(u for u in fresh if u.role is Role.finance)
    old = next(u for u in first if u.role is Role.finance)
    assert finance.password != old.password
    with ctx.db.write() as s:
        assert type(sign_in(s, finance.email, finance.password, "127.0.0.1", "t")).__name__ == "SignedIn"
    with ctx.db.write() as s:
        assert type(sign_in(s, old.email, old.password, "127.0.0.1", "t")).__name__ == "Refused"


# --- the demo history: one seeding per backend for the tests below -------------------------------------------------
@pytest.fixture(scope="module", params=BACKENDS)
def history(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, sqlite_template: Path
) -> Iterator[tuple[Container, Summary, datetime]]:
    tmp = tmp_path_factory.mktemp("demo-history")
    dropped: Callable[[], None] | None = None
    if request.param == "sqlite":
        shutil.copy(sqlite_template, tmp / "lephi.db")
        url = f"sqlite:///{tmp / 'lephi.db'}"
    else:
        # A database of its own: the suite's shared one is emptied by every function-scoped test of this module.
        url, dropped = _own_pg_database()
    settings = make_settings(url, tmp)
    ctx = build_container(settings, Database(make_engine(settings.effective_database_url, settings)))
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(passwords, "_hasher", _CHEAP_HASHER)
        with ctx.db.write() as s:
            seed_demo(s, tmp, list(ctx.gateway_config.agencies.get(DEMO_AGENCY, {})))
        end = utcnow()
        with ctx.db.write() as s:  # as `lephi demo` seeds them
            seed_demo_staff(s, DEMO_AGENCY, tmp, since=staff_since(end))
    summary = seed_demo_history(ctx, DEMO_AGENCY, end=end)
    yield ctx, summary, end
    ctx.close()
    if dropped is not None:
        dropped()


def _own_pg_database() -> tuple[str, Callable[[], None]]:
    assert PG_URL
    admin_url = make_url(normalise_url(PG_URL))
    name = f"lephi_demo_{os.getpid()}_{secrets.token_hex(3)}"
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
        conn.execute(text(f'ALTER DATABASE "{name}" SET synchronous_commit = off'))
    url = admin_url.set(database=name).render_as_string(hide_password=False)
    upgrade(url)

    def drop() -> None:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()

    return url, drop


def _agency(s: Session) -> Agency:
    agency = s.exec(select(Agency).where(Agency.code == DEMO_AGENCY)).one()
    return agency


def test_the_audit_log_runs_forward_in_time(history: tuple[Container, Summary, datetime]) -> None:
    """The staff accounts are made before the history's first day, not when the demo is seeded after it: the audit
    chain, in the order it was written, is also in time order."""
    ctx, _summary, end = history
    with ctx.db.read() as s:
        rows = s.exec(select(AuditLog.scope, AuditLog.seq, AuditLog.at).order_by(AuditLog.scope, AuditLog.seq)).all()
    assert any(action_at < end - timedelta(days=DAYS) for _scope, _seq, action_at in rows)  # the staff, made early
    for (scope, seq, at), (next_scope, next_seq, next_at) in itertools.pairwise(rows):
        if scope == next_scope:
            assert at <= next_at, (scope, seq, at, next_seq, next_at)


def test_history_fills_the_report_and_the_dashboard(history: tuple[Container, Summary, datetime]) -> None:
    ctx, summary, end = history
    assert summary.seeded and summary.days >= DAYS and summary.paid > 2 * DAYS
    assert summary.refunds > 0 and summary.failed > 0 and summary.expired > 0
    last = end.astimezone(GMT7).date()
    with ctx.db.read() as s:
        agency = _agency(s)
        out = report(s, [agency], last - timedelta(days=29), last, Grain.day)
        board = gather(s, [agency], ctx.settings, now=end)
        first = s.exec(select(func.min(Payment.created_at))).one()
        latest = s.exec(select(func.max(Payment.updated_at))).one()
    assert out.summary.gross > 0 and out.summary.refunds > 0 and out.summary.refund_count > 0
    assert set(out.by_method) == {"sandbox", "vietqr"}
    assert all(sums.gross > 0 for sums in out.by_method.values())
    # The 30-day trend has a shape: most days have payments, not one day all of them.
    assert sum(1 for sums in out.trend.values() if sums.payments) >= 25
    assert out.open_exceptions == 2
    assert board.total.open_exceptions == 2 and board.total.held_credits == 2
    # Written in the past days, through the services' own clock: nothing after the history's "now".
    assert first is not None and latest is not None
    assert (end - first).days >= DAYS - 1 and latest <= end


def test_history_receipts_verify_and_are_numbered_without_gaps(
    history: tuple[Container, Summary, datetime],
) -> None:
    ctx, _summary, end = history
    with ctx.db.read() as s:
        documents = list(s.exec(select(Document)).all())
        purposes = {d.purpose for d in documents}
        assert purposes == {DocumentPurpose.original, DocumentPurpose.adjustment}
        paid = s.exec(select(func.count()).select_from(Payment).where(col(Payment.succeeded_at).is_not(None))).one()
        assert sum(d.purpose is DocumentPurpose.original for d in documents) == paid
        for document in documents:
            checked = verify_upload(s, ctx.settings, document.xml)
            assert checked.issued_here
            # Signed on the day it was issued, not on the day the demo was seeded.
            assert checked.document.signing_time.astimezone(GMT7).date() == checked.document.issue_date
    assert any(d.issue_date < end.astimezone(GMT7).date() - timedelta(days=20) for d in documents)
    series: dict[tuple[str, str], list[int]] = {}
    for d in documents:
        series.setdefault((d.template, d.series), []).append(d.number)
    for numbers in series.values():
        assert sorted(numbers) == list(range(1, len(numbers) + 1))


def test_history_leaves_two_exceptions_for_finance(history: tuple[Container, Summary, datetime]) -> None:
    ctx, summary, _end = history
    assert summary.open_exceptions == [Category.transfer_underpaid.value, Category.transfer_unmatched.value]
    with ctx.db.read() as s:
        runs = s.exec(select(ReconRun)).all()
        counts = [run.counts for run in runs]
    assert len(runs) >= DAYS
    # Most transfers are matched by the imported statements.
    matched = sum(c.get(Category.matched.value, 0) for c in counts)
    others = sum(n for c in counts for k, n in c.items() if k != Category.matched.value)
    assert matched > 10 * others


def test_history_is_seeded_once(history: tuple[Container, Summary, datetime]) -> None:
    ctx, _summary, end = history

    def counts() -> list[int]:
        with ctx.db.read() as s:
            return [
                s.exec(select(func.count()).select_from(table)).one()
                for table in (Dossier, Payment, Document, Refund, StatementEntry, ReconException, BankCredit)
            ]

    before = counts()
    again = seed_demo_history(ctx, DEMO_AGENCY, end=end + timedelta(minutes=1))
    assert not again.seeded
    assert counts() == before


def test_two_processes_starting_at_once_write_one_history(ctx: Container, tmp_path: Path) -> None:
    with ctx.db.write() as s:
        seed_demo(s, tmp_path)
        agency = _agency(s)
    at = utcnow() - timedelta(days=DAYS)
    barrier = threading.Barrier(2)

    def claim() -> bool:
        barrier.wait()
        return claim_marker(ctx, agency, at)

    with ThreadPoolExecutor(2) as pool:
        results = sorted(pool.map(lambda _: claim(), range(2)))
    assert results == [False, True]
    with ctx.db.read() as s:
        assert s.exec(select(func.count()).select_from(Dossier).where(Dossier.code == MARKER)).one() == 1


def test_a_younger_certificate_kept_from_an_earlier_run_shortens_the_history(ctx: Container, tmp_path: Path) -> None:
    with ctx.db.write() as s:
        seed_demo(s, tmp_path, list(ctx.gateway_config.agencies.get(DEMO_AGENCY, {})))
        agency = _agency(s)
    with ctx.db.write() as s:
        seed_demo_staff(s, DEMO_AGENCY, tmp_path)
    end = utcnow()
    write_dev_certificate(
        signing_dir(ctx.settings), agency.code, agency.tax_code, agency.name, not_before=end - timedelta(days=3)
    )
    summary = seed_demo_history(ctx, DEMO_AGENCY, end=end)
    assert summary.seeded and 1 <= summary.days <= 3
    with ctx.db.read() as s:
        documents = list(s.exec(select(Document)).all())
        assert documents
        for document in documents:  # every one signed while the certificate was valid
            verify_upload(s, ctx.settings, document.xml)
