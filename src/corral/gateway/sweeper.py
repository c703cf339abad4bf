"""The safety net: flush heartbeats in one UPDATE, re-push any server whose desired revision
moved (changes made by another replica included) and mark silent servers DISCONNECTED."""

from __future__ import annotations

import asyncio
import logging

from sqlalchemy.orm import Session

from corral.controlplane import ControlPlane
from corral.db.session import in_worker
from corral.domain import agents
from corral.gateway.connection import AgentConnection
from corral.gateway.pusher import Pusher

log = logging.getLogger(__name__)


class Sweeper:
    def __init__(self, plane: ControlPlane, connections: dict[int, AgentConnection],
                 pusher: Pusher) -> None:
        self.plane = plane
        self.connections = connections
        self.pusher = pusher
        self.heard_from: set[int] = set()

    def heard(self, server_id: int) -> None:
        self.heard_from.add(server_id)

    async def run(self) -> None:
        period = max(0.2, min(5.0, self.plane.settings.heartbeat_timeout_seconds / 3))
        while True:
            await asyncio.sleep(period)
            try:
                await self.sweep()
            except Exception:
                log.exception("gateway sweep failed")

    async def sweep(self) -> None:
        heard, self.heard_from = self.heard_from, set()
        connected = list(self.connections)
        timeout = self.plane.settings.heartbeat_timeout_seconds

        def work(session: Session) -> dict[int, int]:
            agents.seen(session, [sid for sid in heard if sid in self.connections])
            agents.mark_silent_disconnected(session, timeout)
            return agents.revisions(session, connected)

        revisions = await in_worker(self.plane.sessions, work)
        self.pusher.push([sid for sid, rev in revisions.items()
                          if sid in self.connections
                          and self.connections[sid].sent_revision != rev])
