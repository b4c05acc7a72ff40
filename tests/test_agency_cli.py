"""``lephi agency create|list|show``: a province onboards an agency without writing code.

* ``create`` stores the agency, its payment methods and the fee schedule file (TOML or JSON) in one go; the agency
  can then be given a key and take dossiers priced from that schedule.
* Bad input (tax code or agency code format, a code already taken, unknown payment methods, a fee schedule that is
  unreadable, malformed or has amounts that are not whole positive VND) is refused with ``error: ...`` on stderr and
  exit code 2, and nothing is stored.
* The tax code rule is the one the receipt signer applies.
"""

from __future__ import annotations

import json
import tomllib
from pathlib import Path
from typing import Any

import pytest
from click.testing import Result
from sqlalchemy import func, select
from sqlmodel import col

from invoices.signing import make_dev_certificate
from lephi.tables import metadata
from payments.agency.models import Agency, FeeScheduleLine, Procedure
from payments.core.context import AppContext
from tests.conftest import Api, Cli

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "fee-schedule.toml"


def count_rows(ctx: AppContext) -> dict[str, int]:
    with ctx.db.read() as s:
        return {
            t.name: int(s.execute(select(func.count()).select_from(t)).scalar_one()) for t in metadata.sorted_tables
        }


GOOD = {
    "--code": "STP-HCM",
    "--name": "Sở Tư pháp Thành phố Hồ Chí Minh",
    "--tax-code": "0301234567",
    "--address": "141-143 Pasteur, Phường Xuân Hòa, TP. Hồ Chí Minh",
    "--methods": "sandbox",
}


def create(cli: Cli, fees: Path, **changes: str) -> Result:
    options = {**GOOD, **{"--" + k.replace("_", "-"): v for k, v in changes.items()}}
    args = [part for option, value in options.items() for part in (option, value)]
    return cli("agency", "create", *args, "--fees", str(fees))


def stored_schedule(ctx: AppContext, code: str) -> list[dict[str, Any]]:
    """The agency's procedures and fee lines as stored, in the file's order."""
    with ctx.db.read() as s:
        agency = s.execute(select(Agency).where(Agency.code == code)).scalar_one()
        procedures = s.execute(select(Procedure).where(Procedure.agency_id == agency.id)).scalars().all()
        out = []
        for p in procedures:
            lines = s.execute(
                select(FeeScheduleLine)
                .where(FeeScheduleLine.procedure_id == p.id)
                .order_by(col(FeeScheduleLine.position))
            ).scalars()
            fees = [
                {
                    "code": f.code,
                    "kind": f.kind.value,
                    "name": f.name,
                    "amount": f.unit_amount,
                    "default_quantity": f.default_quantity,
                    "max_quantity": f.max_quantity,
                }
                for f in lines
            ]
            out.append({"code": p.code, "name": p.name, "fees": fees})
        return sorted(out, key=lambda p: str(p["code"]))


def as_file(raw: dict[str, Any]) -> list[dict[str, Any]]:
    """The file's schedule with the optional quantities filled in, ordered like ``stored_schedule``."""
    procedures = [
        {**p, "fees": [{"default_quantity": 1, "max_quantity": 1, **f} for f in p["fees"]]} for p in raw["procedures"]
    ]
    return sorted(procedures, key=lambda p: str(p["code"]))


# --- create, list, show -------------------------------------------------------------------------------------------
def test_create_from_the_example_file_stores_the_schedule_and_the_agency_takes_dossiers(api: Api, cli: Cli) -> None:
    raw = tomllib.loads(EXAMPLE.read_text(encoding="utf-8"))
    result = create(cli, EXAMPLE, bank_account="0011001234567", bank_name="Vietcombank")
    assert result.exit_code == 0, result.output
    assert "STP-HCM" in result.stdout

    with api.ctx.db.read() as s:
        agency = s.execute(select(Agency).where(Agency.code == "STP-HCM")).scalar_one()
    assert (agency.name, agency.tax_code, agency.address) == (GOOD["--name"], GOOD["--tax-code"], GOOD["--address"])
    assert agency.payment_methods == ["sandbox"] and agency.bank_account == "0011001234567"
    assert stored_schedule(api.ctx, "STP-HCM") == as_file(raw)

    # The new agency works: a key of its own, a dossier priced from the file's default quantities, a payment page.
    key = api.new_key(["dossiers:write", "payments:write"], "STP-HCM")
    procedure = raw["procedures"][0]
    body = {"code": "HS-1", "procedure_code": procedure["code"], "payer": {"name": "Lê Văn Tám"}}
    r = api.post("/v1/dossiers", body, headers={"Authorization": f"Bearer {key}"})
    assert r.status_code == 201, r.text
    owed = sum(f["amount"] * f.get("default_quantity", 1) for f in procedure["fees"])
    assert r.json()["total_amount"] == owed and r.json()["agency_code"] == "STP-HCM"
    r = api.post(
        "/v1/payments",
        {"dossier_code": "HS-1", "method": "sandbox", "return_url": "https://portal.example.gov.vn/done"},
        headers={"Authorization": f"Bearer {key}"},
    )
    assert r.status_code == 201, r.text


