"""The product as a user starts it: the only module of ``bench/`` that imports the application shell.

uvicorn runs ``bench.server:create`` as a factory; the settings come from the ``LEPHI_*`` environment that the
benchmark sets for the server process. Seeding, in-process SQL counting and the issuance workers take the settings,
the context, the migrations and the job handlers from here too, so that moving the shell is a change to this file.
The baseline is not in this process: it is ``bench.bare``, in a process of its own.
"""

from __future__ import annotations

from fastapi import FastAPI

from payments.app import create_app
from payments.core.config import Settings, get_settings
from payments.core.context import AppContext, build_context
from payments.jobs import HANDLERS
from payments.migrate import upgrade

__all__ = [
    "HANDLERS",
    "AppContext",
    "Settings",
    "app_from_environment",
    "build_context",
    "create",
    "create_app",
    "upgrade",
]

READY_PATH = "/readyz"


def create() -> FastAPI:
    return create_app(get_settings())


def app_from_environment() -> FastAPI:
    """The app as ``create`` builds it in a fresh server process, with the settings of the current environment."""
    get_settings.cache_clear()
    return create()
