"""The committed OpenAPI document matches the code, and documents what clients rely on."""

from __future__ import annotations

import json
from pathlib import Path

from payments.openapi import export

COMMITTED = Path(__file__).parent.parent / "openapi" / "openapi.json"


def test_committed_openapi_is_current() -> None:
    assert COMMITTED.read_text() == export(), "openapi/openapi.json is stale: run `make openapi`"


def test_every_operation_is_described_and_posts_take_an_idempotency_key() -> None:
    doc = json.loads(export())
    for path, item in doc["paths"].items():
        for method, op in item.items():
            assert op.get("summary") or op.get("description"), f"{method} {path} has no description"
            # Verification changes nothing, so it needs no key; gateway callbacks follow the gateway's protocol.
            if method == "post" and path.startswith("/v1/") and "callback" not in path and not path.endswith("/verify"):
                names = [p["name"] for p in op.get("parameters", [])]
                assert "Idempotency-Key" in names, f"{method} {path} lacks Idempotency-Key"


def test_request_models_forbid_unknown_fields_and_never_take_amounts_or_status() -> None:
    schemas = json.loads(export())["components"]["schemas"]
    for name in ("DossierIn", "PaymentIn", "RefundIn", "PayerIn", "FeeItemIn"):
        assert schemas[name].get("additionalProperties") is False, name
    for name in ("DossierIn", "PaymentIn"):
        props = set(schemas[name]["properties"])
        assert not props & {"amount", "status", "paid_at", "succeeded_at", "total_amount"}, name
