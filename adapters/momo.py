"""MoMo e-wallet, API v2 (``captureWallet``): create a payment, verify the IPN, query, "cancel", refund.

MoMo's servers are not reachable from this machine: everything here was written against MoMo's public developer
documentation (developers.momo.vn, v3 docs of the v2 API) and the vectors in the project's domain reference, and is
tested against ``respx`` stand-ins. Run it once against MoMo's sandbox before going live (see the doubts below).

Settings (``context.settings``):

- ``partner_code`` (required): the merchant's MoMo partner code.
- ``access_key`` (required): MoMo access key; it is part of every signed string, never sent on its own.
- ``secret_key`` (required): HMAC-SHA256 key that signs our requests and verifies MoMo's messages.
- ``endpoint``: base URL, default ``https://test-payment.momo.vn`` (MoMo's sandbox); production is
  ``https://payment.momo.vn``.
- ``previous_secret_keys``: a list (or comma-separated string) of retired secrets still accepted when verifying
  IPNs and answers during a key rotation; never used to sign.
- ``request_type``: default ``captureWallet``.
- ``lang``: language of MoMo's messages, ``vi`` (default) or ``en``.
- ``timeout_seconds``: per-call timeout, default 30, because MoMo asks callers to wait at least 30 s; it applies only
  when the service does not hand the adapter its own HTTP client.

Signatures are hex HMAC-SHA256 over ``k=v`` pairs joined with ``&``, keys in the fixed order below (alphabetical),
values as sent, not URL-encoded:

- create: ``accessKey amount extraData ipnUrl orderId orderInfo partnerCode redirectUrl requestId requestType``
- create answer (checked when it carries ``signature``):
  ``accessKey amount orderId partnerCode payUrl requestId responseTime resultCode``
- IPN: ``accessKey amount extraData message orderId orderInfo orderType partnerCode payType requestId responseTime
  resultCode transId``
- query: ``accessKey orderId partnerCode requestId``
- refund: ``accessKey amount description orderId partnerCode requestId transId``

Identifiers. ``requestId`` is MoMo's idempotency key, so an attempt's ``orderId`` and ``requestId`` are the same
value derived from the attempt's idempotency key: a retried create is the same request to MoMo, and a 5xx or
timeout may be retried safely. A refund gets its own id from the refund's idempotency key. Ids are at most 50
characters of MoMo's ``orderId`` alphabet; a key that does not fit is replaced by its SHA-256 prefix.

Decisions (each lives in one table or function below, so it is easy to change):

- ``9000`` ("authorized") is read as *pending*, not paid: MoMo lists it as not final and asks two-step merchants to
  capture or cancel it; we never capture, so the payment is settled by the later ``0`` or by a status query.
- MoMo does not echo our payment id, so a ``CallbackEvent`` carries ``merchant_reference=""`` and the ``orderId`` as
  ``gateway_reference``; the service finds the payment by that reference.
- IPNs carry ``responseTime`` but no freshness window is enforced: MoMo redelivers an IPN it thinks was lost, a
  replay only repeats a signed fact, and the service deduplicates by ``event_id``.
- A status query whose ``resultCode`` is about the query itself (bad signature, access denied, maintenance...) raises
  ``GatewayTechnicalError``: it says nothing about the payment and must not fail it.
- ``cancel``: MoMo has no cancel for an unpaid ``captureWallet`` order; the payment link expires on its own. We
  query, return a final answer as is, and otherwise report ``cancelled`` with ``raw_code="expired-at-lephi"``. A payer
  who still pays before MoMo expires the link produces a signed IPN that the service must treat as a late success.
- ``refund``: MoMo refunds by ``transId``, which ``RefundRequest`` does not carry; the adapter queries the payment's
  ``orderId`` (``gateway_reference``) for its ``transId``, and finds in the same answer's ``refundTrans`` a refund it
  already asked for (so a retried refund is not sent twice), then posts the refund.

Doubts not settled without MoMo's servers: the create answer's signed field list (taken from two independent public
integrations, not from MoMo's page); the shape of ``refundTrans`` entries (``orderId``, ``resultCode``); whether a
retried refund with the same ``requestId`` is answered idempotently or with ``40``; whether MoMo ever sends ``9000``
for ``autoCapture`` (default true) wallet payments.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import time
import uuid
from collections.abc import Callable, Mapping
from enum import Enum
from typing import Any

from adapters.base import (
    CallbackEvent,
    CallbackOutcome,
    CallbackReply,
    CallbackRequest,
    GatewayContext,
    GatewayDeclinedError,
    GatewayStatus,
    GatewayTechnicalError,
    InvalidCallback,
    PaymentGateway,
    RefundOutcome,
    RefundRequest,
    RefundResult,
    StartPayment,
    StartResult,
    StatusQuery,
    StatusResult,
    retired_secrets,
)
from adapters.http import client_for, request_with_retries
from adapters.money import amount_from_json_or_text, amount_from_text


class Kind(Enum):
    """What a resultCode says: about the payment (first four), or about the request we sent (last two)."""

    paid = "paid"
    pending = "pending"
    cancelled = "cancelled"
    failed = "failed"
    refused = "refused"  # our request is refused for good: fix the request or the merchant settings
    retry = "retry"  # MoMo did not decide now, or already holds this request: ask again or query


# MoMo's resultCode table (developers.momo.vn "List Result Codes"); the only place a code gets a meaning.
RESULT_CODES: dict[int, tuple[Kind, str]] = {
    0: (Kind.paid, "successful"),
    10: (Kind.retry, "system under maintenance"),
    11: (Kind.refused, "access denied"),
    12: (Kind.refused, "unsupported API version"),
    13: (Kind.refused, "merchant authentication failed"),
    20: (Kind.refused, "bad request format"),
    21: (Kind.refused, "invalid transaction amount"),
    22: (Kind.refused, "transaction amount out of range"),
    40: (Kind.retry, "duplicated requestId: MoMo already holds this request"),
    41: (Kind.refused, "duplicated orderId with different data"),
    42: (Kind.refused, "invalid orderId or order not found"),
    43: (Kind.retry, "a conflicting transaction is being processed"),
    45: (Kind.refused, "duplicated itemId"),
    47: (Kind.refused, "inapplicable information in the request"),
    98: (Kind.retry, "QR code could not be generated"),
    99: (Kind.retry, "unknown error at MoMo"),
    1000: (Kind.pending, "initiated, waiting for the payer to confirm"),
    1001: (Kind.failed, "insufficient funds"),
    1002: (Kind.failed, "rejected by the issuer of the payment method"),
    1003: (Kind.failed, "cancelled after authorization"),
    1004: (Kind.failed, "payer's payment limit exceeded"),
    1005: (Kind.cancelled, "payment link or QR code expired"),
    1006: (Kind.cancelled, "payer declined the payment"),
    1007: (Kind.failed, "payer's account inactive or missing"),
    1017: (Kind.cancelled, "cancelled by the merchant"),
    1026: (Kind.failed, "restricted by promotion rules"),
    1080: (Kind.failed, "refund failed while processing"),
    1081: (Kind.failed, "refund rejected: already refunded or more than refundable"),
    2019: (Kind.refused, "invalid orderGroupId"),
    4001: (Kind.failed, "payer's account not verified (KYC)"),
    4100: (Kind.failed, "payer failed to log in"),
    7000: (Kind.pending, "being processed"),
    7002: (Kind.pending, "being processed by the payment instrument's provider"),
    8000: (Kind.pending, "waiting for the payer to confirm again"),
    9000: (Kind.pending, "authorized, not captured"),
}
ORDER_NOT_FOUND = 42
DUPLICATES = frozenset({40, 41})  # for a refund these mean "MoMo may already have it": in doubt, not refused
PAYMENT_STATUS = {
    Kind.paid: GatewayStatus.succeeded,
    Kind.pending: GatewayStatus.pending,
    Kind.cancelled: GatewayStatus.cancelled,
}
FINAL = frozenset({GatewayStatus.succeeded, GatewayStatus.failed, GatewayStatus.cancelled})

DEFAULT_ENDPOINT = "https://test-payment.momo.vn"
DEFAULT_TIMEOUT_SECONDS = 30.0
CREATE_PATH = "/v2/gateway/api/create"
QUERY_PATH = "/v2/gateway/api/query"
REFUND_PATH = "/v2/gateway/api/refund"

CREATE_FIELDS = (
    "accessKey",
    "amount",
    "extraData",
    "ipnUrl",
    "orderId",
    "orderInfo",
    "partnerCode",
    "redirectUrl",
    "requestId",
    "requestType",
)
CREATE_ANSWER_FIELDS = (
    "accessKey",
    "amount",
    "orderId",
    "partnerCode",
    "payUrl",
    "requestId",
    "responseTime",
    "resultCode",
)
IPN_FIELDS = (
    "accessKey",
    "amount",
    "extraData",
    "message",
    "orderId",
    "orderInfo",
    "orderType",
    "partnerCode",
    "payType",
    "requestId",
    "responseTime",
    "resultCode",
    "transId",
)
QUERY_FIELDS = ("accessKey", "orderId", "partnerCode", "requestId")
REFUND_FIELDS = ("accessKey", "amount", "description", "orderId", "partnerCode", "requestId", "transId")

PAYMENT_PREFIX = "pay-"
REFUND_PREFIX = "rfd-"  # payment and refund ids share MoMo's orderId space: prefixes keep them apart
MAX_ID_LENGTH = 50
MAX_TEXT_LENGTH = 200  # orderInfo / description: MoMo's pages say 200 or 255; the smaller is safe for both
# MoMo's ^[0-9a-zA-Z]([-_.]*[0-9a-zA-Z]+)*$ rewritten without nested "+" inside "*" (no catastrophic backtracking).
ORDER_ID_PATTERN = re.compile(r"[0-9A-Za-z](?:[-_.]*[0-9A-Za-z])*")
EXPIRED_AT_LEPHI = "expired-at-lephi"


def raw_data(fields: tuple[str, ...], values: Mapping[str, object]) -> str:
    """The string MoMo signs: ``k=v`` in the given order, joined by ``&``, values not encoded."""
    return "&".join(f"{key}={values[key]}" for key in fields)


def sign(secret: str, fields: tuple[str, ...], values: Mapping[str, object]) -> str:
    return hmac.new(secret.encode(), raw_data(fields, values).encode(), hashlib.sha256).hexdigest()


def momo_id(prefix: str, key: str) -> str:
    """A stable MoMo orderId/requestId for an idempotency key: readable when it fits, else a hash of the key."""
    candidate = prefix + key
    if len(candidate) <= MAX_ID_LENGTH and ORDER_ID_PATTERN.fullmatch(candidate):
        return candidate
    return prefix + hashlib.sha256(key.encode()).hexdigest()[:40]


def classify(code: int) -> tuple[Kind | None, str]:
    return RESULT_CODES.get(code, (None, "unknown result code"))


def payment_status(kind: Kind | None) -> GatewayStatus:
    """A payment-level code's status; any other code reported for a payment means it did not go through."""
    return PAYMENT_STATUS.get(kind, GatewayStatus.failed) if kind is not None else GatewayStatus.failed


