"""The safety net: vouch for every connected agent in a few UPDATEs, re-push any server whose
desired revision moved (a change made by another replica whose notice was missed) and, on the
leading replica, mark DISCONNECTED the servers no gateway vouches for any more (the replica that
held them stopped) and do the periodic upkeep."""

from __future__ import annotations

import asyncio
import logging
import time

from sqlalchemy.orm import Session

from corral.controlplane import ControlPlane
from corral.db.session import in_worker
from corral.domain import agents, history, measurements, replicas
from corral.gateway.connection import AgentConnection
from corral.gateway.leader import Leadership
from corral.gateway.periodic import every
from corral.gateway.pusher import Pusher

log = logging.getLogger(__name__)


class Sweeper:
    """Agents send no periodic messages: an open connection is alive (the websocket's pings
    close a dead one), so every connected server's `lastSeen` moves on together, a third of
    the timeout apart."""

    UPKEEP_SECONDS = 60.0

    def __init__(self, plane: ControlPlane, connections: dict[int, AgentConnection],
                 pusher: Pusher, leadership: Leadership) -> None:
        self.plane = plane
        self.connections = connections
        self.pusher = pusher
        self.leadership = leadership
        self._vouched_at = float("-inf")
        self._upkept_at = float("-inf")

    async def run(self) -> None:
        period = max(0.2, min(5.0, self.plane.settings.heartbeat_timeout_seconds / 3))
        await every(period, self.sweep, "gateway sweep")

    async def sweep(self) -> None:
        connected = list(self.connections)
        timeout = self.plane.settings.heartbeat_timeout_seconds
        now = time.monotonic()
        vouch = now - self._vouched_at >= timeout / 3
        leading = self.leadership.leading
        upkeep = leading and now - self._upkept_at >= self.UPKEEP_SECONDS
        replica = self.plane.replica_id

        unused: list[str] = []

        def work(session: Session) -> dict[int, int]:
            if vouch:
                agents.seen(session, connected, replica)
                replicas.seen(session, replica)
            if leading:
                agents.mark_silent_disconnected(session, timeout)
            if upkeep:
                settings = self.plane.settings
                replicas.upkeep(session, settings.audit_retention_days)
                measurements.downsample(session, settings.metrics_raw_seconds,
                                        settings.metrics_retention_seconds)
                unused.extend(history.collect(session, self.plane.settings.keep_deployments))
            return agents.revisions(session, connected)

        revisions = await in_worker(self.plane.sessions, work)
        for sha256 in unused:  # no artifact refers to them any more, as of that commit
            await asyncio.to_thread(self.plane.store.delete, sha256)
        if vouch:
            self._vouched_at = now
        if upkeep:
            self._upkept_at = now
        self._push_moved(connected, revisions)

    async def resync(self) -> None:
        """Compare the revision of every agent held here with the database's, at once (a
        notice too large to name its servers, or notices missed while not listening)."""
        connected = list(self.connections)
        revisions = await in_worker(self.plane.readers, agents.revisions, connected)
        self._push_moved(connected, revisions)

    def _push_moved(self, connected: list[int], revisions: dict[int, int]) -> None:
        """Servers whose revision moved, and those deleted (the pusher closes them)."""
        self.pusher.push([sid for sid in connected
                          if sid in self.connections
                          and self.connections[sid].sent_revision != revisions.get(sid)])
