"""What every ``lephi`` command starts from."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

import typer

MIGRATION_POLL_SECONDS = 1.0

if TYPE_CHECKING:
    from lephi.container import Container


def context(*, wait_for_migrations: bool = False) -> Container:
    """The process's container, once the database has this code's schema: otherwise the command stops with what to
    do, or with ``wait_for_migrations`` (a worker started beside the ``serve`` that migrates) waits for it."""
    # Imported here, not at the top: the container brings the whole application (SQLAlchemy, the models, lxml),
    # which ``lephi --help`` and a mistyped option should not wait for.
    from lephi.container import build_container
    from lephi.migrate import missing_migrations
    from lephi.settings import get_settings
    from payments.core.logging import configure_logging, get_logger

    settings = get_settings()
    configure_logging(settings.log_level, settings.log_json)
    ctx = build_container(settings)
    # A command on a database it cannot read would end in a traceback about a missing table or column.
    waiting = False
    while (why := missing_migrations(ctx.db.engine)) is not None:
        if not wait_for_migrations:
            ctx.close()
            typer.echo(f"Error: {why}. Run `lephi migrate` first.", err=True)
            raise typer.Exit(2)
        if not waiting:
            get_logger(__name__).warning("startup.waiting", step="migrations", reason=why)
            waiting = True
        time.sleep(MIGRATION_POLL_SECONDS)
    return ctx
