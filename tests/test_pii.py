"""Payers' personal data at rest: sealed columns, the blind index, key rotation under concurrent writes, retention,
subject access, and hostile values (a bad key, a wrong-length number, a damaged ciphertext)."""

from __future__ import annotations

import base64
import json
import os
import threading
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import String, select, type_coerce, update
from sqlmodel import col

from invoices.tables import Document
from lephi.jobs import HANDLERS, PERIODIC
from lephi.privacy import SEALED
from payments.core import pii
from payments.core.db import table_of
from payments.core.pii import KeyConfigError, Keyring, load_keyring
from payments.core.sql import connection
from payments.core.types import utcnow
from payments.dossier.models import Dossier, DossierStatus
from payments.outbox.worker import Worker
from payments.privacy.retention import redact_expired
from payments.privacy.rotate import pending, rotate
from tests.conftest import Api, Cli
from tests.factories import dossier_body, payment_body, sandbox_outcome

ID = "001099012345"
PASSPORT = "C1234567"
PHONE = "0912345678"
EMAIL = "bi.mat@example.com"
_DOSSIER = table_of(Dossier)


def _payer(n: int = 0, **extra: Any) -> dict[str, Any]:
    return {
        "name": "Nguyễn Văn An",
        "email": f"an{n}@example.com",
        "phone": f"09{n:08d}",
        "id_number": f"{n:012d}",
        **extra,
    }


def _raw(api: Api, code: str) -> Any:
    """The dossier's row as stored, without the sealed columns' opening."""
    names = ("payer_email", "payer_phone", "payer_id_number", "payer_passport_number")
    with api.ctx.db.read() as s:
        return (
            connection(s)
            .execute(
                select(
                    *(type_coerce(_DOSSIER.c[n], String()).label(n) for n in names), _DOSSIER.c.payer_id_index
                ).where(_DOSSIER.c.code == code)
            )
            .one()
        )


@pytest.fixture
def restore_keyring() -> Iterator[None]:
    before = pii.keyring()
    yield
    pii.install(before)


def _key() -> str:
    return base64.b64encode(os.urandom(32)).decode()


def test_identity_numbers_and_contacts_are_sealed_at_rest_and_found_by_blind_index(api: Api) -> None:
    payer = {"name": "Trần Thị Bình", "email": EMAIL, "phone": PHONE, "id_number": ID, "passport_number": PASSPORT}
    r = api.post("/v1/dossiers", dossier_body("HS-PII-1", payer=payer))
    assert r.status_code == 201, r.text
    api.post("/v1/dossiers", dossier_body("HS-PII-2", payer=_payer(7)))
    raw = _raw(api, "HS-PII-1")
    stored = " ".join(str(v) for v in raw)
    for secret in (EMAIL, PHONE, ID, PASSPORT):
        assert secret not in stored
    ring = pii.keyring()
    assert raw.payer_id_number.startswith(f"pii1:{ring.current_id}:") and raw.payer_id_index.startswith(ring.current_id)
    with api.ctx.db.read() as s:
        d = s.exec(select(Dossier).where(Dossier.code == "HS-PII-1")).one()[0]
    assert (d.payer_email, d.payer_phone, d.payer_id_number, d.payer_passport_number) == (EMAIL, PHONE, ID, PASSPORT)

    found = api.get("/v1/dossiers", params={"payer_id_number": ID}).json()["data"]
    assert [x["code"] for x in found] == ["HS-PII-1"]
    assert api.get("/v1/dossiers", params={"payer_id_number": "009999999999"}).json()["data"] == []
    assert ID not in r.text and EMAIL not in r.text  # the answer does not echo them


@pytest.mark.parametrize(
    ("field", "value"),
    [("id_number", "00109901234"), ("id_number", "0010990123456"), ("id_number", "00109901234A"),
     ("passport_number", "c1234567"), ("passport_number", "C" * 21), ("passport_number", "C 123")],
)  # fmt: skip
def test_malformed_identity_numbers_are_refused_without_echo(api: Api, field: str, value: str) -> None:
    r = api.post("/v1/dossiers", dossier_body("HS-BAD", payer={"name": "An", field: value}))
    assert r.status_code == 422 and r.json()["code"] == "validation_error", r.text
    assert value not in r.text
    assert api.get("/v1/dossiers").json()["data"] == []
    r = api.get("/v1/dossiers", params={"payer_id_number": "12345"})
    assert r.status_code == 422 and "12345" not in r.text


