"""Artifact download over the agent's own mutual-TLS identity: only what its server runs."""

from __future__ import annotations

import asyncio

from sqlalchemy.orm import Session
from websockets.asyncio.server import ServerConnection

from corral import wire
from corral.controlplane import ControlPlane
from corral.db.session import in_worker
from corral.domain import agents
from corral.errors import CorralError
from corral.pki.authority import ServerIdentity


async def stream_artifact(plane: ControlPlane, ws: ServerConnection, who: ServerIdentity,
                          sha256: str) -> None:
    def allowed(session: Session) -> bool:
        agents.admit(session, who)
        return agents.may_download(session, who.server_id, sha256)

    try:
        ok = await in_worker(plane.sessions, allowed)
    except CorralError:
        ok = False
    if not ok or not plane.store.exists(sha256):
        await ws.close(4404, "no such artifact for this server")
        return
    with plane.store.open(sha256) as f:
        while chunk := await asyncio.to_thread(f.read, wire.CHUNK_BYTES):
            await ws.send(chunk)
    await ws.close(1000, "complete")
