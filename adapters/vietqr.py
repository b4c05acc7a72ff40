"""Bank transfer by VietQR (NAPAS 247): the EMVCo payload codec, QR rendering, payment references, and the adapter.

The payer scans a QR code with a banking app and transfers to the agency's own account; no gateway holds the money.
The QR carries the account, the amount and, as its purpose, an unguessable payment reference. The money is matched to
the payment only when the bank reports the credit, so the reference must survive bank apps that change its case,
insert spaces or dashes, and cut the memo.

Settings (``GatewayContext.settings``; a missing or invalid one raises ValueError when the adapter is built):

- ``bank_bin``: the 6-digit NAPAS BIN of the agency's bank (e.g. ``970436``).
- ``account_number``: the agency's account that receives the transfers (see ``build_payload`` for the format).
- ``account_name``: the account holder's name, shown next to the QR so the payer can check whom they are paying.
- ``reference_secret``: HMAC key that makes payment references unguessable (16+ characters). Keep it fixed: a retry
  of an attempt must derive the same reference as its first start.
- ``notification_secret``: HMAC key the bank (or the bank-feed relay) signs credit notifications with (16+ chars).
- ``previous_notification_secrets`` (optional list): older keys still accepted while the key is being rotated.

Credit notification (POST to the gateway callback URL), JSON object, every field required::

    {"transaction_id": "FT25001123456",     # the bank's id of the credit: deduplication key, 1-100 printable ASCII
     "bank_bin": "970436",                  # the receiving bank, must be ours
     "account_number": "0011001234567",     # the credited account, must be ours
     "amount": 150000,                      # JSON integer, whole VND, 1 to 9 999 999 999 999
     "currency": "VND",
     "description": "CK LP3X7K-Q9ABCDE",    # the transfer memo, as the bank reports it (string, may be empty)
     "booked_at": "2025-01-01T09:00:00+07:00"}  # ISO 8601

Header ``Lephi-Bank-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256 of "{t}.{raw body}">`` (the sandbox scheme:
300 s tolerance both ways, several ``v1`` and several secrets accepted during rotation).

Payment reference: ``LP`` + 11 characters of Crockford base32 (``0-9`` and ``A-Z`` without ``I L O U``) from
HMAC-SHA256(reference_secret, idempotency key) + 1 Damm check character = 14 characters, e.g. ``LP3X7KQ9ABCDEF``.
"""

from __future__ import annotations

import hashlib
import hmac
import io
import json
import re
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any, Literal

import segno

from adapters.base import (
    CallbackEvent,
    CallbackOutcome,
    CallbackReply,
    CallbackRequest,
    GatewayContext,
    GatewayDeclinedError,
    GatewayStatus,
    InvalidCallback,
    PaymentGateway,
    RefundRequest,
    RefundResult,
    StartPayment,
    StartResult,
    StatusQuery,
    StatusResult,
)
from adapters.money import amount_from_json
from adapters.sandbox import verify

SIGNATURE_HEADER = "lephi-bank-signature"
CURRENCY = "VND"

# --- EMVCo merchant-presented payload ------------------------------------------------------------------------------
NAPAS_GUID = "A000000727"
SERVICE_TO_ACCOUNT = "QRIBFTTA"
CURRENCY_VND = "704"
COUNTRY_VN = "VN"
PURPOSE_MAX = 25
AMOUNT_MAX_DIGITS = 13  # the longest value EMVCo allows in tag 54

_BIN = re.compile(r"[0-9]{6}")
# Usually digits; some banks issue alias or virtual accounts with letters. 19 is the NAPAS maximum (a card PAN).
_ACCOUNT = re.compile(r"[0-9A-Za-z]{1,19}")
_PRINTABLE = re.compile(r"[\x20-\x7e]*")
# The bank's id of a credit is the deduplication key: printable ASCII, at most the 100 characters the service keeps.
_TRANSACTION_ID = re.compile(r"[\x21-\x7e][\x20-\x7e]{0,99}")


