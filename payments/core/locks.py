"""A lock shared by the processes of one machine, through a file: what they must not do twice at once when they
start together (create a development key, migrate a SQLite database)."""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def file_lock(path: Path) -> Iterator[None]:
    """Held by one process at a time; waits for the holder. The kernel releases it when its holder exits, however it
    exits, so a crashed process never leaves it taken. The file itself is left in place: removing it would let a
    process lock a new file while another still holds the old one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX)
        yield
    finally:
        os.close(descriptor)  # closing the last descriptor releases the lock
