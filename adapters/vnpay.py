"""VNPay payment gateway (redirect + IPN), API version 2.1.0, as described in the domain reference, section 4.2.

The payer is sent to a signed pay URL; the result reaches Lephi only through VNPay's IPN (a GET, or a form POST, with
the ``vnp_*`` parameters and an HMAC-SHA512 ``vnp_SecureHash``) or through the QueryDR API. Refunds use the refund API.
VNPay's servers are not reachable from the machine this was written on: the tests use the published algorithms, the
domain reference's test vectors and a local stand-in for the API, never the real sandbox.

Settings (``GatewayContext.settings``):

- ``tmn_code`` (required): the merchant's terminal code, sent as ``vnp_TmnCode`` and required on every IPN.
- ``hash_secret`` (required): the HMAC-SHA512 key; signs everything sent and verifies everything received.
- ``previous_hash_secrets`` (optional list): older keys still accepted on verification during a rotation.
- ``pay_url``: default ``https://sandbox.vnpayment.vn/paymentv2/vpcpay.html``.
- ``api_url``: QueryDR and refund endpoint, default ``https://sandbox.vnpayment.vn/merchant_webapi/api/transaction``.
- ``locale``: ``vn`` (default) or ``en``, used when the request's locale is neither Vietnamese nor English.
- ``order_type``: ``vnp_OrderType``, default ``other``.
- ``server_ip``: ``vnp_IpAddr`` of the QueryDR and refund calls (the server's own address), default ``127.0.0.1``.
- ``timeout_seconds``: outbound HTTP timeout when the service gives no client (see ``adapters.http.client_for``).

The IPN URL is not sent per payment: it is registered with VNPay in the merchant portal (``context.callback_url``).

Choices and limitations:

- ``vnp_TxnRef`` is 34 characters: the first 20 characters of the base32 SHA-256 of the attempt's idempotency key,
  then the attempt's ``vnp_CreateDate``. It is the same on every retry of an attempt, unique per day, and carries the
  transaction date that the refund API needs but ``RefundRequest`` does not hold.
- ``vnp_ReturnUrl`` is sent with ``~ * ! ' ( )`` percent-encoded (``portable_url``): VNPay's own samples in
  different languages encode exactly these characters differently, so a raw one would make the signature depend on
  the client library. The payer returns to the same URL.
- VNPay does not echo our payment id: IPN events have an empty ``merchant_reference``; the service finds the payment
  by gateway and ``gateway_reference`` (the TxnRef).
- The IPN carries no signing timestamp, so there is no freshness window; a replayed IPN is harmless because its
  ``event_id`` (TxnRef, TransactionNo, ResponseCode, TransactionStatus) deduplicates it.
- QueryDR ``vnp_TransactionStatus``: 00 succeeded, 01 pending, 02 failed; 05/06 (refund in progress) and 09 (refund
  rejected) concern a refund of a payment that succeeded, so they report succeeded; 04 ("reversal": debited at the
  bank but not successful at VNPay) and anything else report pending, to be settled by staff, never guessed.
  ResponseCode 91 (not found) reports unknown; any other ResponseCode means the question was not answered:
  GatewayTechnicalError.
- VNPay has no cancel API: ``cancel`` returns the queried status when it is final, otherwise ``cancelled`` with
  raw code ``expired-at-lephi``; the pay link itself stays usable until ``vnp_ExpireDate``.
- ``RefundRequest`` lacks VNPay's ``vnp_TransactionNo``: the refund sends ``0`` (VNPay documents the field as
  optional) and identifies the payment by TxnRef and transaction date. The refund's ``vnp_RequestId`` is derived from
  the refund's idempotency key; it is sent once per call (no in-call retry), since VNPay documents no idempotency for
  refunds. ResponseCode 00 succeeded, 94 (a refund already in progress) pending, 99 (unspecified error) unknown
  (GatewayTechnicalError), anything else GatewayDeclinedError.
- Response hashes are checked when present: QueryDR over ``vnp_ResponseId|vnp_Command|vnp_ResponseCode|vnp_Message|
  vnp_TmnCode|vnp_TxnRef|vnp_Amount|vnp_BankCode|vnp_PayDate|vnp_TransactionNo|vnp_TransactionType|
  vnp_TransactionStatus|vnp_OrderInfo|vnp_PromotionCode|vnp_PromotionAmount``; refund over the same fields without the
  two promotion fields. Neither order could be checked against VNPay's servers; the QueryDR one agrees with a
  widely used third-party client, the refund one is less certain (a wrong order would surface as technical errors).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
import time
import unicodedata
import uuid
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime, timedelta, timezone
from typing import Any
from urllib.parse import parse_qsl, urlencode

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
)
from adapters.http import client_for, request_with_retries
from adapters.money import MAX_AMOUNT, amount_from_text

VERSION = "2.1.0"
SANDBOX_PAY_URL = "https://sandbox.vnpayment.vn/paymentv2/vpcpay.html"
SANDBOX_API_URL = "https://sandbox.vnpayment.vn/merchant_webapi/api/transaction"
GMT7 = timezone(timedelta(hours=7), "GMT+7")  # Vietnam has no daylight saving time
DATE_FORMAT = "%Y%m%d%H%M%S"
UNSIGNED = frozenset({"vnp_SecureHash", "vnp_SecureHashType"})

QUERYDR_FIELDS = (
    "vnp_RequestId",
    "vnp_Version",
    "vnp_Command",
    "vnp_TmnCode",
    "vnp_TxnRef",
    "vnp_TransactionDate",
    "vnp_CreateDate",
    "vnp_IpAddr",
    "vnp_OrderInfo",
)
REFUND_FIELDS = (
    "vnp_RequestId",
    "vnp_Version",
    "vnp_Command",
    "vnp_TmnCode",
    "vnp_TransactionType",
    "vnp_TxnRef",
    "vnp_Amount",
    "vnp_TransactionNo",
    "vnp_TransactionDate",
    "vnp_CreateBy",
    "vnp_CreateDate",
    "vnp_IpAddr",
    "vnp_OrderInfo",
)
REFUND_ANSWER_FIELDS = (
    "vnp_ResponseId",
    "vnp_Command",
    "vnp_ResponseCode",
    "vnp_Message",
    "vnp_TmnCode",
    "vnp_TxnRef",
    "vnp_Amount",
    "vnp_BankCode",
    "vnp_PayDate",
    "vnp_TransactionNo",
    "vnp_TransactionType",
    "vnp_TransactionStatus",
    "vnp_OrderInfo",
)
QUERYDR_ANSWER_FIELDS = (*REFUND_ANSWER_FIELDS, "vnp_PromotionCode", "vnp_PromotionAmount")

QUERY_STATUSES = {
    "00": GatewayStatus.succeeded,
    "01": GatewayStatus.pending,
    "02": GatewayStatus.failed,
    "05": GatewayStatus.succeeded,
    "06": GatewayStatus.succeeded,
    "09": GatewayStatus.succeeded,
}
REPLIES = {
    CallbackOutcome.accepted: ("00", "Confirm Success"),
    CallbackOutcome.duplicate: ("02", "Order already confirmed"),
    CallbackOutcome.already_final: ("02", "Order already confirmed"),
    CallbackOutcome.unknown_order: ("01", "Order not found"),
    CallbackOutcome.amount_mismatch: ("04", "Invalid amount"),
    CallbackOutcome.invalid_signature: ("97", "Invalid signature"),
    CallbackOutcome.error: ("99", "Unknown error"),
}

_HASH = re.compile(r"[0-9a-fA-F]{128}")
_TXN_REF = re.compile(r"[A-Z2-7]{20}([0-9]{14})")
_UNSAFE = re.compile(r"[^A-Za-z0-9 .,:_/-]")
_PORTABLE = str.maketrans({c: f"%{ord(c):02X}" for c in "~*!'()"})


# --- the published algorithms -----------------------------------------------------------------------------------
def hash_data(params: Mapping[str, str]) -> str:
    """The string VNPay signs: signed ``vnp_*`` parameters with a value, sorted by key, form-encoded (space -> +)."""
    kept = {k: v for k, v in params.items() if k.startswith("vnp_") and k not in UNSIGNED and v != ""}
    return urlencode(sorted(kept.items()))


def sign_params(params: Mapping[str, str], secret: str) -> str:
    return _hmac(secret, hash_data(params))


def pay_url_query(params: Mapping[str, str], secret: str) -> str:
    """The pay URL's query string: the signed data followed by its ``vnp_SecureHash``."""
    data = hash_data(params)
    return f"{data}&vnp_SecureHash={_hmac(secret, data)}"


