"""``lephi reconcile``: import statements, match a day, write the daily close. Long work shows a progress bar; each
command ends with a summary table."""

from __future__ import annotations

import importlib.util
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from adapters.statements.base import StatementFormat
from lephi.cli.common import context

if TYPE_CHECKING:
    from rich.console import Console

    from lephi.container import Container

app = typer.Typer(
    help="Reconciliation of settlements and bank statements for finance staff.",
    no_args_is_help=True,
    rich_markup_mode=None,
)
GMT7 = timezone(timedelta(hours=7))
FILE_FORMATS = [f.value for f in StatementFormat if f is not StatementFormat.stripe_api]


# rich is loaded by the commands that print with it, not by ``lephi reconcile --help``. A console per call, not one
# per process: rich reads the terminal's width (COLUMNS) when a console is made.
def _console(stderr: bool) -> Console:
    from rich.console import Console

    return Console(stderr=stderr)


def err() -> Console:
    return _console(True)


def out() -> Console:
    return _console(False)


def _yesterday() -> date:
    return datetime.now(GMT7).date() - timedelta(days=1)


def _day(value: str | None) -> date:
    if value is None:
        return _yesterday()
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise typer.BadParameter(f"{value!r} is not a date like 2026-11-26") from None


def _agency_id(ctx: Container, code: str) -> str:
    from sqlmodel import select

    from payments.agency.models import Agency

    with ctx.db.read() as s:
        agency_id = s.exec(select(Agency.id).where(Agency.code == code)).first()
    if agency_id is None:
        err().print(f"[red]error:[/red] no agency with code {code!r}")
        raise typer.Exit(2)
    return agency_id


@app.command("import")
def import_command(
    files: Annotated[list[Path], typer.Argument(exists=True, dir_okay=False, readable=True, help="Files to import.")],
    agency: Annotated[str, typer.Option(help="Agency code, e.g. DEMO-STP.")],
    fmt: Annotated[str, typer.Option("--format", help=f"One of: {', '.join(FILE_FORMATS)}.")],
    mapping: Annotated[Path | None, typer.Option(help="Column mapping (TOML) for CSV files.")] = None,
    mapping_name: Annotated[str | None, typer.Option(help="[mappings.<name>] in the mapping file.")] = None,
) -> None:
    """Import settlement files or bank statements. A file already imported adds nothing; a malformed file imports
    nothing and names the line."""
    from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeElapsedColumn
    from rich.table import Table

    from adapters.statements.gateway_files import load_mapping
    from payments.core.errors import LephiError
    from payments.reconcile.importer import ImportResult, import_file

    if fmt not in FILE_FORMATS:
        raise typer.BadParameter(f"--format must be one of {', '.join(FILE_FORMATS)}")
    column_mapping = load_mapping(mapping, mapping_name) if mapping else None
    ctx = context()
    results: list[tuple[Path, ImportResult]] = []
    failed = False
    with Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        DownloadColumn(),
        TextColumn("{task.fields[lines]} lines"),
        TimeElapsedColumn(),
        console=err(),
    ) as progress:
        for path in files:
            task = progress.add_task(path.name, total=path.stat().st_size, lines="0")

            def tick(lines: int, read: int, task: object = task) -> None:
                progress.update(task, completed=read, lines=f"{lines:,}")  # type: ignore[arg-type]

            try:
                result = import_file(
                    ctx, agency, path, StatementFormat(fmt), mapping=column_mapping, actor="cli", progress=tick
                )
            except LephiError as exc:
                progress.update(task, description=f"[red]{path.name}")
                err().print(f"[red]error:[/red] {exc.detail}")
                failed = True
                continue
            progress.update(task, completed=path.stat().st_size)
            results.append((path, result))
    table = Table(title="Imported")
    for column in ("file", "lines", "new", "total VND", "days", "bank credits applied", "note"):
        table.add_column(column, justify="right" if column in {"lines", "new", "total VND"} else "left")
    for path, r in results:
        days = f"{r.first_day} .. {r.last_day}" if r.first_day else "-"
        note = "already imported: nothing added" if r.duplicate_file else ""
        table.add_row(
            path.name, f"{r.lines:,}", f"{r.new_lines:,}", f"{r.total_amount:,}", days, str(r.credits_applied), note
        )
    out().print(table)
    ctx.close()
    if failed:
        raise typer.Exit(1)


