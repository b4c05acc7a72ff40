"""Alembic environment: the URL comes from the caller's config or from LEPHI_DATABASE_URL."""

from __future__ import annotations

from alembic import context
from sqlalchemy import create_engine, pool

import lephi.tables
from lephi.settings import Settings
from payments.core.db import normalise_url, postgres_connect_args

config = context.config
url = config.get_main_option("sqlalchemy.url") or normalise_url(Settings().effective_database_url)
target_metadata = lephi.tables.metadata


def run_offline() -> None:
    context.configure(url=url, target_metadata=target_metadata, literal_binds=True, render_as_batch=True)
    with context.begin_transaction():
        context.run_migrations()


def run_online() -> None:
    # Never prepared on the server: a migration may run through PgBouncer in transaction pooling
    # (payments.core.db.postgres_connect_args), and runs too few statements for preparing to pay.
    connectable = config.attributes.get("connection") or create_engine(
        url,
        poolclass=pool.NullPool,
        hide_parameters=True,
        connect_args={} if url.startswith("sqlite") else postgres_connect_args(prepared=False),
    )
    if hasattr(connectable, "connect"):
        if url.startswith("sqlite"):
            from pathlib import Path

            from sqlalchemy.engine import make_url

            db = make_url(url).database
            if db and db != ":memory:":
                Path(db).parent.mkdir(parents=True, exist_ok=True)
        with connectable.connect() as connection:
            _run(connection)
    else:
        _run(connectable)


def _run(connection) -> None:  # type: ignore[no-untyped-def]
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


if context.is_offline_mode():
    run_offline()
else:
    run_online()
