"""The fee schedule pages: the template and export (a round trip through import), an upload previewed with its
differences and applied exactly as previewed, undo before the effective day, roles (finance and viewers read only),
another agency's imports and versions answering 404, CSRF, and malformed files (a zip that is not XLSX, a CSV that is
not UTF-8, formula cells, too many rows, too large) answered by a 4xx page that stores nothing."""

from __future__ import annotations

import io
import re
import zipfile
from datetime import timedelta

from fastapi.testclient import TestClient
from openpyxl import Workbook, load_workbook  # type: ignore[import-untyped]
from sqlalchemy import select

from console.audit.models import AuditLog
from console.fees import pages
from console.fees.sheet import COLUMNS
from lephi.container import Container
from payments.agency.models import Agency, FeeScheduleLine, FeeScheduleVersion
from tests.conftest import Api
from tests.console.conftest import MakeStaff, count
from tests.console.test_admin_pages import html, session_csrf, sign_in
from tests.factories import PROCEDURE, dossier_body

HEADER = ",".join(COLUMNS)
# AGC-A's schedule today: LE_PHI 100,000 and BAN_SAO 5,000. This one changes LE_PHI, drops BAN_SAO, adds GUI_KQ and a
# new procedure.
NEW_CSV = (
    HEADER
    + "\r\n"
    + f"{PROCEDURE},Thủ tục thử nghiệm,LE_PHI,le_phi,Lệ phí,Thông tư 1/2026,120000,hồ sơ,1,1\r\n"
    + f"{PROCEDURE},Thủ tục thử nghiệm,GUI_KQ,service,Gửi kết quả,,25000,lần,0,1\r\n"
    + "2.000815,Chứng thực bản sao,TRANG,le_phi,Lệ phí chứng thực (mỗi trang),,2000,trang,1,200\r\n"
)
TOKEN = re.compile(r"/console/fees/import/([A-Za-z0-9_-]+)/apply")


def tomorrow() -> str:
    return (pages.today() + timedelta(days=1)).isoformat()


def upload(
    client: TestClient,
    csrf: str,
    content: bytes,
    name: str = "phi.csv",
    day: str | None = None,
    agency: str = "AGC-A",
) -> object:
    data = {"csrf": csrf, "lang": "en", "agency": agency, "effective_from": day or tomorrow()}
    return client.post(
        "/console/fees/import", data=data, files={"file": (name, content, "text/csv")}, follow_redirects=False
    )


def stored(ctx: Container) -> tuple[int, int, int, int]:
    with ctx.db.read() as s:
        changes = s.execute(select(AuditLog.id).where(AuditLog.action.in_(["import.uploaded", "fees.applied"]))).all()  # type: ignore[attr-defined]
    return count(ctx, "fee_import"), count(ctx, "fee_schedule_version"), count(ctx, "fee_schedule_line"), len(changes)


def actions(ctx: Container, action: str) -> list[AuditLog]:
    with ctx.db.read() as s:
        return list(s.execute(select(AuditLog).where(AuditLog.action == action)).scalars())


def xlsx(rows: list[list[object]]) -> bytes:
    book = Workbook()
    sheet = book.active
    for row in rows:
        sheet.append(row)
    out = io.BytesIO()
    book.save(out)
    return out.getvalue()