def test_the_receipt_carries_the_numbers_in_nmua_in_the_schema_order(api: Api) -> None:
    payer = {"name": "Trần Thị Bình", "phone": PHONE, "id_number": ID, "passport_number": PASSPORT}
    api.post("/v1/dossiers", dossier_body("HS-XML", payer=payer))
    payment = api.post("/v1/payments", payment_body("HS-XML")).json()
    sandbox_outcome(api.client, api.ctx.settings, payment["gateway_reference"], "success")
    Worker(api.ctx, HANDLERS).run_once()
    with api.ctx.db.read() as s:
        (doc,) = s.exec(select(Document)).one()
    xml = doc.xml.decode()
    buyer = xml[xml.index("<NMua>") : xml.index("</NMua>")]
    assert f"<SDThoai>{PHONE}</SDThoai>" in buyer and f"<CCCDan>{ID}</CCCDan>" in buyer
    assert buyer.index("<SDThoai>") < buyer.index("<CCCDan>") < buyer.index(f"<SHChieu>{PASSPORT}</SHChieu>")


def test_a_damaged_ciphertext_or_a_missing_key_is_a_clear_problem_not_a_500(api: Api, restore_keyring: None) -> None:
    api.post("/v1/dossiers", dossier_body("HS-TAMPER", payer=_payer(3)))
    raw = _raw(api, "HS-TAMPER")
    sealed = raw.payer_phone
    flipped = sealed[:-3] + ("A" if sealed[-3] != "A" else "B") + sealed[-2:]
    with api.ctx.db.write() as s:
        connection(s).execute(
            update(_DOSSIER).where(_DOSSIER.c.code == "HS-TAMPER").values(payer_phone=type_coerce(flipped, String()))
        )
    r = api.get("/v1/dossiers/HS-TAMPER")
    assert r.status_code == 503 and r.json()["code"] == "personal_data_unreadable", r.text
    assert "dossier.payer_phone" in r.json()["detail"] and flipped not in r.text
    # A value moved to another column does not open there either (the column is the associated data).
    with api.ctx.db.write() as s:
        connection(s).execute(
            update(_DOSSIER)
            .where(_DOSSIER.c.code == "HS-TAMPER")
            .values(payer_phone=type_coerce(raw.payer_email, String()))
        )
    assert api.get("/v1/dossiers/HS-TAMPER").status_code == 503
    # A keyring without the key the rows were sealed under.
    with api.ctx.db.write() as s:
        connection(s).execute(
            update(_DOSSIER).where(_DOSSIER.c.code == "HS-TAMPER").values(payer_phone=type_coerce(sealed, String()))
        )
    assert api.get("/v1/dossiers/HS-TAMPER").status_code == 200
    pii.install(Keyring(base64.b64decode(_key())))
    r = api.get("/v1/dossiers/HS-TAMPER")
    assert r.status_code == 503 and "not configured" in r.json()["detail"]


def test_bad_key_settings_are_refused_with_a_clear_message(tmp_path: Path) -> None:
    with pytest.raises(KeyConfigError, match="not base64"):
        load_keyring("not a key!", None, [], None)
    with pytest.raises(KeyConfigError, match="32 bytes"):
        load_keyring(base64.b64encode(b"short").decode(), None, [], None)
    with pytest.raises(KeyConfigError, match="cannot read"):
        load_keyring(None, tmp_path / "missing.key", [], None)
    with pytest.raises(KeyConfigError, match="must be set"):
        load_keyring(None, None, [], None)
    current, old = _key(), _key()
    (tmp_path / "pii.key").write_text(f"{current}\n{old}\n")
    ring = load_keyring(None, tmp_path / "pii.key", [], None)
    assert ring.current == base64.b64decode(current) and ring.older == (base64.b64decode(old),)
    # The development key is made once and read back by every later process.
    dev = load_keyring(None, None, [], tmp_path / "var" / "pii.key")
    assert load_keyring(None, None, [], tmp_path / "var" / "pii.key") == dev
    assert (tmp_path / "var" / "pii.key").stat().st_mode & 0o777 == 0o600


