"""The ``lephi`` command line."""

from __future__ import annotations

import functools
import signal
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, TypeVar

import typer

from lephi.cli import privacy, reconcile, staff
from lephi.cli import receipts as receipts_cli
from lephi.cli.common import context
from lephi.heap import freeze_heap

if TYPE_CHECKING:
    import uvicorn
    from starlette.types import ASGIApp

    from console.demo import DemoUser
    from console.demo_history import Summary
    from lephi.container import Container

_T = TypeVar("_T")

app = typer.Typer(
    help="Lephi: cashless collection of administrative procedure fees.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    # Plain help: rich's help formatting alone costs a quarter of a second at every --help.
    rich_markup_mode=None,
)
apikey = typer.Typer(help="Manage API keys of client systems.", no_args_is_help=True, rich_markup_mode=None)
app.add_typer(apikey, name="apikey")
certs = typer.Typer(help="Signing certificates of agencies.", no_args_is_help=True, rich_markup_mode=None)
app.add_typer(certs, name="certs")
receipts = typer.Typer(help="E-receipts.", no_args_is_help=True, rich_markup_mode=None)
app.add_typer(receipts, name="receipts")
receipts.add_typer(receipts_cli.series, name="series")
receipts.command("summary")(receipts_cli.receipts_summary)
receipts.command("report")(receipts_cli.receipts_report)
receipts.command("readiness")(receipts_cli.receipts_readiness)
tax = typer.Typer(
    help="Transmission to the tax authority through the T-VAN file drop.", no_args_is_help=True, rich_markup_mode=None
)
app.add_typer(tax, name="tax")
agency = typer.Typer(
    help="Agencies: onboarding, with their payment methods and fee schedules.",
    no_args_is_help=True,
    rich_markup_mode=None,
)
app.add_typer(agency, name="agency")


app.add_typer(reconcile.app, name="reconcile")
app.add_typer(staff.staff, name="staff")
app.add_typer(staff.audit, name="audit")
app.add_typer(privacy.keys, name="keys")
app.add_typer(privacy.privacy, name="privacy")


@app.command()
def migrate() -> None:
    """Apply database migrations up to the latest."""
    from lephi.migrate import upgrade
    from lephi.settings import get_settings

    upgrade(get_settings().effective_database_url)
    typer.echo("database is at the latest migration")


@app.command()
def demo() -> None:
    """Seed the demo agency, procedures, an unpaid dossier, an API key, staff and a month of history (idempotent)."""
    _print_demo(_seed())


def _one_seeder_at_a_time(seed: Callable[[], _T]) -> Callable[[], _T]:
    """Processes started together each seed the demo: one seeds while the others wait, then find the rows and the
    key and password files already made, and print the same ones. Without it two of them insert the demo agency at
    once and one dies, or each writes its own key to the same file."""

    @functools.wraps(seed)
    def seed_alone() -> _T:
        from lephi.migrate import one_at_a_time
        from lephi.settings import get_settings

        with one_at_a_time(get_settings().effective_database_url, "demo"):
            return seed()

    return seed_alone


DemoInfo = tuple[str, str, list["DemoUser"], "Summary"]


@_one_seeder_at_a_time
def _seed() -> DemoInfo:
    import time

    from console.demo import seed_demo_staff
    from console.demo_history import seed_demo_history, staff_since
    from lephi.container import build_container
    from payments.agency.demo import DEMO_AGENCY, seed_demo
    from payments.core.logging import configure_logging
    from payments.core.types import utcnow
    from payments.dossier.service import to_out

    ctx = context()
    with ctx.db.write() as s:
        configured = list(ctx.gateway_config.agencies.get(DEMO_AGENCY, {}))
        dossier, key = seed_demo(s, ctx.settings.data_dir, configured)
        url = to_out(s, dossier, ctx.settings.public_url).pay_url
    with ctx.db.write() as s:
        staff = seed_demo_staff(s, DEMO_AGENCY, ctx.settings.data_dir, since=staff_since(utcnow()))
    ctx.close()
    # Hundreds of small transactions: without an fsync each (SQLite), a first start stays quick. Losing the last of
    # them to a power cut would cost a demo nothing.
    ctx = build_container(ctx.settings.model_copy(update={"sqlite_synchronous": "NORMAL"}))
    started = time.monotonic()
    # A thousand lines of payments taking their course would bury the banner; warnings still show.
    configure_logging("WARNING", ctx.settings.log_json)
    try:
        history = seed_demo_history(ctx, DEMO_AGENCY, progress=typer.echo)
    finally:
        configure_logging(ctx.settings.log_level, ctx.settings.log_json)
    if history.seeded:
        typer.echo(f"  demo history written in {time.monotonic() - started:.1f} s")
    ctx.close()
    return url, key, staff, history