def crc16_ccitt_false(data: bytes) -> int:
    """CRC-16/CCITT-FALSE: poly 0x1021, init 0xFFFF, no reflection, no final xor."""
    crc = 0xFFFF
    for byte in data:
        crc ^= byte << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x1021) if crc & 0x8000 else crc << 1
        crc &= 0xFFFF
    return crc


def tlv(tag: str, value: str) -> str:
    """One EMVCo field: ID(2) + LEN(2) + VALUE; ASCII only, so the length in characters is the length in bytes."""
    if not re.fullmatch(r"[0-9]{2}", tag):
        raise ValueError(f"tag must be two digits, got {tag!r}")
    if not value.isascii() or not 1 <= len(value) <= 99:
        raise ValueError(f"field {tag} must be 1..99 ASCII characters")
    return f"{tag}{len(value):02d}{value}"


def build_payload(bank_bin: str, account: str, amount: int | None, purpose: str) -> str:
    """The VietQR payload: static (``01``=``11``) without an amount, dynamic (``12``) with one.

    ``account``: 1..19 ASCII letters or digits. ``amount``: whole VND, 1..13 digits. ``purpose``: 1..25 printable
    ASCII characters (bank apps strip diacritics and cut long text, so we never rely on more).
    """
    _check_account(bank_bin, account)
    _check_amount(amount)
    if not 1 <= len(purpose) <= PURPOSE_MAX or not _PRINTABLE.fullmatch(purpose):
        raise ValueError(f"purpose must be 1..{PURPOSE_MAX} printable ASCII characters")
    beneficiary = tlv("00", bank_bin) + tlv("01", account)
    body = (
        tlv("00", "01")
        + tlv("01", "11" if amount is None else "12")
        + tlv("38", tlv("00", NAPAS_GUID) + tlv("01", beneficiary) + tlv("02", SERVICE_TO_ACCOUNT))
        + tlv("53", CURRENCY_VND)
        + ("" if amount is None else tlv("54", str(amount)))
        + tlv("58", COUNTRY_VN)
        + tlv("62", tlv("08", purpose))
        + "6304"
    )
    return body + f"{crc16_ccitt_false(body.encode('ascii')):04X}"


def _check_account(bank_bin: str, account: str) -> None:
    if not _BIN.fullmatch(bank_bin):
        raise ValueError("bank BIN must be 6 digits")
    if not _ACCOUNT.fullmatch(account):
        raise ValueError("account must be 1..19 ASCII letters or digits")


def _check_amount(amount: int | None) -> None:
    if amount is None:
        return
    # bool is an int subclass: True would otherwise become a 1 VND transfer.
    if type(amount) is not int or amount <= 0 or len(str(amount)) > AMOUNT_MAX_DIGITS:
        raise ValueError(f"amount must be a positive whole number of VND with at most {AMOUNT_MAX_DIGITS} digits")


def parse_payload(text: str) -> dict[str, str | int | None]:
    """Check the CRC and decode a VietQR payload; ValueError if it is not one this module could have built."""
    if not text.isascii() or not text[-8:-4] == "6304":
        raise ValueError("payload must be ASCII and end with the CRC field 6304")
    given = text[-4:]
    if not re.fullmatch(r"[0-9A-F]{4}", given) or int(given, 16) != crc16_ccitt_false(text[:-4].encode("ascii")):
        raise ValueError("payload CRC does not match")
    top = _fields(text)
    account = _fields(_need(top, "38"))
    beneficiary = _fields(_need(account, "01"))
    if (
        top.get("00") != "01"
        or top.get("01") not in ("11", "12")
        or account.get("00") != NAPAS_GUID
        or list(top)[-1] != "63"
    ):
        raise ValueError("payload is not a VietQR transfer")
    amount = _amount_field(top.get("54"))
    return {
        "initiation": "static" if top["01"] == "11" else "dynamic",
        "bank_bin": _need(beneficiary, "00"),
        "account": _need(beneficiary, "01"),
        "service": account.get("02"),
        "currency": top.get("53"),
        "amount": amount,
        "country": top.get("58"),
        "purpose": _fields(top["62"]).get("08") if "62" in top else None,
        "crc": given,
    }


