"""The audit trail's recorder: every change asked of the control plane (a POST, PUT, PATCH or
DELETE to the API or the console) becomes one event once its answer is known, refusals and
failed sign-ins included. A refused request that named nobody (no token, no sign-in name) is
counted instead (`corral_anonymous_refusals`): anyone can send those, as fast as they like. Who asked is what the sign-in code noted on the request
(`http_context.note_actor`); where is the caller's address."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from starlette.types import ASGIApp, Receive, Scope, Send

from corral.api.middleware import StatusOf
from corral.controlplane import ControlPlane
from corral.domain import audit, narrative
from corral.http_context import AUDIT_ACTOR, AUDIT_ENVIRONMENT
from corral.metrics import ANONYMOUS_REFUSED

log = logging.getLogger(__name__)
CHANGES = frozenset({"POST", "PUT", "PATCH", "DELETE"})
NOT_AUDITED = frozenset({"/healthz"})
GATHER_SECONDS = 0.02
"""Events of answers given within this long are stored in one transaction (`audit.Recorder`);
the audit trail's readers store what is kept before they read."""


class AuditTrail:
    def __init__(self, app: ASGIApp, *, plane: Callable[[], ControlPlane]) -> None:
        self.app = app
        self.plane = plane
        self._storing: set[asyncio.Future[None]] = set()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] not in CHANGES \
                or scope["path"] in NOT_AUDITED:
            await self.app(scope, receive, send)
            return
        answered = StatusOf(send)
        with narrative.collecting() as said:
            try:
                await self.app(scope, receive, answered)
            finally:
                await self._record(scope, answered.status, said if answered.status < 400 else [])

    async def _record(self, scope: Scope, status: int, said: list[str]) -> None:
        state: dict[str, Any] = scope.get("state") or {}
        kind, actor_id, name, organization = state.get(AUDIT_ACTOR) or (
            "anonymous", None, "", None)
        if kind == "anonymous" and status >= 400:
            # nobody to hold to account, and anybody can send them: a counter, not a row
            ANONYMOUS_REFUSED.labels(str(status)).inc()
            return
        route = scope.get("route")
        template = getattr(route, "path", None) or scope["path"]
        client = scope.get("client")
        event = audit.Event(
            kind=kind, actor_id=actor_id, actor_name=name, organization_id=organization,
            environment_id=state.get(AUDIT_ENVIRONMENT), source=client[0] if client else "",
            action=f"{scope['method']} {template}", resource=scope["path"], status=status,
            description="; ".join(said))
        if self.plane().audit.add(event):  # the first kept: store a burst shortly
            asyncio.get_running_loop().call_later(GATHER_SECONDS, self._store_soon)

    def _store_soon(self) -> None:
        task = asyncio.ensure_future(self._store())
        self._storing.add(task)  # referenced until it ends
        task.add_done_callback(self._storing.discard)

    async def _store(self) -> None:
        try:
            await asyncio.to_thread(self.plane().audit.store)
        except Exception:  # an answer already sent is never turned into an error
            log.exception("could not record audit events")