def test_a_json_schedule_is_stored_like_the_toml_one(api: Api, cli: Cli, tmp_path: Path) -> None:
    raw = tomllib.loads(EXAMPLE.read_text(encoding="utf-8"))
    path = tmp_path / "fees.json"
    path.write_text(json.dumps(raw, ensure_ascii=False), encoding="utf-8")
    assert create(cli, path, code="STP-HN", tax_code="0101234567-001").exit_code == 0
    assert create(cli, EXAMPLE).exit_code == 0
    assert stored_schedule(api.ctx, "STP-HN") == stored_schedule(api.ctx, "STP-HCM") == as_file(raw)


def test_a_tax_code_already_used_by_another_agency_is_refused(api: Api, cli: Cli) -> None:
    """Receipts verify by tax code: two agencies sharing one could each sign in the other's name."""
    assert create(cli, EXAMPLE).exit_code == 0
    again = create(cli, EXAMPLE, code="STP-OTHER")
    assert again.exit_code == 2 and "tax code" in again.output, again.output
    with api.ctx.db.read() as s:
        assert s.execute(select(Agency).where(Agency.code == "STP-OTHER")).first() is None


def test_list_and_show(api: Api, cli: Cli) -> None:
    raw = tomllib.loads(EXAMPLE.read_text(encoding="utf-8"))
    assert create(cli, EXAMPLE, methods="sandbox").exit_code == 0
    listed = cli("agency", "list")
    assert listed.exit_code == 0, listed.output
    rows = {line.split()[0]: line for line in listed.stdout.splitlines()[1:]}
    assert set(rows) == {"AGC-A", "STP-HCM"}
    assert GOOD["--tax-code"] in rows["STP-HCM"] and GOOD["--name"] in rows["STP-HCM"]
    assert f" {len(raw['procedures'])} " in rows["STP-HCM"]

    shown = cli("agency", "show", "STP-HCM")
    assert shown.exit_code == 0, shown.output
    for text in (GOOD["--name"], GOOD["--tax-code"], GOOD["--address"], "sandbox"):
        assert text in shown.stdout
    for procedure in raw["procedures"]:
        assert procedure["code"] in shown.stdout and procedure["name"] in shown.stdout
        for fee in procedure["fees"]:
            line = next(line for line in shown.stdout.splitlines() if f" {fee['code']} " in line)
            assert f"{fee['amount']:,} VND" in line and fee["name"] in line and fee["kind"] in line

    missing = cli("agency", "show", "NO-SUCH")
    assert missing.exit_code == 2 and missing.stderr.startswith("error: ")


# --- bad input ----------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "changes",
    [
        {"tax_code": "12345"},
        {"tax_code": "03012345678"},
        {"tax_code": "0301234567-01"},
        {"tax_code": "030123456A"},
        {"tax_code": " "},
        {"code": "stp-hcm"},
        {"code": "S"},
        {"code": "STP HCM"},
        {"code": "STP--HCM"},
        {"code": "X" * 41},
        {"code": "AGC-A"},  # taken by the fixture's agency
        {"methods": "paypal"},
        {"methods": "sandbox,paypal"},
        {"methods": " , "},
        {"name": " "},
        {"address": ""},
        {"bank_account": "001 100"},
    ],
    ids=lambda c: "-".join(f"{k}={v[:12]}" for k, v in c.items()),
)
def test_bad_details_are_refused_and_nothing_is_stored(api: Api, cli: Cli, changes: dict[str, str]) -> None:
    before = count_rows(api.ctx)
    result = create(cli, EXAMPLE, **changes)
    assert result.exit_code == 2, result.output
    assert result.stderr.startswith("error: "), result.stderr  # our message, not a usage error or a traceback
    assert "Traceback" not in result.output
    assert count_rows(api.ctx) == before


def _fee(**changes: Any) -> dict[str, Any]:
    return {"code": "LE_PHI", "kind": "le_phi", "name": "Lệ phí", "amount": 50_000, **changes}


def _schedule(*fees: dict[str, Any]) -> dict[str, Any]:
    return {"procedures": [{"code": "1.000001", "name": "Thủ tục", "fees": list(fees)}]}