def _amount_field(value: str | None) -> int | None:
    # Exactly what build_payload writes: no sign, no decimals, no leading zero.
    if value is not None and not re.fullmatch(r"[1-9][0-9]*", value):
        raise ValueError("amount must be whole VND digits")
    return None if value is None else int(value)


def _fields(text: str) -> dict[str, str]:
    """Split a run of TLV fields; ValueError on a truncated field or a repeated tag."""
    out: dict[str, str] = {}
    pos = 0
    while pos < len(text):
        head = text[pos : pos + 4]
        if not re.fullmatch(r"[0-9]{4}", head) or pos + 4 + int(head[2:]) > len(text):
            raise ValueError(f"malformed field at offset {pos}")
        if head[:2] in out:
            raise ValueError(f"field {head[:2]} appears twice")
        out[head[:2]] = text[pos + 4 : pos + 4 + int(head[2:])]
        pos += 4 + int(head[2:])
    return out


def _need(fields: Mapping[str, str], tag: str) -> str:
    if tag not in fields:
        raise ValueError(f"field {tag} is missing")
    return fields[tag]


# --- Rendering ------------------------------------------------------------------------------------------------------
QR_SCALE = 8  # pixels per module: a version 6 code is ~390 px, comfortable to show on a phone and scan from it
QR_BORDER = 4  # the quiet zone ISO/IEC 18004 requires, in modules


def make_qr(payload: str) -> segno.QRCode:
    """The QR symbol for a payload, refusing any payload that does not decode (we never render a broken one)."""
    parse_payload(payload)
    # Level M survives smudged screens; segno raises it for free when it fits in the same version.
    return segno.make(payload, error="m", micro=False)


def render_svg(payload: str) -> str:
    """A standalone SVG document."""
    out = io.BytesIO()
    make_qr(payload).save(out, kind="svg", scale=QR_SCALE, border=QR_BORDER)
    return out.getvalue().decode("utf-8")


def render_png(payload: str) -> bytes:
    out = io.BytesIO()
    make_qr(payload).save(out, kind="png", scale=QR_SCALE, border=QR_BORDER)
    return out.getvalue()


# --- Payment references ---------------------------------------------------------------------------------------------
REFERENCE_PREFIX = "LP"
REFERENCE_BODY = 11  # 55 bits: collisions stay below 2e-5 even after a million attempts
REFERENCE_LENGTH = len(REFERENCE_PREFIX) + REFERENCE_BODY + 1
ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"  # Crockford base32: no I, L, O, U
_VALUE = {c: i for i, c in enumerate(ALPHABET)}
# Crockford's decoding rule: a payer who types the code by hand may read 0 as O and 1 as I or L.
_LOOKALIKE = str.maketrans({"O": "0", "I": "1", "L": "1"})
_SEPARATORS = re.compile(r"[\s\-._]+")


def _damm_step(interim: int, digit: int) -> int:
    # A weighted sum mod 32 cannot catch every adjacent transposition (the weights and their differences would all
    # have to be odd). Damm's algorithm can, with the quasigroup x*y = 2x + y in GF(32) (mod x^5 + x^2 + 1): it is
    # totally anti-symmetric because 2 != 1, so every single substitution and adjacent transposition is detected.
    doubled = interim << 1
    return (doubled ^ 0b100101 if doubled & 0b100000 else doubled) ^ digit


def _damm(chars: str) -> int:
    interim = 0
    for char in chars:
        interim = _damm_step(interim, _VALUE[char])
    return interim


def _check_char(body: str) -> str:
    # The character c with interim*c == 0 is c = 2*interim, i.e. one more step with digit 0.
    return ALPHABET[_damm_step(_damm(body), 0)]