@app.command("stripe")
def stripe_command(
    agency: Annotated[str, typer.Option(help="Agency code.")],
    day: Annotated[str | None, typer.Option("--date", help="Business day (GMT+7), default yesterday.")] = None,
) -> None:
    """Import the agency's Stripe settlement (balance transactions of the day) from Stripe's API."""
    from rich.table import Table

    from payments.core.errors import LephiError
    from payments.reconcile.stripe_import import import_stripe

    ctx = context()
    target = _day(day)
    with err().status(f"reading Stripe's balance history of {target}"):
        try:
            r = import_stripe(ctx, agency, target, actor="cli")
        except LephiError as exc:
            err().print(f"[red]error:[/red] {exc.detail}")
            raise typer.Exit(1) from None
    note = "already imported: nothing added" if r.duplicate_file else ""
    table = Table(title="Imported from Stripe")
    for column in ("day", "lines", "new", "total VND", "note"):
        table.add_column(column)
    table.add_row(target.isoformat(), f"{r.lines:,}", f"{r.new_lines:,}", f"{r.total_amount:,}", note)
    out().print(table)
    ctx.close()


@app.command("run")
def run_command(
    agency: Annotated[str, typer.Option(help="Agency code.")],
    day: Annotated[str | None, typer.Option("--date", help="Business day (GMT+7), default yesterday.")] = None,
    days: Annotated[int, typer.Option(help="Run this many days ending at --date.", min=1, max=366)] = 1,
) -> None:
    """Match a business day (or several) and update the exceptions queue; safe to run again."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
    from rich.table import Table

    from payments.reconcile.matching import RunResult, run_day
    from payments.reconcile.models import Category

    ctx = context()
    agency_id = _agency_id(ctx, agency)
    last = _day(day)
    targets = [last - timedelta(days=n) for n in reversed(range(days))]
    results: list[RunResult] = []
    with Progress(
        TextColumn("[bold]matching"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), console=err()
    ) as bar:
        task = bar.add_task("days", total=len(targets))
        for target in targets:
            results.append(run_day(ctx, agency_id, target, actor="cli"))
            bar.advance(task)
    table = Table(title=f"Reconciliation of {agency}")
    table.add_column("category")
    for r in results:
        table.add_column(r.business_day.isoformat(), justify="right")
    for category in Category:
        table.add_row(category.value, *(f"{r.counts.get(category.value, 0):,}" for r in results))
    table.add_row("[bold]new exceptions", *(str(r.opened) for r in results))
    table.add_row("[bold]cleared", *(str(r.cleared) for r in results))
    out().print(table)
    ctx.close()


@app.command("report")
def report_command(
    agency: Annotated[str, typer.Option(help="Agency code.")],
    day: Annotated[str | None, typer.Option("--date", help="Business day (GMT+7), default yesterday.")] = None,
    fmt: Annotated[str, typer.Option("--format", help="table, csv, xlsx or json.")] = "table",
    output: Annotated[Path | None, typer.Option(help="File to write (csv, xlsx, json).")] = None,
) -> None:
    """The daily close per procedure and payment method: counts, gross, refunds, net."""
    import json
    from dataclasses import asdict

    from rich.table import Table

    from payments.reconcile.reports import daily_close, to_csv, to_xlsx

    if fmt not in {"table", "csv", "xlsx", "json"}:
        raise typer.BadParameter("--format must be table, csv, xlsx or json")
    if fmt != "table" and output is None:
        raise typer.BadParameter("--output is required for csv, xlsx and json")
    ctx = context()
    agency_id = _agency_id(ctx, agency)
    target = _day(day)
    with ctx.db.read() as s:
        close = daily_close(s, agency_id, target)
    if output is not None:
        if fmt == "csv":
            output.write_bytes(to_csv(close))
        elif fmt == "xlsx":
            output.write_bytes(to_xlsx(close))
        else:
            output.write_text(json.dumps(asdict(close), default=str, ensure_ascii=False, indent=2), encoding="utf-8")
        err().print(f"wrote {output}")
    table = Table(title=f"Daily close {agency} {target.isoformat()}")
    for column in ("procedure", "method", "payments", "gross", "refunds", "net"):
        table.add_column(column, justify="left" if column in {"procedure", "method"} else "right")
    for row in close.rows:
        table.add_row(
            f"{row.procedure_code} {row.procedure_name}",
            row.method,
            f"{row.payments:,}",
            f"{row.gross:,}",
            f"{row.refunds:,}",
            f"{row.net:,}",
        )
    totals = close.totals
    table.add_row(
        "[bold]total", "", f"{totals.payments:,}", f"{totals.gross:,}", f"{totals.refunds:,}", f"{totals.net:,}"
    )
    out().print(table)
    ctx.close()


def generate_command(
    agency: Annotated[str, typer.Option(help="Code of the NEW agency to create, e.g. GEN-01.")],
    out_dir: Annotated[Path, typer.Option("--out", help="Folder for the settlement files.", file_okay=False)],
    day: Annotated[str | None, typer.Option("--date", help="Business day (GMT+7), default yesterday.")] = None,
    payments: Annotated[int, typer.Option(help="Ordinary paid payments of the day.", min=0)] = 1000,
    discrepancies: Annotated[int, typer.Option(help="How many of every exception category.", min=0)] = 3,
    seed: Annotated[int, typer.Option(help="Same seed, same data and byte-identical files.")] = 0,
    bank_format: Annotated[str, typer.Option(help="Bank statement format: mt940 or camt053.")] = "mt940",
) -> None:
    """Make realistic test data (never in production): a new agency's day of payments, receipts and refunds, its
    VNPay and MoMo settlement files and bank statement, with known discrepancies of every category."""
    from rich.table import Table

    from devtools.generate import generate
    from payments.core.config import Environment

    if bank_format not in {"mt940", "camt053"}:
        raise typer.BadParameter("--bank-format must be mt940 or camt053")
    ctx = context()
    if ctx.settings.env is Environment.production:
        err().print("[red]error:[/red] generated data is for development and test databases only")
        raise typer.Exit(2)
    target = _day(day)
    with err().status(f"generating {payments:,} payments for {agency} on {target}"):
        manifest = generate(
            ctx,
            agency_code=agency,
            day=target,
            payments=payments,
            discrepancies=discrepancies,
            out_dir=out_dir,
            seed=seed,
            formats=["vnpay_csv", "momo_csv", bank_format],
        )
    table = Table(title=f"Generated {agency} {target.isoformat()}")
    table.add_column("file")
    table.add_column("format")
    table.add_column("lines", justify="right")
    for f in manifest.files:
        table.add_row(str(f.path), f.format.value, f"{f.lines:,}")
    out().print(table)
    err().print(
        f"{manifest.payments:,} payment rows; a run of {target} must match {manifest.matched:,} and find "
        f"{len(manifest.expected)} exceptions ({discrepancies} of every category)."
    )
    err().print("next: lephi reconcile import FILE --agency " + agency + " --format FORMAT, then lephi reconcile run")
    ctx.close()


# Test data is made only where the development tools are installed (a source checkout), never by an installed service.
if importlib.util.find_spec("devtools") is not None:
    app.command("generate")(generate_command)