def sign_fields(values: Sequence[str], secret: str) -> str:
    """The QueryDR and refund checksum: HMAC-SHA512 over the values joined with ``|`` in the API's fixed order."""
    return _hmac(secret, "|".join(values))


def vnpay_time(moment: datetime) -> str:
    """``yyyyMMddHHmmss`` in GMT+7; a naive datetime is taken as UTC, as the service stores times."""
    aware = moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)
    return aware.astimezone(GMT7).strftime(DATE_FORMAT)


def txn_ref(idempotency_key: str, created_at: datetime) -> str:
    """The attempt's TxnRef: stable across retries, unique per day, and carrying its transaction date."""
    digest = base64.b32encode(hashlib.sha256(idempotency_key.encode()).digest()).decode()
    return digest[:20] + vnpay_time(created_at)


def ascii_text(text: str, limit: int = 255) -> str:
    """Vietnamese without diacritics, and only characters that every VNPay integration encodes alike."""
    decomposed = unicodedata.normalize("NFKD", text.replace("đ", "d").replace("Đ", "D"))
    bare = "".join(c for c in decomposed if not unicodedata.combining(c))
    return " ".join(_UNSAFE.sub(" ", bare).split())[:limit].strip()


def portable_url(url: str) -> str:
    """The URL with ``~ * ! ' ( )`` percent-encoded, which means the same URL (RFC 3986 6.2.2) but is signed alike by
    every VNPay client: form encoders disagree on exactly these characters (PHP's urlencode and Java's URLEncoder
    escape ``~``, Python's quote_plus keeps it; Python and PHP escape ``*``, Java and JavaScript keep it; ``!'()``
    are kept by JavaScript and .NET only). Escaped, they become ``%7E``... and every encoder writes ``%`` as ``%25``.
    """
    return url.translate(_PORTABLE)


