"""Prometheus metrics (docs/operations.md, "Metrics"): on with ``LEPHI_METRICS=true``, served by prometheus-client's
own HTTP server on ``LEPHI_METRICS_ADDRESS`` (loopback by default), never on the public application.

Two kinds of series:

- events counted in the process that sees them: HTTP requests (by route template, never the raw path, so a client
  cannot make up series), payments created and their status changes, gateway callbacks, receipts issued, webhook
  failures. The domain packages report them through ``payments.core.observe``; this module installs the counting.
  With ``PROMETHEUS_MULTIPROC_DIR`` set (before the process starts; the operator empties the directory at each start
  of the fleet), prometheus-client writes them to files there and every process's scrape adds up the whole host's.
- state read from the database when scraped (outbox depth and oldest due job by kind, open payments by method and
  status, tax messages not yet accepted, open reconciliation exceptions): a few grouped counts over indexed columns,
  kept ``LEPHI_METRICS_CACHE_SECONDS`` so that frequent scrapes, or several Prometheus servers, do not load it.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from datetime import datetime
from typing import Any

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Histogram, start_http_server
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector
from sqlalchemy import case, func, select, type_coerce
from sqlmodel import col
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from invoices.tax.tables import TaxMessage, TaxMessageStatus
from payments.core import observe
from payments.core.db import Database
from payments.core.logging import get_logger
from payments.core.types import UTCDateTime, utcnow
from payments.outbox.models import OutboxJob, OutboxStatus
from payments.payment.models import Payment
from payments.payment.states import LIVE
from payments.reconcile.models import EXCEPTIONS, ExceptionStatus, ReconException

log = get_logger(__name__)

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
UNMATCHED = "<unmatched>"  # the route label of a request no route took (a 404 for an unknown address)
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
# Seconds: the API answers in milliseconds; a gateway call or a large upload may take seconds.
_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)

REQUESTS = Counter(
    "lephi_http_requests",
    "HTTP requests answered, by method, route template and status code.",
    ["method", "route", "status"],
)
LATENCY = Histogram(
    "lephi_http_request_duration_seconds",
    "Time to answer an HTTP request, by method, route template and status class.",
    ["method", "route", "status_class"],
    buckets=_BUCKETS,
)
PAYMENTS_CREATED = Counter("lephi_payments_created", "Payment attempts created, by method.", ["method"])
PAYMENT_STATUS = Counter(
    "lephi_payment_status_changes",
    "Payments that reached a status (created, pending, succeeded, ...), by method.",
    ["method", "status"],
)
CALLBACKS = Counter(
    "lephi_gateway_callbacks",
    "Gateways' server-to-server messages answered, by gateway and outcome.",
    ["gateway", "outcome"],
)
RECEIPTS = Counter(
    "lephi_receipts_issued", "Signed documents issued, by purpose (original, adjustment, replacement).", ["purpose"]
)
WEBHOOK_FAILURES = Counter(
    "lephi_webhook_failures",
    "Failed delivery attempts of signed notifications to client systems, by reason; "
    'final="true" when no retry follows.',
    ["reason", "final"],
)


class PrometheusObserver:
    """Counts what the domain packages report (``payments.core.observe``)."""

    enabled = True

    def payment_created(self, method: str) -> None:
        PAYMENTS_CREATED.labels(method).inc()

    def payment_status(self, method: str, status: str) -> None:
        PAYMENT_STATUS.labels(method, status).inc()

    def callback(self, gateway: str, outcome: str) -> None:
        CALLBACKS.labels(gateway, outcome).inc()

    def receipt_issued(self, purpose: str) -> None:
        RECEIPTS.labels(purpose).inc()

    def webhook_failed(self, reason: str, final: bool) -> None:
        WEBHOOK_FAILURES.labels(reason, "true" if final else "false").inc()


def enable() -> None:
    """Count the domain's events in this process (idempotent)."""
    if not observe.observer().enabled:
        observe.install(PrometheusObserver())


def route_label(scope: Scope) -> str:
    route = scope.get("route")
    path = getattr(route, "path", None)
    return path if isinstance(path, str) else UNMATCHED


