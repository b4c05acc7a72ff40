"""Creating a payment and starting it at the gateway, with one live attempt per dossier.

A gateway that starts offline (its start is a computation or a write to this database: sandbox, VietQR) gets the
whole request in one transaction: the Idempotency-Key's claim, the payment already pending with its events and
jobs, the gateway's own record and the stored answer commit together. A gateway reached over the network is never
called with a transaction open: the attempt is written with the claim, the gateway is asked, and its answer is
recorded in a second transaction.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import bindparam, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col

from adapters.base import (
    GatewayDeclinedError,
    GatewayTechnicalError,
    PaymentGateway,
    StartPayment,
    StartResult,
)
from payments.agency.cache import AgencyView
from payments.agency.models import Agency
from payments.auth.service import Principal
from payments.core.config import PaymentSettings
from payments.core.context import AppContext
from payments.core.db import affected, table_of
from payments.core.errors import (
    AgencyDeactivated,
    DossierNotPayable,
    GatewayUnavailable,
    MethodNotEnabled,
    NotFound,
    PaymentInProgress,
)
from payments.core.logging import get_logger
from payments.core.observe import after_commit, observer
from payments.core.sql import Prepared, connection, insert_rows, joining
from payments.core.types import new_id, utcnow
from payments.dossier.models import Dossier, DossierStatus
from payments.dossier.service import find_dossier
from payments.idempotency.service import Claim, Outcome
from payments.outbox.service import insert_jobs, job_row
from payments.payment import kinds
from payments.payment.lifecycle import transition
from payments.payment.models import Payment, PaymentEvent
from payments.payment.queries import get_for_agency, to_out
from payments.payment.schemas import PaymentIn, PaymentOut
from payments.payment.states import LIVE, PaymentStatus

log = get_logger(__name__)
S = PaymentStatus
_PAYMENT = table_of(Payment)
_EVENT = table_of(PaymentEvent)
_DOSSIER = table_of(Dossier)
_AGENCY = table_of(Agency)
# Built once: building a statement costs more CPU than SQLite takes to run it.
_INSERT_PAYMENT = Prepared(insert(_PAYMENT))
_DOSSIER_AND_VERSION = Prepared(
    select(_DOSSIER.c.id, _DOSSIER.c.code, _DOSSIER.c.status, _DOSSIER.c.total_amount, _AGENCY.c.version)
    .join(_AGENCY, _AGENCY.c.id == _DOSSIER.c.agency_id)
    .where(_DOSSIER.c.agency_id == bindparam("agency_id"), _DOSSIER.c.code == bindparam("code"))
)


def _gateway_for(ctx: AppContext, agency: AgencyView, method: str) -> PaymentGateway:
    if method not in agency.payment_methods or method not in ctx.gateways:
        enabled = sorted(set(agency.payment_methods) & set(ctx.gateways.names()))
        raise MethodNotEnabled(f"method {method!r} is not enabled for this agency; enabled: {enabled}")
    try:
        return ctx.gateways.get(method, agency.code)
    except ValueError as exc:  # the adapter refused its settings: the agency's account is not configured
        log.error("gateway.not_configured", gateway=method, agency=agency.code, error=str(exc))
        raise MethodNotEnabled(f"method {method!r} is not configured for this agency") from exc


def _starts_offline(ctx: AppContext, method: str) -> bool:
    if method not in ctx.gateways:
        return False
    # The flag is a class attribute: a wrapper put in place of an adapter says nothing of its own start, and adapters
    # written before the flag existed say nothing either; both are taken to call the network.
    factory = ctx.gateways.factory(method)
    kind = factory if isinstance(factory, type) else type(factory)
    return getattr(kind, "starts_offline", False) is True


def _queries_status(ctx: AppContext, method: str) -> bool:
    if method not in ctx.gateways:
        return False
    factory = ctx.gateways.factory(method)
    kind = factory if isinstance(factory, type) else type(factory)
    # An adapter that says nothing has a ``query_status`` (the protocol requires it): one early query costs little.
    return getattr(kind, "queries_status", True) is not False


def first_requery(settings: PaymentSettings, queries_status: bool) -> tuple[int, int] | None:
    """The delay and step of a new payment's first status query, or None for none. Step -1 is the early query
    (``requery_first_seconds``); the ``payment.requery`` job then goes on through ``requery_schedule_seconds`` from
    step 0."""
    if queries_status and settings.requery_first_seconds:
        return settings.requery_first_seconds, -1
    if settings.requery_schedule_seconds:
        return settings.requery_schedule_seconds[0], 0
    return None


class PaymentCreation:
    """One ``POST /v1/payments`` (or a payer's form): ``outcome`` runs it under the request's Idempotency-Key."""

    def __init__(self, ctx: AppContext, principal: Principal, data: PaymentIn, actor: str) -> None:
        self.ctx, self.principal, self.data, self.actor = ctx, principal, data, actor
        self.payment: Payment | None = None
        self._answer: PaymentOut | None = None
        self.offline = _starts_offline(ctx, data.method)
        self.queries_status = _queries_status(ctx, data.method)

    def outcome(self, client_id: str, key: str | None, fp: str) -> Outcome:
        prepare = self._create_and_start if self.offline else self.prepare
        try:
            return self.ctx.idempotency.run(client_id, key, fp, self._operation, prepare)
        except PaymentInProgress as exc:
            if "payment_id" not in exc.extra:  # found by the unique index: name the live attempt for the caller
                live = self._live_attempt()
                if live is not None:
                    exc.extra["payment_id"] = live
                    exc.detail = f"payment {live} for this dossier is in progress"
            raise

    def _operation(self, claim: Claim) -> tuple[int, dict[str, object]]:
        out = self._answer if self._answer is not None else self.run(claim)
        return 201, out.model_dump(mode="json")

    # --- one transaction, for a gateway that starts offline ------------------------------------------------------
    def _create_and_start(self, s: Session, claim: Claim) -> None:
        dossier, agency = self._dossier_and_agency(s)
        gateway = _gateway_for(self.ctx, agency, self.data.method)
        values = self._new_payment(dossier)
        request = _start_request(self.ctx, values, agency.code)
        declined: GatewayDeclinedError | None = None
        result: StartResult | None = None
        try:
            with joining(s):
                result = gateway.start_payment(request)
        except GatewayTechnicalError as exc:
            log.warning("gateway.start_failed", payment_id=values["id"], gateway=values["gateway"], error=str(exc))
            raise GatewayUnavailable("the payment gateway did not answer; retry with the same Idempotency-Key") from exc
        except GatewayDeclinedError as exc:
            declined = exc
        now = values["created_at"]
        events: list[dict[str, Any]] = [_event(values, "payment.created", None, S.created, self.actor)]
        if result is not None:
            values.update(status=S.pending, gateway_reference=result.gateway_reference, next_url=result.next_url)
            started = _event(values, "gateway.started", S.created, S.pending, f"gateway:{values['gateway']}")
            events.append(started)
        self._insert(s, values, events, now)
        if declined is not None:
            # Rare: let the state machine record the refusal and tell the client systems.
            payment = _payment(s, values["id"])
            transition(
                s,
                payment,
                S.failed,
                actor=f"gateway:{payment.gateway}",
                kind="gateway.start_declined",
                detail={"reason": str(declined)[:200]},
            )
            out = to_out(s, payment, dossier_code=dossier.code)
        else:
            out = _out(values, dossier.code)
        claim.finish(s, 201, out.model_dump(mode="json"))
        self._answer = out

    # --- two transactions, for a gateway reached over the network ------------------------------------------------
    def prepare(self, s: Session, claim: Claim | None) -> None:
        dossier, agency = self._dossier_and_agency(s)
        _gateway_for(self.ctx, agency, self.data.method)
        values = self._new_payment(dossier)
        self._insert(s, values, [_event(values, "payment.created", None, S.created, self.actor)], values["created_at"])
        self.payment = Payment(**values)
        if claim:
            claim.attach(s, values["id"])

    def run(self, claim: Claim | None) -> PaymentOut:
        payment = self.payment
        if payment is None:  # resumed after a crash: the attempt exists, named by the recovery point
            assert claim is not None and claim.resource_id is not None
            with self.ctx.db.read() as s:
                payment = get_for_agency(s, self.principal.agency_id, claim.resource_id)
        return start_payment(
            self.ctx, payment, self.ctx.gateway(payment.gateway, payment.agency_id), claim, self.data.dossier_code
        )

    # --- shared -------------------------------------------------------------------------------------------------
    def _dossier_and_agency(self, s: Session) -> tuple[Any, AgencyView]:
        """The dossier and, in the same statement, the agency's version for its cached copy."""
        agency_id = self.principal.agency_id
        params = {"agency_id": agency_id, "code": self.data.dossier_code}
        dossier = _DOSSIER_AND_VERSION(s, params).first()
        if dossier is None:
            find_dossier(s, agency_id, self.data.dossier_code)  # raises the 404, logging another agency's code
            raise NotFound(f"no dossier with code {self.data.dossier_code!r}")
        agency = self.ctx.agencies.get(s, agency_id, dossier.version)
        assert agency is not None
        if not agency.active:
            raise AgencyDeactivated("the agency is deactivated: it takes no new payments")
        return dossier, agency

    def _new_payment(self, dossier: Any) -> dict[str, Any]:
        if dossier.status is not DossierStatus.unpaid:
            raise DossierNotPayable(f"dossier {dossier.code!r} is {dossier.status.value}")
        now = utcnow()
        return {
            "id": new_id("pay"),
            "agency_id": self.principal.agency_id,
            "dossier_id": dossier.id,
            "gateway": self.data.method,
            "amount": dossier.total_amount,
            "currency": "VND",
            "status": S.created,
            "gateway_token": new_id("gtk"),
            "gateway_reference": None,
            "next_url": None,
            "return_url": str(self.data.return_url),
            "description": f"Le phi ho so {dossier.code}",
            "refunded_amount": 0,
            "refund_reserved": 0,
            "requires_review": False,
            "expires_at": now + timedelta(seconds=self.ctx.settings.payment_expiry_seconds),
            "created_at": now,
            "updated_at": now,
            "succeeded_at": None,
        }

    def _insert(self, s: Session, values: dict[str, Any], events: list[dict[str, Any]], now: datetime) -> None:
        conn = connection(s)
        try:
            _INSERT_PAYMENT(conn, values)
        except IntegrityError as exc:
            # The unique index keeps one live attempt per dossier, whoever got there first.
            raise PaymentInProgress("another payment for this dossier is in progress") from exc
        insert_rows(conn, _EVENT, events)
        after_commit(s, lambda: _observe_created(values["gateway"], [event["to_status"] for event in events]))
        payment_id = values["id"]
        jobs = []
        if values["status"] in LIVE:
            jobs.append(job_row(kinds.EXPIRE, {"payment_id": payment_id}, values["expires_at"], now))
            first = first_requery(self.ctx.settings, self.queries_status)
            if first is not None:
                delay, step = first
                requery = {"payment_id": payment_id, "step": step}
                jobs.append(job_row(kinds.REQUERY, requery, now + timedelta(seconds=delay), now))
        insert_jobs(conn, jobs)

    def _live_attempt(self) -> str | None:
        with self.ctx.db.read() as s:
            dossier = s.execute(
                select(_DOSSIER.c.id).where(
                    _DOSSIER.c.agency_id == self.principal.agency_id, _DOSSIER.c.code == self.data.dossier_code
                )
            ).scalar()
            if dossier is None:
                return None
            live: str | None = s.execute(
                select(_PAYMENT.c.id).where(_PAYMENT.c.dossier_id == dossier, _PAYMENT.c.status.in_(list(LIVE)))
            ).scalar()
            return live


def _observe_created(method: str, statuses: list[str]) -> None:
    counts = observer()
    counts.payment_created(method)
    for status in statuses:
        counts.payment_status(method, status)


def _event(
    values: dict[str, Any], kind: str, from_: PaymentStatus | None, to: PaymentStatus, actor: str
) -> dict[str, Any]:
    return {
        "payment_id": values["id"],
        "kind": kind,
        "from_status": from_.value if from_ else None,
        "to_status": to.value,
        "actor": actor,
        "gateway_reference": values["gateway_reference"],
        "amount": values["amount"],
        "detail": {},
        "created_at": values["updated_at"],
    }


def _start_request(ctx: AppContext, values: dict[str, Any], agency_code: str) -> StartPayment:
    return StartPayment(
        merchant_reference=values["id"],
        idempotency_key=values["gateway_token"],
        amount=values["amount"],
        currency=values["currency"],
        description=values["description"],
        return_url=values["return_url"],
        callback_url=ctx.callback_url(values["gateway"], agency_code),
        created_at=values["created_at"],
        expires_at=values["expires_at"],
    )


def _out(values: dict[str, Any], dossier_code: str) -> PaymentOut:
    return PaymentOut(
        id=values["id"],
        status=values["status"],
        amount=values["amount"],
        currency=values["currency"],
        dossier_code=dossier_code,
        method=values["gateway"],
        next_url=values["next_url"],
        return_url=values["return_url"],
        gateway_reference=values["gateway_reference"],
        refunded_amount=0,
        refundable_amount=0,
        requires_review=False,
        created_at=values["created_at"],
        updated_at=values["updated_at"],
        expires_at=values["expires_at"],
        succeeded_at=None,
    )


def start_payment(
    ctx: AppContext, payment: Payment, gateway: PaymentGateway, claim: Claim | None, dossier_code: str
) -> PaymentOut:
    payment_id = payment.id
    # A pending attempt without a next_url was settled by a status query after its start timed out: asking the
    # gateway again with the same token returns the same payment and the page to send the payer to.
    if payment.status is not S.created and not (payment.status is S.pending and payment.next_url is None):
        return _finish(ctx, payment_id, claim)
    request = StartPayment(
        merchant_reference=payment.id,
        idempotency_key=payment.gateway_token,
        amount=payment.amount,
        currency=payment.currency,
        description=payment.description,
        return_url=payment.return_url,
        callback_url=ctx.callback_url(payment.gateway, ctx.agency_code(payment.agency_id)),
        created_at=payment.created_at,
        expires_at=payment.expires_at,
    )
    try:
        result = gateway.start_payment(request)
    except GatewayTechnicalError as exc:
        # The gateway may or may not have created it: leave the attempt for a retry or the status query.
        log.warning("gateway.start_failed", payment_id=payment.id, gateway=payment.gateway, error=str(exc))
        raise GatewayUnavailable("the payment gateway did not answer; retry with the same Idempotency-Key") from exc
    except GatewayDeclinedError as exc:
        with ctx.db.write() as s:
            payment = _payment(s, payment_id)
            transition(
                s,
                payment,
                S.failed,
                actor=f"gateway:{payment.gateway}",
                kind="gateway.start_declined",
                detail={"reason": str(exc)[:200]},
            )
        return _finish(ctx, payment_id, claim)
    with ctx.db.write() as s:
        values = {"gateway_reference": result.gateway_reference, "next_url": result.next_url}
        moved = False
        if payment.status is S.created:
            moved = transition(
                s,
                payment,
                S.pending,
                actor=f"gateway:{payment.gateway}",
                kind="gateway.started",
                gateway_reference=result.gateway_reference,
                values=values,
            )
        elif payment.status is S.pending and payment.next_url is None:
            stmt = update(Payment).where(col(Payment.id) == payment.id, col(Payment.next_url).is_(None))
            moved = affected(s.execute(stmt.values(next_url=result.next_url))) == 1
            payment.next_url = result.next_url
        if not moved:  # a callback or a worker got there first: answer with what is stored now
            payment = _payment(s, payment_id)
        out = to_out(s, payment, dossier_code=dossier_code)
        if claim:
            claim.finish(s, 201, out.model_dump(mode="json"))
    return out


def _finish(ctx: AppContext, payment_id: str, claim: Claim | None) -> PaymentOut:
    with ctx.db.write() as s:
        out = to_out(s, _payment(s, payment_id))
        if claim:
            claim.finish(s, 201, out.model_dump(mode="json"))
    return out


def _payment(s: Session, payment_id: str) -> Payment:
    payment = s.get(Payment, payment_id)
    if payment is None:
        raise NotFound(f"no payment {payment_id!r}")
    return payment