def _print_demo(info: DemoInfo) -> None:
    from lephi.settings import get_settings

    url, key, staff, _history = info
    base = get_settings().public_url
    typer.echo("")
    typer.echo("  Lephi is running with demo data (development mode, sandbox gateway: no real money).")
    typer.echo(f"  Pay the demo dossier HS-DEMO-0001 here:  {url}")
    typer.echo(f"  API docs:                                {base}/docs")
    typer.echo(f"  Demo API key (agency DEMO-STP):          {key}")
    typer.echo("  30 days of demo payments, refunds and reconciliation are loaded.")
    typer.echo(f"  Staff console:                           {base}/console/")
    for user in staff:
        typer.echo(f"    {user.role.value:<15} {user.email:<22} password {user.password}")
    typer.echo("")


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8000,
    worker: Annotated[bool, typer.Option(help="Run the outbox worker in this process.")] = True,
) -> None:
    """Migrate, seed demo data in development, and serve the API and pages."""
    import os

    import uvicorn

    from lephi.settings import get_settings
    from payments.core.config import Environment

    os.environ["LEPHI_RUN_WORKER"] = "true" if worker else "false"
    os.environ.setdefault("LEPHI_PUBLIC_URL", f"http://{host}:{port}")
    get_settings.cache_clear()
    settings = get_settings()
    migrate()
    if settings.env is Environment.development:
        _print_demo(_seed())
    from lephi.app import create_app

    # uvicorn stops on SIGTERM/SIGINT (no new connections, in-flight requests finish within LEPHI_SHUTDOWN_SECONDS,
    # then the app's shutdown drains the in-process worker) and then raises the signal again for the handler that
    # was there before it: a no-op one makes a requested stop exit 0, as process managers expect.
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda _signum, _frame: None)
    config = server_config(create_app(settings), host, port, settings.shutdown_seconds)
    freeze_heap()
    uvicorn.Server(config).run()


def server_config(app: ASGIApp, host: str, port: int, shutdown_seconds: float = 20.0) -> uvicorn.Config:
    """How ``serve`` runs the app. Forwarded headers are read by the app alone, from LEPHI_TRUSTED_PROXIES
    (payments.core.proxies): uvicorn's own reading trusts 127.0.0.1 (or FORWARDED_ALLOW_IPS) and would let anyone
    behind a local proxy, or on the host, name any client address."""
    import uvicorn

    return uvicorn.Config(
        app,
        host=host,
        port=port,
        log_level="warning",
        access_log=False,
        proxy_headers=False,
        # On SIGTERM: stop accepting at once, let in-flight requests finish for this long (LEPHI_SHUTDOWN_SECONDS).
        timeout_graceful_shutdown=max(1, round(shutdown_seconds)),
    )


@app.command("worker")
def run_worker() -> None:
    """Run the outbox worker (receipts, webhooks, payment expiry, status re-queries, refund retries) until SIGTERM
    or SIGINT, then drain: no new jobs, running ones finish within LEPHI_WORKER_SHUTDOWN_SECONDS, the rest go back
    to the queue for another worker; exit 0."""
    import os
    import threading

    from lephi.jobs import HANDLERS, NETWORK_KINDS, PERIODIC
    from payments.outbox.worker import Worker

    ctx = context(wait_for_migrations=True)
    if ctx.settings.metrics:
        from lephi import metrics

        metrics.start(ctx.db, ctx.settings, HANDLERS, ctx.gateways.names())
    w = Worker(ctx, HANDLERS, periodic=PERIODIC, concurrent=NETWORK_KINDS)
    freeze_heap()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda _signum, _frame: w.stop())
    # The loop runs on a thread so that this one stays free for signals and can enforce the bound on a job that
    # will not end (a handler stuck past its own timeouts).
    loop = threading.Thread(target=w.run_forever, name="lephi-worker")
    loop.start()
    while loop.is_alive() and not w.stopping:
        loop.join(0.5)
    loop.join(ctx.settings.worker_shutdown_seconds + 5)
    if loop.is_alive() or w.abandoned:
        w.release_held()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)  # threads still running a job would keep the interpreter from exiting
    ctx.close()


@apikey.command("create")
def apikey_create(
    agency: Annotated[str, typer.Option(help="Agency code, e.g. DEMO-STP.")],
    scopes: Annotated[
        str,
        typer.Option(help="Comma-separated: dossiers:write,dossiers:read,payments:write,payments:read,refunds:write"),
    ],
    name: Annotated[str, typer.Option(help="Which client system uses it.")] = "client",
) -> None:
    """Create an API key; it is printed once, as the last line, and stored only as a hash."""
    from payments.auth.service import create_key
    from payments.core.errors import LephiError

    ctx = context()
    try:
        with ctx.db.write() as s:
            key, raw = create_key(s, agency, name, [x.strip() for x in scopes.split(",") if x.strip()])
    except LephiError as exc:
        typer.echo(f"error: {exc.detail}", err=True)
        raise typer.Exit(2) from exc
    typer.echo(
        f"created {key.id} for {agency} with scopes {','.join(key.scopes)}; store it now, it is not shown again:"
    )
    typer.echo(raw)