class MetricsMiddleware:
    """Counts and times every HTTP request by its route's template."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500  # what the server answers if the application fails before it starts a response

        async def send_counted(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_counted)
        finally:
            method = scope["method"] if scope["method"] in _METHODS else "other"
            route = route_label(scope)
            REQUESTS.labels(method, route, str(status)).inc()
            LATENCY.labels(method, route, f"{status // 100}xx").observe(time.perf_counter() - started)


class DatabaseCollector(Collector):
    """The state gauges, read from the database at most once per ``cache_seconds``. A database that cannot be read
    gives ``lephi_metrics_database_up 0`` and no gauges, and the event counters are still served."""

    def __init__(
        self,
        db: Database,
        cache_seconds: float,
        job_kinds: Iterable[str] = (),
        methods: Iterable[str] = (),
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.db = db
        self.cache_seconds = cache_seconds
        self.job_kinds = sorted(job_kinds)
        self.methods = sorted(methods)
        self.clock = clock
        self._lock = threading.Lock()
        self._read_at: float | None = None
        self._families: list[Metric] = []
        self.reads = 0  # database reads so far (the cache's effect is visible in tests)

    def describe(self) -> list[Metric]:
        return []  # nothing read when the collector is registered

    def collect(self) -> Iterator[Metric]:
        with self._lock:  # one reader at a time; concurrent scrapes share its result
            now = self.clock()
            if self._read_at is None or now - self._read_at >= self.cache_seconds:
                self._families = self._read()
                self._read_at = now
            families = self._families
        yield from families

    def _read(self) -> list[Metric]:
        self.reads += 1
        up = GaugeMetricFamily("lephi_metrics_database_up", "1 when the state gauges could be read from the database.")
        try:
            families = self._families_from_database()
        except Exception as exc:  # a scrape must still give the process's counters
            log.warning("metrics.database_unreadable", error=str(exc)[:500])
            up.add_metric([], 0)
            return [up]
        up.add_metric([], 1)
        return [up, *families]

    def _families_from_database(self) -> list[Metric]:
        now = utcnow()
        run_after = col(OutboxJob.run_after)
        due = run_after <= now
        with self.db.read() as s:
            outbox = s.execute(
                select(
                    col(OutboxJob.kind),
                    func.count(),
                    func.sum(case((due, 1), else_=0)),
                    type_coerce(func.min(case((due, run_after))), UTCDateTime),
                )
                .where(col(OutboxJob.status) == OutboxStatus.pending)
                .group_by(col(OutboxJob.kind))
            ).all()
            dead = s.execute(
                select(col(OutboxJob.kind), func.count())
                .where(col(OutboxJob.status) == OutboxStatus.dead)
                .group_by(col(OutboxJob.kind))
            ).all()
            live = s.execute(
                select(col(Payment.gateway), col(Payment.status), func.count())
                .where(col(Payment.status).in_(sorted(LIVE)))
                .group_by(col(Payment.gateway), col(Payment.status))
            ).all()
            tax = s.execute(
                select(col(TaxMessage.status), func.count(), type_coerce(func.min(TaxMessage.created_at), UTCDateTime))
                .where(col(TaxMessage.status).in_(_UNACCEPTED))
                .group_by(col(TaxMessage.status))
            ).all()
            recon = s.execute(
                select(col(ReconException.category), func.count())
                .where(col(ReconException.status) == ExceptionStatus.open)
                .group_by(col(ReconException.category))
            ).all()
        return [
            *self._outbox(outbox, dead, now),
            self._live_payments(live),
            *self._tax(tax, now),
            _gauge(
                "lephi_reconciliation_exceptions_open",
                "Reconciliation exceptions waiting for staff, by category.",
                "category",
                {str(c): 0 for c in EXCEPTIONS} | {str(category): n for category, n in recon},
            ),
        ]

    def _outbox(self, rows: Sequence[Any], dead: Sequence[Any], now: datetime) -> list[Metric]:
        zero = dict.fromkeys(self.job_kinds, 0.0)
        pending, due, oldest = dict(zero), dict(zero), dict(zero)
        for kind, count, due_count, first_due in rows:
            pending[kind] = count
            due[kind] = due_count or 0
            oldest[kind] = max(0.0, (now - first_due).total_seconds()) if first_due is not None else 0.0
        return [
            _gauge(
                "lephi_outbox_jobs_pending",
                "Outbox jobs not yet done (due now or scheduled), by kind.",
                "kind",
                pending,
            ),
            _gauge("lephi_outbox_jobs_due", "Outbox jobs due now and not yet run, by kind.", "kind", due),
            _gauge(
                "lephi_outbox_oldest_due_job_age_seconds",
                "How long the oldest due job of each kind has waited past its due time (0: none waiting).",
                "kind",
                oldest,
            ),
            _gauge(
                "lephi_outbox_jobs_dead",
                "Outbox jobs that gave up after their last attempt, by kind.",
                "kind",
                dict(zero) | {kind: n for kind, n in dead},
            ),
        ]

    def _live_payments(self, rows: Sequence[Any]) -> Metric:
        family = GaugeMetricFamily(
            "lephi_payments_open",
            "Payments not yet finished (created or pending), by method and status.",
            labels=["method", "status"],
        )
        values = {(m, str(s)): 0 for m in self.methods for s in sorted(LIVE)}
        values |= {(method, str(status)): n for method, status, n in rows}
        for (method, status), count in sorted(values.items()):
            family.add_metric([method, status], count)
        return family

    def _tax(self, rows: Sequence[Any], now: datetime) -> list[Metric]:
        counts = {str(status): 0 for status in _UNACCEPTED}
        oldest = 0.0
        for status, count, first in rows:
            counts[str(status)] = count
            if status is not TaxMessageStatus.rejected and first is not None:
                oldest = max(oldest, (now - first).total_seconds())
        age = GaugeMetricFamily(
            "lephi_tax_message_oldest_unaccepted_age_seconds",
            "Age of the oldest message to the tax authority still queued, sending or sent (0: none).",
        )
        age.add_metric([], oldest)
        return [
            _gauge(
                "lephi_tax_messages_unaccepted",
                "Messages to the tax authority not accepted (queued, sending, sent, rejected), by status.",
                "status",
                counts,
            ),
            age,
        ]


# Accepted: acknowledged or coded. A rejected message stays rejected (its correction is a new message).
_UNACCEPTED = (TaxMessageStatus.queued, TaxMessageStatus.sending, TaxMessageStatus.sent, TaxMessageStatus.rejected)


def _gauge(name: str, documentation: str, label: str, values: Mapping[str, float]) -> Metric:
    family = GaugeMetricFamily(name, documentation, labels=[label])
    for value, number in sorted(values.items()):
        family.add_metric([value], number)
    return family


class _ProcessCollector(Collector):
    """This process's own series (the default registry), when there is no multiprocess directory."""

    def collect(self) -> Iterator[Metric]:
        yield from REGISTRY.collect()


