"""A client generated from the committed openapi/openapi.json, untouched, runs the demo flow: dossier, payment, the
payer pays in the sandbox, the payment succeeds, its receipt is listed and downloaded."""

from __future__ import annotations

import importlib
import re
import secrets
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import httpx
import pytest
from fastapi.testclient import TestClient

from lephi.jobs import HANDLERS
from payments.outbox.worker import Worker
from tests.conftest import Api
from tests.factories import PROCEDURE

DOCUMENT = Path(__file__).parent.parent / "openapi" / "openapi.json"
PACKAGE = "lephi_generated_client"
# Generator settings only, never edits of its output: no post-generation hooks (they would reach for the network to
# install formatters), and the binary media types read as bytes, which the generator does not know by name.
CONFIG = f"""\
post_hooks: []
project_name_override: {PACKAGE}
package_name_override: {PACKAGE}
content_type_overrides:
  application/xml: application/octet-stream
  application/pdf: application/octet-stream
"""


class ToApp(httpx.BaseTransport):
    """Sends the generated client's requests to the app in this process, through its test client."""

    def __init__(self, client: TestClient) -> None:
        self.client = client

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        answer = self.client.send(request)
        return httpx.Response(answer.status_code, headers=answer.headers, content=answer.content)


@pytest.fixture(scope="module")
def generated(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ModuleType]:
    root = tmp_path_factory.mktemp("client")
    (root / "config.yaml").write_text(CONFIG)
    tool = Path(sys.executable).parent / "openapi-python-client"
    command = [str(tool), "generate", "--path", str(DOCUMENT), "--output-path", str(root / PACKAGE)]
    done = subprocess.run(
        [*command, "--meta", "none", "--config", str(root / "config.yaml")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    # A warning means an operation or a response was left out of the client: the document must be fixed.
    assert "WARNING" not in done.stdout + done.stderr, done.stdout + done.stderr
    sys.path.insert(0, str(root))
    try:
        yield importlib.import_module(PACKAGE)
    finally:
        sys.path.remove(str(root))
        for name in [n for n in sys.modules if n.split(".")[0] == PACKAGE]:
            del sys.modules[name]


def _module(name: str) -> ModuleType:
    return importlib.import_module(f"{PACKAGE}.{name}")


def test_generated_client_runs_the_demo_flow(generated: ModuleType, api: Api) -> None:
    models = _module("models")
    dossiers, payments, receipts = _module("api.dossiers"), _module("api.payments"), _module("api.receipts")
    post_dossier, post_payment = _module("api.dossiers.put_dossier"), _module("api.payments.post_payment")
    get_payment, get_receipts = _module("api.payments.get_payment"), _module("api.receipts.get_receipts")
    get_receipt_xml = _module("api.receipts.get_receipt_xml")
    assert dossiers and payments and receipts
    # Undocumented statuses raise: the client holds the document to its word.
    client = generated.AuthenticatedClient(
        base_url="http://testserver",
        token=api.key,
        raise_on_unexpected_status=True,
        httpx_args={"transport": ToApp(api.client)},
    )

    body = models.DossierIn(
        code=f"HS-{secrets.token_hex(4).upper()}",
        procedure_code=PROCEDURE,
        payer=models.PayerIn(name="Nguyễn Văn An", email="an@example.com"),
        items=[models.FeeItemIn(fee_code="BAN_SAO", quantity=2)],
    )
    created = post_dossier.sync_detailed(client=client, body=body, idempotency_key=secrets.token_hex(8))
    assert created.status_code == 201
    dossier = created.parsed
    assert isinstance(dossier, models.DossierOut) and dossier.total_amount == 110_000

    payment_in = models.PaymentIn(
        dossier_code=dossier.code, method="sandbox", return_url="https://portal.example.gov.vn/done"
    )
    payment = post_payment.sync(client=client, body=payment_in, idempotency_key=secrets.token_hex(8))
    assert isinstance(payment, models.PaymentOut), payment
    assert payment.status == models.PaymentStatus.PENDING and isinstance(payment.next_url, str)

    # The payer's side: the sandbox's page, whose signed callback reaches the service.
    page = api.client.get(payment.next_url)
    action = re.search(r'action="([^"]+)"', page.text)
    token = re.search(r'name="csrf" value="([^"]+)"', page.text)
    assert action and token, page.text
    form = {"outcome": "success", "csrf": token.group(1)}  # the page's form, with its token, as a browser sends it
    assert api.client.post(action.group(1), data=form, follow_redirects=False).status_code == 303

    paid = get_payment.sync(client=client, payment_id=payment.id)
    assert isinstance(paid, models.PaymentOut) and paid.status == models.PaymentStatus.SUCCEEDED
    assert [e.kind for e in paid.events][-1] == "gateway.callback"

    Worker(api.ctx, HANDLERS).run_once()  # the receipt is issued in the background
    issued = get_receipts.sync(client=client, payment_id=payment.id)
    assert isinstance(issued, list) and len(issued) == 1
    receipt = issued[0]
    assert isinstance(receipt, models.ReceiptOut) and receipt.total == 110_000
    xml = get_receipt_xml.sync_detailed(client=client, document_id=receipt.id)
    assert xml.status_code == 200 and xml.content.startswith(b"<?xml")

    missing = get_payment.sync(client=client, payment_id="pay_missing")
    assert isinstance(missing, models.Problem) and missing.code == "not_found"


def test_generated_client_sends_the_api_key_the_document_declares(generated: ModuleType, api: Api) -> None:
    get_payments = _module("api.payments.get_payments")
    models = _module("models")
    anonymous = generated.Client(base_url="http://testserver", httpx_args={"transport": ToApp(api.client)})
    refused = get_payments.sync_detailed(client=anonymous)  # type: ignore[arg-type]
    assert refused.status_code == 401 and isinstance(refused.parsed, models.Problem)
    assert refused.headers["WWW-Authenticate"].startswith("Bearer")
    keyed = generated.AuthenticatedClient(
        base_url="http://testserver", token=api.key, httpx_args={"transport": ToApp(api.client)}
    )
    listed = get_payments.sync_detailed(client=keyed)
    assert listed.status_code == 200 and isinstance(listed.parsed, models.PagePaymentOut)
