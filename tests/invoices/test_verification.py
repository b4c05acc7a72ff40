"""Verification of uploaded receipts through the API and the CLI: a receipt verifies only in the name of the seller
whose registered certificate signed it, with nothing unsigned riding along, valid against the XSD; `issued_here`
is decided within the seller's agency; an agency whose key is a .p12 verifies its own receipts."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from lxml import etree  # type: ignore[import-untyped]  # lxml ships no type information and no stubs are installed
from sqlmodel import col, select
from typer.testing import CliRunner

from invoices.models import Document
from invoices.signing import LocalSigner, make_dev_certificate, to_pkcs12
from invoices.verify import ds
from lephi.jobs import HANDLERS
from lephi.settings import get_settings
from payments.outbox.worker import Worker
from tests.conftest import ALL_SCOPES, Api
from tests.factories import dossier_body, payment_body, sandbox_outcome, seed_agency

SERIES = f"K{datetime.now(timezone(timedelta(hours=7))).year % 100:02d}TLP"
OTHER_TAX_CODE = "0200000002"


def _pay(api: Api) -> None:
    code = api.post("/v1/dossiers", dossier_body(copies=3)).json()["code"]
    payment = api.post("/v1/payments", payment_body(code)).json()
    sandbox_outcome(api.client, api.ctx.settings, payment["gateway_reference"], "success")
    Worker(api.ctx, HANDLERS).run_once()


def _receipt(api: Api, agency_id: str | None = None) -> bytes:
    with api.ctx.db.read() as s:
        doc = s.exec(
            select(Document).where(Document.agency_id == (agency_id or api.agency_id)).order_by(col(Document.number))
        ).first()
    assert doc is not None
    return doc.xml


def _other_agency(api: Api, tax_code: str = OTHER_TAX_CODE) -> Api:
    with api.ctx.db.write() as s:
        agency = seed_agency(s, "AGC-B", tax_code=tax_code)
    return Api(api.client, api.ctx, api.new_key(ALL_SCOPES, agency_code="AGC-B"), agency.id, "AGC-B")


def _resigned(xml: bytes, signer: Any, change: Callable[[Any], None] = lambda root: None) -> bytes:
    """The document with its signature removed, `change` applied, and signed again by `signer`."""
    root = etree.fromstring(xml)
    slot = root.find("DSCKS/NBan")
    for child in list(slot):
        slot.remove(child)
    change(root)
    signed: bytes = signer.sign(etree.tostring(root, xml_declaration=True, encoding="UTF-8"))
    return signed


def _verify(api: Api, xml: bytes) -> Any:
    return api.client.post("/v1/receipts/verify", content=xml, headers={**api.auth, "Content-Type": "application/xml"})


def test_the_answer_names_the_seller_agency_and_every_signed_value(api: Api) -> None:
    _pay(api)
    answer = _verify(api, _receipt(api))
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["valid"] is True and body["issued_here"] is True
    assert body["seller_agency"] == "AGC-A" and body["seller_name"] == "Agency AGC-A"
    assert body["signed_values"]["NDHDon/NBan/MST"] == "0100000001" == body["seller_tax_code"]
    assert body["signed_values"]["TTChung/SHDon"] == "1" and body["signed_values"]["NDHDon/TToan/TgTTTBSo"] == "115000"
    assert body["unsigned_parts"] == []


def test_a_document_in_one_agencys_name_signed_with_another_agencys_registered_key_is_refused(api: Api) -> None:
    _pay(api)
    other = _other_agency(api)
    # Agency B's key is registered with the service (it signs B's own receipts) ...
    b_signer = api.ctx.signers.for_agency("AGC-B", OTHER_TAX_CODE, "Agency AGC-B")
    _pay(other)
    assert _verify(api, _receipt(api, other.agency_id)).json()["seller_agency"] == "AGC-B"
    # ... but a document naming agency A as the seller, signed with it, is not A's.
    forged = _resigned(_receipt(api), b_signer)
    answer = _verify(api, forged)
    assert answer.status_code == 422 and answer.json()["reason"] == "wrong-seller", answer.text
    # Nor does B's tax code with A's name on it: a reader would see A's name on a document only B signed.
    as_b = _resigned(_receipt(api), b_signer, lambda r: _set(r, "DLHDon/NDHDon/NBan/MST", OTHER_TAX_CODE))
    named = _verify(api, as_b)
    assert named.status_code == 422 and named.json()["reason"] == "wrong-seller", named.text
    assert "name" in named.json()["detail"]


def test_a_registered_certificate_naming_another_tax_code_is_not_trusted(api: Api) -> None:
    _pay(api)
    # A's certificate file replaced by one whose subject names another taxpayer: never registered for A.
    key_pem, cert_pem = make_dev_certificate(OTHER_TAX_CODE, "Agency AGC-A")
    certs = api.ctx.settings.data_dir / "certs"
    (certs / "AGC-A.cert.pem").write_bytes(cert_pem)
    signed = _resigned(_receipt(api), LocalSigner.from_pem(key_pem, cert_pem))
    answer = _verify(api, signed)
    assert answer.status_code == 422 and answer.json()["reason"] == "untrusted-certificate", answer.text


def test_issued_here_is_decided_within_the_sellers_agency(api: Api) -> None:
    other = _other_agency(api)
    _pay(api)
    _pay(other)
    a, b = _receipt(api), _receipt(api, other.agency_id)
    assert f"<KHHDon>{SERIES}</KHHDon><SHDon>1</SHDon>".encode() in a
    assert f"<KHHDon>{SERIES}</KHHDon><SHDon>1</SHDon>".encode() in b  # the same symbol and number in two agencies
    for xml, agency in ((a, "AGC-A"), (b, "AGC-B")):
        body = _verify(api, xml).json()
        assert body["seller_agency"] == agency and body["issued_here"] is True


@pytest.fixture
def p12_only(api: Api) -> Iterator[Api]:
    """Agency A's key kept only as a PKCS#12 file, the form CAs and USB tokens hand out."""
    key_pem, cert_pem = make_dev_certificate("0100000001", "Agency AGC-A")
    certs = api.ctx.settings.data_dir / "certs"
    certs.mkdir(parents=True, exist_ok=True)
    (certs / "AGC-A.p12").write_bytes(to_pkcs12(key_pem, cert_pem, None))
    yield api
    assert not (certs / "AGC-A.cert.pem").exists()


