"""The signing certificate page: who sees it and who may replace it, every kind of bad upload refused with nothing
stored, and a replacement that signs the next receipt (checked here and by xmlsec) while earlier receipts still
verify, in this process at once and in another within SignerStore's check interval."""

from __future__ import annotations

import functools
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import (
    BestAvailableEncryption,
    Encoding,
    NoEncryption,
    PrivateFormat,
    pkcs12,
)
from cryptography.x509.oid import NameOID
from fastapi.testclient import TestClient
from sqlmodel import select

from console.certificate.checks import facts
from invoices.keys import CHECK_SECONDS, SignerStore, current_certificate, install_certificate, signing_dir
from invoices.tables import Document
from invoices.verification import verify_upload
from lephi.container import Container
from lephi.jobs import HANDLERS
from payments.outbox.worker import Worker
from tests.conftest import Api, make_settings
from tests.console.conftest import MakeStaff, count, csrf_of
from tests.console.test_admin_pages import ROLES, audit_rows, html, sign_in
from tests.factories import dossier_body, payment_body, sandbox_outcome
from tests.invoices.test_signing import xmlsec_verify

TAX_A, TAX_B = "0100000001", "0100000002"
READERS = {"province_admin", "agency_admin", "finance", "viewer"}
ADMINS = {"province_admin", "agency_admin"}


@functools.cache
def rsa_key(bits: int = 2048, n: int = 0) -> rsa.RSAPrivateKey:
    del n  # only makes a distinct cached key
    return rsa.generate_private_key(public_exponent=65537, key_size=bits)


def certificate(
    key: Any,
    tax_code: str = TAX_A,
    *,
    start: timedelta = timedelta(days=-1),
    days: int = 365,
    name: str = "Agency AGC-A",
    signer: Any = None,
) -> x509.Certificate:
    subject = x509.Name(
        [
            x509.NameAttribute(NameOID.COMMON_NAME, name),
            x509.NameAttribute(NameOID.USER_ID, f"MST:{tax_code}"),
        ]
    )
    begin = datetime.now(UTC) + start
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Test CA")]))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(begin)
        .not_valid_after(begin + timedelta(days=days))
        .sign(signer or key, hashes.SHA256())
    )


def pem_cert(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(Encoding.PEM)


def pem_key(key: Any, password: bytes | None = None) -> bytes:
    encryption = BestAvailableEncryption(password) if password else NoEncryption()
    return key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, encryption)


def p12(key: Any, cert: x509.Certificate, password: bytes = b"mat-khau-p12") -> bytes:
    return pkcs12.serialize_key_and_certificates(b"test", key, cert, None, BestAvailableEncryption(password))


def page(client: TestClient, agency: str | None = None, lang: str = "en") -> Any:
    query = f"?lang={lang}" + (f"&agency={agency}" if agency else "")
    return client.get("/console/certificate" + query)


def upload_p12(client: TestClient, data: bytes, password: str, agency: str = "AGC-A", **extra: Any) -> Any:
    csrf = extra.pop("csrf", None) or csrf_of(page(client, agency).text)
    fields = {"csrf": csrf, "lang": "en", "agency": agency, "kind": "p12", "password": password, **extra}
    return client.post("/console/certificate", data=fields, files={"p12": ("agency.p12", data)}, follow_redirects=False)


def upload_pem(
    client: TestClient, cert: bytes, key: bytes, password: str = "", agency: str = "AGC-A", csrf: str | None = None
) -> Any:
    csrf = csrf or csrf_of(page(client, agency).text)
    fields = {"csrf": csrf, "lang": "en", "agency": agency, "kind": "pem", "password": password}
    files = {"cert": ("cert.pem", cert), "key": ("key.pem", key)}
    return client.post("/console/certificate", data=fields, files=files, follow_redirects=False)


def files_of(ctx: Container) -> dict[str, bytes]:
    directory = signing_dir(ctx.settings)
    if not directory.exists():
        return {}
    return {p.name: p.read_bytes() for p in sorted(directory.iterdir())}


def issue(api: Api) -> Document:
    code = api.post("/v1/dossiers", dossier_body(copies=1)).json()["code"]
    payment = api.post("/v1/payments", payment_body(code)).json()
    sandbox_outcome(api.client, api.ctx.settings, payment["gateway_reference"], "success")
    Worker(api.ctx, HANDLERS).run_once()
    with api.ctx.db.read() as s:
        return s.exec(select(Document).where(Document.payment_id == payment["id"])).one()


