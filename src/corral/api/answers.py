"""Answers rendered once per change: the lists and objects that scripts and ARM's clients read
over and over (the mule-maven-plugin lists every application on every deploy) are kept as the
bytes that were sent, and served again while nothing under them changed.

- **Fresh.** An answer is kept with the change count it was rendered under
  (`corral.db.changes`), sampled before its read began, and served only while the count has
  not moved: a change committed in this process shows on the next call; one committed by another
  replica, once its notice arrives. On PostgreSQL nothing kept is served while this replica
  cannot hear the others. An answer is rendered again once it is `CORRAL_ANSWER_CACHE_SECONDS`
  old, so that `uptime` moves; meanwhile the callers that arrive are given the aged one (nothing
  under it changed).
- **Only for whom it was rendered.** The key holds the organization and environment the
  caller's token and headers resolve to (`PrincipalCache`: what was resolved a moment ago, or
  the database); a caller they do not resolve for is answered by the route itself, which says
  why. Only `200` answers are kept.
- **Bounded.** `CORRAL_ANSWER_CACHE_MB` in all, least recently used first out; one renderer per
  key at a time, the callers that arrive meanwhile wait for its answer.
- **Validated.** Every answer of these routes carries an `ETag` (a digest of its bytes);
  `If-None-Match` with it is answered `304` and no body.

Only `GET` of the paths in `KEPT` is concerned; everything else passes through untouched."""

from __future__ import annotations

import asyncio
import hashlib
import re
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from corral import metrics
from corral.controlplane import ControlPlane

KEPT = re.compile(r"/hybrid/api/v1/(?:servers|serverGroups|clusters|applications)(?:/[0-9]{1,18})?"
                  r"|/armui/api/v1/(?:servers|applications)")
"""Lists and single objects whose answers depend only on the environment and the URL."""

Key = tuple[str, str, str, bytes]


@dataclass(frozen=True)
class Answer:
    count: int
    """The change count it was rendered under."""
    born: float
    status: int
    headers: list[tuple[bytes, bytes]]
    body: bytes
    etag: bytes
    route: Any
    """The route that rendered it, for the request metrics' label."""


