"""Readiness: the process is up and the database answers."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from fastapi.responses import JSONResponse
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError

from corral import __version__
from corral.http_context import PlaneDep

router = APIRouter(tags=["health"])


@router.get("/livez")
def livez() -> dict[str, str]:
    """Liveness without touching the database (also the benchmarks' bare endpoint)."""
    return {"status": "ok"}


@router.get("/healthz")
def healthz(plane: PlaneDep) -> Any:
    try:
        with plane.engine.connect() as conn:
            conn.execute(text("SELECT 1"))
    except SQLAlchemyError:
        return JSONResponse({"status": "unavailable", "database": "down"}, status_code=503)
    return {"status": "ok", "version": __version__}
