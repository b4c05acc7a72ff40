"""The ASGI app the benchmark serves: Lephi's own app plus a bare endpoint used as the baseline.

uvicorn runs ``bench.server:create`` as a factory; the settings come from the ``LEPHI_*`` environment that
``bench.payments_create`` sets for the server process. The bare route lives only here, never in the product.
"""

from __future__ import annotations

from fastapi import FastAPI

from lephi.app import create_app
from lephi.settings import get_settings

BARE_PATH = "/bench/bare"


def create() -> FastAPI:
    app = create_app(get_settings())

    @app.get(BARE_PATH, include_in_schema=False)
    async def bare() -> dict[str, object]:
        """The baseline: an async endpoint that touches nothing and returns a small JSON."""
        return {"ok": True, "service": "lephi"}

    return app
