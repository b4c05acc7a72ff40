"""``lephi receipts readiness``: what an agency still lacks to issue e-receipts only from 1 January 2027."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest

from invoices.keys import signing_dir
from invoices.readiness import readiness
from invoices.signing import make_dev_certificate
from payments.agency.models import Agency
from tests.conftest import Api, Cli

FIRST_DAY = date(2027, 1, 1)


def _checks(api: Api, on: date = FIRST_DAY) -> dict[str, tuple[bool, str]]:
    with api.ctx.db.read() as s:
        agency = s.get(Agency, api.agency_id)
        assert agency is not None
        return {c.name: (c.ok, c.detail) for c in readiness(s, api.ctx, agency, on)}


def _configure(monkeypatch: pytest.MonkeyPatch, api: Api, tmp_path: Path) -> None:
    (tmp_path / "drop" / "outgoing").mkdir(parents=True)
    for name, value in [
        ("provider_tax_code", "0312345678"),
        ("tax_drop_dir", tmp_path / "drop"),
        ("tax_office_code", "10100"),
    ]:
        monkeypatch.setattr(api.ctx.settings, name, value)


def test_a_new_agency_lacks_its_series_and_the_deployment_its_tvan_and_office(api: Api) -> None:
    checks = _checks(api)
    assert checks["certificate"][0] is True  # the development certificate is valid for two years
    assert checks["series"] == (
        False,
        "no series of template 5 registered for 2027: lephi receipts series register --agency AGC-A --series K27T..",
    )
    assert checks["t-van"][0] is False and "LEPHI_PROVIDER_TAX_CODE" in checks["t-van"][1]
    assert checks["tax-office"][0] is False and "LEPHI_TAX_OFFICE_CODE" in checks["tax-office"][1]


def test_ready_once_everything_is_in_place(api: Api, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    _configure(monkeypatch, api, tmp_path)
    # The default series of this year does not count: the 2026 rules want the agency's own, for the year.
    assert _checks(api)["series"][0] is False
    assert api.post("/v1/receipt-series", {"series": "K27TAB"}).status_code == 201
    checks = _checks(api)
    assert all(ok for ok, _ in checks.values()), checks
    assert checks["series"] == (True, "5K27TAB")


def test_a_certificate_expiring_before_the_day_and_a_missing_drop_folder_are_reported(
    api: Api, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    _configure(monkeypatch, api, tmp_path)
    monkeypatch.setattr(api.ctx.settings, "tax_drop_dir", tmp_path / "nowhere")
    folder = signing_dir(api.ctx.settings)
    folder.mkdir(parents=True, exist_ok=True)
    start = datetime(2026, 12, 1, tzinfo=UTC)
    key, cert = make_dev_certificate("0100000001", "Agency AGC-A", valid_days=30, not_before=start)
    (folder / "AGC-A.key.pem").write_bytes(key)
    (folder / "AGC-A.cert.pem").write_bytes(cert)
    api.ctx.signers.forget("AGC-A")
    checks = _checks(api)
    assert checks["certificate"] == (False, "the signing certificate expires on 2026-12-31, before 2027-01-01")
    assert checks["t-van"] == (False, f"{tmp_path / 'nowhere' / 'outgoing'} is not a writable folder")
    assert _checks(api, on=start.date() + timedelta(days=5))["certificate"][0] is True


def test_cli_lists_each_check_and_fails_while_something_is_missing(api: Api, cli: Cli) -> None:
    result = cli("receipts", "readiness", "--agency", "AGC-A")
    assert result.exit_code == 1, result.output
    lines = result.output.splitlines()
    assert [line.split()[:2] for line in lines] == [
        ["ok", "certificate"],
        ["MISSING", "series"],
        ["MISSING", "t-van"],
        ["MISSING", "tax-office"],
    ]
    assert cli("receipts", "readiness", "--agency", "NOPE").exit_code == 2
    assert cli("receipts", "readiness", "--agency", "AGC-A", "--date", "01/01/2027").exit_code == 2
