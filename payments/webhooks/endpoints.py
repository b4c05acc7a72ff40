"""/v1/webhook-endpoints and /v1/webhook-deliveries: where an agency's client systems hear of payments and receipts,
and what was delivered to them."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Query
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field, field_validator
from sqlmodel import Session, col, select

from payments.auth.access import is_foreign, owned_or_404
from payments.auth.deps import CtxDep, actor_of, require
from payments.auth.models import Scope
from payments.auth.service import Principal
from payments.core.errors import Conflict
from payments.core.pagination import Page, newest_first_page
from payments.core.responses import problems, respond
from payments.core.schemas import StrictModel
from payments.core.types import utcnow
from payments.idempotency.deps import Idempotent
from payments.webhooks.models import DeliveryStatus, WebhookDelivery, WebhookEndpoint
from payments.webhooks.service import (
    EVENT_TYPES,
    check_event_types,
    check_url,
    new_secret,
    retry_now,
    shown_error,
)

router = APIRouter(tags=["webhooks"])
Manager = Annotated[Principal, Depends(require(Scope.webhooks_write))]


class EndpointIn(StrictModel):
    url: str = Field(min_length=8, max_length=2000, examples=["https://one-stop.example.gov.vn/lephi/events"])
    event_types: list[str] = Field(default_factory=list, max_length=len(EVENT_TYPES), examples=[["receipt.issued"]])
    description: str = Field(default="", max_length=200)


class EndpointOut(BaseModel):
    id: str
    url: str
    event_types: list[str]
    description: str
    enabled: bool
    created_at: datetime
    disabled_at: datetime | None
    # Only in the answer that created the endpoint: it is the key to check signatures with.
    secret: str | None = None


class DeliveryOut(BaseModel):
    id: str
    message_id: str
    endpoint_id: str
    event_type: str
    status: DeliveryStatus
    attempts: int
    last_status_code: int | None
    last_error: str | None = Field(
        description="The last failure's category: timeout, refused, tls, dns, blocked, protocol, network, disabled "
        "or http_<status>",
        examples=["http_503"],
    )
    last_attempt_at: datetime | None
    delivered_at: datetime | None
    created_at: datetime

    @field_validator("last_error")
    @classmethod
    def _category_only(cls, value: str | None) -> str | None:
        return shown_error(value)


def _endpoint_out(row: WebhookEndpoint, with_secret: bool = False) -> EndpointOut:
    return EndpointOut(
        id=row.id,
        url=row.url,
        event_types=list(row.event_types),
        description=row.description,
        enabled=row.enabled,
        created_at=row.created_at,
        disabled_at=row.disabled_at,
        secret=row.secret if with_secret else None,
    )


def _endpoint(s: Session, agency_id: str, endpoint_id: str) -> WebhookEndpoint:
    return owned_or_404(s.get(WebhookEndpoint, endpoint_id), agency_id, "webhook endpoint", endpoint_id)


def _endpoint_filter(s: Session, agency_id: str, endpoint_id: str | None) -> None:
    """A filter naming another agency's endpoint finds nothing, as a missing one does; it is logged."""
    if endpoint_id is not None:
        is_foreign(s.get(WebhookEndpoint, endpoint_id), agency_id, endpoint_id)


def _delivery(s: Session, agency_id: str, delivery_id: str) -> WebhookDelivery:
    return owned_or_404(s.get(WebhookDelivery, delivery_id), agency_id, "webhook delivery", delivery_id)


@router.post(
    "/v1/webhook-endpoints",
    response_model=EndpointOut,
    status_code=201,
    responses=problems(400, 401, 403, 409, 413, 422),
)
def post_endpoint(data: EndpointIn, ctx: CtxDep, principal: Manager, idem: Idempotent) -> JSONResponse:
    """Register an endpoint for the agency's events (all types when ``event_types`` is empty). The answer carries the
    signing secret once; keep it to check ``webhook-signature``."""
    url = check_url(data.url, ctx.settings)
    types = check_event_types(data.event_types)

    def register(s: Session) -> tuple[int, dict[str, object]]:
        row = WebhookEndpoint(
            agency_id=principal.agency_id,
            url=url,
            secret=new_secret(),
            event_types=types,
            description=data.description,
            created_by=actor_of(principal),
        )
        s.add(row)
        s.flush()
        return 201, _endpoint_out(row, with_secret=True).model_dump(mode="json")

    return respond(ctx.idempotency.run_in_transaction(principal.key_id, idem.key, idem.fingerprint(data), register))


