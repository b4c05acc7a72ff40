"""The OpenAPI document, exported to openapi/openapi.json (a test fails when that file is stale)."""

from __future__ import annotations

import json

from payments.core.config import Settings


def export() -> str:
    from payments.app import create_app
    from payments.core.context import build_context
    from payments.core.db import Database, make_engine

    settings = Settings(database_url="sqlite://", run_worker=False)
    app = create_app(settings, build_context(settings, Database(make_engine("sqlite://", settings))))
    return json.dumps(app.openapi(), indent=2, ensure_ascii=False, sort_keys=True) + "\n"