def registry(database: DatabaseCollector) -> CollectorRegistry:
    """What a scrape reads: the events (every process's with ``PROMETHEUS_MULTIPROC_DIR``, else this process's),
    then the database's state."""
    scraped = CollectorRegistry(auto_describe=False)
    if os.environ.get(MULTIPROC_ENV):
        MultiProcessCollector(scraped)  # type: ignore[no-untyped-call]
    else:
        scraped.register(_ProcessCollector())
    scraped.register(database)
    return scraped


def parse_address(address: str) -> tuple[str, int]:
    host, _, port = address.rpartition(":")
    return host.strip("[]"), int(port)


def serve(address: str, scraped: CollectorRegistry) -> Any:
    """Start prometheus-client's HTTP server on ``address`` in a daemon thread; returns it (``shutdown()`` stops
    it), or None when the address is taken: on a host running several processes with a shared multiprocess
    directory the one that holds it serves the sum of all."""
    host, port = parse_address(address)
    try:
        server, _thread = start_http_server(port, addr=host, registry=scraped)
    except OSError as exc:
        log.warning("metrics.address_unavailable", address=address, error=str(exc))
        return None
    log.info("metrics.serving", address=f"{host}:{server.server_port}")
    return server


def start(db: Database, settings: Any, job_kinds: Iterable[str], methods: Iterable[str]) -> Any:
    """Count this process's events and serve the scrape on ``settings.metrics_address``; returns the server."""
    enable()
    collector = DatabaseCollector(db, settings.metrics_cache_seconds, job_kinds, methods)
    return serve(settings.metrics_address, registry(collector))
