"""The one place where errors become ARM's JSON body: `{"status", "message"[, "errors"]}`."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from pydantic import ValidationError
from sqlalchemy.exc import (
    DataError,
    IntegrityError,
    InterfaceError,
    OperationalError,
    StatementError,
)
from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlalchemy.orm.exc import StaleDataError
from starlette.exceptions import HTTPException as StarletteHTTPException

from corral.errors import CorralError, TooManyRequests, Unauthenticated

log = logging.getLogger(__name__)
CONFLICT_STATES = frozenset({"40001", "40P01"})
"""PostgreSQL's serialization_failure and deadlock_detected."""
CONCURRENT = "a concurrent change to the same objects came first; nothing was applied, retry"
PLAIN_401 = frozenset({"/accounts/api/me"})
"""Where ARM answers a missing or bad token with the text `Unauthorized` rather than JSON: the
mule-maven-plugin compares that body to the word, and reads anything else as a profile (and
then fails with "Cannot find root organization" instead of "check your authToken")."""


def error_response(
    status: int,
    message: str,
    errors: list[dict[str, Any]] | None = None,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    body: dict[str, Any] = {"status": status, "message": message}
    if errors:
        body["errors"] = errors
    headers = dict(headers or {})
    if status == 401:
        headers["WWW-Authenticate"] = "Bearer"
    return JSONResponse(body, status_code=status, headers=headers or None)


def _field(loc: tuple[Any, ...]) -> str:
    parts = [str(p) for p in loc if p not in ("body", "query", "path", "header")]
    return ".".join(parts) or "body"


def validation_errors(exc: RequestValidationError | ValidationError) -> JSONResponse:
    details = exc.errors()
    if any(d.get("type") == "json_invalid" for d in details):
        return error_response(400, "request body is not valid JSON")
    errors = [{"field": _field(tuple(d.get("loc", ()))), "message": d.get("msg", "")} for d in details]
    first = errors[0] if errors else {"field": "body", "message": "invalid request"}
    message = f"{first['field']}: {first['message']}"
    if len(errors) > 1:
        message += f" (and {len(errors) - 1} more)"
    return error_response(400, message, errors)


def install(app: FastAPI) -> None:
    @app.exception_handler(CorralError)
    async def _domain(request: Request, exc: CorralError) -> Response:
        if isinstance(exc, Unauthenticated) and request.url.path in PLAIN_401:
            return PlainTextResponse("Unauthorized", status_code=401,
                                     headers={"WWW-Authenticate": "Bearer"})
        headers = None
        if isinstance(exc, TooManyRequests):
            headers = {"Retry-After": str(exc.retry_after)}
        return error_response(exc.http_status, exc.message, exc.errors, headers)

    @app.exception_handler(RequestValidationError)
    async def _request_validation(_: Request, exc: RequestValidationError) -> JSONResponse:
        return validation_errors(exc)

    @app.exception_handler(ValidationError)
    async def _model_validation(_: Request, exc: ValidationError) -> JSONResponse:
        return validation_errors(exc)

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        message = exc.detail if isinstance(exc.detail, str) else "request failed"
        if exc.status_code == 404 and message == "Not Found":
            message = "no such resource"
        return error_response(exc.status_code, message)

    @app.exception_handler(IntegrityError)
    async def _integrity(_: Request, exc: IntegrityError) -> JSONResponse:
        log.info("integrity error mapped to 409: %s", exc.orig)
        return error_response(409, "the change conflicts with an existing record; retry")

    @app.exception_handler(DataError)
    async def _data(_: Request, exc: DataError) -> JSONResponse:
        log.info("data error mapped to 400: %s", exc.orig)
        return error_response(400, "a value in the request cannot be stored (too long, out of "
                                   "range, or with characters that are not allowed)")

    @app.exception_handler(StatementError)
    async def _statement(request: Request, exc: StatementError) -> JSONResponse:
        """A value the driver refuses before the database sees it (an integer beyond 64 bits,
        text that is not valid UTF-8)."""
        if isinstance(exc.orig, (OverflowError, UnicodeError, ValueError)):
            log.info("unstorable value mapped to 400: %s", exc.orig)
            return error_response(400, "a value in the request cannot be stored")
        return await _unexpected(request, exc)

    @app.exception_handler(UnicodeError)
    async def _unicode(_: Request, exc: UnicodeError) -> JSONResponse:
        return error_response(400, "the request holds text that is not valid UTF-8")

    @app.exception_handler(StaleDataError)
    async def _stale(_: Request, exc: StaleDataError) -> JSONResponse:
        log.info("a row changed meanwhile, mapped to 409: %s", exc)
        return error_response(409, CONCURRENT)

    @app.exception_handler(OperationalError)
    @app.exception_handler(InterfaceError)
    @app.exception_handler(PoolTimeout)
    async def _db_down(_: Request, exc: Exception) -> JSONResponse:
        """The database restarting or out of reach: a clear 503 the caller may retry. A
        transaction the database chose to end (a deadlock, a serialization failure) is a
        conflict with a concurrent change: 409, and nothing of it was applied."""
        if getattr(getattr(exc, "orig", None), "sqlstate", None) in CONFLICT_STATES:
            log.info("concurrent change mapped to 409: %s", getattr(exc, "orig", exc))
            return error_response(409, CONCURRENT)
        log.error("database unavailable: %s", getattr(exc, "orig", exc))
        return error_response(503, "the database is unavailable; retry later",
                              headers={"Retry-After": "5"})

    @app.exception_handler(Exception)
    async def _unexpected(_: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error", exc_info=exc)
        return error_response(500, "internal error; the change was not applied")