class Answers:
    def __init__(self, app: ASGIApp, *, plane: Callable[[], ControlPlane]) -> None:
        self.app = app
        self.plane = plane
        self._kept: OrderedDict[Key, Answer] = OrderedDict()
        self._bytes = 0
        self._rendering: dict[Key, tuple[int, asyncio.Future[Answer | None]]] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "GET" \
                or not KEPT.fullmatch(scope["path"]):
            await self.app(scope, receive, send)
            return
        plane = self.plane()
        headers = dict(scope["headers"])
        asked = _tags(headers.get(b"if-none-match"))
        key = await self._key(plane, headers, scope)
        count = plane.changes.value
        if key is not None:
            kept = self._fresh(key, count, plane.settings.answer_cache_seconds)
            if kept is None:
                kept = await self._rendered_meanwhile(key, count)
            if kept is not None:
                metrics.ANSWERS.labels("kept").inc()
                scope["route"] = kept.route
                await _send(send, kept, asked)
                return
        await self._render(scope, receive, send, key, count, asked)

    async def _key(self, plane: ControlPlane, headers: dict[bytes, bytes], scope: Scope
                   ) -> Key | None:
        """Where the caller acts, if its token and headers resolve (from the token cache, or
        the database when that has forgotten them: else every caller arriving in that moment
        would render on its own) and answers may be kept at all. A refusal is the route's to
        answer."""
        if plane.settings.answer_cache_seconds <= 0 or not plane.changes.heard:
            return None
        scheme, _, token = headers.get(b"authorization", b"").decode("latin-1").partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            return None
        org, env = (headers[h].decode("latin-1") if h in headers else None
                    for h in (b"x-anypnt-org-id", b"x-anypnt-env-id"))
        found = plane.principals.peek(token.strip(), org, env)
        if found is None:
            try:
                where = (await asyncio.to_thread(plane.principals.resolve, plane.readers,
                                                 token.strip(), org, env, scoped=True))[1]
            except Exception:  # refused, or no database: the route says which
                return None
        else:
            where = found[1]
        if where is None:
            return None
        return (where.organization_id, where.environment_id, scope["path"],
                scope.get("query_string", b""))

    def _fresh(self, key: Key, count: int, seconds: float) -> Answer | None:
        """What is kept under this count: young enough, or aged while its successor is being
        rendered (nothing under it changed, only `uptime` is older; the first caller after it
        aged renders, the others need not wait)."""
        kept = self._kept.get(key)
        if kept is None:
            return None
        if kept.count != count:
            self._forget(key)
            return None
        if time.monotonic() - kept.born >= seconds:
            pending = self._rendering.get(key)
            if pending is None or pending[0] != count:
                return None
        self._kept.move_to_end(key)
        return kept

    async def _rendered_meanwhile(self, key: Key, count: int) -> Answer | None:
        """The answer another call is rendering for this key under the same count."""
        pending = self._rendering.get(key)
        if pending is None or pending[0] != count:
            return None
        return await asyncio.shield(pending[1])

    async def _render(self, scope: Scope, receive: Receive, send: Send, key: Key | None,
                      count: int, asked: set[bytes]) -> None:
        future: asyncio.Future[Answer | None] | None = None
        if key is not None:
            # callers that arrive meanwhile with this count wait for this rendering; one under
            # an older count still running is theirs no longer (it may not be kept either)
            future = asyncio.get_running_loop().create_future()
            self._rendering[key] = (count, future)
        start: Message | None = None
        body: list[bytes] = []
        answer: Answer | None = None

        async def collect(message: Message) -> None:
            """These routes answer JSON rendered whole: held until it is complete."""
            nonlocal start
            if message["type"] == "http.response.start":
                start = message
            elif message["type"] == "http.response.body":
                body.append(message.get("body", b""))
            else:
                await send(message)

        metrics.ANSWERS.labels("rendered").inc()
        try:
            await self.app(scope, receive, collect)
            if start is not None:
                whole = b"".join(body)
                answer = Answer(count=count, born=time.monotonic(), status=start["status"],
                                headers=[(k, v) for k, v in start.get("headers", [])
                                         if k.lower() != b"content-length"],
                                body=whole, etag=_etag(whole), route=scope.get("route"))
        finally:
            # those waiting are answered before this caller's own answer is written out
            if future is not None and key is not None:
                kept = answer if answer is not None and answer.status == 200 else None
                if self._rendering.get(key, (0, None))[1] is future:
                    del self._rendering[key]
                future.set_result(kept)
                if kept is not None:
                    self._keep(key, kept)
        if answer is not None:
            await _send(send, answer, asked)

    def _keep(self, key: Key, answer: Answer) -> None:
        budget = self.plane().settings.answer_cache_mb * 1024 * 1024
        if len(answer.body) > budget // 4:
            return
        held = self._kept.get(key)
        if held is not None and held.count > answer.count:
            return  # a slower render under an older count must not replace a newer one
        self._forget(key)
        self._kept[key] = answer
        self._bytes += len(answer.body)
        while self._bytes > budget:
            self._forget(next(iter(self._kept)))

    def _forget(self, key: Key) -> None:
        gone = self._kept.pop(key, None)
        if gone is not None:
            self._bytes -= len(gone.body)


def _etag(body: bytes) -> bytes:
    return b'"' + hashlib.blake2b(body, digest_size=12).hexdigest().encode() + b'"'


def _tags(header: bytes | None) -> set[bytes]:
    """The entity tags of `If-None-Match`, weak ones compared as strong (RFC 9110 13.1.2)."""
    if not header:
        return set()
    return {t.strip().removeprefix(b"W/") for t in header.split(b",") if t.strip()}


async def _send(send: Send, answer: Answer, asked: set[bytes]) -> None:
    if answer.status == 200 and (answer.etag in asked or b"*" in asked):
        await send({"type": "http.response.start", "status": 304,
                    "headers": [(b"etag", answer.etag)]})
        await send({"type": "http.response.body", "body": b""})
        return
    headers = [*answer.headers, (b"content-length", str(len(answer.body)).encode())]
    if answer.status == 200:
        headers.append((b"etag", answer.etag))
    await send({"type": "http.response.start", "status": answer.status, "headers": headers})
    await send({"type": "http.response.body", "body": answer.body})
