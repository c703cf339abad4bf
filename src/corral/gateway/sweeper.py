"""The safety net: vouch for every connected agent in a few UPDATEs, re-push any server whose
desired revision moved (changes made by another replica included) and mark DISCONNECTED the
servers no gateway vouches for any more (the replica that held them stopped)."""

from __future__ import annotations

import asyncio
import logging
import time

from sqlalchemy.orm import Session

from corral.controlplane import ControlPlane
from corral.db.session import in_worker
from corral.domain import agents
from corral.gateway.connection import AgentConnection
from corral.gateway.pusher import Pusher

log = logging.getLogger(__name__)


class Sweeper:
    """Agents send no periodic messages: an open connection is alive (the websocket's pings
    close a dead one), so every connected server's `lastSeen` moves on together, a third of
    the timeout apart."""

    def __init__(self, plane: ControlPlane, connections: dict[int, AgentConnection],
                 pusher: Pusher) -> None:
        self.plane = plane
        self.connections = connections
        self.pusher = pusher
        self._vouched_at = float("-inf")

    async def run(self) -> None:
        period = max(0.2, min(5.0, self.plane.settings.heartbeat_timeout_seconds / 3))
        while True:
            await asyncio.sleep(period)
            try:
                await self.sweep()
            except Exception:
                log.exception("gateway sweep failed")

    async def sweep(self) -> None:
        connected = list(self.connections)
        timeout = self.plane.settings.heartbeat_timeout_seconds
        now = time.monotonic()
        vouch = now - self._vouched_at >= timeout / 3

        def work(session: Session) -> dict[int, int]:
            if vouch:
                agents.seen(session, connected)
            agents.mark_silent_disconnected(session, timeout)
            return agents.revisions(session, connected)

        revisions = await in_worker(self.plane.sessions, work)
        if vouch:
            self._vouched_at = now
        self.pusher.push([sid for sid, rev in revisions.items()
                          if sid in self.connections
                          and self.connections[sid].sent_revision != rev])