@router.get("/v1/webhook-endpoints", response_model=list[EndpointOut], responses=problems(401, 403))
def get_endpoints(ctx: CtxDep, principal: Manager) -> list[EndpointOut]:
    """The agency's endpoints, enabled and disabled, oldest first (secrets are not shown again)."""
    with ctx.db.read() as s:
        rows = s.exec(
            select(WebhookEndpoint)
            .where(WebhookEndpoint.agency_id == principal.agency_id)
            .order_by(col(WebhookEndpoint.created_at))
        )
        return [_endpoint_out(r) for r in rows]


@router.delete("/v1/webhook-endpoints/{endpoint_id}", response_model=EndpointOut, responses=problems(401, 403, 404))
def delete_endpoint(endpoint_id: str, ctx: CtxDep, principal: Manager) -> EndpointOut:
    """Disable an endpoint: nothing more is sent to it; its delivery history stays."""
    with ctx.db.write() as s:
        row = _endpoint(s, principal.agency_id, endpoint_id)
        if row.enabled:
            row.enabled, row.disabled_at = False, utcnow()
            s.add(row)
            s.flush()
        return _endpoint_out(row)


@router.get("/v1/webhook-deliveries", response_model=Page[DeliveryOut], responses=problems(401, 403, 422))
def get_deliveries(
    ctx: CtxDep,
    principal: Manager,
    status: DeliveryStatus | None = None,
    endpoint_id: Annotated[str | None, Query(max_length=40)] = None,
    event_type: Annotated[str | None, Query(max_length=60)] = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    cursor: Annotated[str | None, Query(max_length=200)] = None,
) -> Page[DeliveryOut]:
    """What was sent to the agency's endpoints, newest first; failed deliveries are listed, never dropped."""
    query = select(WebhookDelivery).where(WebhookDelivery.agency_id == principal.agency_id)
    if status is not None:
        query = query.where(WebhookDelivery.status == status)
    if endpoint_id is not None:
        query = query.where(WebhookDelivery.endpoint_id == endpoint_id)
    if event_type is not None:
        query = query.where(WebhookDelivery.event_type == event_type)
    with ctx.db.read() as s:
        _endpoint_filter(s, principal.agency_id, endpoint_id)
        rows, next_cursor = newest_first_page(s, query, WebhookDelivery, limit, cursor)
        return Page[DeliveryOut](
            data=[DeliveryOut.model_validate(r, from_attributes=True) for r in rows], next_cursor=next_cursor
        )


@router.post(
    "/v1/webhook-deliveries/{delivery_id}/retry",
    response_model=DeliveryOut,
    responses=problems(400, 401, 403, 404, 409),
)
def post_retry(delivery_id: str, ctx: CtxDep, principal: Manager, idem: Idempotent) -> JSONResponse:
    """Send a failed delivery again, with a fresh retry schedule (e.g. once the endpoint is fixed)."""

    def retry(s: Session) -> tuple[int, dict[str, object]]:
        row = _delivery(s, principal.agency_id, delivery_id)
        if row.status is not DeliveryStatus.failed:
            raise Conflict(f"delivery {delivery_id} is {row.status.value}; only a failed delivery is sent again")
        endpoint = _endpoint(s, principal.agency_id, row.endpoint_id)
        if not endpoint.enabled:
            raise Conflict(f"endpoint {endpoint.id} is disabled")
        retry_now(s, row)
        s.flush()
        s.refresh(row)
        return 200, DeliveryOut.model_validate(row, from_attributes=True).model_dump(mode="json")

    return respond(ctx.idempotency.run_in_transaction(principal.key_id, idem.key, idem.fingerprint(), retry))
