"""Delivery of issued documents: the PDF and HTML copies through the API, and the public lookup by lookup code for
payers without an API key (that one document only, rate limited, never cached)."""

from __future__ import annotations

import io
import unicodedata

import pytest
from pypdf import PdfReader
from sqlmodel import select

from invoices.tables import Document
from lephi.jobs import HANDLERS
from payments.agency.models import AgencyLogo
from payments.core.ratelimit import RateLimiter
from payments.outbox.worker import Worker
from tests.conftest import Api
from tests.factories import dossier_body, payment_body, sandbox_outcome
from tests.invoices.test_render import png


def _issued(api: Api, payer: str = "Nguyễn Thị Hồng Ánh") -> Document:
    body = dossier_body(copies=3)
    body["payer"]["name"] = payer
    code = api.post("/v1/dossiers", body).json()["code"]
    payment = api.post("/v1/payments", payment_body(code)).json()
    sandbox_outcome(api.client, api.ctx.settings, payment["gateway_reference"], "success")
    Worker(api.ctx, HANDLERS).run_once()
    with api.ctx.db.read() as s:
        return s.exec(select(Document).where(Document.payment_id == payment["id"])).one()


def _pdf_text(data: bytes) -> str:
    return unicodedata.normalize("NFC", "".join(page.extract_text() for page in PdfReader(io.BytesIO(data)).pages))


def test_the_api_serves_a_pdf_with_the_vietnamese_payer_and_amount_in_words(api: Api) -> None:
    doc = _issued(api)
    r = api.get(f"/v1/receipts/{doc.id}.pdf")
    assert r.status_code == 200 and r.headers["content-type"] == "application/pdf"
    assert f"{doc.template}{doc.series}-{doc.number:08d}.pdf" in r.headers["content-disposition"]
    text = _pdf_text(r.content)
    assert "Nguyễn Thị Hồng Ánh" in text
    assert "Một trăm mười lăm nghìn đồng" in text
    assert doc.lookup_code in text
    meta = api.get(f"/v1/receipts/{doc.id}").json()
    assert meta["pdf_url"] == f"/v1/receipts/{doc.id}.pdf" and meta["lookup_url"].endswith(f"/r/{doc.lookup_code}")


def test_the_api_html_view_in_both_languages_and_auth_is_required(api: Api) -> None:
    doc = _issued(api)
    vi = api.get(f"/v1/receipts/{doc.id}.html")
    en = api.get(f"/v1/receipts/{doc.id}.html", params={"lang": "en"})
    assert vi.status_code == en.status_code == 200
    assert "Người nộp" in vi.text and "Payer" in en.text and "Nguyễn Thị Hồng Ánh" in en.text
    assert api.client.get(f"/v1/receipts/{doc.id}.pdf").status_code == 401
    assert api.client.get(f"/v1/receipts/{doc.id}.html").status_code == 401
    assert api.get(f"/v1/receipts/{doc.id}.html", params={"lang": "fr"}).status_code == 422
    assert api.get("/v1/receipts/doc_ffffffffffffffffffffffff.pdf").status_code == 404


def test_a_payer_looks_up_the_receipt_by_its_code(api: Api) -> None:
    doc = _issued(api)
    other = _issued(api, payer="Trần Văn Bình")
    r = api.client.get(f"/r/{doc.lookup_code}")
    assert r.status_code == 200, r.text
    assert "Nguyễn Thị Hồng Ánh" in r.text and "Một trăm mười lăm nghìn đồng" in r.text
    assert f"{doc.number:08d}" in r.text
    assert "Trần Văn Bình" not in r.text and other.lookup_code not in r.text
    assert r.headers["cache-control"] == "no-store" and r.headers["x-robots-tag"] == "noindex"
    assert f'href="/r/{doc.lookup_code}.pdf"' in r.text and f'href="/r/{doc.lookup_code}.xml"' in r.text
    xml = api.client.get(f"/r/{doc.lookup_code}.xml")
    assert xml.status_code == 200 and xml.content == doc.xml  # the signed original, byte for byte
    pdf = api.client.get(f"/r/{doc.lookup_code}.pdf")
    assert pdf.status_code == 200 and "Nguyễn Thị Hồng Ánh" in _pdf_text(pdf.content)


def _pdf_images(data: bytes) -> list[tuple[int, int]]:
    return [image.image.size for page in PdfReader(io.BytesIO(data)).pages for image in page.images if image.image]


