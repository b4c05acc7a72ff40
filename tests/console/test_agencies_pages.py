"""The agencies pages: only a province admin lists, creates, deactivates and reactivates agencies; an agency admin
opens and edits only their own agency's contact details; another agency's code answers 404; CSRF on every form;
hostile or invalid input answers a 4xx page and stores nothing; each change bumps agency.version and writes its
audit row with before and after; a deactivated agency's payer page offers no payment."""

from __future__ import annotations

import io
import struct
import zlib
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from console.audit.models import AuditLog
from lephi.container import Container
from payments.agency.models import Agency
from tests.conftest import Api
from tests.console.conftest import MakeStaff, count
from tests.console.test_admin_pages import ROLES, html, session_csrf, sign_in
from tests.factories import dossier_body

GOOD = {
    "code": "STP-HN",
    "name": "Sở Tư pháp Hà Nội",
    "tax_code": "0101234567",
    "address": "1 Tràng Thi, Hà Nội",
    "phone": "024 3825 1234",
    "email": "stp@hanoi.gov.vn",
    "bank_account": "0011001234567",
    "bank_name": "Kho bạc Nhà nước Hà Nội",
    "method": "sandbox",
}


def agency(ctx: Container, code: str) -> Agency | None:
    with ctx.db.read() as s:
        return s.execute(select(Agency).where(Agency.code == code)).scalars().first()


def audit(ctx: Container, action: str) -> list[AuditLog]:
    with ctx.db.read() as s:
        return list(s.execute(select(AuditLog).where(AuditLog.action == action)).scalars())


def state(ctx: Container) -> tuple[int, int]:
    with ctx.db.read() as s:
        changes = s.execute(select(AuditLog.id).where(AuditLog.action.startswith("agency."))).all()  # type: ignore[attr-defined]
    return count(ctx, "agency"), len(changes)


def test_who_opens_which_page(client: TestClient, make_staff: MakeStaff, agencies: dict[str, str]) -> None:
    # One account per role, in turn, in one test: each sign-in costs an argon2 hash.
    for role in ROLES:
        client.cookies.clear()
        sign_in(client, make_staff, role)
        listing = client.get("/console/agencies?lang=en", follow_redirects=False)
        new = client.get("/console/agencies/new?lang=en")
        own = client.get("/console/agencies/AGC-A?lang=en")
        if role == "province_admin":
            html(listing, 200)
            assert "AGC-A" in listing.text and "AGC-B" in listing.text
            html(new, 200)
            html(own, 200)
            assert "/deactivate" in own.text
        elif role == "agency_admin":
            assert listing.status_code == 303 and listing.headers["location"].startswith("/console/agencies/AGC-A?")
            html(new, 403)
            html(own, 200)
            assert "/deactivate" not in own.text
            html(client.get("/console/agencies/AGC-B"), 404)
            html(client.get("/console/agencies/NOPE"), 404)
            html(client.get("/console/agencies/AGC-B/edit"), 404)
        else:
            for page in (listing, new, own):
                html(page, 403)


def test_province_admin_creates_an_agency_with_an_audit_row(
    client: TestClient, ctx: Container, make_staff: MakeStaff, agencies: dict[str, str]
) -> None:
    sign_in(client, make_staff, "province_admin")
    response = client.post(
        "/console/agencies", data={**GOOD, "csrf": session_csrf(client), "lang": "en"}, follow_redirects=False
    )
    assert response.status_code == 303, response.text
    created = agency(ctx, "STP-HN")
    assert created is not None and created.payment_methods == ["sandbox"] and created.phone == "024 3825 1234"
    rows = audit(ctx, "agency.created")
    assert len(rows) == 1 and rows[0].agency_id == created.id and rows[0].after["tax_code"] == "0101234567"
    page = client.get(response.headers["location"])
    html(page, 200)
    assert "Sở Tư pháp Hà Nội" in page.text


BAD = [
    ({"tax_code": "12345"}, 400),  # the tax code rule
    ({"code": "bad code"}, 400),
    ({"email": "not-an-address"}, 400),
    ({"phone": "call me"}, 400),
    ({"name": ""}, 400),
    ({"method": "no-such-gateway"}, 400),
    ({"name": "x" * 2000}, 400),  # over the form's field limit
    ({"address": "1 Phố\x00Huế"}, 400),  # a control character
    ({"code": "AGC-A"}, 409),  # taken
    ({"tax_code": "0100000002"}, 409),  # AGC-B's
]


def test_bad_agencies_are_refused_and_nothing_is_stored(
    client: TestClient, ctx: Container, make_staff: MakeStaff, agencies: dict[str, str]
) -> None:
    sign_in(client, make_staff, "province_admin")
    csrf = session_csrf(client)
    before = state(ctx)
    for change, status in BAD:
        data = {**GOOD, **change, "csrf": csrf, "lang": "en"}
        html(client.post("/console/agencies", data=data), status)
    edit = {**GOOD, "email": "x", "csrf": csrf}
    html(client.post("/console/agencies/AGC-A/edit", data=edit), 400)
    assert state(ctx) == before