def make_reference(secret: str, idempotency_key: str) -> str:
    """``LP`` + 11 HMAC-derived characters + a check character: the same attempt always gets the same reference."""
    if not secret or not idempotency_key:
        raise ValueError("a reference needs a secret and an idempotency key")
    digest = hmac.new(secret.encode(), b"vietqr-reference:" + idempotency_key.encode(), hashlib.sha256).digest()
    number = int.from_bytes(digest[:8], "big") >> (64 - 5 * REFERENCE_BODY)
    body = "".join(ALPHABET[(number >> (5 * i)) & 31] for i in reversed(range(REFERENCE_BODY)))
    return REFERENCE_PREFIX + body + _check_char(body)


def is_reference(text: str) -> bool:
    """True for a well-formed reference in canonical form (prefix, length, alphabet, check character)."""
    body = text[len(REFERENCE_PREFIX) :]
    return (
        len(text) == REFERENCE_LENGTH
        and text.startswith(REFERENCE_PREFIX)
        and all(c in _VALUE for c in body)
        and _damm(body) == 0
    )


def find_reference(memo: str) -> str | None:
    """The one payment reference in a bank memo, in canonical form, or None.

    Rules, because bank apps change case, insert or drop separators and cut long memos:

    - the memo is uppercased and whitespace, ``-``, ``.`` and ``_`` are removed;
    - every ``LP`` starts a candidate: the 12 characters after it, with the look-alikes O -> 0 and I, L -> 1 folded
      back, must be in the alphabet and pass the check character (so a memo cut inside the reference gives None);
    - the same reference found twice counts once; two different valid references give None (which payment is meant
      is for finance staff to decide).

    Random text passes the check with probability 1/32; such a false match names no payment, or makes a second
    reference next to the real one: either way the credit is held for review, never applied to the wrong payment.
    """
    text = _SEPARATORS.sub("", memo.upper())
    found: set[str] = set()
    for start in (m.start() for m in re.finditer(f"(?={REFERENCE_PREFIX})", text)):
        candidate = text[start : start + REFERENCE_LENGTH]
        candidate = REFERENCE_PREFIX + candidate[len(REFERENCE_PREFIX) :].translate(_LOOKALIKE)
        if is_reference(candidate):
            found.add(candidate)
    return found.pop() if len(found) == 1 else None


def classify_credit(expected: int, credited: int) -> Literal["exact", "underpaid", "overpaid"]:
    """How a credit compares with the amount owed; what to do about it is the service's decision."""
    if credited == expected:
        return "exact"
    return "underpaid" if credited < expected else "overpaid"


# --- The adapter ----------------------------------------------------------------------------------------------------
SECRET_MIN_LENGTH = 16


