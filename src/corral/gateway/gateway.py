"""The gateway: one mutual-TLS websocket per agent, pushing desired state and taking reports.

Runs in the control plane's event loop beside the REST API. Database work happens in worker
threads; change notifications arrive from those threads (after each commit) and are handed to
the loop. The gateway is the control plane's `AgentLink`: api and console reach agents through
`plane.agents`, never through this class."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from asyncio import sslproto
from collections.abc import AsyncGenerator

from cryptography import x509
from sqlalchemy.orm import Session
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed

from corral import metrics, wire
from corral.controlplane import ControlPlane
from corral.db.session import in_worker
from corral.domain import agents, measurements, replicas
from corral.domain.agent_link import NoAgents
from corral.errors import CorralError
from corral.gateway.alerting import Alerting
from corral.gateway.artifacts import stream_artifact
from corral.gateway.bursts import Burst
from corral.gateway.certificates import Certificates
from corral.gateway.connection import AgentConnection
from corral.gateway.held import start_held
from corral.gateway.hellos import HelloBatcher, Stopping
from corral.gateway.leader import Leadership
from corral.gateway.notices import Notices
from corral.gateway.peers import Peers, serve_logs
from corral.gateway.pusher import Pusher
from corral.gateway.rollouts import RolloutDriver
from corral.gateway.sweeper import Sweeper
from corral.gateway.tls import TLS_READ_BUFFER, server_tls_context
from corral.pki.authority import ServerIdentity

log = logging.getLogger(__name__)
HELLO_TIMEOUT = 15.0
RENEWAL_GRACE_SECONDS = 5.0
"""an agent that left to reconnect with its renewed certificate is not counted gone before"""


class Gateway:
    def __init__(self, plane: ControlPlane, host: str, port: int) -> None:
        self.plane = plane
        self.host = host
        self.port = port
        self.connections: dict[int, AgentConnection] = {}
        self.pusher = Pusher(plane, self.connections)
        self.reports: Burst[tuple[int, wire.Report]] = Burst(
            plane, agents.record_reports, "reports", timer=metrics.REPORT_SECONDS)
        # servers whose agent went away become DISCONNECTED together (a network cut drops
        # thousands at once); one that came back meanwhile stays as it is
        self.departures: Burst[int] = Burst(
            plane, lambda session, ids: agents.disconnected(session, ids, plane.replica_id),
            "departures", still=lambda sid: sid not in self.connections)
        # measurements wait on nobody: a second's worth is stored in one transaction
        self.measurements: Burst[measurements.Sample] = Burst(
            plane, measurements.record, "measurements", timer=metrics.MEASUREMENTS_SECONDS,
            gather=1.0)
        self.hellos = HelloBatcher(plane)
        self.leadership = Leadership(plane)
        self.sweeper = Sweeper(plane, self.connections, self.pusher, self.leadership)
        self.notices = Notices(plane, on_change=self._dispatch, resync=self.sweeper.resync)
        self.peers = Peers(plane)
        self.rollouts = RolloutDriver(plane, self.leadership)
        self.alerting = Alerting(plane, self.leadership)
        self.tls = server_tls_context(plane)
        self.certificates = Certificates(plane, self.tls, self._resend_all)
        self._tasks: list[asyncio.Task[None]] = []
        self._releases: set[asyncio.Future[None]] = set()  # `start_held`
        self._stopping = False
        self._server: Server | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        sslproto.SSLProtocol.max_size = TLS_READ_BUFFER
        self._server = await serve(
            self._handle,
            self.host,
            self.port,
            ssl=self.tls,
            max_size=4 * 1024 * 1024,
            # liveness: an agent that misses a pong is disconnected; agents send no periodic
            # messages of their own (docs/agent-protocol.md)
            ping_interval=self.plane.settings.heartbeat_seconds,
            ping_timeout=self.plane.settings.heartbeat_seconds,
            # Messages are small and sent on change only; per-message deflate would keep
            # ~300 KiB of zlib state per connection, which is most of an idle agent's cost.
            compression=None,
            server_header="corral",
        )
        self.plane.listeners.append(self._on_change)
        self.plane.agents = self
        self.certificates.start()
        metrics.CONNECTED_AGENTS.set_function(lambda: len(self.connections))
        await in_worker(self.plane.sessions, replicas.announce, self.plane.replica_id,
                        self.plane.settings.own_gateway_base)
        self._tasks = [asyncio.create_task(self.notices.run()),
                       asyncio.create_task(self.leadership.run()),
                       asyncio.create_task(self.rollouts.run()),
                       asyncio.create_task(self.alerting.run()),
                       asyncio.create_task(self.certificates.run()),
                       asyncio.create_task(self.pusher.run()),
                       asyncio.create_task(self.reports.run()),
                       asyncio.create_task(self.measurements.run()),
                       asyncio.create_task(self.hellos.run()),
                       asyncio.create_task(self.sweeper.run()),
                       asyncio.create_task(self.departures.run())]
        log.info("agent gateway on wss://%s:%s", self.host, self.port)

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self.hellos.settled()
        if self._on_change in self.plane.listeners:
            self.plane.listeners.remove(self._on_change)
        self.certificates.stop()
        if self.plane.agents is self:
            self.plane.agents = NoAgents()
        self._stopping = True  # every connection is marked below, in one statement
        ids = list(self.connections) + self.departures.take()
        if self._server:
            # no new connections; then a planned restart's close to every agent, which brings
            # the fleet back spread over a window instead of all in one second
            self._server.close(code=wire.CLOSE_RESTARTING,
                               reason=wire.restart_reason(len(self.connections)))
            await self._server.wait_closed()
        self.connections.clear()

        def leave(session: Session) -> None:
            agents.disconnected(session, ids, self.plane.replica_id)
            agents.let_go(session, self.plane.replica_id)
            replicas.leave(session, self.plane.replica_id)

        await in_worker(self.plane.sessions, leave)

    # --- the AgentLink port ----------------------------------------------------------------

    async def logs(self, server_id: int, application: str, lines: int,
                   follow: bool) -> AsyncGenerator[list[str], None]:
        conn = self.connections.get(server_id)
        if conn is None:  # held by another replica, if any
            return await self.peers.logs(server_id, application, lines, follow)
        return conn.logs(application, lines, follow)

    def _resend_all(self) -> None:
        """Every connected agent is sent its desired state again where the CAs it names
        changed (the pusher compares them as well as the revision)."""
        self.pusher.push(set(self.connections))

    # --- notifications from worker threads -------------------------------------------------

    def _on_change(self, changed: set[int], revoked: set[int]) -> None:
        if self._loop is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self._dispatch, changed, revoked)

    def _dispatch(self, changed: set[int], revoked: set[int]) -> None:
        for sid in revoked:
            conn = self.connections.get(sid)
            if conn is not None:
                start_held(self._releases, Pusher.release(conn))
        self.pusher.push(changed)

    # --- connections -------------------------------------------------------------------------

    async def _handle(self, ws: ServerConnection) -> None:
        path = ws.request.path if ws.request else ""
        try:
            if path == wire.REPLICA_LOGS_PATH:
                self.plane.authorities.identify_replica(self._peer_certificate(ws))
                await serve_logs(self.connections, ws)
                return
            who = self.plane.authorities.identify(self._peer_certificate(ws))
        except (CorralError, ValueError) as exc:
            await ws.close(wire.CLOSE_UNKNOWN_SERVER, str(exc)[:120])
            return
        except ConnectionClosed:
            return
        try:
            if path in wire.CONNECT_PATHS:
                await self._agent(ws, who)
            elif path.startswith(wire.ARTIFACT_PATH):
                await stream_artifact(self.plane, ws, who, path.removeprefix(wire.ARTIFACT_PATH))
            else:
                await ws.close(4404, "no such endpoint")
        except ConnectionClosed:
            pass

    @staticmethod
    def _peer_certificate(ws: ServerConnection) -> x509.Certificate:
        ssl_object = ws.transport.get_extra_info("ssl_object")
        der = ssl_object.getpeercert(binary_form=True) if ssl_object else None
        if not der:
            raise ValueError("no client certificate")
        return x509.load_der_x509_certificate(der)

    async def _agent(self, ws: ServerConnection, who: ServerIdentity) -> None:
        try:
            hello = wire.decode(await asyncio.wait_for(ws.recv(), HELLO_TIMEOUT))
        except TimeoutError:
            await ws.close(wire.CLOSE_BAD_MESSAGE, "expected hello")
            return
        except ValueError as exc:
            await ws.close(*wire.close_code_for(exc))
            return
        if not isinstance(hello, wire.Hello):
            await ws.close(wire.CLOSE_BAD_MESSAGE, "expected hello")
            return
        try:
            revision, desired = await self.hellos.admit(who, hello)
        except Stopping:
            return  # the server's close tells the agent we restart
        except CorralError as exc:
            log.info("refused server %s: %s", who.server_id, exc.message)
            await ws.close(wire.CLOSE_REVOKED, exc.message[:120])
            return
        conn = AgentConnection(
            ws, who, on_report=lambda sid, report: self.reports.add((sid, report)),
            on_measurements=lambda sid, m: self.measurements.add(
                (sid, int(time.time() * 1000), m)),
            on_renew=self.certificates.renew)
        previous = self.connections.get(who.server_id)
        self.connections[who.server_id] = conn
        if previous is not None:
            await previous.ws.close(wire.CLOSE_REPLACED, "replaced by a newer connection")
        log.info("server %s connected (agent %s)", who.server_id, hello.agentVersion)
        conn.sent_revision = revision
        await ws.send(desired)
        try:
            await conn.receive_loop()
        finally:
            if self.connections.get(who.server_id) is conn:
                del self.connections[who.server_id]
                log.info("server %s disconnected", who.server_id)
                # when the whole gateway stops, `stop` marks every server at once
                if not self._stopping and conn.leaving_to_renew and self._loop is not None:
                    self._loop.call_later(RENEWAL_GRACE_SECONDS, self.departures.add,
                                          who.server_id)
                elif not self._stopping:
                    self.departures.add(who.server_id)