def test_csrf_and_roles_on_every_form(
    client: TestClient, ctx: Container, make_staff: MakeStaff, agencies: dict[str, str]
) -> None:
    sign_in(client, make_staff, "province_admin")
    before = (state(ctx), agency(ctx, "AGC-A"))
    for csrf in ("", "wrong"):
        html(client.post("/console/agencies", data={**GOOD, "csrf": csrf}), 403)
        html(client.post("/console/agencies/AGC-A/edit", data={**GOOD, "csrf": csrf}), 403)
        html(client.post("/console/agencies/AGC-A/deactivate", data={"csrf": csrf}), 403)
    client.cookies.clear()
    sign_in(client, make_staff, "agency_admin")
    csrf = session_csrf(client)
    html(client.post("/console/agencies", data={**GOOD, "csrf": csrf}), 403)
    html(client.post("/console/agencies/AGC-A/deactivate", data={"csrf": csrf}), 403)
    html(client.post("/console/agencies/AGC-B/edit", data={**GOOD, "csrf": csrf}), 404)
    client.cookies.clear()
    sign_in(client, make_staff, "finance")
    html(client.post("/console/agencies/AGC-A/edit", data={**GOOD, "csrf": session_csrf(client)}), 403)
    after = (state(ctx), agency(ctx, "AGC-A"))
    assert before[0] == after[0] and before[1] is not None and after[1] is not None
    assert before[1].version == after[1].version and before[1].name == after[1].name


def test_an_agency_admin_edits_only_their_contacts(
    client: TestClient, ctx: Container, make_staff: MakeStaff, agencies: dict[str, str]
) -> None:
    sign_in(client, make_staff, "agency_admin")
    old = agency(ctx, "AGC-A")
    assert old is not None
    data = {**GOOD, "phone": "0283 999 888", "csrf": session_csrf(client), "lang": "vi"}
    response = client.post("/console/agencies/AGC-A/edit", data=data, follow_redirects=False)
    assert response.status_code == 303, response.text
    new = agency(ctx, "AGC-A")
    assert new is not None
    assert new.phone == "0283 999 888" and new.address == GOOD["address"] and new.email == GOOD["email"]
    # Name, tax code, bank account and methods were in the form but are not theirs to change.
    assert (new.name, new.tax_code, new.bank_account, new.payment_methods) == (
        old.name,
        old.tax_code,
        old.bank_account,
        old.payment_methods,
    )
    assert new.version == old.version + 1
    [row] = audit(ctx, "agency.updated")
    assert row.before["phone"] == "" and row.after["phone"] == "0283 999 888"


def test_province_admin_edits_and_a_taken_tax_code_is_refused(
    client: TestClient, ctx: Container, make_staff: MakeStaff, agencies: dict[str, str]
) -> None:
    sign_in(client, make_staff, "province_admin")
    csrf = session_csrf(client)
    data: dict[str, Any] = {**GOOD, "tax_code": "0100000002", "csrf": csrf}
    html(client.post("/console/agencies/AGC-A/edit", data=data), 409)
    assert audit(ctx, "agency.updated") == []
    data = {**GOOD, "name": "Sở mới", "tax_code": "0100000001", "csrf": csrf}
    assert client.post("/console/agencies/AGC-A/edit", data=data, follow_redirects=False).status_code == 303
    new = agency(ctx, "AGC-A")
    assert new is not None and new.name == "Sở mới" and new.code == "AGC-A"
    [row] = audit(ctx, "agency.updated")
    assert row.before["name"] == "Agency AGC-A" and row.after["name"] == "Sở mới"


def test_deactivation_stops_dossiers_and_payments_and_reactivation_restores_them(
    client: TestClient, ctx: Container, make_staff: MakeStaff, agencies: dict[str, str], api: Api
) -> None:
    dossier = api.post("/v1/dossiers", dossier_body("HS-OLD")).json()
    token = dossier["pay_url"].rsplit("/", 1)[1]
    sign_in(client, make_staff, "province_admin")
    csrf = session_csrf(client)
    version = agency(ctx, "AGC-A").version  # type: ignore[union-attr]
    response = client.post("/console/agencies/AGC-A/deactivate", data={"csrf": csrf}, follow_redirects=False)
    assert response.status_code == 303
    closed = agency(ctx, "AGC-A")
    assert closed is not None and closed.deactivated_at is not None and closed.version == version + 1
    assert len(audit(ctx, "agency.deactivated")) == 1
    # Twice changes nothing and records nothing.
    client.post("/console/agencies/AGC-A/deactivate", data={"csrf": csrf})
    assert len(audit(ctx, "agency.deactivated")) == 1

    refused = api.post("/v1/dossiers", dossier_body("HS-NEW"))
    assert refused.status_code == 409 and refused.json()["code"] == "agency_deactivated"
    assert api.get("/v1/dossiers/HS-OLD").status_code == 200
    page = client.get(f"/pay/{token}?lang=en")
    assert page.status_code == 200 and 'id="agency-closed"' in page.text and 'name="method"' not in page.text

    assert client.post("/console/agencies/AGC-A/reactivate", data={"csrf": csrf}).status_code == 200
    assert agency(ctx, "AGC-A").deactivated_at is None  # type: ignore[union-attr]
    [row] = audit(ctx, "agency.reactivated")
    assert row.before["deactivated_at"] is not None and row.after["deactivated_at"] is None
    assert api.post("/v1/dossiers", dossier_body("HS-NEW")).status_code == 201


