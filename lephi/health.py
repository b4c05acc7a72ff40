"""Liveness and readiness."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse
from sqlalchemy import text

from lephi.migrate import current_revision, head_revision
from payments.auth.deps import CtxDep

router = APIRouter(tags=["health"])


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    """The process is up."""
    return {"status": "ok"}


@router.get("/readyz", responses={503: {"description": "Not ready"}})
def readyz(ctx: CtxDep) -> JSONResponse:
    """Ready to serve: the database answers and its schema is at the latest migration."""
    try:
        with ctx.db.read() as s:
            s.exec(text("SELECT 1"))  # type: ignore[call-overload]
        current = current_revision(ctx.db.engine)
    except Exception as exc:
        return JSONResponse({"status": "unavailable", "database": f"unreachable: {type(exc).__name__}"}, 503)
    head = head_revision()
    ok = current == head
    return JSONResponse(
        {
            "status": "ok" if ok else "migrations_pending",
            "database": "ok",
            "migration": current,
            "expected_migration": head,
        },
        200 if ok else 503,
    )