def test_an_agency_whose_key_is_a_p12_verifies_its_own_receipts(p12_only: Api) -> None:
    _pay(p12_only)
    answer = _verify(p12_only, _receipt(p12_only))
    assert answer.status_code == 200 and answer.json()["issued_here"] is True, answer.text


def _set(root: Any, path: str, text: str) -> None:
    root.find(path).text = text


def _comment_in_payer_name(root: Any) -> None:
    name = root.find("DLHDon/NDHDon/NMua/Ten")
    comment = etree.Comment(" ")
    comment.tail = name.text[3:]
    name.text = name.text[:3]
    name.append(comment)


def _unsigned_copy_in(holder: Callable[[Any], Any]) -> Callable[[bytes], bytes]:
    """A DLHDon-like block with another total, where `holder` says: a reader looking for DLHDon could pick it."""

    def edit(xml: bytes) -> bytes:
        root = etree.fromstring(xml)
        copy = etree.fromstring(etree.tostring(root.find("DLHDon")).replace(b">115000<", b">1<"))
        del copy.attrib["Id"]
        holder(root).append(copy)
        return bytes(etree.tostring(root, xml_declaration=True, encoding="UTF-8"))

    return edit


def _after_signing(change: Callable[[Any], None]) -> Callable[[bytes], bytes]:
    def edit(xml: bytes) -> bytes:
        root = etree.fromstring(xml)
        change(root)
        return bytes(etree.tostring(root, xml_declaration=True, encoding="UTF-8"))

    return edit


UNSIGNED: dict[str, tuple[Callable[[bytes], bytes], str]] = {
    "a comment splitting the payer's name": (_after_signing(_comment_in_payer_name), "unsigned-content"),
    "a DLHDon copy in an HDon/TTKhac": (
        _unsigned_copy_in(lambda r: etree.SubElement(r, "TTKhac")),
        "unsigned-content",
    ),
    "a DLHDon copy in the tax authority's signature slot": (
        _unsigned_copy_in(lambda r: etree.SubElement(r.find("DSCKS"), "CQT")),
        "unsigned-content",
    ),
    "a DLHDon copy in DSCKS": (_unsigned_copy_in(lambda r: r.find("DSCKS")), "unsigned-content"),
    "a DLHDon copy in KeyInfo": (
        _unsigned_copy_in(lambda r: r.find(f"DSCKS/NBan/{ds('Signature')}/{ds('KeyInfo')}/{ds('X509Data')}")),
        "unsigned-content",
    ),
    "a DLHDon copy in the unsigned MCCQT": (
        _unsigned_copy_in(lambda r: r.insert(1, etree.Element("MCCQT", Id="M")) or r.find("MCCQT")),
        "unsigned-content",
    ),
    "a processing instruction": (lambda x: x.replace(b"<DSCKS>", b"<?lephi x?><DSCKS>"), "unsigned-content"),
    "text beside the signed data": (lambda x: x.replace(b"<DSCKS>", b"hidden<DSCKS>"), "unsigned-content"),
}