def test_list_filters_and_pages(
    client: TestClient, ctx: Container, make_staff: MakeStaff, agencies: dict[str, str]
) -> None:
    with ctx.db.write() as s:
        for i in range(55):
            s.add(Agency(code=f"X-{i:03d}", name=f"Phòng {i}", tax_code=f"{9000000000 + i}", address="a"))
    sign_in(client, make_staff, "province_admin")
    first = client.get("/console/agencies?lang=en")
    html(first, 200)
    assert first.text.count("<tr>") == 1 + 50 and "page=2" in first.text
    second = client.get("/console/agencies?lang=en&page=2")
    assert "X-054" in second.text and "page=3" not in second.text
    found = client.get("/console/agencies?q=agc-b")
    assert "AGC-B" in found.text and "AGC-A<" not in found.text
    assert "X-001" not in client.get("/console/agencies?state=deactivated").text
    for bad in ("page=0", "page=x", "state=gone", "q=" + "a" * 200, "q=%01", "lang=fr"):
        html(client.get(f"/console/agencies?{bad}"), 400)


def png(width: int = 2, height: int = 2) -> bytes:
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    raw = b"".join(b"\x00" + b"\xff\x00\x00" * width for _ in range(height))
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b"")


def truncated_png() -> bytes:
    """A PNG whose signature, IHDR, chunk CRCs and IEND check out but whose compressed pixels stop halfway."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    pixels = zlib.compress(b"".join(b"\x00" + b"\xff\x00\x00" * 40 for _ in range(20)))
    return png(40, 20)[:33] + chunk(b"IDAT", pixels[: len(pixels) // 2]) + chunk(b"IEND", b"")


def test_a_logo_is_accepted_only_when_it_decodes_in_full(monkeypatch: pytest.MonkeyPatch) -> None:
    from PIL import Image, ImageFile

    from payments.agency.logo import accepted_type, logo_type

    # As in the service once WeasyPrint is imported: Pillow itself then fills truncated images in.
    monkeypatch.setattr(ImageFile, "LOAD_TRUNCATED_IMAGES", True)
    assert accepted_type(png()) == "image/png"
    # The header checks alone pass a PNG whose pixels are cut off: the full decode does not.
    assert logo_type(truncated_png()) == "image/png" and accepted_type(truncated_png()) is None
    buffer = io.BytesIO()
    Image.new("RGB", (30, 10), "#0b5cad").save(buffer, "JPEG")
    jpeg = buffer.getvalue()
    assert accepted_type(jpeg) == "image/jpeg"
    cut = jpeg[: len(jpeg) // 2] + b"\xff\xd9"  # the scan cut in half, the end marker put back
    assert logo_type(cut) == "image/jpeg" and accepted_type(cut) is None


def test_logo_upload_checks_the_image_and_stays_within_the_agency(
    client: TestClient, ctx: Container, make_staff: MakeStaff, agencies: dict[str, str]
) -> None:
    sign_in(client, make_staff, "agency_admin")
    csrf = session_csrf(client)

    def send(content: bytes, agency_code: str = "AGC-A", token: str = csrf, name: str = "logo.png") -> Any:
        data = {"csrf": token, "lang": "en", "agency": agency_code}
        return client.post(
            "/console/agencies/logo", data=data, files={"file": (name, content, "image/png")}, follow_redirects=False
        )

    svg = b'<svg xmlns="http://www.w3.org/2000/svg"><script>alert(1)</script></svg>'
    broken_crc = bytearray(png())
    broken_crc[29] ^= 0xFF
    for bad in (
        svg,
        bytes(broken_crc),
        png(5000, 2),
        b"\xff\xd8\xff\xe0" + b"\x00" * 50,
        png() + b"x" * 210_000,
        truncated_png(),
    ):
        html(send(bad, name="logo.svg"), 400)
    html(send(png(), token="wrong"), 403)
    html(send(png(), agency_code="AGC-B"), 404)
    assert count(ctx, "agency_logo") == 0 and audit(ctx, "agency.logo_set") == []
    html(send(b"x" * (400 * 1024)), 413)

    assert send(png()).status_code == 303
    image = client.get("/console/agencies/AGC-A/logo")
    assert image.status_code == 200 and image.headers["content-type"] == "image/png" and image.content == png()
    assert "/console/agencies/AGC-A/logo" in client.get("/console/agencies/AGC-A").text
    [row] = audit(ctx, "agency.logo_set")
    assert row.before is None and row.after["content_type"] == "image/png"
    html(client.get("/console/agencies/AGC-B/logo"), 404)
