"""The FastAPI application factory."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager

from fastapi import FastAPI
from fastapi.concurrency import run_in_threadpool
from fastapi.routing import APIRoute

from lephi import openapi
from lephi.container import Container, build_container
from lephi.health import router as health
from lephi.jobs import HANDLERS, NETWORK_KINDS, PERIODIC
from lephi.settings import Settings, get_settings
from payments.core.db import Database, make_engine
from payments.core.http import RequestLimitsMiddleware, install_error_handlers
from payments.core.logging import configure_logging
from payments.core.proxies import TrustedProxyMiddleware
from payments.core.requestid import RequestIdMiddleware
from payments.core.security import SecurityHeadersMiddleware
from payments.outbox.worker import Worker

DESCRIPTION = """Lephi collects the fees and charges (phí, lệ phí) of administrative procedures without cash.

Client systems push dossier fee orders, create payments and send the payer to `next_url`; gateways confirm payments
server to server. Every POST takes an `Idempotency-Key`. Errors are RFC 9457 problem+json with a stable `code`.
Amounts are whole VND."""


def body_limits() -> dict[str, int]:
    """Operations whose body may exceed ``LEPHI_MAX_BODY_BYTES`` (64 KiB, for JSON): each documents its own limit
    in the OpenAPI as ``x-max-body-bytes``, or in docs/console.md for a console page."""
    from console.certificate.pages import MAX_BODY as CERTIFICATE_UPLOAD
    from console.fees.sheet import MAX_BYTES as MAX_FEE_SHEET_BYTES
    from console.receipts.pages import MAX_BODY as RECEIPT_UPLOAD
    from console.reconcile.imports import BODY_LIMIT as STATEMENT_UPLOAD_BYTES
    from invoices.verify import MAX_XML_BYTES
    from payments.agency.logo import MAX_LOGO_BYTES

    return {
        "/v1/receipts/verify": MAX_XML_BYTES,
        "/console/reconcile/imports": STATEMENT_UPLOAD_BYTES,
        "/console/certificate": CERTIFICATE_UPLOAD,
        # An XML file of up to the API's limit for /v1/receipts/verify, with room for the form around it.
        "/console/receipts/verify": RECEIPT_UPLOAD,
        # A fee schedule spreadsheet of up to 2 MB, with room for the form around it: a larger file gets the page's
        # own "over 2 MB" message, a much larger body the 413 page.
        "/console/fees/import": MAX_FEE_SHEET_BYTES + 256 * 1024,
        "/console/agencies/logo": MAX_LOGO_BYTES + 64 * 1024,
    }


def create_app(settings: Settings | None = None, ctx: Container | None = None) -> FastAPI:
    settings = settings or (ctx.settings if ctx else get_settings())
    configure_logging(settings.log_level, settings.log_json)
    context = ctx or build_container(settings)

    app = FastAPI(
        title="Lephi",
        version="1.0.0",
        summary="Cashless fee collection for public administrative procedures",
        description=DESCRIPTION,
        lifespan=_lifespan(context, settings),
        openapi_url="/v1/openapi.json",
        docs_url=None,  # served from local assets by payments.pages.docs
        redoc_url=None,
        # Generated clients name their functions after the operation ids: the handlers' names read best.
        generate_unique_id_function=_operation_id,
    )
    app.state.ctx = context
    from payments.pages.errors import error_page

    install_error_handlers(app, html=error_page)

    from console.admin import router as console_admin
    from console.agencies.pages import router as console_agencies
    from console.certificate.pages import router as console_certificate
    from console.endpoints import router as console
    from console.fees.pages import router as console_fees
    from console.gateways.pages import router as console_gateways
    from console.payments.pages import router as console_payments
    from console.receipts.pages import router as console_receipts
    from console.reconcile.pages import router as console_reconcile
    from console.refunds.pages import router as console_refunds
    from console.reports.feed import router as province_feed
    from console.reports.pages import router as console_reports
    from console.staff.pages import router as console_staff
    from invoices.endpoints import router as receipts
    from invoices.pages import router as receipt_lookup
    from invoices.series_endpoints import router as receipt_series
    from payments.dossier.endpoints import router as dossiers
    from payments.gateway.endpoints import pages as sandbox_pages
    from payments.gateway.endpoints import router as gateways
    from payments.pages.card import router as card_pages
    from payments.pages.docs import router as docs
    from payments.pages.endpoints import router as payer_pages
    from payments.pages.transfer import router as qr_pages
    from payments.payment.endpoints import router as payments
    from payments.reconcile.endpoints import router as reconciliation
    from payments.transfer.endpoints import router as bank_credits
    from payments.webhooks.endpoints import router as webhooks

    # Routes are matched one by one in this order: the busiest first (gateways' callbacks, payments, dossiers, the
    # load balancer's health checks). No two routers share a path, so the order changes nothing else; the OpenAPI
    # document sorts its paths.
    for router in (
        gateways,
        payments,
        dossiers,
        health,
        receipts,
        receipt_series,
        bank_credits,
        webhooks,
        reconciliation,
        province_feed,
        sandbox_pages,
        qr_pages,
        card_pages,
        payer_pages,
        receipt_lookup,
        docs,
        # Before the console's own router, whose last route answers every other /console address with a 404 page.
        console_payments,
        console_refunds,
        console_receipts,
        console_staff,
        console_reconcile,
        console_reports,
        console_certificate,
        console_gateways,
        console_agencies,
        console_fees,
        console_admin,
        console,
    ):
        app.include_router(router)
    app.add_middleware(
        RequestLimitsMiddleware,
        limit=settings.max_body_bytes,
        per_path=body_limits(),
        html_prefixes=("/console", "/pay/", "/sandbox/pay/", "/r/", "/tra-cuu"),
    )
    # Added last, so outermost: every response, a 413 included, gets the headers, and the client address is settled
    # before anything reads it.
    app.add_middleware(SecurityHeadersMiddleware, https=settings.public_url.lower().startswith("https:"))
    app.add_middleware(TrustedProxyMiddleware, proxies=settings.trusted_proxies)
    _observe(app, settings)
    openapi.install(app)
    return app


def _observe(app: FastAPI, settings: Settings) -> None:
    if settings.metrics:
        from lephi.metrics import MetricsMiddleware, enable

        enable()
        app.add_middleware(MetricsMiddleware)
    # Outermost: every response carries the request's id, and so does every line logged while answering it.
    app.add_middleware(RequestIdMiddleware)


def _lifespan(context: Container, settings: Settings) -> Callable[[FastAPI], AbstractAsyncContextManager[None]]:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        worker = metrics_server = None
        await context.db.start()  # the serving loop's own pool for the hot paths (PostgreSQL)
        if settings.metrics:
            from lephi import metrics

            metrics_server = metrics.start(context.db, settings, HANDLERS, context.gateways.names())
        app.state.metrics_server = metrics_server
        thread = None
        if settings.run_worker:
            worker = Worker(context, HANDLERS, periodic=PERIODIC, concurrent=NETWORK_KINDS)
            thread = threading.Thread(target=worker.run_forever, name="lephi-worker", daemon=True)
            thread.start()
        yield
        if worker and thread:
            # After uvicorn's own graceful shutdown: the worker drains as ``lephi worker`` does on SIGTERM.
            worker.stop()
            await asyncio.to_thread(thread.join, settings.worker_shutdown_seconds + 1)
            if thread.is_alive():  # a job outran the bound: its lease is handed back, the process exits anyway
                worker.release_held()
        if metrics_server is not None:
            metrics_server.shutdown()
            metrics_server.server_close()
        await context.aclose_limiters()
        await context.db.aclose()
        # The API keys' last uses noted since the cache's last write would otherwise go with the process.
        await run_in_threadpool(context.api_keys.flush)

    return lifespan


def _operation_id(route: APIRoute) -> str:
    return route.name


def export() -> str:
    """The OpenAPI document of a service with default settings, as committed in openapi/openapi.json."""
    settings = Settings(database_url="sqlite://", run_worker=False)
    app = create_app(settings, build_container(settings, Database(make_engine("sqlite://", settings))))
    return json.dumps(app.openapi(), indent=2, ensure_ascii=False, sort_keys=True) + "\n"