@pytest.mark.parametrize(("attack", "reason"), UNSIGNED.values(), ids=UNSIGNED.keys())
def test_unsigned_content_never_rides_along(api: Api, attack: Callable[[bytes], bytes], reason: str) -> None:
    _pay(api)
    answer = _verify(api, attack(_receipt(api)))
    assert answer.status_code == 422 and answer.json()["reason"] == reason, answer.text


def test_a_signed_document_that_breaks_the_format_is_refused(api: Api) -> None:
    _pay(api)
    signer = api.ctx.signers.for_agency("AGC-A", "0100000001", "Agency AGC-A")
    no_address = _resigned(
        _receipt(api), signer, lambda r: r.find("DLHDon/NDHDon/NBan").remove(r.find("DLHDon/NDHDon/NBan/DChi"))
    )
    answer = _verify(api, no_address)
    assert answer.status_code == 422 and answer.json()["reason"] == "schema", answer.text
    assert "DChi" in answer.json()["detail"]


CLI_ATTACKS = ["a comment splitting the payer's name", "a DLHDon copy in an HDon/TTKhac", "a DLHDon copy in DSCKS"]


def test_cli_refuses_the_same_attacks_as_the_api(api: Api, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from lephi.cli import app

    _pay(api)
    _other_agency(api)
    good = _receipt(api)
    files = {
        "wrong-seller": _resigned(good, api.ctx.signers.for_agency("AGC-B", OTHER_TAX_CODE, "Agency AGC-B")),
        **{UNSIGNED[name][1] + f"-{i}": UNSIGNED[name][0](good) for i, name in enumerate(CLI_ATTACKS)},
    }
    monkeypatch.setenv("LEPHI_DATABASE_URL", api.ctx.settings.effective_database_url)
    monkeypatch.setenv("LEPHI_DATA_DIR", str(api.ctx.settings.data_dir))
    get_settings.cache_clear()
    try:
        runner = CliRunner()
        for name, xml in files.items():
            (tmp_path / f"{name}.xml").write_bytes(xml)
            refused = runner.invoke(app, ["receipts", "verify", str(tmp_path / f"{name}.xml")])
            reason = name.rsplit("-", 1)[0] if name[-1].isdigit() else name
            assert refused.exit_code == 1 and f"NOT VALID ({reason})" in refused.output, (name, refused.output)
        (tmp_path / "good.xml").write_bytes(good)
        accepted = runner.invoke(app, ["receipts", "verify", str(tmp_path / "good.xml")])
        assert accepted.exit_code == 0 and "(AGC-A, MST 0100000001)" in accepted.output, accepted.output
        assert "issued by this service" in accepted.output
    finally:
        get_settings.cache_clear()


def test_cli_verifies_the_receipts_of_an_agency_whose_key_is_a_p12(
    p12_only: Api, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from lephi.cli import app

    _pay(p12_only)
    (tmp_path / "receipt.xml").write_bytes(_receipt(p12_only))
    monkeypatch.setenv("LEPHI_DATABASE_URL", p12_only.ctx.settings.effective_database_url)
    monkeypatch.setenv("LEPHI_DATA_DIR", str(p12_only.ctx.settings.data_dir))
    get_settings.cache_clear()
    try:
        accepted = CliRunner().invoke(app, ["receipts", "verify", str(tmp_path / "receipt.xml")])
        assert accepted.exit_code == 0 and "issued by this service" in accepted.output, accepted.output
    finally:
        get_settings.cache_clear()


def test_verification_takes_the_documented_2_mib_and_other_routes_keep_their_own_limit(api: Api) -> None:
    _pay(api)
    from invoices.verify import MAX_XML_BYTES

    padded = _receipt(api).replace(b"<DSCKS>", b" " * (200 * 1024) + b"<DSCKS>")  # 200 KiB: over the JSON limit
    answer = _verify(api, padded)
    assert answer.status_code == 200, answer.text  # whitespace between elements is not content
    over = _verify(api, b" " * (MAX_XML_BYTES + 1))
    assert over.status_code == 413 and str(MAX_XML_BYTES) in over.json()["detail"]
    assert api.ctx.settings.max_body_bytes < len(padded)
    json_route = api.post("/v1/dossiers", content=b" " * len(padded), headers={"Content-Type": "application/json"})
    assert json_route.status_code == 413
    assert api.client.app.openapi()["paths"]["/v1/receipts/verify"]["post"]["x-max-body-bytes"] == MAX_XML_BYTES
