"""ASGI middleware in front of every route: body size caps and protective response headers.

A body is refused with 413 before any handler, dependency or parser sees it: past a small cap
(`CORRAL_MAX_BODY_BYTES`, 64 KiB) on every route, past the artifact limit on the upload routes.
Both a declared `Content-Length` and a chunked stream are counted. Small bodies are read here,
whole, before the application runs, so a slow or endless body never reaches a parser."""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Callable
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from corral import logformat
from corral.artifacts.multipart import MULTIPART_OVERHEAD
from corral.errors import TooLarge

UPLOAD_ROUTES = (
    ("POST", re.compile(r"/hybrid/api/v1/applications/?")),
    ("PATCH", re.compile(r"/hybrid/api/v1/applications/[^/]+(/artifact)?/?")),
    ("POST", re.compile(r"/apps/?")),
    ("POST", re.compile(r"/apps/[^/]+/redeploy")),
)
SECURITY_HEADERS = [
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"content-security-policy", b"frame-ancestors 'none'"),
    (b"referrer-policy", b"same-origin"),
]


class StatusOf:
    """A `send` that remembers the response's status (500 until one starts), for middleware
    that acts once the answer is known (the audit trail, request timing)."""

    def __init__(self, send: Send) -> None:
        self._send = send
        self.status = 500

    async def __call__(self, message: Message) -> None:
        if message["type"] == "http.response.start":
            self.status = int(message["status"])
        await self._send(message)


REQUEST_ID_SHAPE = re.compile(r"[A-Za-z0-9._-]{1,64}")


class RequestId:
    """Every request gets an id (the caller's `X-Request-Id` when it is a plain token, else a
    new one), answered in `X-Request-Id` and carried by every log line written meanwhile."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        given = dict(scope.get("headers") or []).get(b"x-request-id", b"").decode("latin-1")
        request_id = given if REQUEST_ID_SHAPE.fullmatch(given) else uuid.uuid4().hex
        token = logformat.REQUEST_ID.set(request_id)

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", []),
                                                  (b"x-request-id", request_id.encode())]}
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            logformat.REQUEST_ID.reset(token)


class OneTrailingSlash:
    """`/servers/` is `/servers`, for every method and with no redirect, as in ARM: scripts
    call either form, and a curl without `-L` reads an empty 307 as "no servers". The path is
    changed before anything else sees it, so that routing, the audit trail and the metrics all
    see one form."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "")
        if scope["type"] in ("http", "websocket") and len(path) > 1 and path.endswith("/") \
                and not path.endswith("//"):
            scope = dict(scope, path=path[:-1])
            raw = scope.get("raw_path")
            if raw and raw.endswith(b"/"):
                scope["raw_path"] = raw[:-1]
        await self.app(scope, receive, send)


def is_upload(method: str, path: str) -> bool:
    return any(method == m and pattern.fullmatch(path) for m, pattern in UPLOAD_ROUTES)


class BodyLimit:
    def __init__(self, app: ASGIApp, *, max_body: Callable[[], int],
                 max_upload: Callable[[], int]) -> None:
        self.app = app
        self.max_body = max_body
        self.max_upload = max_upload

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        upload = is_upload(scope["method"], scope["path"])
        limit = self.max_upload() + MULTIPART_OVERHEAD if upload else self.max_body()
        declared = _content_length(scope)
        if declared is not None and declared > limit:
            await _too_large(send, limit)
            return
        if upload:
            await self.app(scope, _counting(receive, limit), send)
            return
        body = bytearray()
        while True:
            message = await receive()
            if message["type"] != "http.request":
                await self.app(scope, _replay(None, receive, message), send)
                return
            body += message.get("body", b"")
            if len(body) > limit:
                await _too_large(send, limit)
                return
            if not message.get("more_body", False):
                break
        await self.app(scope, _replay(bytes(body), receive, None), send)


class SecurityHeaders:
    """No framing of any page (clickjacking), no content sniffing, no referrer leaks."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                present = {k.lower() for k, _ in message.get("headers", [])}
                extra = [(k, v) for k, v in SECURITY_HEADERS if k not in present]
                message = {**message, "headers": [*message.get("headers", []), *extra]}
            await send(message)

        await self.app(scope, receive, with_headers)


def _content_length(scope: Scope) -> int | None:
    for key, value in scope.get("headers", []):
        if key == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


def _counting(receive: Receive, limit: int) -> Receive:
    seen = 0

    async def counted() -> Message:
        nonlocal seen
        message = await receive()
        if message["type"] == "http.request":
            seen += len(message.get("body", b""))
            if seen > limit:
                raise TooLarge(f"request body exceeds the limit of {limit} bytes")
        return message

    return counted


def _replay(body: bytes | None, receive: Receive, pending: Message | None) -> Receive:
    sent = False

    async def replayed() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            if pending is not None:
                return pending
            return {"type": "http.request", "body": body or b"", "more_body": False}
        return await receive()

    return replayed


async def _too_large(send: Send, limit: int) -> None:
    body = json.dumps({"status": 413,
                       "message": f"request body exceeds the limit of {limit} bytes"}).encode()
    headers: list[Any] = [(b"content-type", b"application/json"),
                          (b"content-length", str(len(body)).encode()),
                          (b"connection", b"close")]
    await send({"type": "http.response.start", "status": 413, "headers": headers})
    await send({"type": "http.response.body", "body": body})
