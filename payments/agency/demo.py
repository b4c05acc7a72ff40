"""Demo data for a first run: one agency, its procedures, an unpaid dossier and an API key.

The agency, codes and tax number are fictitious; the fee amounts are typical of such procedures, not a legal
schedule."""

from __future__ import annotations

import hashlib
import hmac
from pathlib import Path
from typing import Any

from sqlmodel import Session, select

from payments.agency.models import Agency, FeeKind, FeeScheduleLine, Procedure
from payments.agency.service import touch
from payments.auth.models import Scope
from payments.auth.service import authenticate, create_key
from payments.core.errors import Unauthenticated
from payments.dossier.models import Dossier
from payments.dossier.schemas import DossierIn, PayerIn
from payments.dossier.service import upsert_dossier

DEMO_AGENCY = "DEMO-STP"
DEMO_TAX_CODE = "0100000000"
DEMO_DOSSIER = "HS-DEMO-0001"
# No NAPAS member bank has this BIN: a banking app cannot send real money to the demo account's QR codes.
DEMO_BANK_BIN = "999999"
DEMO_BANK_ACCOUNT = "0011001234567"

PROCEDURES = [
    (
        "2.000488",
        "Cấp Phiếu lý lịch tư pháp cho công dân Việt Nam",
        [
            ("LE_PHI_LLTP", FeeKind.phi, "Phí cung cấp thông tin lý lịch tư pháp", 200_000, 1, 1),
            ("BAN_THEM", FeeKind.phi, "Phiếu lý lịch tư pháp cấp thêm (từ phiếu thứ 3)", 5_000, 0, 20),
        ],
    ),
    (
        "2.000815",
        "Chứng thực bản sao từ bản chính giấy tờ, văn bản",
        [
            ("TRANG", FeeKind.le_phi, "Lệ phí chứng thực bản sao (mỗi trang)", 2_000, 1, 200),
            ("GUI_KQ", FeeKind.service, "Dịch vụ chuyển phát kết quả", 25_000, 0, 1),
        ],
    ),
]


def demo_vietqr_settings(secret: str) -> dict[str, Any]:
    """The demo agency's VietQR account in development, so that its bank transfers and statements can be shown; the
    keys are derived from the sandbox secret, so they stay the same across restarts without being written anywhere."""

    def derived(purpose: str) -> str:
        return hmac.new(secret.encode(), f"demo-vietqr:{purpose}".encode(), hashlib.sha256).hexdigest()

    return {
        "bank_bin": DEMO_BANK_BIN,
        "account_number": DEMO_BANK_ACCOUNT,
        "account_name": "SO TU PHAP TINH DEMO",
        "reference_secret": derived("reference"),
        "notification_secret": derived("notification"),
    }


def seed_demo(session: Session, data_dir: Path, configured: list[str] | None = None) -> tuple[Dossier, str]:
    """Idempotent: returns the demo dossier and the demo API key, kept in ``<data_dir>/demo-api-key.txt``.
    The demo agency offers the sandbox plus every gateway the gateways file configures for it (``configured``).

    Keeping a key in a file is for a development machine only; ``lephi serve`` seeds nothing in production."""
    agency = session.exec(select(Agency).where(Agency.code == DEMO_AGENCY)).first()
    if agency is None:
        agency = Agency(
            code=DEMO_AGENCY,
            name="Sở Tư pháp tỉnh Demo (dữ liệu mẫu)",
            tax_code=DEMO_TAX_CODE,
            address="01 Đường Mẫu, Phường Demo, Tỉnh Demo",
            bank_account=DEMO_BANK_ACCOUNT,
            bank_name="Ngân hàng Demo",
            phone="0200 000 0000",
            email="hotro@demo.gov.vn",
            payment_methods=["sandbox"],
        )
        session.add(agency)
        session.flush()
        for position, (code, name, lines) in enumerate(PROCEDURES):
            procedure = Procedure(agency_id=agency.id, code=code, name=name)
            session.add(procedure)
            session.flush()
            for i, (fee_code, kind, fee_name, unit, qty, max_qty) in enumerate(lines):
                session.add(
                    FeeScheduleLine(
                        procedure_id=procedure.id,
                        code=fee_code,
                        kind=kind,
                        name=fee_name,
                        unit_amount=unit,
                        default_quantity=qty,
                        max_quantity=max_qty,
                        position=position * 10 + i,
                    )
                )
        session.flush()
    methods = ["sandbox", *sorted(set(configured or []) - {"sandbox"})]
    if agency.payment_methods != methods:
        agency.payment_methods = methods
        session.add(agency)
        session.flush()
        touch(session, agency.id)
    dossier = session.exec(select(Dossier).where(Dossier.code == DEMO_DOSSIER, Dossier.agency_id == agency.id)).first()
    if dossier is None:
        dossier, _ = upsert_dossier(
            session,
            agency.id,
            DossierIn(
                code=DEMO_DOSSIER,
                procedure_code="2.000488",
                payer=PayerIn(name="Nguyễn Thị Minh Khai", email="demo@example.com"),
            ),
        )
    key_file = data_dir / "demo-api-key.txt"
    if key_file.exists():
        raw = key_file.read_text().strip()
        try:
            authenticate(session, raw)
            return dossier, raw
        except Unauthenticated:
            pass  # the database was reset since; make a new key
    _, raw = create_key(session, DEMO_AGENCY, "demo", [s.value for s in Scope])
    data_dir.mkdir(parents=True, exist_ok=True)
    key_file.write_text(raw + "\n")
    key_file.chmod(0o600)
    return dossier, raw
