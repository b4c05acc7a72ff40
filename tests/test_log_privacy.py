"""Log lines carry neither secrets nor personal data: database errors omit their statement parameters, and sensitive
keys are redacted at any depth."""

from __future__ import annotations

import json

import pytest
from sqlalchemy.exc import IntegrityError

from payments.core.context import AppContext
from payments.core.logging import REDACTED, configure_logging, get_logger, redact
from payments.transfer.models import BankCredit, CreditStatus
from tests.conftest import Api
from tests.factories import dossier_body
from tests.privacy_scan import leaks, plant

PAYER = "NGUYEN THI BI MAT 7QX"


def _credit(memo: str) -> BankCredit:
    return BankCredit(
        gateway="vietqr",
        bank_transaction_id="FT-PRIVACY-1",
        source="notification",
        amount=150000,
        status=CreditStatus.unmatched,
        reason="",
        memo=memo,
    )


def test_a_database_error_and_its_log_line_carry_no_parameter_values(
    ctx: AppContext, capfd: pytest.CaptureFixture[str]
) -> None:
    with ctx.db.write() as s:
        s.add(_credit(f"CK {PAYER}"))
    configure_logging("INFO", json=True)
    with pytest.raises(IntegrityError) as caught, ctx.db.write() as s:
        s.add(_credit(f"CK {PAYER} lan 2"))
    get_logger(__name__).error("db.failed", exc_info=caught.value)
    logged = capfd.readouterr().err
    assert "db.failed" in logged and "IntegrityError" in logged
    assert PAYER not in str(caught.value) and "SQL parameters hidden" in str(caught.value)
    # PostgreSQL names the duplicate key's values in a DETAIL line of its own: the log line drops it too.
    assert PAYER not in logged and "FT-PRIVACY-1" not in logged


def test_a_failing_row_in_a_database_error_is_not_logged(ctx: AppContext, capfd: pytest.CaptureFixture[str]) -> None:
    configure_logging("INFO", json=True)
    row = _credit(f"CK {PAYER}")
    row.reason = None  # type: ignore[assignment]
    with pytest.raises(IntegrityError) as caught, ctx.db.write() as s:
        s.add(row)
    get_logger(__name__).error("db.failed", exc_info=caught.value)
    logged = capfd.readouterr().err
    assert "db.failed" in logged and PAYER not in logged


def test_sensitive_keys_are_redacted_at_any_depth() -> None:
    event = {
        "event": "transfer.credit",
        "credit_id": "crd_1",
        "detail": {
            "memo": f"CK {PAYER}",
            "payer": {"name": PAYER, "id_number": "001099012345", "phone": "0912345678"},
            "lines": [{"email": "bi.mat@example.com", "amount": 5}, ("x", {"webhook_secret": "whsec_1"})],
            "ok": {"status": "matched"},
        },
        "Authorization": "Bearer lephi_x",
    }
    out = redact(None, "info", event)
    text = json.dumps(out)
    for secret in (PAYER, "001099012345", "0912345678", "bi.mat@example.com", "whsec_1", "lephi_x"):
        assert secret not in text
    assert out["event"] == "transfer.credit" and out["credit_id"] == "crd_1"
    assert out["detail"]["memo"] == REDACTED and out["detail"]["payer"] == REDACTED
    assert out["detail"]["lines"][0] == {"email": REDACTED, "amount": 5}
    assert out["detail"]["ok"] == {"status": "matched"}


def test_redaction_never_fails_on_deep_or_odd_values() -> None:
    deep: dict[str, object] = {}
    node = deep
    for _ in range(500):
        node["next"] = {}
        node = node["next"]  # type: ignore[assignment]
    node["password"] = "p"
    out = redact(None, "info", {"event": "e", "deep": deep, "n": 1, "b": b"x", "none": None, 3: "int key"})
    assert "p" not in json.dumps(out["deep"]).replace("[redacted]", "")
    assert out["n"] == 1 and out["b"] == b"x" and out[3] == "int key"


def test_the_suites_scanner_finds_a_planted_value_in_a_log_line(capfd: pytest.CaptureFixture[str]) -> None:
    # Values of their own: other tests' planted ones (an@example.com) must not be substrings of them.
    planted, id_number = "zq7.scan@lephi.invalid", "079203987455"
    plant([planted, id_number])
    configure_logging("INFO", json=True)
    log = get_logger(__name__)
    log.info("redacted.by.key", email=planted, id_number=id_number)
    assert leaks(capfd.readouterr().err) == []
    log.info("leaked.in.text", note=f"contact {planted}")  # a key the redaction does not know
    assert planted in leaks(capfd.readouterr().err)


def test_hostile_personal_data_reaches_neither_logs_nor_problem_bodies(
    api: Api, capfd: pytest.CaptureFixture[str]
) -> None:
    configure_logging("DEBUG", json=True)
    bad = [
        {"name": "An", "id_number": "07920300445", "phone": "0987654321", "email": "an.hostile@example.com"},
        {"name": "An", "id_number": "079203004455", "passport_number": "b12345678x"},
        {"name": "An", "id_number": "079203004455", "email": "not-an-email-0987654321"},
    ]
    for payer in bad:
        plant(str(v) for k, v in payer.items() if k != "name")
        r = api.post("/v1/dossiers", dossier_body("HS-LOG", payer=payer))
        assert r.status_code == 422, r.text
        assert leaks(r.text) == []
    good = {"name": "An", "id_number": "079203004466", "phone": "0987654322", "email": "an.ok@example.com"}
    assert api.post("/v1/dossiers", dossier_body("HS-LOG", payer=good)).status_code == 201
    assert api.get("/v1/dossiers", params={"payer_id_number": "079203004466"}).json()["data"]
    assert leaks(capfd.readouterr().err) == []
