"""``lephi receipts series``: the templates and series an agency issues receipts from."""

from __future__ import annotations

from typing import Annotated

import typer
from sqlmodel import Session, select

from lephi.cli.common import context

series = typer.Typer(help="Receipt templates and series of an agency (per year).", no_args_is_help=True)

AgencyOpt = Annotated[str, typer.Option("--agency", help="Agency code, e.g. DEMO-STP.")]
SeriesOpt = Annotated[str, typer.Option("--series", help="Series symbol (KHHDon), e.g. K27TLP.")]
TemplateOpt = Annotated[str | None, typer.Option("--template", help="Template digit (KHMSHDon); the receipt's.")]
ACTOR = "cli"


def _agency_id(s: Session, code: str) -> str:
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