def signed_with(ctx: Container, document: Document) -> x509.Certificate:
    with ctx.db.read() as s:
        return verify_upload(s, ctx.settings, document.xml).document.certificate


# --- roles and isolation ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("role", ROLES)
def test_each_role_sees_or_is_refused_and_only_admins_replace(
    client: TestClient, ctx: Container, make_staff: MakeStaff, agencies: dict[str, str], role: str
) -> None:
    sign_in(client, make_staff, role)
    agency = "AGC-A" if role == "province_admin" else None
    response = page(client, agency)
    if role not in READERS:
        html(response, 403)
        assert 'href="/console/certificate' not in client.get("/console/?lang=en").text
        return
    html(response, 200)
    assert 'href="/console/certificate?lang=en"' in response.text  # the menu entry
    assert ('enctype="multipart/form-data"' in response.text) == (role in ADMINS)
    if role in ADMINS:
        return
    before = files_of(ctx), count(ctx, "audit_log")
    key = rsa_key()
    csrf = csrf_of(response.text)
    html(upload_p12(client, p12(key, certificate(key)), "mat-khau-p12", csrf=csrf), 403)
    assert (files_of(ctx), count(ctx, "audit_log")) == before


def test_another_agencys_certificate_is_404_and_a_province_admin_picks_one(
    client: TestClient, ctx: Container, make_staff: MakeStaff, agencies: dict[str, str]
) -> None:
    sign_in(client, make_staff, "agency_admin")
    html(page(client, "AGC-B"), 404)
    html(page(client, "NOPE"), 404)
    key = rsa_key()
    csrf = csrf_of(page(client).text)
    before = files_of(ctx), count(ctx, "audit_log")
    html(upload_p12(client, p12(key, certificate(key, TAX_B)), "mat-khau-p12", agency="AGC-B", csrf=csrf), 404)
    assert (files_of(ctx), count(ctx, "audit_log")) == before

    sign_in(client, make_staff, "province_admin")
    listing = page(client)
    html(listing, 200)
    assert "agency=AGC-A" in listing.text and "agency=AGC-B" in listing.text
    html(page(client, "NOPE"), 404)
    response = upload_p12(client, p12(key, certificate(key, TAX_B, name="Agency AGC-B")), "mat-khau-p12", "AGC-B")
    assert response.status_code == 303, response.text[:400]
    b = current_certificate(ctx.settings, "AGC-B")
    assert b is not None and b.public_key() == key.public_key()
    assert current_certificate(ctx.settings, "AGC-A") is None


# --- replacement ------------------------------------------------------------------------------------------------


def test_a_replacement_signs_new_receipts_while_old_ones_still_verify(
    api: Api, client: TestClient, ctx: Container, make_staff: MakeStaff
) -> None:
    old_receipt = issue(api)  # signed with the development certificate the store wrote on first use
    old = signed_with(ctx, old_receipt)
    other_process = SignerStore(ctx.settings, clock=lambda: clock[0])
    clock = [0.0]
    assert other_process.for_agency("AGC-A", TAX_A, "Agency AGC-A").certificate == old

    sign_in(client, make_staff, "agency_admin")
    key = rsa_key()
    new = certificate(key)
    response = upload_p12(client, p12(key, new), "mat-khau-p12")
    assert response.status_code == 303 and "done=replaced" in response.headers["location"]
    shown = client.get(response.headers["location"])
    html(shown, 200)
    assert "The certificate is replaced." in shown.text
    assert facts(new).fingerprint in shown.text and facts(old).fingerprint not in shown.text
    assert TAX_A in shown.text and facts(new).serial in shown.text

    new_receipt = issue(api)
    assert signed_with(ctx, new_receipt) == new
    xmlsec_verify(new_receipt.xml, new)
    assert signed_with(ctx, old_receipt) == old  # the earlier certificate is still registered
    xmlsec_verify(old_receipt.xml, old)

    # Another process keeps its loaded key until its next look at the files, then takes the new one.
    assert other_process.for_agency("AGC-A", TAX_A, "x").certificate == old
    clock[0] += CHECK_SECONDS
    assert other_process.for_agency("AGC-A", TAX_A, "x").certificate == new

    (row,) = audit_rows(ctx, "certificate.replaced")
    assert row.target == "AGC-A" and row.agency_id == api.agency_id
    assert row.before["fingerprint_sha256"] == facts(old).fingerprint
    assert row.after["fingerprint_sha256"] == facts(new).fingerprint
    assert row.after["not_after"] == new.not_valid_after_utc.isoformat()
    names = set(files_of(ctx))
    assert {"AGC-A.p12", "AGC-A.cert.pem"} <= names and "AGC-A.key.pem" not in names
    assert any(n.startswith("AGC-A.key.pem.") and n.endswith(".bak") for n in names)
    assert any(n.startswith("AGC-A.cert.pem.") and n.endswith(".bak") for n in names)


