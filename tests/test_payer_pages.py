"""The payer's pages as a browser sees them, without a browser: every refusal is a page in the payer's language
with the right status (API clients keep problem+json), the pending page's status address, the attempt in progress
with "pay another way", the language kept through the gateway, money and dates in each language, the agency's
contacts, the dossier search (/tra-cuu) and the VietQR page."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func
from sqlmodel import select

from lephi.jobs import HANDLERS
from payments.outbox.worker import Worker
from payments.payment.models import Payment
from tests.conftest import Api, agency_api
from tests.factories import dossier_body, page_form, sandbox_outcome
from tests.test_cards import card_api, localstripe

__all__ = ["card_api", "localstripe"]  # fixtures shared with tests/test_cards.py
CSRF = re.compile(r'name="csrf" value="([^"]+)"')
FORM_KEY = re.compile(r'name="form_key" value="([^"]+)"')
BROWSER = {"Accept": "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"}
VIETQR = """
[agencies."AGC-Q".vietqr]
bank_bin = "970436"
account_number = "0011001234567"
account_name = "SO TU PHAP TINH DEMO"
reference_secret = "reference-secret-0123456789abcdef"
notification_secret = "notification-secret-0123456789"
"""


@pytest.fixture
def qr_api(database_url: str, tmp_path: Path) -> Iterator[Api]:
    """An agency that takes the sandbox and VietQR, with its contacts filled in."""
    with agency_api(database_url, tmp_path, "AGC-Q", ["sandbox", "vietqr"], VIETQR) as api:
        yield api


def _local(url: str) -> str:
    return url.replace("http://testserver", "")


def _dossier(api: Api, code: str | None = None) -> tuple[str, str]:
    """(the dossier's code, its pay page's path)."""
    body = api.post("/v1/dossiers", dossier_body(code)).json()
    return body["code"], _local(body["pay_url"])


def _form(api: Api, url: str, method: str = "sandbox") -> dict[str, str]:
    page = api.client.get(url)
    key, token = FORM_KEY.search(page.text), CSRF.search(page.text)
    assert key and token, page.text
    return {"method": method, "form_key": key.group(1), "csrf": token.group(1)}


def _payments(api: Api) -> list[Payment]:
    with api.ctx.db.read() as s:
        return list(s.exec(select(Payment).order_by(Payment.created_at)).all())  # type: ignore[arg-type]


def _count(api: Api) -> int:
    with api.ctx.db.read() as s:
        return int(s.exec(select(func.count()).select_from(Payment)).one())


def _is_page(r: Any, status: int, code: str) -> None:
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("text/html"), r.headers["content-type"]
    assert f'data-code="{code}"' in r.text, r.text
    assert r.text.count("\n<main>\n") == 1 and 'id="help"' in r.text


def _start(api: Api, url: str, method: str = "sandbox") -> Payment:
    r = api.client.post(url, data=_form(api, url, method), follow_redirects=False)
    assert r.status_code == 303, r.text
    return _payments(api)[-1]


# --- 1. refusals are pages ------------------------------------------------------------------------------------------


def test_an_unknown_link_is_a_page_in_each_language_and_an_api_client_keeps_problem_json(api: Api) -> None:
    vi = api.client.get("/pay/no-such-token-0123456789")
    en = api.client.get("/pay/no-such-token-0123456789?lang=en")
    _is_page(vi, 404, "not_found")
    _is_page(en, 404, "not_found")
    assert "Không tìm thấy trang" in vi.text and '<html lang="vi">' in vi.text
    assert "Page not found" in en.text and '<html lang="en">' in en.text
    assert 'href="/tra-cuu?lang=en"' in en.text  # what to do next: find the dossier
    # Control characters, an over-long token, an unknown QR reference: the same 404 page, never a 5xx.
    for path in ("/pay/%01%02abcdefgh", "/pay/" + "x" * 300, "/pay/qr/NOPE0000", "/sandbox/pay/nope"):
        _is_page(api.client.get(path), 404, "not_found")
    # The API answers problem+json, unless the caller is a browser that prefers HTML.
    api_404 = api.get("/v1/payments/pay_nope")
    assert api_404.status_code == 404 and api_404.headers["content-type"] == "application/problem+json"
    assert api.get("/v1/payments/pay_nope", headers={"Accept": "*/*"}).json()["code"] == "not_found"
    assert api.get("/v1/payments/pay_nope", headers={"Accept": "application/json, text/html;q=0.5"}).json()
    _is_page(api.get("/v1/payments/pay_nope", headers=BROWSER), 404, "not_found")


def test_no_method_chosen_or_a_tampered_form_is_a_422_page_and_starts_nothing(api: Api) -> None:
    _, url = _dossier(api)
    form = _form(api, url)
    no_method = api.client.post(url + "?lang=en", data={k: v for k, v in form.items() if k != "method"})
    _is_page(no_method, 422, "validation_error")
    assert "choose a payment method" in no_method.text
    assert f'href="{url}?lang=en"' in no_method.text  # back to this dossier's page
    short_key = api.client.post(url, data={**form, "form_key": "x"})
    _is_page(short_key, 422, "validation_error")
    huge = api.client.post(url, data={**form, "method": "s" * 5000})
    _is_page(huge, 422, "validation_error")
    control = api.client.post(url, data={**form, "method": "sand\x00box"})
    assert control.status_code in (400, 422) and control.headers["content-type"].startswith("text/html")
    assert _count(api) == 0


def test_a_method_the_agency_has_not_enabled_is_a_page(api: Api) -> None:
    _, url = _dossier(api)
    r = api.client.post(url + "?lang=en", data=_form(api, url, method="vnpay"))
    _is_page(r, 422, "method_not_enabled")
    assert "choose another method" in r.text
    assert _count(api) == 0


def test_a_dossier_paid_from_an_older_tab_is_a_409_page_and_nothing_more_is_charged(api: Api) -> None:
    _, url = _dossier(api)
    first_tab, second_tab = _form(api, url), _form(api, url)
    payment = _start(api, url)
    sandbox_outcome(api.client, api.ctx.settings, payment.gateway_reference or "", "success")
    r = api.client.post(url, data=second_tab)
    _is_page(r, 409, "dossier_not_payable")
    assert "đã được thanh toán" in r.text
    # The first tab's form again (the browser's back cache): the same page, no new attempt.
    _is_page(api.client.post(url, data=first_tab), 409, "dossier_not_payable")
    assert _count(api) == 1


def test_a_form_resent_from_the_back_cache_lands_on_the_dossier_page(api: Api) -> None:
    _, url = _dossier(api)
    form = _form(api, url)
    payment = _start_with(api, url, form)
    sandbox_outcome(api.client, api.ctx.settings, payment.gateway_reference or "", "decline")
    again = api.client.post(url, data=form, follow_redirects=False)
    assert again.status_code == 303 and again.headers["location"] == f"{url}?lang=vi"
    assert _count(api) == 1


def test_a_kept_form_sent_again_with_another_choice_is_a_page(qr_api: Api) -> None:
    _, url = _dossier(qr_api)
    form = _form(qr_api, url)
    _start_with(qr_api, url, form)
    other = qr_api.client.post(url + "?lang=en", data={**form, "method": "vietqr"})
    _is_page(other, 422, "idempotency_key_reused")
    assert _count(qr_api) == 1


def _start_with(api: Api, url: str, form: dict[str, str]) -> Payment:
    r = api.client.post(url, data=form, follow_redirects=False)
    assert r.status_code == 303, r.text
    return _payments(api)[-1]


def test_a_get_on_a_form_address_and_an_oversized_body_are_pages(api: Api) -> None:
    _, url = _dossier(api)
    wrong_verb = api.client.get(url + "/cancel")
    assert wrong_verb.status_code == 405 and wrong_verb.headers["content-type"].startswith("text/html")
    big = api.client.post(
        url, content=b"method=" + b"a" * 200_000, headers={"Content-Type": "application/x-www-form-urlencoded"}
    )
    assert big.status_code == 413 and big.headers["content-type"].startswith("text/html")
    assert _count(api) == 0


# --- 2. the pending page updates itself -----------------------------------------------------------------------------


def _status(api: Api, url: str) -> dict[str, Any]:
    r = api.client.get(url.split("?", maxsplit=1)[0] + "/status")
    assert r.status_code == 200 and r.headers["content-type"] == "application/json"
    assert r.headers["cache-control"] == "no-store"
    return dict(r.json())


def test_the_status_address_follows_the_dossier_from_unpaid_to_the_issued_receipt(api: Api) -> None:
    _, url = _dossier(api)
    assert _status(api, url) == {"state": "unpaid:", "status": "unpaid", "receipt_code": None}
    unpaid = api.client.get(url)
    assert "data-poll" not in unpaid.text and 'http-equiv="refresh"' not in unpaid.text
    payment = _start(api, url)
    assert _status(api, url)["status"] == "pending"
    pending = api.client.get(url)
    # Polled by the page's script, refreshed without one; the status region is announced.
    assert f'data-poll="{url}/status"' in pending.text and 'data-state="pending:"' in pending.text
    assert '<noscript><meta http-equiv="refresh" content="15"></noscript>' in pending.text
    assert 'role="status" aria-live="polite"' in pending.text
    sandbox_outcome(api.client, api.ctx.settings, payment.gateway_reference or "", "success")
    assert _status(api, url) == {"state": "paid:", "status": "paid", "receipt_code": None}
    paid = api.client.get(url + "?lang=en")
    assert "The dossier fee is paid" in paid.text and 'id="receipt-waiting"' in paid.text
    assert f'id="paid-reference">{payment.id}<' in paid.text and "VND\u00a0110,000" in paid.text
    assert "will be sent" not in paid.text and "sẽ được gửi" not in api.client.get(url).text
    assert "data-poll" in paid.text  # still waiting for the receipt
    Worker(api.ctx, HANDLERS).run_once()
    issued = _status(api, url)
    code = issued["receipt_code"]
    assert issued["status"] == "paid" and code and issued["state"] == f"paid:{code}"
    done = api.client.get(url)
    assert "data-poll" not in done.text
    for link in (f"/r/{code}?lang=vi", f"/r/{code}.pdf", f"/r/{code}.xml"):
        assert f'href="{link}"' in done.text
    assert f'id="receipt-code">{code}<' in done.text
    assert api.client.get(f"/r/{code}.xml").status_code == 200


def test_the_status_address_of_an_unknown_link_is_a_json_404(api: Api) -> None:
    r = api.client.get("/pay/no-such-token-0123456789/status")
    assert r.status_code == 404 and r.headers["content-type"] == "application/problem+json"


# --- 3. the attempt in progress: continue, or pay another way -------------------------------------------------------


def test_a_live_attempt_offers_to_continue_or_to_pay_another_way(api: Api) -> None:
    _, url = _dossier(api)
    payment = _start(api, url)
    page = api.client.get(url + "?lang=en")
    assert 'id="live-attempt"' in page.text and "Continue your payment" in page.text
    assert f'href="{_local(payment.next_url or "")}?lang=en"' in _local(page.text)  # the gateway page, in English
    assert 'name="form_key"' not in page.text  # no second payment form while one is live
    cancel = api.client.post(url + "/cancel", data=page_form(page.text, payment_id=payment.id), follow_redirects=False)
    assert cancel.status_code == 303 and cancel.headers["location"] == f"{url}?lang=vi"
    assert _payments(api)[-1].status.value == "cancelled"
    again = api.client.get(url)
    assert 'name="form_key"' in again.text and 'id="live-attempt"' not in again.text
    second = _start(api, url)
    assert second.id != payment.id and second.status.value == "pending"


def test_pay_another_way_needs_its_token_and_the_dossiers_own_attempt(api: Api) -> None:
    _, url = _dossier(api)
    _, other_url = _dossier(api)
    payment = _start(api, url)
    other = _start(api, other_url)
    page = api.client.get(url)
    refused = api.client.post(url + "/cancel", data={"payment_id": payment.id})
    assert refused.status_code == 403 and "Biểu mẫu" in refused.text
    forged = api.client.post(url + "/cancel", data={"payment_id": payment.id, "csrf": "0" * 64})
    assert forged.status_code == 403
    # Another dossier's attempt named from this dossier's form: the same 404 as an unknown one.
    _is_page(api.client.post(url + "/cancel", data=page_form(page.text, payment_id=other.id)), 404, "not_found")
    _is_page(api.client.post(url + "/cancel", data=page_form(page.text, payment_id="pay_nope")), 404, "not_found")
    bad = api.client.post(url + "/cancel", data=page_form(page.text, payment_id="p" * 500))
    assert bad.status_code == 422 and bad.headers["content-type"].startswith("text/html")
    assert [p.status.value for p in _payments(api)] == ["pending", "pending"]


def test_pay_another_way_after_the_money_was_taken_keeps_the_payment(api: Api) -> None:
    _, url = _dossier(api)
    payment = _start(api, url)
    page = api.client.get(url)  # an older tab, still showing the live attempt
    sandbox_outcome(api.client, api.ctx.settings, payment.gateway_reference or "", "success")
    r = api.client.post(url + "/cancel", data=page_form(page.text, payment_id=payment.id))
    _is_page(r, 409, "invalid_transition")
    assert _payments(api)[-1].status.value == "succeeded"


# --- 4. language, money and dates ---------------------------------------------------------------------------------


def test_the_language_goes_to_the_gateway_and_comes_back(api: Api) -> None:
    _, url = _dossier(api)
    english = api.client.get(url + "?lang=en")
    form = {"method": "sandbox", **dict(zip(("form_key", "csrf"), _keys(english.text), strict=True))}
    r = api.client.post(url + "?lang=en", data=form, follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"].endswith("?lang=en")
    gateway = api.client.get(_local(r.headers["location"]), headers={"Accept-Language": "vi"})
    assert '<html lang="en">' in gateway.text and "Test payment gateway" in gateway.text
    assert "?lang=en" in re.findall(r'<form method="post" action="([^"]+)"', gateway.text)[0]
    back = api.client.post(
        re.findall(r'<form method="post" action="([^"]+)"', gateway.text)[0],
        data=page_form(gateway.text, outcome="success"),
        follow_redirects=False,
    )
    assert back.status_code == 303 and back.headers["location"].endswith(f"{url}?lang=en")


def _keys(html: str) -> tuple[str, str]:
    key, token = FORM_KEY.search(html), CSRF.search(html)
    assert key and token
    return key.group(1), token.group(1)


def test_money_and_dates_in_each_language_and_vietnamese_names_marked(api: Api) -> None:
    _, url = _dossier(api)
    vi, en = api.client.get(url), api.client.get(url + "?lang=en")
    assert 'id="total">110.000\u00a0₫<' in vi.text and 'Thanh toán <span class="money">110.000\u00a0₫' in vi.text
    assert 'id="total">VND\u00a0110,000<' in en.text and 'Pay <span class="money">VND\u00a0110,000' in en.text
    # Vietnamese names inside an English page say so; a Vietnamese page needs no mark.
    assert '<td lang="vi">Agency AGC-A</td>' in en.text and '<span lang="vi">Thủ tục thử nghiệm</span>' in en.text
    assert '<td lang="vi">Lệ phí</td>' in en.text and "<td>Agency AGC-A</td>" in vi.text
    _start(api, url)
    started = api.client.get(url + "?lang=en").text
    assert re.search(r"Started \d{1,2} [A-Z][a-z]{2} \d{4}, \d\d:\d\d", started), started
    assert re.search(r"Bắt đầu lúc \d\d/\d\d/\d{4} \d\d:\d\d", api.client.get(url).text)


# --- 5. /tra-cuu: find my dossier -----------------------------------------------------------------------------------


def _find(client: TestClient, code: str, secret: str, lang: str = "vi", **kw: Any) -> Any:
    page = client.get(f"/tra-cuu?lang={lang}")
    assert page.status_code == 200 and 'for="secret"' in page.text
    return client.post(f"/tra-cuu?lang={lang}", data=page_form(page.text, code=code, secret=secret), **kw)


def test_the_dossier_code_and_its_secret_open_the_pay_page(api: Api) -> None:
    dossier = api.post("/v1/dossiers", dossier_body("HS-TIM-1")).json()
    secret = dossier["pay_secret"]
    assert re.fullmatch(r"[2-9A-HJKMNP-Z]{4}-[2-9A-HJKMNP-Z]{4}", secret)
    assert api.get("/v1/dossiers/HS-TIM-1").json()["pay_secret"] == secret  # the same every time it is read
    found = _find(api.client, "HS-TIM-1", secret.replace("-", " ").lower(), lang="en", follow_redirects=False)
    assert found.status_code == 303 and found.headers["location"] == _local(dossier["pay_url"]) + "?lang=en"
    page = api.client.get(found.headers["location"])
    assert f'id="pay-secret">{secret}<' in page.text  # the payer can note it from the pay page too


def test_a_wrong_code_or_secret_gets_one_generic_answer_and_counts_against_the_limit(api: Api) -> None:
    dossier = api.post("/v1/dossiers", dossier_body("HS-TIM-2")).json()
    other = "AAAA-AAAA" if dossier["pay_secret"] != "AAAA-AAAA" else "BBBB-BBBB"
    answers = [
        _find(api.client, "HS-TIM-2", other),
        _find(api.client, "HS-NOPE", dossier["pay_secret"]),
        _find(api.client, "HS-TIM-2", "x" * 39),
        _find(api.client, "HS\x00TIM", "\x01\x02"),
        _find(api.client, "", ""),
    ]
    for r in answers:
        assert r.status_code == 404 and r.headers["content-type"].startswith("text/html")
        assert "Không tìm thấy hồ sơ với mã hồ sơ và mã bí mật này" in r.text
        assert r.headers["cache-control"] == "no-store"
    assert dossier["pay_secret"] not in answers[1].text  # a typed secret is never shown back
    too_long = _find(api.client, "HS" * 30, "ABCD-EFGH")
    assert too_long.status_code == 422 and too_long.headers["content-type"].startswith("text/html")
    no_token = api.client.post("/tra-cuu", data={"code": "HS-TIM-2", "secret": dossier["pay_secret"]})
    assert no_token.status_code == 403


def test_the_dossier_search_is_throttled_with_the_receipt_lookup(api: Api) -> None:
    dossier = api.post("/v1/dossiers", dossier_body("HS-TIM-3")).json()
    api.ctx.lookup_limiter.per_minute = 3
    assert api.client.get("/r/AAAAAAAAAAAA").status_code == 404  # one receipt lookup...
    statuses = [_find(api.client, "HS-TIM-3", "AAAA-AAAA").status_code for _ in range(2)]
    limited = _find(api.client, "HS-TIM-3", dossier["pay_secret"], follow_redirects=False)
    assert statuses == [404, 404]  # ...and two searches use up the minute:
    assert limited.status_code == 429 and int(limited.headers["retry-after"]) >= 1  # even the right secret waits
    assert "quá nhiều lần" in limited.text


# --- 6. the VietQR page ---------------------------------------------------------------------------------------------


def test_the_vietqr_page_gives_every_value_to_copy_the_deadline_app_links_and_its_own_status(qr_api: Api) -> None:
    code, url = _dossier(qr_api, "HS-QR-1")
    payment = _start(qr_api, url, method="vietqr")
    ref = payment.gateway_reference or ""
    page = qr_api.client.get(f"/pay/qr/{ref}?lang=en")
    assert page.status_code == 200
    text = page.text
    assert 'id="bank">Vietcombank<' in text  # NAPAS BIN 970436
    for value in ("0011001234567", "SO TU PHAP TINH DEMO", "110000", ref, code):
        assert f'data-copy="{value}"' in text, value
    assert 'id="amount" class="money" data-copy="110000" data-copy-label="Amount">VND\u00a0110,000<' in text
    assert re.search(r'id="deadline">\d{1,2} [A-Z][a-z]{2} \d{4}, \d\d:\d\d<', text)
    deep = f"https://dl.vietqr.io/pay?app=bidv&amp;ba=0011001234567@vcb&amp;am=110000&amp;tn={ref}&amp;bn=SO%20TU"
    assert deep in text
    assert f'data-poll="/pay/qr/{ref}/status"' in text and 'href="' + url + '?lang=en"' in text
    assert qr_api.client.get(f"/pay/qr/{ref}/status").json() == {"state": "pending", "status": "pending"}
    # Cancelled from the dossier page ("pay another way"): the transfer page says it is closed and offers nothing.
    dossier_page = qr_api.client.get(url)
    assert "Tiếp tục chuyển khoản" in dossier_page.text
    qr_api.client.post(url + "/cancel", data=page_form(dossier_page.text, payment_id=payment.id))
    closed = qr_api.client.get(f"/pay/qr/{ref}")
    assert "Yêu cầu thanh toán đã đóng" in closed.text and "dl.vietqr.io" not in closed.text
    assert "data-poll" not in closed.text
    assert qr_api.client.get(f"/pay/qr/{ref}/status").json()["status"] == "closed"


def test_an_unknown_or_hostile_transfer_reference_is_a_404(qr_api: Api) -> None:
    for ref in ("NOPE", "x" * 200, "%01abc"):
        _is_page(qr_api.client.get(f"/pay/qr/{ref}"), 404, "not_found")
    nul = qr_api.client.get("/pay/qr/%00abc")  # refused before routing, by the request limits: still a page
    assert nul.status_code == 422 and nul.headers["content-type"].startswith("text/html")
    status = qr_api.client.get("/pay/qr/NOPE/status")
    assert status.status_code == 404 and status.headers["content-type"] == "application/problem+json"


# --- 7. help on every page ------------------------------------------------------------------------------------------


def _contacts(api: Api) -> None:
    from payments.agency.models import Agency

    with api.ctx.db.write() as s:
        agency = s.exec(select(Agency).where(Agency.code == api.agency_code)).one()
        agency.phone, agency.email, agency.address = "0236 3822 111", "motcua@agc.gov.vn", "24 Trần Phú, Hải Châu"
        agency.version += 1
        s.add(agency)


def test_every_payer_page_has_a_main_landmark_and_the_agencys_contacts(qr_api: Api) -> None:
    _contacts(qr_api)
    _, url = _dossier(qr_api)
    unpaid = qr_api.client.get(url + "?lang=en")
    sandbox = _start(qr_api, url)
    pending = qr_api.client.get(url)
    gateway = qr_api.client.get(_local(sandbox.next_url or ""))
    qr_api.client.post(url + "/cancel", data=page_form(pending.text, payment_id=sandbox.id))
    transfer = _start(qr_api, url, method="vietqr")
    qr = qr_api.client.get(f"/pay/qr/{transfer.gateway_reference}")
    wrong_verb = qr_api.client.get(url + "/cancel")
    with_agency = {"dossier": unpaid, "pending": pending, "sandbox": gateway, "qr": qr, "error": wrong_verb}
    for name, page in with_agency.items():
        assert page.text.count("\n<main>\n") == 1, name
        assert 'href="tel:02363822111">0236 3822 111</a>' in page.text, name
        assert 'href="mailto:motcua@agc.gov.vn"' in page.text and "24 Trần Phú, Hải Châu" in page.text, name
    assert '<span lang="vi">24 Trần Phú, Hải Châu</span>' in unpaid.text
    generic = {
        "find": qr_api.client.get("/tra-cuu"),
        "lookup": qr_api.client.get("/r"),
        "unknown": qr_api.client.get("/pay/no-such-token-0123456789"),
        "refused": qr_api.client.post(url, data={"method": "sandbox", "form_key": "k" * 16}),
    }
    for name, page in generic.items():
        assert page.text.count("\n<main>\n") == 1, name
        assert "Nếu cần hỗ trợ, hãy liên hệ cơ quan đã tiếp nhận hồ sơ" in page.text, name


def test_an_unexpected_failure_on_a_payer_page_is_a_page_too(api: Api, monkeypatch: pytest.MonkeyPatch) -> None:
    _, url = _dossier(api)

    def broken(*_args: Any) -> None:
        raise RuntimeError("the database went away")

    monkeypatch.setattr("payments.pages.endpoints._latest", broken)
    r = api.client.get(url + "?lang=en")
    _is_page(r, 500, "server_error")
    assert "do not pay again" in r.text and "database went away" not in r.text


def test_the_card_page_has_the_way_back_money_in_the_language_and_the_agencys_help(card_api: Api) -> None:
    _, url = _dossier(card_api)
    payment = _start(card_api, url, method="stripe")
    page = card_api.client.get(_local(payment.next_url or "") + "?lang=en")
    assert page.status_code == 200 and '<html lang="en">' in page.text
    assert 'id="amount">VND\u00a0110,000<' in page.text
    assert f'id="back" href="{url}?lang=en"' in page.text and 'id="help"' in page.text
    assert page.text.count("\n<main>\n") == 1
