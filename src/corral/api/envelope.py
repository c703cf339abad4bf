"""ARM's envelopes: `{"data": ...}` for one object, `{"data": [...], "total": n}` for a list.
Answered as JSONResponse directly: the views are already plain JSON, so FastAPI need not
validate them again against the response model."""

from __future__ import annotations

from typing import Any

from fastapi.responses import JSONResponse


def one(obj: dict[str, Any]) -> JSONResponse:
    return JSONResponse({"data": obj})


def many(items: list[dict[str, Any]], total: int) -> JSONResponse:
    return JSONResponse({"data": items, "total": total})