def test_rotation_under_concurrent_writes_loses_nothing(api: Api, restore_keyring: None) -> None:
    old = pii.keyring()
    for n in range(40):
        api.post("/v1/dossiers", dossier_body(f"HS-R{n}", payer=_payer(n)))
    # Written before sealing existed: the rotation seals it too.
    with api.ctx.db.write() as s:
        connection(s).execute(
            update(_DOSSIER)
            .where(_DOSSIER.c.code == "HS-R0")
            .values(payer_email=type_coerce("an0@example.com", String()))
        )
    new = Keyring(base64.b64decode(_key()), (old.current,))
    pii.install(new)  # every process now seals with the new key and still opens the old one
    expected = {f"HS-R{n}": _payer(n) for n in range(40)}
    stop = threading.Event()
    errors: list[str] = []

    def writer() -> None:
        n = 100
        while not stop.is_set() or n < 130:
            r = api.post("/v1/dossiers", dossier_body(f"HS-R{n}", payer=_payer(n)))
            # and an update of a row the rotation may be holding
            upd = _payer(n - 100, email=f"changed{n}@example.com")
            r2 = api.post("/v1/dossiers", dossier_body(f"HS-R{n - 100}", payer=upd))
            if r.status_code != 201 or r2.status_code != 200:
                errors.append(f"{r.status_code} {r2.status_code}")
            expected[f"HS-R{n}"] = _payer(n)
            expected[f"HS-R{n - 100}"] = upd
            n += 1

    thread = threading.Thread(target=writer)
    thread.start()
    reports: list[str] = []
    results = rotate(api.ctx.db, SEALED, new, 5, lambda p: reports.append(f"{p.table} {p.done}/{p.pending}"))
    stop.set()
    thread.join(60)
    assert not errors
    rotate(api.ctx.db, SEALED, new, 5, None)  # what the writer changed after the last pass was sealed new anyway
    assert reports and results[0].done >= 40
    assert all(pending(api.ctx.db, st, new) == 0 for st in SEALED)
    pii.install(Keyring(new.current))  # the old key retired: everything must open with the new one alone
    with api.ctx.db.read() as s:
        rows = {d.code: d for d in s.exec(select(Dossier)).scalars()}
    assert set(rows) == set(expected)
    for code, payer in expected.items():
        d = rows[code]
        assert (d.payer_email, d.payer_phone, d.payer_id_number) == (payer["email"], payer["phone"], payer["id_number"])
    for n in (0, 17, 120):
        found = api.get("/v1/dossiers", params={"payer_id_number": f"{n:012d}"}).json()["data"]
        assert [x["code"] for x in found] == [f"HS-R{n}"]


def test_rotation_from_the_cli_is_resumable_with_progress(api: Api, cli: Cli, restore_keyring: None) -> None:
    for n in range(7):
        api.post("/v1/dossiers", dossier_body(f"HS-C{n}", payer=_payer(n)))
    old = pii.keyring()
    new_key = _key()
    os.environ["LEPHI_PII_KEY"] = new_key
    os.environ["LEPHI_PII_OLD_KEYS"] = base64.b64encode(old.current).decode()
    try:
        result = cli("keys", "rotate-pii", "--batch", "3")
        assert result.exit_code == 0, result.output
        assert "dossier: 3/7 re-sealed" in result.output and "dossier: 7 re-sealed, 0 left" in result.output
        again = cli("keys", "rotate-pii")
        assert again.exit_code == 0 and "dossier: 0 re-sealed, 0 left" in again.output
    finally:
        del os.environ["LEPHI_PII_KEY"], os.environ["LEPHI_PII_OLD_KEYS"]
    assert _raw(api, "HS-C4").payer_id_number.startswith(f"pii1:{pii.key_id(base64.b64decode(new_key))}:")