@apikey.command("revoke")
def apikey_revoke(key_id: str) -> None:
    """Revoke an API key by its id (key_...)."""
    from payments.auth.service import revoke_key
    from payments.core.errors import LephiError

    ctx = context()
    try:
        with ctx.db.write() as s:
            revoke_key(s, key_id)
    except LephiError as exc:
        typer.echo(f"error: {exc.detail}", err=True)
        raise typer.Exit(2) from exc
    typer.echo(f"revoked {key_id}")


@apikey.command("list")
def apikey_list(agency: Annotated[str | None, typer.Option(help="Only this agency.")] = None) -> None:
    """List API keys (never the keys themselves)."""
    from payments.auth.service import list_keys

    ctx = context()
    with ctx.db.read() as s:
        rows = list_keys(s, agency)
    for key, code in rows:
        state = "revoked" if key.revoked_at else "active"
        typer.echo(f"{key.id}\t{code}\t{key.prefix}…\t{state}\t{','.join(key.scopes)}\t{key.name}")


@certs.command("dev")
def certs_dev(agency: Annotated[str, typer.Option(help="Agency code, e.g. DEMO-STP.")]) -> None:
    """Make a self-signed development certificate for an agency (UID=MST:<tax code>); never for production."""
    from sqlmodel import select

    from invoices.keys import write_dev_certificate
    from payments.agency.models import Agency

    ctx = context()
    with ctx.db.read() as s:
        row = s.exec(select(Agency).where(Agency.code == agency)).first()
    if row is None:
        typer.echo(f"error: no agency with code {agency!r}", err=True)
        raise typer.Exit(2)
    directory = ctx.settings.signing_dir or ctx.settings.data_dir / "certs"
    key, cert = write_dev_certificate(directory, row.code, row.tax_code, row.name)
    typer.echo(f"development key {key} and certificate {cert} (subject UID=MST:{row.tax_code})")


@receipts.command("verify")
def receipts_verify(file: Annotated[Path, typer.Argument(exists=True, dir_okay=False, readable=True)]) -> None:
    """Verify an e-receipt XML file: signed by a certificate registered for the seller it names, unaltered, nothing
    unsigned riding along, valid against the format's XSD."""
    from invoices.errors import InvalidDocument
    from invoices.verification import verify_upload
    from invoices.xmldsig import MAX_XML_BYTES

    ctx = context()
    if file.stat().st_size > MAX_XML_BYTES:
        typer.echo(f"NOT VALID (too-large): over the {MAX_XML_BYTES}-byte limit")
        raise typer.Exit(1)
    try:
        with ctx.db.read() as s:
            checked = verify_upload(s, ctx.settings, file.read_bytes())
    except InvalidDocument as exc:
        typer.echo(f"NOT VALID ({exc.reason}): {exc.detail}")
        raise typer.Exit(1) from exc
    result = checked.document
    typer.echo(
        f"valid: {result.template}{result.series} no. {result.number:08d} of {result.issue_date}, "
        f"seller {checked.agency_name} ({result.agency}, MST {result.seller_tax_code}), total {result.total} VND, "
        f"signed by {result.signer_subject} at {result.signing_time.isoformat()}"
        f"{', issued by this service' if checked.issued_here else ''}"
    )
    if result.unsigned_parts:
        typer.echo(f"not covered by the seller's signature: {', '.join(result.unsigned_parts)}")


@tax.command("sync")
def tax_sync() -> None:
    """Hand queued messages to the T-VAN folder and read its replies now (the worker does it every minute)."""
    from sqlmodel import func, select

    from invoices.tax.service import apply_replies, gateway_for, send_pending
    from invoices.tax.tables import TaxMessage

    ctx = context()
    gateway = gateway_for(ctx.settings)
    if gateway is None:
        typer.echo("transmission is off (LEPHI_TAX_TRANSMISSION=false)")
        raise typer.Exit(1)
    sent, replies = send_pending(ctx, gateway), apply_replies(ctx, gateway)
    with ctx.db.read() as s:
        counts = s.exec(select(TaxMessage.status, func.count()).group_by(TaxMessage.status)).all()
    typer.echo(
        f"handed over {sent} message(s), applied {replies} reply(ies), folder {ctx.settings.effective_tax_drop_dir}"
    )
    for status, count in sorted(counts):
        typer.echo(f"  {status!s:<13} {count}")
    ctx.close()


