"""A throwaway PostgreSQL cluster of the test's own, so that a drill may stop and start its server without touching
the one the rest of the suite shares."""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

BIN = Path(os.environ.get("LEPHI_TEST_PG_BIN", "/usr/lib/postgresql/15/bin"))


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class ServerCommandFailed(RuntimeError):
    pass


class Cluster:
    def __init__(self) -> None:
        assert (BIN / "initdb").exists(), f"PostgreSQL server programs not found in {BIN} (set LEPHI_TEST_PG_BIN)"
        # Not under pytest's tmp_path: pytest sets its root back to mode 0700 whenever it starts (another worker's run
        # included), and a server running as another user must be able to reach its data directory.
        self.root = Path(tempfile.mkdtemp(prefix="lephi-pg-"))
        self.data = self.root / "data"
        self.port = _free_port()
        # The server refuses to run as root: where the suite runs as root (containers), it runs as postgres.
        self._as: list[str] = []
        if os.geteuid() == 0:
            self._as = ["runuser", "-u", "postgres", "--"]
            shutil.chown(self.root, "postgres", "postgres")
        self._run("initdb", "-D", str(self.data), "-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync")

    @property
    def admin_url(self) -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres"

    def url(self, database: str) -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{database}"

    def _run(self, program: str, *args: str) -> None:
        done = subprocess.run(
            [*self._as, str(BIN / program), *args], check=False, capture_output=True, text=True, timeout=120
        )
        if done.returncode != 0:
            raise ServerCommandFailed(f"{program} exited with {done.returncode}: {done.stderr.strip()[-2000:]}")

    def start(self) -> None:
        options = f"-p {self.port} -c listen_addresses=127.0.0.1 -c fsync=off -c unix_socket_directories=''"
        self._run("pg_ctl", "start", "-w", "-D", str(self.data), "-l", str(self.root / "server.log"), "-o", options)

    def stop(self) -> None:
        self._run("pg_ctl", "stop", "-w", "-m", "fast", "-D", str(self.data))

    def create_database(self, name: str) -> str:
        from sqlalchemy import create_engine, text

        engine = create_engine(self.admin_url, isolation_level="AUTOCOMMIT")
        with engine.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
        engine.dispose()
        return self.url(name)


@contextmanager
def cluster() -> Iterator[Cluster]:
    c = Cluster()
    try:
        c.start()
        yield c
    finally:
        with contextlib.suppress(ServerCommandFailed):  # already stopped by the drill
            c.stop()
        shutil.rmtree(c.root, ignore_errors=True)
