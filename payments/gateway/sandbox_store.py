"""Database-backed state of the sandbox gateway."""

from __future__ import annotations

from sqlalchemy import update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session
from sqlmodel import col, select

from adapters.sandbox import SandboxRecord
from payments.core.db import Database, affected, table_of
from payments.core.sql import insert_or_nothing, joined
from payments.core.types import utcnow
from payments.gateway.models import SandboxTransaction


def _record(row: SandboxTransaction) -> SandboxRecord:
    return SandboxRecord(
        id=row.id,
        idempotency_key=row.idempotency_key,
        merchant_reference=row.merchant_reference,
        amount=row.amount,
        currency=row.currency,
        description=row.description,
        status=row.status,
        callback_url=row.callback_url,
        return_url=row.return_url,
        refunded_amount=row.refunded_amount,
    )


class DbSandboxStore:
    def __init__(self, db: Database) -> None:
        self._db = db

    def create(self, record: SandboxRecord) -> SandboxRecord:
        s = joined()
        if s is not None:  # a payment being created in one transaction: the record commits with it
            values = {k: getattr(record, k) for k in SandboxRecord.__dataclass_fields__}
            table = table_of(SandboxTransaction)
            now = utcnow()
            stored = insert_or_nothing(s, table, ["idempotency_key"], ["id"])(
                s, {**values, "refund_keys": [], "created_at": now, "updated_at": now}
            ).first()
            return record if stored is not None else self._by_key_in(s, record.idempotency_key)
        try:  # insert first: a retry with the same key is the rare case
            with self._db.write() as s:
                s.add(SandboxTransaction(**{k: getattr(record, k) for k in SandboxRecord.__dataclass_fields__}))
        except IntegrityError:
            found = self.get_by_key(record.idempotency_key)
            assert found is not None
            return found
        return record

    def _by_key_in(self, s: Session, idempotency_key: str) -> SandboxRecord:
        row = s.execute(
            select(SandboxTransaction).where(SandboxTransaction.idempotency_key == idempotency_key)
        ).scalar()
        assert row is not None
        return _record(row)

    def get(self, txn_id: str) -> SandboxRecord | None:
        with self._db.read() as s:
            row = s.get(SandboxTransaction, txn_id)
            return _record(row) if row else None

    def get_by_key(self, idempotency_key: str) -> SandboxRecord | None:
        with self._db.read() as s:
            row = s.exec(
                select(SandboxTransaction).where(SandboxTransaction.idempotency_key == idempotency_key)
            ).first()
            return _record(row) if row else None

    def set_status(self, txn_id: str, expected: str, new: str) -> SandboxRecord | None:
        with self._db.write() as s:
            result = s.execute(
                update(SandboxTransaction)
                .where(col(SandboxTransaction.id) == txn_id, col(SandboxTransaction.status) == expected)
                .values(status=new, updated_at=utcnow())
            )
            if affected(result) != 1:
                return None
        return self.get(txn_id)

    def add_refund(self, txn_id: str, key: str, amount: int) -> SandboxRecord | None:
        with self._db.write() as s:
            row = s.get(SandboxTransaction, txn_id)
            if row is None:
                return None
            if key in row.refund_keys:
                return _record(row)
            if row.refunded_amount + amount > row.amount:
                return None
            row.refunded_amount += amount
            row.refund_keys = [*row.refund_keys, key]
            row.updated_at = utcnow()
            s.add(row)
        return self.get(txn_id)
