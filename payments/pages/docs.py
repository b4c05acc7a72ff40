"""``/docs``: Swagger UI served from the files of the pinned ``fastapi-offline`` package (Swagger UI 5, which reads
OpenAPI 3.1), never from a CDN.

A page that runs a script fetched from a public CDN without integrity runs whatever that CDN serves, next to the
API's own origin; here every file comes from this service, and the page's policy allows nothing else."""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

from fastapi import APIRouter, Request
from fastapi.responses import FileResponse, HTMLResponse

from payments.core.errors import NotFound
from payments.core.security import allow_sources
from payments.pages.render import render

router = APIRouter(include_in_schema=False)
ASSETS = Path(str(files("fastapi_offline") / "static"))
# Only what the page loads: nothing else of the package is published.
FILES = {"swagger-ui-bundle.js", "swagger-ui.css", "favicon.png"}


@router.get("/docs", response_class=HTMLResponse)
async def docs(request: Request) -> HTMLResponse:
    allow_sources(request, "script-src", "'self'")
    allow_sources(request, "style-src", "'self'")
    return render(request, "swagger.html", openapi_url=request.app.openapi_url)


@router.get("/docs/assets/{name}")
async def asset(name: str) -> FileResponse:
    if name not in FILES:
        raise NotFound("no such documentation asset")
    return FileResponse(ASSETS / name, headers={"Cache-Control": "public, max-age=86400"})