def test_upload_preview_apply_and_undo(
    client: TestClient, ctx: Container, make_staff: MakeStaff, agencies: dict[str, str], api: Api
) -> None:
    sign_in(client, make_staff, "agency_admin")
    csrf = session_csrf(client)
    response = upload(client, csrf, ("\ufeff" + NEW_CSV).encode())
    assert response.status_code == 303, response.text  # type: ignore[attr-defined]
    assert len(actions(ctx, "import.uploaded")) == 1 and count(ctx, "fee_schedule_version") == 0
    preview = client.get(response.headers["location"])  # type: ignore[attr-defined]
    html(preview, 200)
    text = preview.text
    assert 'class="line-changed"><td><code>LE_PHI' in text and "100,000" in text and "120,000" in text
    assert 'class="line-removed"><td><code>BAN_SAO' in text and 'class="line-added"><td><code>GUI_KQ' in text
    assert 'class="diff-added"' in text and "2.000815" in text
    token = TOKEN.search(text)
    assert token

    # Wrong token, wrong CSRF: nothing applied.
    html(client.post(f"/console/fees/import/{token.group(1)}/apply", data={"csrf": "no"}), 403)
    html(client.post("/console/fees/import/unknown/apply", data={"csrf": csrf}), 404)
    assert count(ctx, "fee_schedule_version") == 0

    applied = client.post(
        f"/console/fees/import/{token.group(1)}/apply", data={"csrf": csrf, "lang": "en"}, follow_redirects=False
    )
    assert applied.status_code == 303, applied.text
    with ctx.db.read() as s:
        version = s.execute(select(FeeScheduleVersion)).scalars().one()
        lines = s.execute(select(FeeScheduleLine).where(FeeScheduleLine.version_id == version.id)).scalars().all()
    assert sorted(line.code for line in lines) == ["GUI_KQ", "LE_PHI", "TRANG"]
    assert {line.code: line.legal_basis for line in lines}["LE_PHI"] == "Thông tư 1/2026"
    [row] = actions(ctx, "fees.applied")
    assert row.after["lines"] == 3 and row.after["effective_from"] == tomorrow()
    # Applying again: the preview is used up.
    html(client.post(f"/console/fees/import/{token.group(1)}/apply", data={"csrf": csrf}), 404)
    # Today's dossiers keep today's price.
    assert api.post("/v1/dossiers", dossier_body("HS-TODAY", copies=0)).json()["total_amount"] == 100_000

    page = client.get("/console/fees?lang=en")
    html(page, 200)
    assert "Not in force yet" in page.text and f"/console/fees/versions/{version.id}/undo" in page.text
    html(client.post(f"/console/fees/versions/{version.id}/undo", data={"csrf": "bad"}), 403)
    undone = client.post(f"/console/fees/versions/{version.id}/undo", data={"csrf": csrf}, follow_redirects=False)
    assert undone.status_code == 303
    assert count(ctx, "fee_schedule_version") == 0
    assert [r.before["effective_from"] for r in actions(ctx, "fees.undone")] == [tomorrow()]


def test_a_version_in_force_cannot_be_undone(
    client: TestClient, ctx: Container, make_staff: MakeStaff, agencies: dict[str, str]
) -> None:
    sign_in(client, make_staff, "province_admin")
    csrf = session_csrf(client)
    response = upload(client, csrf, NEW_CSV.encode(), day=pages.today().isoformat())
    token = TOKEN.search(client.get(response.headers["location"]).text)  # type: ignore[attr-defined]
    assert token
    client.post(f"/console/fees/import/{token.group(1)}/apply", data={"csrf": csrf})
    with ctx.db.read() as s:
        version = s.execute(select(FeeScheduleVersion)).scalars().one()
    html(client.post(f"/console/fees/versions/{version.id}/undo", data={"csrf": csrf}), 409)
    assert count(ctx, "fee_schedule_version") == 1 and actions(ctx, "fees.undone") == []
    # A past day is refused at upload.
    yesterday = (pages.today() - timedelta(days=1)).isoformat()
    html(upload(client, csrf, NEW_CSV.encode(), day=yesterday), 400)  # type: ignore[arg-type]


def test_export_round_trips_and_templates(
    client: TestClient, ctx: Container, make_staff: MakeStaff, agencies: dict[str, str]
) -> None:
    sign_in(client, make_staff, "viewer")
    for ext in ("csv", "xlsx"):
        template = client.get(f"/console/fees/template.{ext}")
        assert template.status_code == 200 and "attachment" in template.headers["content-disposition"]
    exported = client.get("/console/fees/export.xlsx")
    assert exported.status_code == 200
    rows = list(load_workbook(io.BytesIO(exported.content)).active.iter_rows(values_only=True))
    assert rows[0] == COLUMNS and {r[2] for r in rows[1:]} == {"LE_PHI", "BAN_SAO"}
    csv_export = client.get("/console/fees/export.csv").content
    assert csv_export.startswith(b"\xef\xbb\xbf") and b"LE_PHI" in csv_export
    html(client.post("/console/fees/import", data={"csrf": session_csrf(client)}), 403)
    client.cookies.clear()

    sign_in(client, make_staff, "agency_admin")
    csrf = session_csrf(client)
    for content, name in ((exported.content, "phi.xlsx"), (csv_export, "phi.csv")):
        response = upload(client, csrf, content, name=name)
        preview = client.get(response.headers["location"])  # type: ignore[attr-defined]
        html(preview, 200)
        assert "line-changed" not in preview.text and "line-added" not in preview.text
        assert preview.text.count('class="line-same"') == 2