def test_a_pem_pair_with_an_encrypted_key_replaces_the_certificate(
    client: TestClient, ctx: Container, make_staff: MakeStaff, agencies: dict[str, str]
) -> None:
    sign_in(client, make_staff, "agency_admin")
    key = rsa_key()
    cert = certificate(key)
    response = upload_pem(client, pem_cert(cert), pem_key(key, b"khoa-rieng"), "khoa-rieng")
    assert response.status_code == 303, response.text[:400]
    assert current_certificate(ctx.settings, "AGC-A") == cert
    assert ctx.signers.for_agency("AGC-A", TAX_A, "x").certificate == cert
    assert len(audit_rows(ctx, "certificate.replaced")) == 1


def bad_uploads() -> dict[str, tuple[str, Any]]:
    key, other = rsa_key(), rsa_key(2048, 1)
    weak = rsa_key(1024)
    good = certificate(key)
    return {
        "wrong tax code": ("tax code is not this agency", ("p12", p12(key, certificate(key, TAX_B)), "mat-khau-p12")),
        "expired": (
            "has expired",
            ("p12", p12(key, certificate(key, start=timedelta(days=-40), days=30)), "mat-khau-p12"),
        ),
        "not yet valid": (
            "not valid yet",
            ("p12", p12(key, certificate(key, start=timedelta(days=2))), "mat-khau-p12"),
        ),
        "1024-bit key": ("too short", ("p12", p12(weak, certificate(weak)), "mat-khau-p12")),
        "key of another certificate": ("does not belong", ("pem", pem_cert(good), pem_key(other))),
        "certificate signed by another key": (
            "does not belong",
            ("pem", pem_cert(certificate(key, signer=other)), pem_key(other)),
        ),
        "wrong password": ("password is wrong", ("p12", p12(key, good), "not-the-password")),
        "wrong key password": ("password is wrong", ("pem", pem_cert(good), pem_key(key, b"khoa"), "sai")),
        "not a certificate": ("not a certificate", ("p12", b"%PDF-1.7 this is a scanned letter", "x")),
        "pem not a certificate": (
            "not a certificate",
            ("pem", b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END", pem_key(key)),
        ),
        "key file not a key": ("not a PEM private key", ("pem", pem_cert(good), b"hello")),
        "EC key": ("must be an RSA key", ("pem", pem_cert(good), pem_key(ec.generate_private_key(ec.SECP256R1())))),
        "empty file": ("No file was chosen", ("p12", b"", "x")),
        "over 64 KB": ("too large", ("pem", pem_cert(good) + b"\n" * (64 * 1024), pem_key(key))),
    }


def test_every_bad_upload_is_refused_with_its_reason_and_nothing_stored(
    client: TestClient, ctx: Container, make_staff: MakeStaff, agencies: dict[str, str]
) -> None:
    sign_in(client, make_staff, "agency_admin")
    key = rsa_key()
    assert upload_pem(client, pem_cert(certificate(key)), pem_key(key)).status_code == 303
    before = files_of(ctx), count(ctx, "audit_log")
    csrf = csrf_of(page(client).text)
    for case, (message, (kind, *args)) in bad_uploads().items():
        if kind == "p12":
            response = upload_p12(client, args[0], args[1], csrf=csrf)
        else:
            response = upload_pem(client, *args, csrf=csrf)
        html(response, 400)
        assert message in response.text, case
        assert (files_of(ctx), count(ctx, "audit_log")) == before, case


def test_malformed_forms_huge_bodies_and_bad_tokens_store_nothing(
    client: TestClient, ctx: Container, make_staff: MakeStaff, agencies: dict[str, str]
) -> None:
    sign_in(client, make_staff, "agency_admin")
    key = rsa_key()
    good = p12(key, certificate(key))
    csrf = csrf_of(page(client).text)
    before = files_of(ctx), count(ctx, "audit_log")
    html(upload_p12(client, good, "mat-khau-p12", csrf="wrong"), 403)
    html(client.post("/console/certificate", data={"kind": "p12", "lang": "en"}, files={"p12": ("a", good)}), 403)
    html(upload_p12(client, good, "mat-khau-p12", csrf=csrf, kind="zip"), 400)
    html(upload_p12(client, good, "mat\x00khau", csrf=csrf), 400)
    html(upload_p12(client, good, "x" * 5000, csrf=csrf), 400)
    html(upload_p12(client, good, "mat-khau-p12", csrf=csrf, lang="xx"), 400)
    fields = {"csrf": csrf, "lang": "en", "agency": "AGC-A", "kind": "p12"}
    files = {"p12": ("a.p12", good), "password": ("p.txt", b"mat-khau-p12")}
    html(client.post("/console/certificate", data=fields, files=files), 400)
    html(
        client.post("/console/certificate", content=b"not a form", headers={"content-type": "multipart/form-data"}), 400
    )
    huge = client.post("/console/certificate", data=fields, files={"p12": ("a.p12", b"0" * (200 * 1024))})
    assert huge.status_code == 413 and huge.headers["content-type"].startswith("text/html")
    assert (files_of(ctx), count(ctx, "audit_log")) == before


def test_expiry_warning_and_alarm(client: TestClient, ctx: Container, make_staff: MakeStaff, api: Api) -> None:
    sign_in(client, make_staff, "finance")
    key = rsa_key()
    now = datetime.now(UTC)
    install_certificate(ctx.settings, "AGC-A", key, certificate(key, days=300), now)
    assert "Valid." in page(client).text
    install_certificate(ctx.settings, "AGC-A", key, certificate(key, days=11), now)
    shown = page(client)
    assert "expires soon (9 days left)" in shown.text or "expires soon (10 days left)" in shown.text
    install_certificate(ctx.settings, "AGC-A", key, certificate(key, start=timedelta(days=-31), days=30), now)
    expired = page(client, lang="vi")
    assert "CHỨNG THƯ SỐ ĐÃ HẾT HẠN" in expired.text and 'role="alert"' in expired.text
    assert "THE CERTIFICATE HAS EXPIRED" in page(client).text


def test_the_files_replaced_keep_every_earlier_certificate_registered(tmp_path: Path, ctx: Container) -> None:
    key = rsa_key()
    first, second = certificate(key, days=100), certificate(key, days=200)
    now = datetime.now(UTC)
    install_certificate(ctx.settings, "AGC-A", key, first, now)
    install_certificate(ctx.settings, "AGC-A", key, second, now + timedelta(seconds=1))
    history = x509.load_pem_x509_certificates(files_of(ctx)["AGC-A.cert.pem"])
    assert history == [second, first]
    assert current_certificate(ctx.settings, "AGC-A") == second


def test_a_failed_write_rolls_the_audit_row_back_and_keeps_the_old_certificate(
    client: TestClient, ctx: Container, make_staff: MakeStaff, agencies: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from console.certificate import pages

    sign_in(client, make_staff, "agency_admin")
    key = rsa_key()
    assert upload_pem(client, pem_cert(certificate(key)), pem_key(key)).status_code == 303
    before = files_of(ctx), count(ctx, "audit_log")

    def disk_full(*_args: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(pages, "install_certificate", disk_full)
    response = upload_p12(client, p12(key, certificate(key, days=500)), "mat-khau-p12")
    html(response, 500)
    assert "could not be saved on the server" in response.text
    assert (files_of(ctx), count(ctx, "audit_log")) == before


def test_a_broken_file_does_not_stop_a_process_signing_with_the_key_it_had(tmp_path: Path) -> None:
    settings = make_settings("sqlite://", tmp_path)
    clock = [0.0]
    store = SignerStore(settings, clock=lambda: clock[0])
    key = rsa_key()
    good = certificate(key)
    install_certificate(settings, "AGC-A", key, good, datetime.now(UTC))
    assert store.for_agency("AGC-A", TAX_A, "x").certificate == good
    (signing_dir(settings) / "AGC-A.p12").write_bytes(b"half a file")
    clock[0] += CHECK_SECONDS
    assert store.for_agency("AGC-A", TAX_A, "x").certificate == good
    newer = certificate(key, days=30)
    install_certificate(settings, "AGC-A", key, newer, datetime.now(UTC))
    clock[0] += CHECK_SECONDS
    assert store.for_agency("AGC-A", TAX_A, "x").certificate == newer
