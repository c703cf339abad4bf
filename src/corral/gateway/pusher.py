"""Desired state out: every server whose state moved gets its whole message, in batches."""

from __future__ import annotations

import asyncio
import contextlib

from websockets.exceptions import ConnectionClosed

from corral import metrics, wire
from corral.controlplane import ControlPlane
from corral.db.chunks import chunked
from corral.db.session import in_worker
from corral.domain import desired_state
from corral.gateway.connection import AgentConnection

BATCH = 2000


class Pusher:
    def __init__(self, plane: ControlPlane, connections: dict[int, AgentConnection]) -> None:
        self.plane = plane
        self.connections = connections
        self._to_push: set[int] = set()
        self._wanted = asyncio.Event()

    def push(self, server_ids: set[int] | list[int]) -> None:
        """Send these servers their desired state (if connected here and it moved)."""
        self._to_push.update(sid for sid in server_ids if sid in self.connections)
        if self._to_push:
            self._wanted.set()

    async def run(self) -> None:
        """One query per 2,000 servers, however many changed at once."""
        while True:
            await self._wanted.wait()
            self._wanted.clear()
            ids, self._to_push = sorted(self._to_push), set()
            for chunk in chunked(ids, BATCH):
                await self._send(chunk)

    async def _send(self, chunk: list[int]) -> None:
        with metrics.PUSH_SECONDS.time():
            await self._assemble_and_send(chunk)

    async def _assemble_and_send(self, chunk: list[int]) -> None:
        told = self.plane.told()
        trusted = told.trusted_cas
        messages = await in_worker(self.plane.sessions, desired_state.messages, chunk, told)
        sends = []
        for sid in chunk:
            conn = self.connections.get(sid)
            message = messages.get(sid)
            if conn is None:
                continue
            if message is None:
                sends.append(conn.ws.close(wire.CLOSE_UNKNOWN_SERVER, "server deleted"))
            elif message[0] != conn.sent_revision or conn.sent_trust != trusted:
                # a CA rotation changes what every message says without moving revisions
                conn.sent_revision, text = message
                conn.sent_trust = trusted
                sends.append(conn.ws.send(text))
        await asyncio.gather(*sends, return_exceptions=True)

    @staticmethod
    async def release(conn: AgentConnection) -> None:
        """A deleted server stops what it runs: an empty desired state, then the door shut
        (the agent also empties itself when it is refused, should this message be lost)."""
        empty = wire.Desired(revision=conn.sent_revision + 1, serverId=conn.server_id,
                             serverName="", cluster=None, applications=[])
        with contextlib.suppress(ConnectionClosed):
            await conn.ws.send(wire.encode(empty))
        await conn.ws.close(wire.CLOSE_REVOKED, "server deleted")
