"""Fails loudly when the PostgreSQL server named for the suite cannot be reached (CI must not skip it)."""

from __future__ import annotations

import secrets
import sys

from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from payments.core.db import normalise_url


def main(url: str) -> int:
    try:
        with create_engine(normalise_url(url)).connect() as conn:
            version = conn.execute(text("SHOW server_version")).scalar()
    except Exception as exc:
        print(f"PostgreSQL at {url} is required for this run and could not be reached: {exc}", file=sys.stderr)
        return 1
    print(f"PostgreSQL {version} reachable for the suite")
    return 0


def scratch(action: str, url: str, name: str | None = None) -> int:
    """``create``: a new empty database on that server, its URL printed; ``drop``: drop the one named by its URL."""
    admin_url = make_url(normalise_url(url))
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        if action == "create":
            db = f"lephi_check_{secrets.token_hex(4)}"
            conn.execute(text(f'CREATE DATABASE "{db}"'))
            print(admin_url.set(database=db).render_as_string(hide_password=False))
        else:
            assert name is not None
            db = make_url(name).database
            assert db and db.startswith("lephi_check_"), f"refusing to drop {db!r}"
            conn.execute(text(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)'))
    admin.dispose()
    return 0


if __name__ == "__main__":
    if sys.argv[1] == "--scratch":
        sys.exit(scratch(sys.argv[2], sys.argv[3], *sys.argv[4:5]))
    sys.exit(main(sys.argv[1]))