BAD_SCHEDULES: dict[str, Any] = {
    "amount-zero": _schedule(_fee(amount=0)),
    "amount-negative": _schedule(_fee(amount=-5000)),
    "amount-fraction": _schedule(_fee(amount=5000.5)),
    "amount-float-whole": _schedule(_fee(amount=5000.0)),
    "amount-text": _schedule(_fee(amount="5000")),
    "amount-bool": _schedule(_fee(amount=True)),
    "amount-huge": _schedule(_fee(amount=10**13)),
    "amount-missing": _schedule({k: v for k, v in _fee().items() if k != "amount"}),
    "amount-times-quantity-too-big": _schedule(_fee(amount=999_999_999_999, max_quantity=2)),
    "kind-unknown": _schedule(_fee(kind="tax")),
    "field-unknown": _schedule(_fee(price=5000)),
    "default-above-max": _schedule(_fee(default_quantity=3, max_quantity=2)),
    "max-zero": _schedule(_fee(max_quantity=0, default_quantity=0)),
    "fee-code-blank": _schedule(_fee(code=" ")),
    "fee-code-twice": _schedule(_fee(), _fee(name="again")),
    "no-fees": _schedule(),
    "no-procedures": {"procedures": []},
    "not-a-schedule": {"fees": []},
    "procedure-code-twice": {
        "procedures": [
            {"code": "1.000001", "name": "A", "fees": [_fee()]},
            {"code": "1.000001", "name": "B", "fees": [_fee()]},
        ]
    },
    "second-procedure-bad": {
        "procedures": [
            {"code": "1.000001", "name": "A", "fees": [_fee()]},
            {"code": "1.000002", "name": "B", "fees": [_fee(amount=-1)]},
        ]
    },
}


@pytest.mark.parametrize("name", sorted(BAD_SCHEDULES))
def test_bad_fee_schedules_are_refused_and_nothing_is_stored(api: Api, cli: Cli, tmp_path: Path, name: str) -> None:
    path = tmp_path / "fees.json"
    path.write_text(json.dumps(BAD_SCHEDULES[name], ensure_ascii=False), encoding="utf-8")
    before = count_rows(api.ctx)
    result = create(cli, path)
    assert result.exit_code == 2, result.output
    assert result.stderr.startswith("error: ") and "fees.json" in result.stderr, result.stderr
    assert count_rows(api.ctx) == before
    # The control: the same command with a good schedule goes through.
    path.write_text(json.dumps(_schedule(_fee())), encoding="utf-8")
    assert create(cli, path).exit_code == 0


@pytest.mark.parametrize(
    ("file_name", "text"),
    [
        ("fees.toml", "[[procedures]\ncode = "),
        ("fees.json", '{"procedures": ['),
        ("fees.yaml", "procedures: []"),
        ("fees.json", None),  # no such file
        ("fees.toml", "\udcff"),  # not UTF-8
    ],
    ids=["broken-toml", "broken-json", "yaml", "missing", "not-utf8"],
)
def test_unreadable_fee_files_are_refused(api: Api, cli: Cli, tmp_path: Path, file_name: str, text: str | None) -> None:
    path = tmp_path / file_name
    if text is not None:
        path.write_bytes(text.encode("utf-8", "surrogateescape"))
    before = count_rows(api.ctx)
    result = create(cli, path)
    assert result.exit_code == 2, result.output
    assert result.stderr.startswith("error: ") and file_name in result.stderr, result.stderr
    assert count_rows(api.ctx) == before


def test_methods_are_those_the_service_offers(api: Api, cli: Cli, monkeypatch: pytest.MonkeyPatch) -> None:
    """With the sandbox turned off (as in production) it is not a method an agency can be given."""
    monkeypatch.setenv("LEPHI_SANDBOX_ENABLED", "false")
    before = count_rows(api.ctx)
    result = create(cli, EXAMPLE, methods="sandbox")
    assert result.exit_code == 2 and "sandbox" in result.stderr, result.output
    assert count_rows(api.ctx) == before
    assert create(cli, EXAMPLE, methods="vnpay,vietqr").exit_code == 0


# --- one tax code rule --------------------------------------------------------------------------------------------
CANDIDATES = ["0301234567", "0301234567-001", "030123456", "03012345678", "0301234567-1", "0301234567001", "O301234567"]


def test_the_cli_and_the_signer_apply_the_same_tax_code_rule(api: Api, cli: Cli) -> None:
    for i, tax_code in enumerate(CANDIDATES):
        created = create(cli, EXAMPLE, code=f"AGC-T{i}", tax_code=tax_code).exit_code == 0
        try:
            make_dev_certificate(tax_code, "Sở Tư pháp")
            signs = True
        except ValueError:
            signs = False
        assert created == signs, tax_code


def test_agency_contacts_are_checked() -> None:
    from payments.agency.service import agency_in
    from payments.core.errors import ValidationFailed

    base = {"code": "AGC-C", "name": "C", "tax_code": "0101234567", "address": "1 A", "payment_methods": ["sandbox"]}
    ok = agency_in(**base, phone="+84 236 3820 000", email="hotro@sotp.gov.vn")
    assert (ok.phone, ok.email) == ("+84 236 3820 000", "hotro@sotp.gov.vn")
    assert agency_in(**base).phone == ""
    for field, value in [("phone", "call us"), ("phone", "12"), ("email", "no-at-sign"), ("email", "a@b")]:
        with pytest.raises(ValidationFailed, match=field):
            agency_in(**base, **{field: value})
