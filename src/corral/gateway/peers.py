"""Log reads routed between replicas (ADR 0008). An agent holds one connection, to one replica;
a call for its log may reach any replica. That replica asks the holder's gateway over mutual
TLS, presenting a replica certificate from the shared CA, and relays the batches of lines.
The holder serves such a request only from a replica certificate, and only for an agent it
holds itself (no second hop)."""

from __future__ import annotations

import contextlib
import json
import logging
import ssl
from collections.abc import AsyncGenerator, Mapping
from typing import TYPE_CHECKING, Any

from websockets.asyncio.client import connect
from websockets.asyncio.server import ServerConnection
from websockets.exceptions import ConnectionClosed, InvalidHandshake

from corral import wire
from corral.controlplane import ControlPlane
from corral.db.session import in_worker
from corral.domain import replicas
from corral.errors import AgentUnavailable, CorralError
from corral.pki.keys import write_private

if TYPE_CHECKING:
    from corral.gateway.connection import AgentConnection

log = logging.getLogger(__name__)
OPEN_SECONDS = 5.0
MAX_LINES = 10_000


class Peers:
    def __init__(self, plane: ControlPlane) -> None:
        self.plane = plane
        self._tls: ssl.SSLContext | None = None
        plane.authority_listeners.append(self._forget)

    def _forget(self, _authorities: object) -> None:
        self._tls = None  # the next call is made with a certificate of the CAs now trusted

    def _client_tls(self) -> ssl.SSLContext:
        """This replica's client certificate, issued once per start (and per CA rotation) by
        the CA every replica trusts: during a rotation, the old one."""
        if self._tls is None:
            issued, key = self.plane.authorities.presenting.issue_replica_certificate(
                self.plane.replica_id)
            pki = self.plane.settings.data_dir / "pki"
            cert_path, key_path = pki / "replica.pem", pki / "replica.key"
            cert_path.write_text(issued.pem)
            write_private(key_path, key)
            ctx = ssl.create_default_context(cadata=self.plane.authorities.bundle_pem)
            ctx.load_cert_chain(cert_path, key_path)
            self._tls = ctx
        return self._tls

    async def logs(self, server_id: int, application: str, lines: int,
                   follow: bool) -> AsyncGenerator[list[str], None]:
        """The log from the replica that holds the agent; `AgentUnavailable` at once when no
        replica holds it, or the holder cannot be reached."""
        held = await in_worker(self.plane.readers, replicas.holder, server_id)
        if held is None or held[0] == self.plane.replica_id:
            raise AgentUnavailable(f"server {server_id} is not connected")
        url = held[1] + wire.REPLICA_LOGS_PATH
        try:
            ws = await connect(url, ssl=self._client_tls(), open_timeout=OPEN_SECONDS,
                               max_size=8 * 1024 * 1024, compression=None)
        except (OSError, InvalidHandshake, TimeoutError) as exc:
            raise AgentUnavailable(f"server {server_id} is held by a replica that cannot be "
                                   f"reached ({exc})") from exc
        try:
            await ws.send(json.dumps({"serverId": server_id, "application": application,
                                      "lines": lines, "follow": follow}))
            first = json.loads(await ws.recv())
        except (ConnectionClosed, ValueError, TimeoutError) as exc:
            await ws.close()
            raise AgentUnavailable(f"server {server_id}: its replica did not answer") from exc
        if "error" in first:
            await ws.close()
            raise AgentUnavailable(str(first["error"]))
        return self._relay(ws)

    @staticmethod
    async def _relay(ws: Any) -> AsyncGenerator[list[str], None]:
        try:
            async for raw in ws:
                frame = json.loads(raw)
                if "error" in frame:
                    raise AgentUnavailable(str(frame["error"]))
                if frame.get("lines"):
                    yield [str(line) for line in frame["lines"]]
                if frame.get("done"):
                    return
        except ConnectionClosed as exc:
            raise AgentUnavailable("the replica holding the server went away") from exc
        finally:
            await ws.close()


async def serve_logs(connections: Mapping[int, AgentConnection], ws: ServerConnection) -> None:
    """The holder's side, among the agents it holds: one request, then batches of lines until
    done (or the caller goes)."""
    try:
        request = json.loads(await ws.recv())
        server_id, application = int(request["serverId"]), str(request["application"])
        lines, follow = min(max(int(request["lines"]), 0), MAX_LINES), bool(request["follow"])
    except (ValueError, KeyError, TypeError):
        await ws.close(wire.CLOSE_BAD_MESSAGE, "malformed log request")
        return
    conn = connections.get(server_id)
    if conn is None:
        await ws.send(json.dumps({"error": f"server {server_id} is not connected"}))
        await ws.close()
        return
    await ws.send(json.dumps({"ok": True}))
    try:
        async with contextlib.aclosing(conn.logs(application, lines, follow)) as batches:
            async for batch in batches:  # closed as soon as the asking replica goes
                await ws.send(json.dumps({"lines": batch}))
        await ws.send(json.dumps({"done": True}))
    except CorralError as exc:
        await ws.send(json.dumps({"error": exc.message}))
    except ConnectionClosed:
        return
    await ws.close()
