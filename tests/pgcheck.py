"""Fails loudly when the PostgreSQL server named for the suite cannot be reached (CI must not skip it)."""

from __future__ import annotations

import sys

from sqlalchemy import create_engine, text

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


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
