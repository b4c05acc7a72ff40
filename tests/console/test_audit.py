"""The audit log: rows written in the caller's transaction, one unbroken hash chain per scope even under concurrent
writers, and ``lephi audit verify`` naming the first row that was changed behind the service's back."""

from __future__ import annotations

import threading

import pytest
from sqlalchemy import select

from console.audit.models import AuditLog
from console.audit.service import GENESIS, record, verify
from lephi.container import Container
from tests.conftest import Cli
from tests.console.conftest import count, sql


def test_a_row_is_part_of_the_callers_transaction(ctx: Container, agencies: dict[str, str]) -> None:
    with pytest.raises(RuntimeError), ctx.db.write() as s:
        record(s, agency_id=agencies["AGC-A"], actor="cli", action="test.rolled_back")
        raise RuntimeError("the change failed after its audit row was written")
    assert count(ctx, "audit_log") == 0
    with ctx.db.write() as s:
        record(s, agency_id=agencies["AGC-A"], actor="cli", action="test.kept")
    with ctx.db.read() as s:
        row = s.execute(select(AuditLog)).scalars().one()
    # The failed attempt left no hole in the numbering.
    assert (row.seq, row.prev_hash, row.action) == (1, GENESIS, "test.kept")


def test_chains_are_per_scope(ctx: Container, agencies: dict[str, str]) -> None:
    with ctx.db.write() as s:
        for scope in (agencies["AGC-A"], None, agencies["AGC-B"], agencies["AGC-A"], None):
            record(s, agency_id=scope, actor="cli", action="test.row", after={"n": "một"})
    with ctx.db.read() as s:
        rows = s.execute(select(AuditLog).order_by(AuditLog.scope, AuditLog.seq)).scalars().all()
        result = verify(s)
    assert sorted((r.scope, r.seq) for r in rows) == sorted(
        [(agencies["AGC-A"], 1), (agencies["AGC-A"], 2), (agencies["AGC-B"], 1), ("province", 1), ("province", 2)]
    )
    second_a = next(r for r in rows if r.scope == agencies["AGC-A"] and r.seq == 2)
    first_a = next(r for r in rows if r.scope == agencies["AGC-A"] and r.seq == 1)
    assert second_a.prev_hash == first_a.hash
    assert result.broken is None and result.rows == 5 and result.scopes == 3


def test_verify_names_the_tampered_row(cli: Cli, ctx: Container, agencies: dict[str, str]) -> None:
    with ctx.db.write() as s:
        ids = [record(s, agency_id=agencies["AGC-B"], actor="cli", action="test.row", after={"i": i}) for i in range(4)]
        record(s, agency_id=agencies["AGC-A"], actor="cli", action="test.row")
    ok = cli("audit", "verify")
    assert ok.exit_code == 0 and "ok: 5 audit row(s) in 2 chain(s)" in ok.output, ok.output
    sql(ctx, """UPDATE audit_log SET "after" = '{"i": 99}' WHERE id = :id""", id=ids[2])
    broken = cli("audit", "verify")
    assert broken.exit_code == 1
    assert f"row {ids[2]}, seq 3, scope {agencies['AGC-B']}" in broken.stderr, broken.stderr
    # The other agency's chain is intact on its own.
    assert cli("audit", "verify", "--agency", "AGC-A").exit_code == 0
    assert cli("audit", "verify", "--agency", "AGC-B").exit_code == 1
    assert cli("audit", "verify", "--agency", "NOPE").exit_code == 2


def test_verify_notices_missing_rows(cli: Cli, ctx: Container, agencies: dict[str, str]) -> None:
    with ctx.db.write() as s:
        ids = [record(s, agency_id=None, actor="cli", action="test.row") for _ in range(3)]
    sql(ctx, "DELETE FROM audit_log WHERE id = :id", id=ids[1])
    middle = cli("audit", "verify")
    assert middle.exit_code == 1 and f"row {ids[2]}, seq 3, scope province" in middle.stderr
    sql(ctx, "DELETE FROM audit_log WHERE id = :id", id=ids[2])
    tail = cli("audit", "verify")
    assert tail.exit_code == 1 and "scope province" in tail.stderr and "missing" in tail.stderr


def test_concurrent_writers_keep_one_chain(ctx: Container, agencies: dict[str, str]) -> None:
    per_thread = 25
    start = threading.Barrier(2)
    errors: list[BaseException] = []

    def write(name: str) -> None:
        try:
            start.wait()
            for i in range(per_thread):
                with ctx.db.write() as s:
                    record(s, agency_id=agencies["AGC-A"], actor="cli", action="test.concurrent", target=f"{name}{i}")
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(name,)) for name in ("a", "b")]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert errors == []
    with ctx.db.read() as s:
        result = verify(s, agencies["AGC-A"], only_scope=True)
        seqs = s.execute(select(AuditLog.seq).order_by(AuditLog.seq)).scalars().all()
    assert result.broken is None and result.rows == 2 * per_thread
    assert seqs == list(range(1, 2 * per_thread + 1))
