"""Idempotency-Key semantics: replay, changed request, concurrent use, missing key, expiry."""

from __future__ import annotations

import threading
from datetime import timedelta

from sqlalchemy import func, update
from sqlmodel import col, select

from adapters.base import StartPayment, StartResult
from payments.core.types import utcnow
from payments.idempotency.models import IdempotencyRecord
from payments.payment.models import Payment
from tests.conftest import Api
from tests.factories import dossier_body, payment_body


def _dossier(api: Api) -> str:
    r = api.post("/v1/dossiers", dossier_body())
    assert r.status_code == 201
    return str(r.json()["code"])


def _count_payments(api: Api) -> int:
    with api.ctx.db.read() as s:
        return int(s.exec(select(func.count()).select_from(Payment)).one())


def test_replay_returns_same_status_and_body_without_a_second_payment(api: Api) -> None:
    code = _dossier(api)
    first = api.post("/v1/payments", payment_body(code), key="k-1")
    second = api.post("/v1/payments", payment_body(code), key="k-1")
    assert first.status_code == second.status_code == 201
    assert first.json() == second.json()
    assert second.headers["idempotent-replayed"] == "true"
    assert _count_payments(api) == 1


def test_replay_of_a_stored_error_gives_the_same_error(api: Api) -> None:
    r1 = api.post("/v1/payments", payment_body("NO-SUCH"), key="k-err")
    r2 = api.post("/v1/payments", payment_body("NO-SUCH"), key="k-err")
    assert r1.status_code == r2.status_code == 404
    assert r1.json() == r2.json()
    assert r2.headers["content-type"].startswith("application/problem+json")


def test_same_key_different_body_is_422_and_changes_nothing(api: Api) -> None:
    code, other = _dossier(api), _dossier(api)
    assert api.post("/v1/payments", payment_body(code), key="k-2").status_code == 201
    r = api.post("/v1/payments", payment_body(other), key="k-2")
    assert r.status_code == 422 and r.json()["code"] == "idempotency_key_reused"
    assert _count_payments(api) == 1


def test_missing_and_invalid_keys_are_400(api: Api) -> None:
    code = _dossier(api)
    r = api.post("/v1/payments", payment_body(code), key=False)
    assert r.status_code == 400 and r.json()["code"] == "idempotency_key_missing"
    r = api.post("/v1/payments", payment_body(code), headers={"Idempotency-Key": "x" * 256})
    assert r.status_code == 400 and r.json()["code"] == "idempotency_key_invalid"
    assert _count_payments(api) == 0


def test_keys_are_scoped_per_client(api: Api) -> None:
    code, other = _dossier(api), _dossier(api)
    assert api.post("/v1/payments", payment_body(code), key="shared").status_code == 201
    second_key = api.new_key(["payments:write"])
    r = api.client.post(
        "/v1/payments",
        json=payment_body(other),
        headers={"Authorization": f"Bearer {second_key}", "Idempotency-Key": "shared"},
    )
    assert r.status_code == 201 and _count_payments(api) == 2


class _SlowSandbox:
    """Wraps the sandbox so that starting a payment blocks until released (the first request 'still runs')."""

    def __init__(self, inner: object) -> None:
        self.inner = inner
        self.entered = threading.Event()
        self.release = threading.Event()

    def __getattr__(self, name: str) -> object:
        return getattr(self.inner, name)

    def start_payment(self, request: StartPayment) -> StartResult:
        self.entered.set()
        assert self.release.wait(10)
        return self.inner.start_payment(request)  # type: ignore[attr-defined, no-any-return]


def test_concurrent_same_key_one_runs_other_gets_409(api: Api) -> None:
    code = _dossier(api)
    slow = _SlowSandbox(api.ctx.gateways.get("sandbox"))
    api.ctx.gateways.override("sandbox", slow)  # type: ignore[arg-type]
    results: dict[str, object] = {}
    first = threading.Thread(target=lambda: results.update(a=api.post("/v1/payments", payment_body(code), key="k-c")))
    first.start()
    assert slow.entered.wait(10)
    r = api.post("/v1/payments", payment_body(code), key="k-c")
    assert r.status_code == 409 and r.json()["code"] == "idempotency_key_in_progress"
    assert r.headers["retry-after"] == "1"
    slow.release.set()
    first.join(10)
    assert results["a"].status_code == 201  # type: ignore[attr-defined]
    again = api.post("/v1/payments", payment_body(code), key="k-c")
    assert again.status_code == 201 and again.json()["id"] == results["a"].json()["id"]  # type: ignore[attr-defined]


def test_expired_key_is_reusable_but_never_charges_twice(api: Api) -> None:
    code = _dossier(api)
    first = api.post("/v1/payments", payment_body(code), key="k-old")
    with api.ctx.db.write() as s:
        s.execute(update(IdempotencyRecord).values(expires_at=utcnow() - timedelta(seconds=1)))
    r = api.post("/v1/payments", payment_body(code), key="k-old")
    # The stored result is gone, but the one-live-attempt rule still holds on its own.
    assert r.status_code == 409 and r.json()["payment_id"] == first.json()["id"]
    assert _count_payments(api) == 1


def test_purge_removes_only_expired_records(api: Api) -> None:
    code = _dossier(api)
    api.post("/v1/payments", payment_body(code), key="keep")
    with api.ctx.db.write() as s:
        s.execute(
            update(IdempotencyRecord)
            .where(col(IdempotencyRecord.key) != "keep")
            .values(expires_at=utcnow() - timedelta(seconds=1))
        )
    assert api.ctx.idempotency.purge_expired() >= 1
    with api.ctx.db.read() as s:
        keys = s.exec(select(IdempotencyRecord.key)).all()
    assert list(keys) == ["keep"]