def test_every_view_of_a_receipt_shows_the_agency_logo_and_the_signed_xml_stays_as_issued(api: Api) -> None:
    doc = _issued(api)
    logo = png(40, 20)
    with api.ctx.db.write() as s:
        s.add(AgencyLogo(agency_id=doc.agency_id, content_type="image/png", data=logo, sha256="-"))
    shown = 'src="data:image/png;base64,iVBORw0KGgo'
    assert shown in api.client.get(f"/r/{doc.lookup_code}").text
    assert shown in api.get(f"/v1/receipts/{doc.id}.html").text
    assert _pdf_images(api.client.get(f"/r/{doc.lookup_code}.pdf").content) == [(40, 20)]
    assert _pdf_images(api.get(f"/v1/receipts/{doc.id}.pdf").content) == [(40, 20)]
    assert api.client.get(f"/r/{doc.lookup_code}.xml").content == doc.xml  # presentation only
    # A stored logo that is not a PNG or JPEG (written before the upload checked it) is left out, not shown.
    with api.ctx.db.write() as s:
        row = s.get(AgencyLogo, doc.agency_id)
        assert row is not None
        row.data = b'<svg xmlns="http://www.w3.org/2000/svg"><script>alert(1)</script></svg>'
    page = api.client.get(f"/r/{doc.lookup_code}")
    assert page.status_code == 200 and "<img" not in page.text and "alert" not in page.text
    assert _pdf_images(api.get(f"/v1/receipts/{doc.id}.pdf").content) == []


def test_codes_are_accepted_as_people_type_them(api: Api) -> None:
    doc = _issued(api)
    code = doc.lookup_code
    typed = f" {code[:4].lower()}-{code[4:8]} {code[8:].lower()}"
    form = api.client.get("/r", params={"code": typed, "lang": "en"}, follow_redirects=False)
    assert form.status_code == 303 and form.headers["location"] == f"/r/{code}?lang=en"
    assert api.client.get(f"/r/{code.lower()}").status_code == 200
    assert api.client.get(f"/r/{code[:4]}-{code[4:8]}-{code[8:]}").status_code == 200


@pytest.mark.parametrize(
    "code",
    ["AAAAAAAAAAAA", "SHORT", "IIIIIIIIIIII", "<script>alert(1)<", "A" * 40, "ABCDEFGHJKM0"],
    ids=["unknown", "short", "look-alike-letters", "markup", "long", "zero"],
)
def test_unknown_and_malformed_codes_get_the_same_not_found_page(api: Api, code: str) -> None:
    _issued(api)
    for path in (f"/r/{code}", f"/r/{code}.pdf", f"/r/{code}.xml"):
        r = api.client.get(path)
        assert r.status_code == 404, path
        assert "Không tìm thấy biên lai" in r.text
        assert "<script>alert" not in r.text


def test_lookups_are_rate_limited_per_address(api: Api) -> None:
    doc = _issued(api)
    api.ctx.lookup_limiter.per_minute = 3
    statuses = [api.client.get(f"/r/{doc.lookup_code}").status_code for _ in range(3)]
    statuses.append(api.client.get("/r/AAAAAAAAAAAA").status_code)
    assert statuses == [200, 200, 200, 429]
    blocked = api.client.get(f"/r/{doc.lookup_code}.xml")
    assert blocked.status_code == 429 and 1 <= int(blocked.headers["retry-after"]) <= 60
    assert "Bạn đã tra cứu quá nhiều lần" in blocked.text and doc.xml.decode() not in blocked.text


def test_the_rate_limiter_window_slides() -> None:
    now = [1000.0]
    limiter = RateLimiter(2, clock=lambda: now[0], max_clients=2)
    assert limiter.hit("a") is None and limiter.hit("a") is None
    assert limiter.hit("a") == pytest.approx(60.0)
    assert limiter.hit("b") is None  # another address has its own count
    now[0] += 30
    assert limiter.hit("a") == pytest.approx(30.0)
    now[0] += 30.5
    assert limiter.hit("a") is None
    now[0] += 120
    assert limiter.hit("c") is None  # the idle clients were forgotten to make room
    assert set(limiter._hits) <= {"a", "c"}


def test_the_lookup_form_in_both_languages(api: Api) -> None:
    vi = api.client.get("/r")
    en = api.client.get("/r", params={"lang": "en"})
    assert "Tra cứu biên lai điện tử" in vi.text and "Look up an e-receipt" in en.text
    assert 'name="code"' in vi.text