def test_retention_erases_contacts_of_closed_dossiers_only_and_keeps_the_receipt(api: Api) -> None:
    for code in ("HS-OLD", "HS-NEW", "HS-OPEN"):
        api.post("/v1/dossiers", dossier_body(code, payer=_payer(1, passport_number=PASSPORT)))
    for code in ("HS-OLD", "HS-NEW"):
        payment = api.post("/v1/payments", payment_body(code)).json()
        sandbox_outcome(api.client, api.ctx.settings, payment["gateway_reference"], "success")
    Worker(api.ctx, HANDLERS).run_once()
    with api.ctx.db.write() as s:
        s.execute(update(Dossier).where(col(Dossier.code).in_(["HS-OLD", "HS-OPEN"])).values(
            paid_at=utcnow() - timedelta(days=400), updated_at=utcnow() - timedelta(days=400)
        ))  # fmt: skip
        xml_before = {d.payment_id: d.xml for d in s.exec(select(Document)).scalars()}
    assert redact_expired(api.ctx.db, 365, 1) == 1
    assert redact_expired(api.ctx.db, 365, 1) == 0
    with api.ctx.db.read() as s:
        rows = {d.code: d for d in s.exec(select(Dossier)).scalars()}
        xml_after = {d.payment_id: d.xml for d in s.exec(select(Document)).scalars()}
    old = rows["HS-OLD"]
    assert old.status is DossierStatus.paid and old.payer_email is None and old.payer_phone is None
    assert old.pii_redacted_at is not None and old.payer_name == "Nguyễn Văn An" and old.payer_id_number == f"{1:012d}"
    assert old.payer_passport_number == PASSPORT
    for code in ("HS-NEW", "HS-OPEN"):
        assert rows[code].payer_email == "an1@example.com" and rows[code].pii_redacted_at is None
    assert xml_after == xml_before and len(xml_after) == 2  # the signed receipts untouched
    assert "privacy.retention" in {p.name for p in PERIODIC}


def test_subject_access_export_lists_what_is_held(api: Api, cli: Cli) -> None:
    api.post("/v1/dossiers", dossier_body("HS-SAR", payer=_payer(5, passport_number=PASSPORT)))
    payment = api.post("/v1/payments", payment_body("HS-SAR")).json()
    sandbox_outcome(api.client, api.ctx.settings, payment["gateway_reference"], "success")
    Worker(api.ctx, HANDLERS).run_once()
    api.post("/v1/dossiers", dossier_body("HS-OTHER", payer=_payer(6)))
    result = cli("privacy", "export", "--id-number", f"{5:012d}")
    assert result.exit_code == 0, result.output
    held = json.loads(result.output)
    (d,) = held["dossiers"]
    assert d["dossier_code"] == "HS-SAR" and d["payer"]["email"] == "an5@example.com"
    assert d["payer"]["passport_number"] == PASSPORT and d["payer"]["phone"] == "0900000005"
    assert [p["status"] for p in d["payments"]] == ["succeeded"] and len(d["receipts"]) == 1
    assert cli("privacy", "export", "--id-number", "123").exit_code != 0
    assert json.loads(cli("privacy", "export", "--id-number", "000000000099").output)["dossiers"] == []


def test_the_staff_totp_secret_is_sealed_and_rotated(api: Api, restore_keyring: None) -> None:
    from console.staff.models import StaffUser
    from console.staff.service import create_staff
    from console.staff.totp import start_enrolment

    with api.ctx.db.write() as s:
        user, _token = create_staff(s, email="totp.pii@gov.vn", role="finance", agency_code="AGC-A")
    with api.ctx.db.write() as s:
        fresh = s.get(StaffUser, user.id)
        assert fresh is not None
        secret = start_enrolment(s, fresh)
    staff = table_of(StaffUser)
    raw_totp = type_coerce(staff.c.totp_secret, String())

    def raw() -> str:
        with api.ctx.db.read() as s:
            return str(connection(s).execute(select(raw_totp).where(staff.c.id == user.id)).scalar_one())

    old = pii.keyring()
    assert secret not in raw() and raw().startswith(f"pii1:{old.current_id}:")
    new = Keyring(base64.b64decode(_key()), (old.current,))
    rotate(api.ctx.db, SEALED, new, 10, None)
    assert raw().startswith(f"pii1:{new.current_id}:")
    pii.install(Keyring(new.current))
    with api.ctx.db.read() as s:
        again = s.get(StaffUser, user.id)
        assert again is not None and again.totp_secret == secret
