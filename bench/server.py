"""The product as a user starts it: the only module of ``bench/`` that imports the application shell.

uvicorn runs ``bench.server:create`` as a factory; the settings come from the ``LEPHI_*`` environment that the
benchmark sets for the server process. Seeding, in-process SQL counting and the issuance workers take the settings,
the context, the migrations and the job handlers from here too, so that moving the shell is a change to this file.
The baseline is not in this process: it is ``bench.bare``, in a process of its own.
"""

from __future__ import annotations

from fastapi import FastAPI

from lephi.app import create_app
from lephi.container import Container, build_container
from lephi.heap import freeze_heap
from lephi.jobs import HANDLERS, NETWORK_KINDS
from lephi.migrate import upgrade
from lephi.settings import Settings, get_settings

__all__ = [
    "HANDLERS",
    "NETWORK_KINDS",
    "Container",
    "Settings",
    "app_from_environment",
    "build_container",
    "create",
    "create_app",
    "upgrade",
]

READY_PATH = "/readyz"


def create() -> FastAPI:
    """The app as ``lephi serve`` builds it, with what start-up made frozen out of the garbage collector's way."""
    app = create_app(get_settings())
    freeze_heap()
    return app


def app_from_environment() -> FastAPI:
    """The app as ``create`` builds it in a fresh server process, with the settings of the current environment; the
    heap is left unfrozen, for in-process measurements that may build several apps (``lephi.heap``)."""
    get_settings.cache_clear()
    return create_app(get_settings())
