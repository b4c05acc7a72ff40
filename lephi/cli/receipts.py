"""``lephi receipts series``: the templates and series an agency issues receipts from."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from lephi.cli.common import context

if TYPE_CHECKING:
    from sqlmodel import Session

series = typer.Typer(
    help="Receipt templates and series of an agency (per year).", no_args_is_help=True, rich_markup_mode=None
)

AgencyOpt = Annotated[str, typer.Option("--agency", help="Agency code, e.g. DEMO-STP.")]
SeriesOpt = Annotated[str, typer.Option("--series", help="Series symbol (KHHDon), e.g. K27TLP.")]
TemplateOpt = Annotated[str | None, typer.Option("--template", help="Template digit (KHMSHDon); the receipt's.")]
ACTOR = "cli"


def _agency_id(s: Session, code: str) -> str:
    from sqlmodel import select

    from payments.agency.models import Agency

    agency_id = s.exec(select(Agency.id).where(Agency.code == code)).first()
    if agency_id is None:
        typer.echo(f"error: no agency {code!r}", err=True)
        raise typer.Exit(2)
    return agency_id


def _fail(exc: Exception) -> typer.Exit:
    typer.echo(f"error: {getattr(exc, 'detail', exc)}", err=True)
    return typer.Exit(2)


@series.command("register")
def series_register(agency: AgencyOpt, series_symbol: SeriesOpt, template: TemplateOpt = None) -> None:
    """Register a series for the year it names: that year's receipts are numbered in it from 1."""
    from invoices.series import receipt_template, register_series
    from payments.core.errors import LephiError

    ctx = context()
    try:
        with ctx.db.write() as s:
            row = register_series(s, _agency_id(s, agency), template or receipt_template(), series_symbol, ACTOR)
            symbol, year = f"{row.template}{row.series}", row.year
    except LephiError as exc:
        raise _fail(exc) from exc
    finally:
        ctx.close()
    typer.echo(f"registered {symbol} for {year} ({agency})")


@series.command("close")
def series_close(agency: AgencyOpt, series_symbol: SeriesOpt, template: TemplateOpt = None) -> None:
    """Close a series: nothing more is issued from it."""
    from invoices.series import close_series, receipt_template
    from payments.core.errors import LephiError

    ctx = context()
    try:
        with ctx.db.write() as s:
            row = close_series(s, _agency_id(s, agency), template or receipt_template(), series_symbol, ACTOR)
            symbol = f"{row.template}{row.series}"
    except LephiError as exc:
        raise _fail(exc) from exc
    finally:
        ctx.close()
    typer.echo(f"closed {symbol} ({agency})")


@series.command("list")
def series_list(agency: AgencyOpt) -> None:
    """The agency's series, the latest year first, with the last number used in each."""
    from invoices.series import last_numbers, list_series

    ctx = context()
    try:
        with ctx.db.read() as s:
            agency_id = _agency_id(s, agency)
            last = last_numbers(s, agency_id)
            rows = [
                (
                    r.year,
                    f"{r.template}{r.series}",
                    r.status.value,
                    r.origin.value,
                    last.get((r.template, r.series, r.year), 0),
                )
                for r in list_series(s, agency_id)
            ]
    finally:
        ctx.close()
    if not rows:
        typer.echo("no series registered (the first receipt registers the default series)")
    for year, symbol, status, origin, number in rows:
        typer.echo(f"{year}  {symbol:<8} {status:<7} {origin:<10} last number {number:08d}")


