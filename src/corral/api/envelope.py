"""ARM's envelopes: `{"data": ...}` for one object, `{"data": [...], "total": n}` for a list.
Answered directly: the views are already plain JSON, so FastAPI need not validate them again
against the response model, and orjson encodes them several times faster than `json`."""

from __future__ import annotations

from typing import Any

from fastapi.responses import JSONResponse

from corral import jsontext


class FastJSON(JSONResponse):
    def render(self, content: Any) -> bytes:
        return jsontext.dumps(content)


def one(obj: dict[str, Any], status_code: int = 200,
        headers: dict[str, str] | None = None) -> JSONResponse:
    return FastJSON({"data": obj}, status_code=status_code, headers=headers)


def many(items: list[dict[str, Any]], total: int) -> JSONResponse:
    return FastJSON({"data": items, "total": total})
