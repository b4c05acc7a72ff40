"""Test data builders."""

from __future__ import annotations

import secrets
from typing import Any

from sqlmodel import Session

from payments.agency.models import Agency, FeeKind, FeeScheduleLine, Procedure

PROCEDURE = "1.001234"


def seed_agency(s: Session, code: str, methods: list[str] | None = None, tax_code: str = "0100000001") -> Agency:
    agency = Agency(
        code=code,
        name=f"Agency {code}",
        tax_code=tax_code,
        address="1 Test St",
        payment_methods=methods if methods is not None else ["sandbox"],
    )
    s.add(agency)
    s.flush()
    procedure = Procedure(agency_id=agency.id, code=PROCEDURE, name="Thủ tục thử nghiệm")
    s.add(procedure)
    s.flush()
    s.add(
        FeeScheduleLine(
            procedure_id=procedure.id,
            code="LE_PHI",
            kind=FeeKind.le_phi,
            name="Lệ phí",
            unit_amount=100_000,
            default_quantity=1,
            max_quantity=1,
            position=0,
        )
    )
    s.add(
        FeeScheduleLine(
            procedure_id=procedure.id,
            code="BAN_SAO",
            kind=FeeKind.phi,
            name="Bản sao",
            unit_amount=5_000,
            default_quantity=0,
            max_quantity=50,
            position=1,
        )
    )
    return agency


def dossier_body(code: str | None = None, copies: int = 2, **extra: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "code": code or f"HS-{secrets.token_hex(4).upper()}",
        "procedure_code": PROCEDURE,
        "payer": {"name": "Nguyễn Văn An", "email": "an@example.com"},
        "items": [{"fee_code": "BAN_SAO", "quantity": copies}],
    }
    body.update(extra)
    return body


def payment_body(dossier_code: str, method: str = "sandbox") -> dict[str, Any]:
    return {"dossier_code": dossier_code, "method": method, "return_url": "https://portal.example.gov.vn/done"}


def sandbox_outcome(client: Any, settings: Any, reference: str, outcome: str, **kw: Any) -> Any:
    """Play the payer on the sandbox gateway's page: the form as the page would send it (with its CSRF token)."""
    from payments.pages.forms import COOKIE, sign

    browser = client.cookies.get(COOKIE) or secrets.token_urlsafe(16)
    client.cookies.set(COOKIE, browser)
    data = {"outcome": outcome, "csrf": sign(settings, browser, f"sandbox:{reference}")}
    return client.post(f"/sandbox/pay/{reference}", data=data, **kw)


def page_form(html: str, **fields: str) -> dict[str, str]:
    """A page's form as a browser submits it: its hidden CSRF token plus the given fields."""
    import re

    token = re.search(r'name="csrf" value="([^"]+)"', html)
    assert token, html
    return {"csrf": token.group(1), **fields}