@agency.command("create")
def agency_create(
    code: Annotated[str, typer.Option(help="Agency code: capitals, digits and dashes, e.g. STP-HCM.")],
    name: Annotated[str, typer.Option(help="The agency's full name, as on its receipts.")],
    tax_code: Annotated[str, typer.Option(help="Mã số thuế: 10 digits, or 10 digits, a dash and 3 digits.")],
    address: Annotated[str, typer.Option(help="The agency's address, as on its receipts.")],
    methods: Annotated[str, typer.Option(help="Comma-separated payment methods, e.g. vnpay,vietqr.")],
    fees: Annotated[Path, typer.Option(help="Fee schedule file (.toml or .json): procedures and their fee lines.")],
    bank_account: Annotated[str, typer.Option(help="Account that receives transfers (VietQR).")] = "",
    bank_name: Annotated[str, typer.Option(help="Bank of that account.")] = "",
) -> None:
    """Create an agency with its payment methods and fee schedule; bad input stores nothing (exit code 2)."""
    from payments.agency.schedule import load_fee_schedule
    from payments.agency.service import agency_in, create_agency
    from payments.core.errors import LephiError

    ctx = context()
    try:
        data = agency_in(
            code=code,
            name=name,
            tax_code=tax_code,
            address=address,
            payment_methods=[m.strip() for m in methods.split(",") if m.strip()],
            bank_account=bank_account,
            bank_name=bank_name,
        )
        schedule = load_fee_schedule(fees)
        with ctx.db.write() as s:
            row = create_agency(s, data, schedule, ctx.gateways.names())
    except LephiError as exc:
        typer.echo(f"error: {exc.detail}", err=True)
        raise typer.Exit(2) from exc
    finally:
        ctx.close()
    lines = sum(len(p.fees) for p in schedule.procedures)
    typer.echo(
        f"created agency {row.code} ({row.id}) with {len(schedule.procedures)} procedure(s), {lines} fee line(s), "
        f"methods {','.join(row.payment_methods)}"
    )
    _warn_unconfigured(ctx, row.code, row.payment_methods)


def _warn_unconfigured(ctx: Container, code: str, methods: list[str]) -> None:
    """A gateway needs the agency's own merchant account before money can reach the agency; say so, not refuse:
    the operator may add the account to the gateways file after onboarding."""
    configured = ctx.gateway_config.agencies.get(code, {})
    missing = [m for m in methods if m != "sandbox" and m not in configured]
    if missing:
        typer.echo(
            f"note: the gateways file has no merchant settings for {code} under {','.join(missing)}; "
            "add them before payers use these methods",
            err=True,
        )


@agency.command("list")
def agency_list() -> None:
    """List agencies: code, tax code, payment methods, number of procedures, name."""
    from payments.agency.service import list_agencies

    ctx = context()
    with ctx.db.read() as s:
        rows = list_agencies(s)
    ctx.close()
    typer.echo(f"{'CODE':<16} {'TAX CODE':<14} {'METHODS':<28} {'PROCEDURES':>10}  NAME")
    for row, procedures in rows:
        methods = ",".join(row.payment_methods)
        typer.echo(f"{row.code:<16} {row.tax_code:<14} {methods:<28} {procedures:>10}  {row.name}")


@agency.command("show")
def agency_show(code: str) -> None:
    """Show an agency, its payment methods and its fee schedule."""
    from payments.agency.service import agency_detail
    from payments.core.errors import LephiError

    ctx = context()
    try:
        with ctx.db.read() as s:
            detail = agency_detail(s, code)
    except LephiError as exc:
        typer.echo(f"error: {exc.detail}", err=True)
        raise typer.Exit(2) from exc
    finally:
        ctx.close()
    a = detail.agency
    typer.echo(f"{a.code}  {a.name}")
    typer.echo(f"  tax code:  {a.tax_code}")
    typer.echo(f"  address:   {a.address}")
    if a.bank_account:
        typer.echo(f"  bank:      {a.bank_account} ({a.bank_name})")
    typer.echo(f"  methods:   {','.join(a.payment_methods)}")
    typer.echo(f"  procedures ({len(detail.procedures)}):")
    for procedure, lines in detail.procedures:
        typer.echo(f"    {procedure.code}  {procedure.name}")
        for line in lines:
            quantity = f"default {line.default_quantity}, max {line.max_quantity}"
            typer.echo(
                f"      {line.code:<16} {line.kind.value:<8} {line.unit_amount:>15,} VND  ({quantity})  {line.name}"
            )


@app.command()
def openapi() -> None:
    """Print the OpenAPI document (the committed copy is openapi/openapi.json)."""
    from lephi.app import export

    sys.stdout.write(export())


if __name__ == "__main__":
    app()
