"""Reading request bodies that ARM's clients send in more than one encoding."""

from __future__ import annotations

import json
from typing import Any, TypeVar
from urllib.parse import parse_qsl

from fastapi import FastAPI, Request
from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from corral.errors import InvalidInput, TooLarge

M = TypeVar("M", bound=BaseModel)
MAX_FORM_BYTES = 64 * 1024
_DOCUMENTED: dict[str, type[BaseModel]] = {}


async def read_small(request: Request, limit: int = MAX_FORM_BYTES) -> bytes:
    """The whole body, refused with 413 once it passes `limit` (on routes whose middleware cap
    is the upload limit, a JSON body must not be read whole first)."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise TooLarge(f"request body exceeds the limit of {limit} bytes")
    raw = bytearray()
    async for chunk in request.stream():
        raw += chunk
        if len(raw) > limit:
            raise TooLarge(f"request body exceeds the limit of {limit} bytes")
    return bytes(raw)


def media_type(request: Request) -> str:
    """The body's media type, without parameters (`multipart/form-data`, `application/json`)."""
    return request.headers.get("content-type", "").split(";")[0].strip().lower()


async def json_or_form(request: Request, model: type[M], raw: bytes | None = None) -> M:
    """A small body as JSON or `application/x-www-form-urlencoded` (scripts send both)."""
    if raw is None:
        raw = await read_small(request)
    data: Any
    if media_type(request) == "application/x-www-form-urlencoded":
        data = dict(parse_qsl(raw.decode("utf-8", "replace"), keep_blank_values=True))
    else:
        try:
            data = json.loads(raw or b"null")
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise InvalidInput("request body is not valid JSON") from exc
    if not isinstance(data, dict):
        raise InvalidInput("request body must be a JSON object")
    return model.model_validate(data)


def body_ref(model: type[BaseModel]) -> dict[str, str]:
    """A reference to a body model that a handler reads itself, for `openapi_extra`; the model
    lands in the document's components through `document_bodies`."""
    _DOCUMENTED[model.__name__] = model
    return {"$ref": f"#/components/schemas/{model.__name__}"}


def document_bodies(app: FastAPI) -> None:
    """Bodies read by hand (JSON or form, JSON or multipart) are no FastAPI parameters, so
    FastAPI leaves their models out of the components that `body_ref` points to: add them."""
    plain = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            document = plain()
            _, found = models_json_schema(
                [(model, "validation") for model in _DOCUMENTED.values()],
                ref_template="#/components/schemas/{model}")
            known = document.setdefault("components", {}).setdefault("schemas", {})
            for name, schema in found.get("$defs", {}).items():
                known.setdefault(name, schema)
        return app.openapi_schema or plain()

    app.openapi = openapi  # type: ignore[method-assign]


def openapi_json_or_form(model: type[BaseModel]) -> dict[str, Any]:
    schema = body_ref(model)
    return {
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {"schema": schema},
                "application/x-www-form-urlencoded": {"schema": schema},
            },
        }
    }
