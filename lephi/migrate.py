"""Alembic, driven from code so that an installed service can migrate itself (``lephi migrate``)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, create_engine, pool, text
from sqlalchemy.engine import make_url

from payments.core.db import normalise_url
from payments.core.locks import file_lock
from payments.core.logging import get_logger

MIGRATIONS = Path(__file__).parent / "migrations"
log = get_logger(__name__)


def alembic_config(url: str) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.set_main_option("sqlalchemy.url", normalise_url(url).replace("%", "%%"))
    return cfg


def upgrade(url: str, revision: str = "head") -> None:
    """Processes of a fleet started together all call this: one migrates while the others wait, then find the
    schema already at ``revision`` and do nothing. Without the lock two of them create the same tables at once and
    one dies (PostgreSQL's ``pg_type`` unique index, SQLite's "table already exists")."""
    with one_at_a_time(url, "migrate"):
        command.upgrade(alembic_config(url), revision)


@contextmanager
def one_at_a_time(url: str, name: str) -> Iterator[None]:
    """Held by one process at a time among all those using the database at ``url``: a transaction-scoped advisory
    lock on PostgreSQL (held on a connection of its own; transaction-scoped so that it also holds through PgBouncer
    in transaction mode, and the server drops it if the process dies), a file lock beside a SQLite database."""
    url = normalise_url(url)
    parsed = make_url(url)
    if parsed.get_backend_name() == "postgresql":
        engine = create_engine(url, poolclass=pool.NullPool, hide_parameters=True)
        try:
            with engine.connect() as conn, conn.begin():
                key = {"key": f"lephi:{name}"}
                if not conn.execute(text("SELECT pg_try_advisory_xact_lock(hashtext(:key))"), key).scalar():
                    log.info("startup.waiting", step=name, reason="another process holds the lock")
                    conn.execute(text("SELECT pg_advisory_xact_lock(hashtext(:key))"), key)
                yield
        finally:
            engine.dispose()
    elif parsed.database and parsed.database != ":memory:":
        with file_lock(Path(f"{parsed.database}.{name}.lock")):
            yield
    else:
        yield  # a database in memory belongs to one process


def head_revision() -> str | None:
    return ScriptDirectory.from_config(alembic_config("sqlite://")).get_current_head()


def current_revision(engine: Engine) -> str | None:
    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def missing_migrations(engine: Engine) -> str | None:
    """Why this code cannot use the database yet, or None. Refused: a database without Lephi's schema, and one at an
    earlier migration of this code. A database ahead of this code (migrated by a newer release) is used: a
    migration only adds what older code can ignore, until the release after it (the expand/contract rule)."""
    script = ScriptDirectory.from_config(alembic_config("sqlite://"))
    current, head = current_revision(engine), script.get_current_head()
    if current == head:
        return None
    if current is None:
        return "the database has no tables yet"
    if current in {revision.revision for revision in script.walk_revisions()}:
        return f"the database is at migration {current}, this version of Lephi needs {head}"
    return None