def _hmac(secret: str, data: str) -> str:
    return hmac.new(secret.encode(), data.encode(), hashlib.sha512).hexdigest()


def _transaction_date(reference: str) -> str | None:
    match = _TXN_REF.fullmatch(reference)
    return match.group(1) if match else None


def _vnd(raw: str) -> int:
    """VNPay amounts are VND x 100: digits only, a whole number of VND."""
    hundredths = amount_from_text(raw, minimum=100, maximum=MAX_AMOUNT * 100)
    if hundredths % 100:
        raise ValueError(f"not a VNPay amount: {raw!r}")
    return hundredths // 100


# --- settings ---------------------------------------------------------------------------------------------------
def _required(settings: Mapping[str, Any], key: str) -> str:
    value = settings.get(key)
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"the vnpay gateway needs the setting {key!r}")
    return value


def _secret_list(settings: Mapping[str, Any], key: str) -> list[str]:
    value = settings.get(key, [])
    if not isinstance(value, list | tuple) or not all(isinstance(s, str) and s for s in value):
        raise ValueError(f"the vnpay setting {key!r} must be a list of non-empty strings")
    return list(value)


class VNPayGateway(PaymentGateway):
    name = "vnpay"
    starts_offline = False

    def __init__(self, context: GatewayContext) -> None:
        settings = context.settings
        self.tmn_code = _required(settings, "tmn_code")
        self._secret = _required(settings, "hash_secret")
        self._secrets = [self._secret, *_secret_list(settings, "previous_hash_secrets")]
        self.pay_url = str(settings.get("pay_url") or SANDBOX_PAY_URL)
        self.api_url = str(settings.get("api_url") or SANDBOX_API_URL)
        self.locale = str(settings.get("locale") or "vn")
        if self.locale not in ("vn", "en"):
            raise ValueError("the vnpay setting 'locale' must be 'vn' or 'en'")
        self.order_type = str(settings.get("order_type") or "other")
        self.server_ip = str(settings.get("server_ip") or "127.0.0.1")
        self._http = client_for(settings, context.http)
        # Replaceable so that tests are deterministic without patching globals.
        self.now: Callable[[], datetime] = lambda: datetime.now(UTC)
        self.sleep: Callable[[float], None] = time.sleep
        self.request_id: Callable[[], str] = lambda: uuid.uuid4().hex

    # --- start ------------------------------------------------------------------------------------------------
    def start_payment(self, request: StartPayment) -> StartResult:
        if request.currency != "VND" or request.amount <= 0:
            raise GatewayDeclinedError("VNPay takes positive amounts in VND only")
        params = self.pay_params(request)
        next_url = f"{self.pay_url}?{pay_url_query(params, self._secret)}"
        return StartResult(gateway_reference=params["vnp_TxnRef"], next_url=next_url)

    def pay_params(self, request: StartPayment) -> dict[str, str]:
        ref = txn_ref(request.idempotency_key, request.created_at)
        return {
            "vnp_Version": VERSION,
            "vnp_Command": "pay",
            "vnp_TmnCode": self.tmn_code,
            "vnp_Amount": str(request.amount * 100),
            "vnp_CurrCode": "VND",
            "vnp_TxnRef": ref,
            # VNPay rejects an empty description, and an all-diacritics one could become empty.
            "vnp_OrderInfo": ascii_text(request.description) or f"Thanh toan {ref}",
            "vnp_OrderType": self.order_type,
            "vnp_Locale": self._locale(request.locale),
            "vnp_ReturnUrl": portable_url(request.return_url),
            "vnp_IpAddr": request.client_ip,
            "vnp_CreateDate": vnpay_time(request.created_at),
            "vnp_ExpireDate": vnpay_time(request.expires_at),
        }

    def _locale(self, requested: str) -> str:
        language = requested.lower()[:2]
        return {"vi": "vn", "vn": "vn", "en": "en"}.get(language, self.locale)

    # --- IPN --------------------------------------------------------------------------------------------------
    def parse_callback(self, request: CallbackRequest) -> CallbackEvent:
        params = _received_params(request)
        self.verify(params)
        if params.get("vnp_TmnCode") != self.tmn_code:
            raise InvalidCallback("vnp_TmnCode is not this merchant's")
        try:
            ref, code, amount = params["vnp_TxnRef"], params["vnp_ResponseCode"], _vnd(params["vnp_Amount"])
        except (KeyError, ValueError) as exc:
            raise InvalidCallback(f"IPN is missing or has a bad field: {exc}") from exc
        if params.get("vnp_CurrCode", "VND") != "VND":
            raise InvalidCallback("IPN currency is not VND")
        number, state = params.get("vnp_TransactionNo", ""), params.get("vnp_TransactionStatus", "")
        return CallbackEvent(
            event_id=f"{ref}:{number}:{code}:{state}",
            merchant_reference="",
            gateway_reference=ref,
            status=_ipn_status(code, state),
            amount=amount,
            currency="VND",
            raw_code=code,
        )

    def verify(self, params: Mapping[str, str]) -> None:
        """Raise InvalidCallback unless one of the accepted secrets produced ``vnp_SecureHash``."""
        given = params.get("vnp_SecureHash", "")
        if not _HASH.fullmatch(given):
            raise InvalidCallback("missing or malformed vnp_SecureHash")
        # Every secret is tried, so the time taken does not tell which one matched.
        matches = [hmac.compare_digest(sign_params(params, s), given.lower()) for s in self._secrets]
        if not any(matches):
            raise InvalidCallback("vnp_SecureHash does not match")

    @staticmethod
    def callback_reply(outcome: CallbackOutcome) -> CallbackReply:
        code, message = REPLIES[outcome]
        return CallbackReply(200, json.dumps({"RspCode": code, "Message": message}).encode())

    # --- QueryDR, cancel --------------------------------------------------------------------------------------
    def query_status(self, query: StatusQuery) -> StatusResult:
        ref = query.gateway_reference or txn_ref(query.idempotency_key, query.created_at)
        fields = {
            "vnp_RequestId": self.request_id(),
            "vnp_Version": VERSION,
            "vnp_Command": "querydr",
            "vnp_TmnCode": self.tmn_code,
            "vnp_TxnRef": ref,
            "vnp_TransactionDate": _transaction_date(ref) or vnpay_time(query.created_at),
            "vnp_CreateDate": vnpay_time(self.now()),
            "vnp_IpAddr": self.server_ip,
            "vnp_OrderInfo": f"Truy van {ref}",
        }
        answer = self._call(fields, QUERYDR_FIELDS, QUERYDR_ANSWER_FIELDS, attempts=3)
        return _query_result(answer, ref)

    def cancel(self, query: StatusQuery) -> StatusResult:
        result = self.query_status(query)
        if result.status in (GatewayStatus.succeeded, GatewayStatus.failed, GatewayStatus.cancelled):
            return result
        ref = result.gateway_reference or query.gateway_reference
        return StatusResult(GatewayStatus.cancelled, ref, raw_code="expired-at-lephi")

    # --- refund -----------------------------------------------------------------------------------------------
    def refund(self, request: RefundRequest) -> RefundResult:
        if not 0 < request.amount <= request.payment_amount:
            raise GatewayDeclinedError("refund amount must be positive and at most the amount paid")
        date = _transaction_date(request.gateway_reference)
        if date is None:
            raise GatewayDeclinedError("the reference was not made by this adapter: its transaction date is unknown")
        fields = {
            "vnp_RequestId": hashlib.sha256(request.idempotency_key.encode()).hexdigest()[:32],
            "vnp_Version": VERSION,
            "vnp_Command": "refund",
            "vnp_TmnCode": self.tmn_code,
            "vnp_TransactionType": "02" if request.amount == request.payment_amount else "03",
            "vnp_TxnRef": request.gateway_reference,
            "vnp_Amount": str(request.amount * 100),
            "vnp_TransactionNo": "0",  # unknown to RefundRequest; optional at VNPay
            "vnp_TransactionDate": date,
            "vnp_CreateBy": "lephi",
            "vnp_CreateDate": vnpay_time(self.now()),
            "vnp_IpAddr": self.server_ip,
            "vnp_OrderInfo": ascii_text(request.reason) or f"Hoan tien {request.gateway_reference}",
        }
        # One attempt: a refund repeated on a timeout might be paid twice; the service retries with the same key.
        answer = self._call(fields, REFUND_FIELDS, REFUND_ANSWER_FIELDS, attempts=1)
        return _refund_result(answer)

    # --- the API call -----------------------------------------------------------------------------------------
    def _call(
        self, fields: dict[str, str], order: Sequence[str], answer_order: Sequence[str], attempts: int
    ) -> dict[str, str]:
        body = {**fields, "vnp_SecureHash": sign_fields([fields[k] for k in order], self._secret)}
        response = request_with_retries(
            self._http, "POST", self.api_url, json=body, attempts=attempts, sleep=self.sleep
        )
        if not response.is_success:
            raise GatewayTechnicalError(f"VNPay {fields['vnp_Command']} answered HTTP {response.status_code}")
        try:
            data = response.json()
        except ValueError as exc:
            raise GatewayTechnicalError(f"VNPay {fields['vnp_Command']} answered with invalid JSON") from exc
        if not isinstance(data, dict):
            raise GatewayTechnicalError(f"VNPay {fields['vnp_Command']} answered with a non-object")
        answer = {str(k): "" if v is None else str(v) for k, v in data.items()}
        self._verify_answer(answer, answer_order)
        return answer

    def _verify_answer(self, answer: Mapping[str, str], order: Sequence[str]) -> None:
        given = answer.get("vnp_SecureHash", "")
        if not given:
            return
        if not _HASH.fullmatch(given):  # also keeps non-ASCII text away from compare_digest, which raises on it
            raise GatewayTechnicalError("VNPay answer's vnp_SecureHash is malformed: not trusted")
        # Our own TmnCode goes into the hash: an answer meant for another merchant does not verify.
        values = [self.tmn_code if k == "vnp_TmnCode" else answer.get(k, "") for k in order]
        matches = [hmac.compare_digest(sign_fields(values, s), given.lower()) for s in self._secrets]
        if not any(matches):
            raise GatewayTechnicalError("VNPay answer's vnp_SecureHash does not match: not trusted")