class VietQRGateway(PaymentGateway):
    """Bank transfer to the agency's account; settled by the bank's signed credit notifications and statements."""

    name = "vietqr"
    starts_offline = True
    # A credit is money already in the agency's account: the service records and matches it, never rejects it.
    pushes_funds = True
    queries_status = False

    def __init__(self, context: GatewayContext) -> None:
        settings = context.settings
        self._public_url = context.public_url.rstrip("/")
        self.bank_bin = _setting(settings, "bank_bin")
        self.account_number = _setting(settings, "account_number")
        self.account_name = _setting(settings, "account_name")
        _check_account(self.bank_bin, self.account_number)
        self._reference_secret = _secret(settings.get("reference_secret"), "reference_secret")
        previous = settings.get("previous_notification_secrets") or []
        if isinstance(previous, str) or not isinstance(previous, Iterable):
            raise ValueError("previous_notification_secrets must be a list of secrets")
        self._notification_secrets = [
            _secret(settings.get("notification_secret"), "notification_secret"),
            *(_secret(s, "previous_notification_secrets") for s in previous),
        ]

    def start_payment(self, request: StartPayment) -> StartResult:
        if request.currency != CURRENCY:
            raise GatewayDeclinedError("VietQR transfers are in VND only")
        reference = make_reference(self._reference_secret, request.idempotency_key)
        try:
            self.qr_for(reference, request.amount)  # refuse now rather than when the payer opens the page
        except ValueError as exc:
            raise GatewayDeclinedError(str(exc)) from exc
        return StartResult(reference, f"{self._public_url}/pay/qr/{reference}", GatewayStatus.pending)

    def qr_for(self, reference: str, amount: int) -> str:
        """The dynamic QR payload for one payment: our account, the amount, and the reference as the purpose."""
        if not is_reference(reference):
            raise ValueError("not a payment reference")
        return build_payload(self.bank_bin, self.account_number, amount, reference)

    def parse_callback(self, request: CallbackRequest) -> CallbackEvent:
        header = {k.lower(): v for k, v in request.headers.items()}.get(SIGNATURE_HEADER)
        if not header:
            raise InvalidCallback("missing signature header")
        verify(self._notification_secrets, request.body, header)
        credit = _credit(request.body)
        if credit["bank_bin"] != self.bank_bin or credit["account_number"].upper() != self.account_number.upper():
            raise InvalidCallback("the credit is not to this gateway's account")
        return CallbackEvent(
            event_id=credit["transaction_id"],
            merchant_reference="",
            gateway_reference=find_reference(credit["description"]) or "",
            status=GatewayStatus.succeeded,  # the money arrived; whether it is the right amount is the service's call
            amount=credit["amount"],
            currency=CURRENCY,
            raw_code="credit",
            description=str(credit["description"]),
        )

    @staticmethod
    def callback_reply(outcome: CallbackOutcome) -> CallbackReply:
        # Banks redeliver on any non-2xx, so every handled credit gets 200, whatever the service made of it. Only a
        # processing error asks for redelivery: the credit was not recorded and must not be lost.
        code = {CallbackOutcome.invalid_signature: 401, CallbackOutcome.error: 500}.get(outcome, 200)
        return CallbackReply(code, json.dumps({"result": outcome.value}).encode())

    def query_status(self, query: StatusQuery) -> StatusResult:
        # A transfer cannot be looked up at the bank: credits and statements settle it.
        return StatusResult(GatewayStatus.pending, query.gateway_reference, raw_code="no-query")

    def cancel(self, query: StatusQuery) -> StatusResult:
        # Nothing exists at the bank to cancel; a credit arriving later is held by the service for review.
        return StatusResult(GatewayStatus.cancelled, query.gateway_reference)

    def refund(self, request: RefundRequest) -> RefundResult:
        # Only the account holder can send money back: finance staff transfer it from the agency's account.
        raise GatewayDeclinedError("bank transfers are refunded by finance staff from the agency's account")


def _setting(settings: Mapping[str, Any], key: str) -> str:
    value = settings.get(key)
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"the vietqr gateway needs the setting {key!r}")
    return value.strip()


def _secret(value: object, key: str) -> str:
    if not isinstance(value, str) or len(value) < SECRET_MIN_LENGTH:
        raise ValueError(f"the vietqr setting {key!r} must be a secret of {SECRET_MIN_LENGTH}+ characters")
    return value


def _credit(body: bytes) -> dict[str, Any]:
    """The notification body, type-checked field by field; InvalidCallback if any field is missing or wrong."""
    try:
        data = json.loads(body)
    except ValueError as exc:
        raise InvalidCallback("notification body is not JSON") from exc
    strings = ("transaction_id", "bank_bin", "account_number", "currency", "description", "booked_at")
    if not isinstance(data, dict) or not all(isinstance(data.get(k), str) for k in strings):
        raise InvalidCallback("notification body is not a credit notification")
    try:
        data["amount"] = amount_from_json(data.get("amount"))
    except ValueError as exc:
        raise InvalidCallback(f"notification amount is not valid: {exc}") from exc
    if not _TRANSACTION_ID.fullmatch(data["transaction_id"]) or data["currency"] != CURRENCY:
        raise InvalidCallback("notification has no valid transaction id and VND currency")
    try:
        datetime.fromisoformat(data["booked_at"])
    except ValueError as exc:
        raise InvalidCallback("booked_at is not an ISO 8601 time") from exc
    return data