def test_roles_and_isolation(
    client: TestClient, ctx: Container, make_staff: MakeStaff, agencies: dict[str, str]
) -> None:
    sign_in(client, make_staff, "approver")
    html(client.get("/console/fees"), 403)
    client.cookies.clear()
    sign_in(client, make_staff, "agency_admin", agency="AGC-B")
    csrf_b = session_csrf(client)
    response = upload(client, csrf_b, NEW_CSV.encode(), agency="AGC-B")
    b_token = response.headers["location"].split("/")[-1].split("?")[0]  # type: ignore[attr-defined]
    client.cookies.clear()

    sign_in(client, make_staff, "finance")
    page = client.get("/console/fees?lang=en")
    html(page, 200)
    assert 'action="/console/fees/import"' not in page.text
    html(client.get("/console/fees?agency=AGC-B"), 404)
    client.cookies.clear()

    sign_in(client, make_staff, "agency_admin")
    csrf = session_csrf(client)
    before = stored(ctx)
    html(client.get("/console/fees?agency=AGC-B"), 404)
    html(client.get("/console/fees/export.csv?agency=AGC-B"), 404)
    html(upload(client, csrf, NEW_CSV.encode(), agency="AGC-B"), 404)  # type: ignore[arg-type]
    html(client.get(f"/console/fees/import/{b_token}"), 404)
    html(client.post(f"/console/fees/import/{b_token}/apply", data={"csrf": csrf}), 404)
    for csrf_value in ("", "wrong"):
        html(upload(client, csrf_value, NEW_CSV.encode()), 403)  # type: ignore[arg-type]
    assert stored(ctx) == before
    with ctx.db.write() as s:
        from payments.agency.schedule import FeeSchedule
        from payments.agency.versions import add_version

        b = s.execute(select(Agency).where(Agency.code == "AGC-B")).scalars().one()
        rows = {
            "procedures": [
                {"code": "P1", "name": "P", "fees": [{"code": "F", "kind": "phi", "name": "F", "amount": 1}]}
            ]
        }
        version = add_version(s, b.id, FeeSchedule.model_validate(rows), pages.today() + timedelta(days=3), "b", "x")
        version_id = version.id
    html(client.post(f"/console/fees/versions/{version_id}/undo", data={"csrf": csrf}), 404)
    html(client.post("/console/fees/versions/99999/undo", data={"csrf": csrf}), 404)
    assert count(ctx, "fee_schedule_version") == 1


def _zip_not_xlsx() -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as archive:
        archive.writestr("hello.txt", "not a workbook")
    return out.getvalue()


def test_malformed_files_are_refused_and_nothing_is_stored(
    client: TestClient, ctx: Container, make_staff: MakeStaff, agencies: dict[str, str]
) -> None:
    sign_in(client, make_staff, "agency_admin")
    csrf = session_csrf(client)
    row = f"{PROCEDURE},Thủ tục,LE_PHI,le_phi,Lệ phí,,1000,,1,1"
    header_rows = [list(COLUMNS), [PROCEDURE, "Thủ tục", "LE_PHI", "le_phi", "Lệ phí", "", "=100*2", "", 1, 1]]
    cases: list[tuple[bytes, str, str]] = [
        (_zip_not_xlsx(), "phi.xlsx", "not a readable XLSX"),
        (b"PK\x03\x04garbage" * 10, "phi.xlsx", "not a readable XLSX"),
        ((HEADER + "\nP1,Th\xe1 t\xfac,F,phi,X,,1000,,1,1").encode("latin-1"), "phi.csv", "not UTF-8"),
        (xlsx(header_rows), "phi.xlsx", "Row 2, column unit_amount: The cell holds a formula"),
        ((HEADER + "\n" + row.replace("1000", "=1+1")).encode(), "phi.csv", "holds a formula"),
        ((HEADER + "\n" + row.replace("1000", "-5")).encode(), "phi.csv", "Row 2, column unit_amount: Negative"),
        ((HEADER + "\n" + row.replace("1000", "12.5")).encode(), "phi.csv", "whole positive number"),
        ((HEADER + "\n" + row.replace("le_phi", "tax")).encode(), "phi.csv", "Row 2, column fee_kind"),
        ((HEADER + "\n" + row + "\n" + row).encode(), "phi.csv", "Row 3, column fee_code: This fee code already"),
        ((HEADER.replace(",fee_kind", "") + "\n" + row).encode(), "phi.csv", "fee_kind: A required column"),
        (
            (HEADER + "\n" + "\n".join(row.replace("LE_PHI", f"F{i}") for i in range(5001))).encode(),
            "phi.csv",
            "too many rows",
        ),
        ((HEADER + "\n").encode() + b"x" * (2 * 1024 * 1024 + 10), "phi.csv", "larger than 2 MB"),
        (b"\x00\x01binary", "phi.bin", "not a readable XLSX"),
        (b"", "phi.csv", "no header row"),
    ]
    before = stored(ctx)
    for content, name, message in cases:
        response = upload(client, csrf, content, name=name)
        html(response, 400)
        assert message in response.text, (name, message, response.text[-1500:])  # type: ignore[attr-defined]
    html(upload(client, csrf, NEW_CSV.encode(), day="2026-13-45"), 400)  # type: ignore[arg-type]
    # Far over the limit: the request-size guard answers before the form is read.
    huge = upload(client, csrf, b"x" * (3 * 1024 * 1024))
    html(huge, 413)
    assert stored(ctx) == before