def receipts_summary(
    agency: AgencyOpt,
    day: Annotated[str, typer.Option("--day", help="The day of issue, YYYY-MM-DD.")],
    resend: Annotated[bool, typer.Option("--resend", help="Send a new summary even if the last one stands.")] = False,
) -> None:
    """Queue the agency's daily summary of e-receipts (01/TH-BLĐT) for a day when it is due, and show every summary
    of that day with its status (the worker sends them on its own from LEPHI_RECEIPT_SUMMARY_AT)."""
    from datetime import date

    from sqlmodel import select

    from invoices.errors import InvoiceError
    from invoices.tax.summary import GMT7, summarise_day
    from invoices.tax.tables import ReceiptSummary, TaxMessage
    from payments.agency.models import Agency

    try:
        on = date.fromisoformat(day)
    except ValueError:
        typer.echo(f"error: {day!r} is not a date (YYYY-MM-DD)", err=True)
        raise typer.Exit(2) from None
    ctx = context()
    try:
        with ctx.db.write() as s:
            found = s.get(Agency, _agency_id(s, agency))
            assert found is not None
            queued = summarise_day(s, ctx, ctx.signers, found, on, datetime.now(GMT7), again=resend)
        with ctx.db.read() as s:
            rows = s.exec(
                select(ReceiptSummary, TaxMessage)
                .join(TaxMessage, TaxMessage.id == ReceiptSummary.tax_message_id)  # type: ignore[arg-type]
                .where(ReceiptSummary.agency_id == found.id, ReceiptSummary.day == on)
                .order_by(ReceiptSummary.sequence)  # type: ignore[arg-type]
            ).all()
            listed = [(r.sequence, r.documents, r.total, m.mtdiep, m.status.value, m.error) for r, m in rows]
    except InvoiceError as exc:
        raise _fail(exc) from exc
    finally:
        ctx.close()
    typer.echo(f"queued summary no. {queued.sequence}" if queued else "the last summary still states the day")
    for sequence, documents, total, mtdiep, status, error in listed:
        typer.echo(
            f"  no. {sequence}  {documents} document(s)  {total} VND  {mtdiep}  {status}{f'  {error}' if error else ''}"
        )


def receipts_report(
    agency: AgencyOpt,
    start: Annotated[str, typer.Option("--from", help="First day of the period, YYYY-MM-DD.")],
    end: Annotated[str, typer.Option("--to", help="Last day of the period, YYYY-MM-DD.")],
    out: Annotated[Path, typer.Option("--out", help="The file to write (.xml or .xlsx).", dir_okay=False)],
) -> None:
    """Write the report on the use of receipts (BC26/BLĐT) for a period: XML or XLSX, after the file's extension."""
    from datetime import date

    from invoices.series import today
    from invoices.usage import usage_report, usage_xlsx, usage_xml
    from payments.agency.models import Agency
    from payments.core.errors import LephiError

    if out.suffix not in (".xml", ".xlsx"):
        typer.echo("error: --out must end in .xml or .xlsx", err=True)
        raise typer.Exit(2)
    try:
        first, last = date.fromisoformat(start), date.fromisoformat(end)
    except ValueError:
        typer.echo("error: --from and --to are dates (YYYY-MM-DD)", err=True)
        raise typer.Exit(2) from None
    ctx = context()
    try:
        with ctx.db.read() as s:
            found = s.get(Agency, _agency_id(s, agency))
            assert found is not None
            report = usage_report(s, found, first, last, today())
    except LephiError as exc:
        raise _fail(exc) from exc
    finally:
        ctx.close()
    out.write_bytes(usage_xlsx(report) if out.suffix == ".xlsx" else usage_xml(report))
    typer.echo(f"wrote {out} ({len(report.lines)} series)")


def receipts_readiness(
    agency: AgencyOpt,
    on: Annotated[str | None, typer.Option("--date", help="Ready to issue from this day (default 2027-01-01).")] = None,
) -> None:
    """Report what the agency still lacks to issue e-receipts only (docs/receipts.md); exit status 1 if anything."""
    from datetime import date

    from invoices.readiness import readiness
    from payments.agency.models import Agency

    try:
        day = date.fromisoformat(on) if on else None
    except ValueError:
        typer.echo(f"error: {on!r} is not a date (YYYY-MM-DD)", err=True)
        raise typer.Exit(2) from None
    ctx = context()
    try:
        with ctx.db.read() as s:
            found = s.get(Agency, _agency_id(s, agency))
            assert found is not None
            checks = readiness(s, ctx, found, day)
    finally:
        ctx.close()
    for check in checks:
        typer.echo(f"{'ok     ' if check.ok else 'MISSING'}  {check.name:<11} {check.detail}")
    if not all(check.ok for check in checks):
        raise typer.Exit(1)
