"""Many clients at once against a real server: one live attempt per dossier, never a 'database is locked'."""

from __future__ import annotations

import asyncio
import secrets

import httpx
from sqlmodel import select

from payments.payment.models import Payment
from tests.conftest import LiveServer
from tests.factories import dossier_body, payment_body


async def _burst(server: LiveServer, code: str, n: int) -> list[httpx.Response]:
    headers = {"Authorization": f"Bearer {server.key}"}
    limits = httpx.Limits(max_connections=n)
    async with httpx.AsyncClient(base_url=server.url, headers=headers, timeout=60, limits=limits) as client:
        start = asyncio.Event()

        async def one() -> httpx.Response:
            await start.wait()
            return await client.post(
                "/v1/payments", json=payment_body(code), headers={"Idempotency-Key": secrets.token_hex(8)}
            )

        tasks = [asyncio.create_task(one()) for _ in range(n)]
        await asyncio.sleep(0.2)
        start.set()
        return list(await asyncio.gather(*tasks))


def test_fifty_concurrent_payments_for_one_dossier(live_server: LiveServer) -> None:
    headers = {"Authorization": f"Bearer {live_server.key}", "Idempotency-Key": "d-1"}
    r = httpx.post(f"{live_server.url}/v1/dossiers", json=dossier_body("HS-RACE"), headers=headers)
    assert r.status_code == 201, r.text
    responses = asyncio.run(_burst(live_server, "HS-RACE", 50))
    statuses = sorted(r.status_code for r in responses)
    assert statuses.count(201) == 1, statuses
    assert statuses.count(409) == 49, statuses
    for resp in responses:
        assert "locked" not in resp.text.lower()
        if resp.status_code == 409:
            assert resp.json()["code"] == "payment_in_progress"
    with live_server.ctx.db.read() as s:
        payments = s.exec(select(Payment)).all()
    assert len(payments) == 1 and payments[0].status == "pending"


def test_concurrent_payments_for_different_dossiers_all_succeed(live_server: LiveServer) -> None:
    headers = {"Authorization": f"Bearer {live_server.key}"}
    codes = []
    for i in range(20):
        r = httpx.post(
            f"{live_server.url}/v1/dossiers",
            json=dossier_body(f"HS-P{i}"),
            headers={**headers, "Idempotency-Key": f"d-{i}"},
        )
        assert r.status_code == 201
        codes.append(f"HS-P{i}")

    async def run() -> list[httpx.Response]:
        async with httpx.AsyncClient(base_url=live_server.url, headers=headers, timeout=60) as client:
            return list(
                await asyncio.gather(
                    *[
                        client.post("/v1/payments", json=payment_body(c), headers={"Idempotency-Key": f"p-{c}"})
                        for c in codes
                    ]
                )
            )

    assert [r.status_code for r in asyncio.run(run())] == [201] * 20
