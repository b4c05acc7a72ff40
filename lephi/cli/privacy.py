"""``lephi keys rotate-pii`` and ``lephi privacy``: payers' personal data (docs/privacy.md)."""

from __future__ import annotations

import json
import re
from typing import Annotated

import typer

from lephi.cli.common import context

keys = typer.Typer(help="Keys of the data Lephi stores.", no_args_is_help=True, rich_markup_mode=None)
privacy = typer.Typer(
    help="Payers' personal data: subject access and retention.", no_args_is_help=True, rich_markup_mode=None
)


@keys.command("rotate-pii")
def rotate_pii(
    batch: Annotated[int | None, typer.Option(min=1, max=10_000, help="Rows per transaction.")] = None,
) -> None:
    """Re-seal every sealed column under the current key (LEPHI_PII_KEY or the key file's first line), reading with
    the older ones (LEPHI_PII_OLD_KEYS or the file's further lines). Resumable: run it again after an interruption.
    Values stored before sealing existed are sealed too."""
    from lephi.privacy import SEALED
    from payments.privacy.rotate import Progress, pending, rotate

    ctx = context()
    from payments.core import pii

    ring = pii.keyring()

    def report(p: Progress) -> None:
        typer.echo(
            f"{p.table}: {p.done}/{p.pending} re-sealed" + (f", {p.conflicts} changed meanwhile" if p.conflicts else "")
        )

    typer.echo(f"current key {ring.current_id}; readable: {', '.join(ring.ids)}")
    results = rotate(ctx.db, SEALED, ring, batch or ctx.settings.pii_batch_size, report)
    left = 0
    for p in results:
        remaining = pending(ctx.db, next(st for st in SEALED if st.table.name == p.table), ring)
        left += remaining
        typer.echo(f"{p.table}: {p.done} re-sealed, {remaining} left")
    if left:
        typer.echo("some rows are still under an older key: is every process running with the new key?", err=True)
        raise typer.Exit(1)


@privacy.command("export")
def privacy_export(
    id_number: Annotated[str, typer.Option("--id-number", help="The person's citizen ID (CCCD), 12 digits.")],
) -> None:
    """Everything Lephi holds about the person with this identity number, as JSON (subject access request)."""
    from lephi.privacy import subject_access
    from payments.dossier.schemas import ID_NUMBER_PATTERN

    if not re.fullmatch(ID_NUMBER_PATTERN, id_number):
        raise typer.BadParameter("a citizen ID (CCCD) is 12 digits", param_hint="--id-number")
    ctx = context()
    from payments.core import pii

    typer.echo(json.dumps(subject_access(ctx.db, pii.keyring(), id_number), ensure_ascii=False, indent=2))


@privacy.command("redact")
def privacy_redact() -> None:
    """Run the retention job now: erase the contacts of dossiers closed more than LEPHI_PII_RETENTION_DAYS ago."""
    from payments.privacy.retention import redact_expired

    ctx = context()
    done = redact_expired(ctx.db, ctx.settings.pii_retention_days, ctx.settings.pii_batch_size)
    typer.echo(f"{done} dossiers' contacts erased")