def _required(settings: Mapping[str, Any], key: str) -> str:
    value = settings.get(key)
    if not value:
        raise ValueError(f"the MoMo gateway needs the setting {key!r}")
    return str(value)


def _text(value: object) -> str:
    """A signed field as MoMo printed it; bool, float, null and objects cannot be what MoMo signed."""
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise TypeError(f"unexpected {type(value).__name__}")
    return str(value)


def _digits(text: str) -> int:
    if not (text.isascii() and text.isdigit()):
        raise ValueError(f"{text!r} is not a whole number")
    return int(text)


def _int_or_none(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


class MoMoGateway(PaymentGateway):
    name = "momo"
    starts_offline = False

    def __init__(self, context: GatewayContext, *, sleep: Callable[[float], None] = time.sleep) -> None:
        settings = context.settings
        self._partner_code = _required(settings, "partner_code")
        self._access_key = _required(settings, "access_key")
        self._secrets = [
            _required(settings, "secret_key"),
            *retired_secrets(settings.get("previous_secret_keys"), "the MoMo setting 'previous_secret_keys'"),
        ]
        self._endpoint = str(settings.get("endpoint") or DEFAULT_ENDPOINT).rstrip("/")
        self._request_type = str(settings.get("request_type") or "captureWallet")
        self._lang = str(settings.get("lang") or "vi")
        timeout = settings.get("timeout_seconds", DEFAULT_TIMEOUT_SECONDS)
        self._http = client_for({"timeout_seconds": timeout}, context.http)
        self._sleep = sleep

    # --- payments ---------------------------------------------------------------------------------------------
    def start_payment(self, request: StartPayment) -> StartResult:
        if request.currency != "VND":
            raise GatewayDeclinedError(f"MoMo takes only VND, not {request.currency}")
        order_id = momo_id(PAYMENT_PREFIX, request.idempotency_key)
        answer = self._post(CREATE_PATH, self._create_body(request, order_id))
        return self._start_result(answer, order_id, request.amount)

    def _create_body(self, request: StartPayment, order_id: str) -> dict[str, Any]:
        body: dict[str, Any] = {
            "partnerCode": self._partner_code,
            "requestId": order_id,
            "amount": request.amount,
            "orderId": order_id,
            "orderInfo": request.description[:MAX_TEXT_LENGTH],
            "redirectUrl": request.return_url,
            "ipnUrl": request.callback_url,
            "requestType": self._request_type,
            "extraData": "",
            "lang": self._lang,
        }
        body["signature"] = self._sign(CREATE_FIELDS, body)
        return body

    def _start_result(self, answer: dict[str, Any], order_id: str, amount: int) -> StartResult:
        code = answer["resultCode"]
        kind, meaning = classify(code)
        if kind in (Kind.paid, Kind.pending):
            # 0 means "payment page created", not "paid": the attempt stays pending until the IPN or a query.
            return StartResult(gateway_reference=order_id, next_url=self._checked_pay_url(answer, order_id, amount))
        detail = f"MoMo resultCode {code} ({meaning}): {answer.get('message', '')}"
        if kind in (Kind.refused, Kind.failed, Kind.cancelled):
            raise GatewayDeclinedError(detail)
        raise GatewayTechnicalError(detail)  # retry or unknown code: the order may exist; a status query settles it

    def _checked_pay_url(self, answer: dict[str, Any], order_id: str, amount: int) -> str:
        if "signature" in answer and not self._verifies(CREATE_ANSWER_FIELDS, answer, answer["signature"]):
            raise GatewayTechnicalError("MoMo's create answer is not signed with our secret")
        if answer.get("orderId", order_id) != order_id or answer.get("amount", amount) != amount:
            raise GatewayTechnicalError("MoMo's create answer is for another order or amount")
        pay_url = answer.get("payUrl")
        if not isinstance(pay_url, str) or not pay_url:
            # Without a page the payer cannot pay; a technical error leaves the attempt for a retry or a query.
            raise GatewayTechnicalError("MoMo's create answer has no payUrl")
        return pay_url

    # --- callbacks --------------------------------------------------------------------------------------------
    def parse_callback(self, request: CallbackRequest) -> CallbackEvent:
        values, signature = _ipn_values(request.body)
        if not self._verifies(IPN_FIELDS, values, signature):
            raise InvalidCallback("IPN signature does not match")
        if values["partnerCode"] != self._partner_code:
            raise InvalidCallback("IPN is for another MoMo partner")
        return _ipn_event(values)

    @staticmethod
    def callback_reply(outcome: CallbackOutcome) -> CallbackReply:
        # MoMo wants 204 for any IPN we have handled (even one we refused to apply) and retries otherwise.
        if outcome is CallbackOutcome.invalid_signature:
            return CallbackReply(401)
        if outcome is CallbackOutcome.error:
            return CallbackReply(500)
        return CallbackReply(204)

    # --- status, cancel ---------------------------------------------------------------------------------------
    def query_status(self, query: StatusQuery) -> StatusResult:
        order_id = query.gateway_reference or momo_id(PAYMENT_PREFIX, query.idempotency_key)
        return _status_result(self._query(order_id), order_id)

    def cancel(self, query: StatusQuery) -> StatusResult:
        result = self.query_status(query)
        if result.status in FINAL:
            return result
        # Nothing to call at MoMo: an unpaid captureWallet link expires on its own.
        return StatusResult(GatewayStatus.cancelled, result.gateway_reference, result.amount, EXPIRED_AT_LEPHI)

    def _query(self, order_id: str) -> dict[str, Any]:
        body: dict[str, Any] = {
            "partnerCode": self._partner_code,
            "requestId": str(uuid.uuid4()),  # a read: a fresh id each time, MoMo keeps no state for it
            "orderId": order_id,
            "lang": self._lang,
        }
        body["signature"] = self._sign(QUERY_FIELDS, body)
        return self._post(QUERY_PATH, body)

    # --- refunds ----------------------------------------------------------------------------------------------
    def refund(self, request: RefundRequest) -> RefundResult:
        payment = self._query(request.gateway_reference)
        trans_id = _paid_trans_id(payment, request.gateway_reference)
        refund_id = momo_id(REFUND_PREFIX, request.idempotency_key)
        earlier = _listed_refund(payment, refund_id)
        if earlier is not None:
            return _refund_result(earlier, refund_id)
        answer = self._post(REFUND_PATH, self._refund_body(request, refund_id, trans_id))
        return _refund_result(answer, refund_id)

    def _refund_body(self, request: RefundRequest, refund_id: str, trans_id: int) -> dict[str, Any]:
        body: dict[str, Any] = {
            "partnerCode": self._partner_code,
            "orderId": refund_id,
            "requestId": refund_id,
            "amount": request.amount,
            "transId": trans_id,
            "lang": self._lang,
            "description": request.reason[:MAX_TEXT_LENGTH],
        }
        body["signature"] = self._sign(REFUND_FIELDS, body)
        return body

    # --- plumbing ---------------------------------------------------------------------------------------------
    def _sign(self, fields: tuple[str, ...], values: Mapping[str, object]) -> str:
        return sign(self._secrets[0], fields, {**values, "accessKey": self._access_key})

    def _verifies(self, fields: tuple[str, ...], values: Mapping[str, object], signature: object) -> bool:
        if not isinstance(signature, str):
            return False
        data = {key: values.get(key, "") for key in fields} | {"accessKey": self._access_key}
        given = signature.encode()  # bytes: compare_digest refuses non-ASCII str
        return any(hmac.compare_digest(sign(secret, fields, data).encode(), given) for secret in self._secrets)

    def _post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        """POST and return MoMo's JSON answer; anything without a resultCode is a technical failure."""
        response = request_with_retries(self._http, "POST", self._endpoint + path, json=body, sleep=self._sleep)
        try:
            answer = response.json()
        except ValueError as exc:
            raise GatewayTechnicalError(f"MoMo answered HTTP {response.status_code} without JSON") from exc
        if not isinstance(answer, dict) or _int_or_none(answer.get("resultCode")) is None:
            raise GatewayTechnicalError(f"MoMo answered HTTP {response.status_code} without a resultCode")
        return answer


def _ipn_values(body: bytes) -> tuple[dict[str, str], object]:
    """The IPN's signed fields as text, and its signature; raise InvalidCallback for anything malformed."""
    try:
        data = json.loads(body)
    except (ValueError, RecursionError) as exc:
        raise InvalidCallback("IPN body is not JSON") from exc
    if not isinstance(data, dict):
        raise InvalidCallback("IPN body is not a JSON object")
    if not data.get("signature"):
        raise InvalidCallback("IPN has no signature")
    try:
        values = {key: _text(data[key]) for key in IPN_FIELDS if key != "accessKey"}
    except KeyError as exc:
        raise InvalidCallback(f"IPN lacks {exc.args[0]}") from exc
    except TypeError as exc:
        raise InvalidCallback(f"IPN field has a wrong type: {exc}") from exc
    return values, data["signature"]


def _ipn_event(values: dict[str, str]) -> CallbackEvent:
    try:
        amount, code = amount_from_text(values["amount"], minimum=0), _digits(values["resultCode"])
        _digits(values["transId"])
    except ValueError as exc:
        raise InvalidCallback(f"IPN number field is malformed: {exc}") from exc
    if not values["orderId"]:
        raise InvalidCallback("IPN has an empty orderId")
    kind, _ = classify(code)
    return CallbackEvent(
        event_id=f"{values['orderId']}:{values['transId']}:{code}",
        merchant_reference="",
        gateway_reference=values["orderId"],
        status=payment_status(kind),
        amount=amount,
        currency="VND",
        raw_code=str(code),
    )


def _status_result(answer: dict[str, Any], order_id: str) -> StatusResult:
    code: int = answer["resultCode"]
    if code == ORDER_NOT_FOUND:
        return StatusResult(GatewayStatus.unknown, order_id, None, str(code))
    kind, meaning = classify(code)
    if kind in (Kind.refused, Kind.retry):
        # About our query, not the payment (e.g. 13: our signature was refused): it must not fail the payment.
        raise GatewayTechnicalError(f"MoMo refused the status query: resultCode {code} ({meaning})")
    return StatusResult(payment_status(kind), order_id, _answer_amount(answer), str(code))


def _answer_amount(answer: dict[str, Any]) -> int | None:
    """The amount of a status answer: absent is allowed, malformed means the answer cannot be trusted."""
    if answer.get("amount") is None:
        return None
    try:
        return amount_from_json_or_text(answer["amount"])
    except ValueError as exc:
        raise GatewayTechnicalError(f"MoMo answered a bad amount: {exc}") from exc


def _paid_trans_id(payment: dict[str, Any], order_id: str) -> int:
    code: int = payment["resultCode"]
    kind, meaning = classify(code)
    if kind in (Kind.retry, Kind.refused) and code != ORDER_NOT_FOUND:
        raise GatewayTechnicalError(f"MoMo refused the status query before the refund: {code} ({meaning})")
    trans_id = _int_or_none(payment.get("transId"))
    if code != 0 or trans_id is None:
        raise GatewayDeclinedError(f"MoMo order {order_id} is not a paid payment (resultCode {code}: {meaning})")
    return trans_id


def _listed_refund(payment: dict[str, Any], refund_id: str) -> dict[str, Any] | None:
    """A refund already asked for under this id, as listed in the payment's ``refundTrans``."""
    listed = payment.get("refundTrans")
    for item in listed if isinstance(listed, list) else []:
        if (
            isinstance(item, dict)
            and item.get("orderId") == refund_id
            and _int_or_none(item.get("resultCode")) is not None
        ):
            return item
    return None


def _refund_result(answer: dict[str, Any], refund_id: str) -> RefundResult:
    code: int = answer["resultCode"]
    kind, meaning = classify(code)
    if kind is Kind.paid:
        return RefundResult(RefundOutcome.succeeded, refund_id, f"MoMo transId {answer.get('transId', '')}")
    if kind is Kind.pending:
        return RefundResult(RefundOutcome.pending, refund_id, meaning)
    if kind is Kind.retry or code in DUPLICATES:
        # MoMo may hold this refund already; the next try finds it in the payment's refundTrans.
        raise GatewayTechnicalError(f"MoMo refund {refund_id} in doubt: resultCode {code} ({meaning})")
    raise GatewayDeclinedError(
        f"MoMo refused refund {refund_id}: resultCode {code} ({meaning}) {answer.get('message', '')}"
    )
