"""One process of a fleet started at once, for tests/test_fleet_startup.py: imports what it will run first, waits for
the go file (so that every process reaches the race at the same moment, not after its own import time), then runs
``lephi <args>`` or, with ``sign <agency code> <tax code> <out file>``, loads the agency's signing key the way a
worker does and signs one receipt with it (``<out file>.<pid>.xml``, with the certificate it loaded beside it)."""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable
from pathlib import Path


def _signing(code: str, tax_code: str, out: Path) -> Callable[[], None]:
    from cryptography.hazmat.primitives.serialization import Encoding

    from invoices.keys import SignerStore
    from lephi.settings import get_settings
    from tests.invoices.test_signing import receipt

    def sign() -> None:
        signer = SignerStore(get_settings()).for_agency(code, tax_code, f"Agency {code}")
        mine = out.with_name(f"{out.name}.{os.getpid()}.xml")
        mine.write_bytes(signer.sign(receipt()))
        mine.with_suffix(".pem").write_bytes(signer.certificate.public_bytes(Encoding.PEM))

    return sign


def _command(args: list[str]) -> Callable[[], None]:
    from argon2 import PasswordHasher

    from console.staff import passwords
    from lephi.cli import app

    # The product's argon2 parameters cost seconds per hash on a shared 2-core machine; the race is not in hashing.
    passwords._hasher = PasswordHasher(time_cost=1, memory_cost=64, parallelism=1)
    passwords._DUMMY_HASH = passwords._hasher.hash("not the password of any account")
    return lambda: app(args)


def main(go: Path, args: list[str]) -> None:
    run = _signing(args[1], args[2], Path(args[3])) if args[0] == "sign" else _command(args)
    go.with_name(f"ready.{os.getpid()}").touch()
    deadline = time.monotonic() + 120
    while not go.exists():
        if time.monotonic() > deadline:
            raise SystemExit("no go file within 120 s")
        time.sleep(0.002)
    run()


if __name__ == "__main__":
    main(Path(sys.argv[1]), sys.argv[2:])