def _received_params(request: CallbackRequest) -> dict[str, str]:
    """The IPN's parameters: the query of a GET, or the form body of a POST (or its query when the body is empty)."""
    if request.method.upper() != "POST" or not request.body:
        return dict(request.query)
    try:
        pairs = parse_qsl(request.body.decode("ascii"), keep_blank_values=True, errors="strict", max_num_fields=100)
    except (UnicodeDecodeError, ValueError) as exc:
        raise InvalidCallback("IPN form body is not valid form data") from exc
    params = dict(pairs)
    if len(params) != len(pairs):
        raise InvalidCallback("IPN form body repeats a parameter")
    return params


def _ipn_status(code: str, state: str) -> GatewayStatus:
    if code == "00":
        # A success code with a non-success transaction status contradicts itself: let a status query decide.
        return GatewayStatus.succeeded if state == "00" else GatewayStatus.pending
    if code == "24":
        return GatewayStatus.cancelled
    # 07: the money was taken but VNPay suspects fraud and the merchant must decide; not a failure.
    return GatewayStatus.pending if code == "07" else GatewayStatus.failed


def _query_result(answer: Mapping[str, str], ref: str) -> StatusResult:
    code, message = answer.get("vnp_ResponseCode", ""), answer.get("vnp_Message", "")
    if code == "91":
        return StatusResult(GatewayStatus.unknown, ref, raw_code=code)
    if code != "00":
        raise GatewayTechnicalError(f"VNPay querydr did not answer ({code}): {message}")
    if (answer.get("vnp_TxnRef") or ref) != ref:
        raise GatewayTechnicalError("VNPay querydr answered about another transaction")
    state = answer.get("vnp_TransactionStatus", "")
    try:
        amount = _vnd(answer["vnp_Amount"]) if answer.get("vnp_Amount") else None
    except ValueError as exc:
        raise GatewayTechnicalError(f"VNPay querydr answered a bad amount: {exc}") from exc
    return StatusResult(QUERY_STATUSES.get(state, GatewayStatus.pending), ref, amount, state)


def _refund_result(answer: Mapping[str, str]) -> RefundResult:
    code, message = answer.get("vnp_ResponseCode", ""), answer.get("vnp_Message", "")
    if code == "00":
        return RefundResult(RefundOutcome.succeeded, answer.get("vnp_TransactionNo") or None, message)
    if code == "94":
        return RefundResult(RefundOutcome.pending, None, message)
    if code == "99":
        raise GatewayTechnicalError(f"VNPay refund failed with an unspecified error: {message}")
    raise GatewayDeclinedError(f"VNPay refused the refund ({code}): {message}")
