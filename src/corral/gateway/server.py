"""The gateway: one mutual-TLS websocket per agent, pushing desired state and taking reports.

Runs in the control plane's event loop beside the REST API. Database work happens in worker
threads; change notifications arrive from those threads (after each commit) and are handed to
the loop. A sweeper flushes heartbeats in one UPDATE, re-pushes any server whose desired revision
moved (changes made by another replica included) and marks silent servers DISCONNECTED."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import ssl
import uuid
from asyncio import sslproto
from collections.abc import AsyncIterator
from typing import Any

from cryptography import x509
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed

from corral.controlplane import ControlPlane
from corral.db.session import transaction
from corral.domain import agents
from corral.domain.errors import CorralError
from corral.gateway import protocol
from corral.pki import ServerIdentity

log = logging.getLogger(__name__)
HELLO_TIMEOUT = 15.0


# asyncio gives every TLS connection a 256 KiB read buffer (SSLProtocol.max_size). Agents send
# a few hundred bytes at a time; with thousands connected that buffer was most of the control
# plane's memory (10,000 agents: 3.2 GB). 16 KiB is one full TLS record.
TLS_READ_BUFFER = 16 * 1024


def server_tls_context(plane: ControlPlane) -> ssl.SSLContext:
    """TLS for the gateway: a certificate from our CA, client certificates required."""
    cert_path, key_path = plane.ca.write_tls_pair(
        [*plane.settings.public_hostnames, plane.settings.host],
        plane.settings.data_dir / "pki",
        "gateway",
    )
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(cert_path, key_path)
    ctx.load_verify_locations(cadata=plane.ca.certificate_pem)
    ctx.verify_mode = ssl.CERT_REQUIRED
    return ctx


class AgentSession:
    """One connected agent: takes its messages in and answers log requests; desired state goes
    out through the gateway's batched pusher."""

    def __init__(self, gateway: Gateway, ws: ServerConnection, who: ServerIdentity) -> None:
        self.gateway = gateway
        self.ws = ws
        self.who = who
        self.sent_revision = -1
        self.log_requests: dict[str, asyncio.Queue[protocol.LogLines]] = {}

    async def logs(self, application: str, lines: int, follow: bool) -> AsyncIterator[list[str]]:
        """Ask the agent for an application's log; yields batches of lines."""
        request = protocol.LogsRequest(requestId=uuid.uuid4().hex, application=application,
                                       lines=lines, follow=follow)
        queue: asyncio.Queue[protocol.LogLines] = asyncio.Queue()
        self.log_requests[request.requestId] = queue
        try:
            await self.ws.send(protocol.encode(request))
            while True:
                get = asyncio.ensure_future(queue.get())
                closed = asyncio.ensure_future(self.ws.wait_closed())
                done, _ = await asyncio.wait({get, closed}, timeout=None if follow else 15,
                                             return_when=asyncio.FIRST_COMPLETED)
                closed.cancel()
                if get not in done:
                    get.cancel()
                    raise AgentUnavailable("the server's agent did not answer")
                answer = get.result()
                if answer.error:
                    raise AgentUnavailable(answer.error)
                yield answer.lines
                if answer.done:
                    return
        finally:
            self.log_requests.pop(request.requestId, None)
            if follow:
                with contextlib.suppress(ConnectionClosed):
                    await self.ws.send(protocol.encode(protocol.LogsCancel(
                        requestId=request.requestId)))

    async def receive_loop(self) -> None:
        async for raw in self.ws:
            try:
                message = protocol.decode(raw)
            except ValueError as exc:
                log.warning("server %s sent a bad message: %s", self.who.server_id, exc)
                await self.ws.close(protocol.CLOSE_BAD_MESSAGE, "malformed message")
                return
            if isinstance(message, protocol.Heartbeat):
                self.gateway.heard_from.add(self.who.server_id)
            elif isinstance(message, protocol.Report):
                self.gateway.queue_report(self.who.server_id, message)
            elif isinstance(message, protocol.LogLines):
                queue = self.log_requests.get(message.requestId)
                if queue is not None:
                    queue.put_nowait(message)


class AgentUnavailable(Exception):
    """The server's agent is not connected here, or cannot answer."""


def _json(message: dict[str, Any]) -> str:
    return json.dumps(message, separators=(",", ":"))


class Gateway:
    def __init__(self, plane: ControlPlane, host: str, port: int) -> None:
        self.plane = plane
        self.host = host
        self.port = port
        self.sessions: dict[int, AgentSession] = {}
        self.heard_from: set[int] = set()
        self._to_push: set[int] = set()
        self._push_wanted = asyncio.Event()
        self._reports: list[tuple[int, protocol.Report]] = []
        self._reports_waiting = asyncio.Event()
        self._workers: list[asyncio.Task[None]] = []
        self._server: Server | None = None
        self._sweeper: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    async def db(self, fn: Any, *args: Any) -> Any:
        """Run a domain function in its own transaction on a worker thread."""

        def work() -> Any:
            with transaction(self.plane.sessions) as session:
                return fn(session, *args)

        return await asyncio.to_thread(work)

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        sslproto.SSLProtocol.max_size = TLS_READ_BUFFER
        self._server = await serve(
            self._handle,
            self.host,
            self.port,
            ssl=server_tls_context(self.plane),
            max_size=4 * 1024 * 1024,
            ping_interval=20,
            ping_timeout=20,
            # Messages are small and sent on change only; per-message deflate would keep
            # ~300 KiB of zlib state per connection, which is most of an idle agent's cost.
            compression=None,
            server_header="corral",
        )
        self.plane.listeners.append(self._on_change)
        self._sweeper = asyncio.create_task(self._sweep_loop())
        self._workers = [asyncio.create_task(self._push_loop()),
                         asyncio.create_task(self._report_loop())]
        log.info("agent gateway on wss://%s:%s", self.host, self.port)

    async def stop(self) -> None:
        for task in [*self._workers, *([self._sweeper] if self._sweeper else [])]:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self._on_change in self.plane.listeners:
            self.plane.listeners.remove(self._on_change)
        if self._server:
            self._server.close()
            await self._server.wait_closed()
        ids = list(self.sessions)
        self.sessions.clear()
        await self.db(agents.disconnected, ids)

    def session_for(self, server_id: int) -> AgentSession:
        session = self.sessions.get(server_id)
        if session is None:
            raise AgentUnavailable(f"server {server_id} is not connected")
        return session

    # --- notifications from worker threads -------------------------------------------------

    def _on_change(self, changed: set[int], revoked: set[int]) -> None:
        if self._loop is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self._dispatch, changed, revoked)

    def _dispatch(self, changed: set[int], revoked: set[int]) -> None:
        for sid in revoked:
            session = self.sessions.get(sid)
            if session is not None:
                asyncio.ensure_future(self._release(session))
        self.push(changed)

    async def _release(self, session: AgentSession) -> None:
        """A deleted server stops what it runs: an empty desired state, then the door shut
        (the agent also empties itself when it is refused, should this message be lost)."""
        empty = protocol.Desired(revision=session.sent_revision + 1,
                                 serverId=session.who.server_id, serverName="", cluster=None,
                                 applications=[])
        with contextlib.suppress(ConnectionClosed):
            await session.ws.send(protocol.encode(empty))
        await session.ws.close(protocol.CLOSE_REVOKED, "server deleted")

    # --- batched work: desired state out, reports in ------------------------------------------

    def push(self, server_ids: set[int] | list[int]) -> None:
        """Send these servers their desired state (if connected here and it moved)."""
        self._to_push.update(sid for sid in server_ids if sid in self.sessions)
        if self._to_push:
            self._push_wanted.set()

    async def _push_loop(self) -> None:
        """One query per 2,000 servers, however many changed at once."""
        while True:
            await self._push_wanted.wait()
            self._push_wanted.clear()
            ids, self._to_push = sorted(self._to_push), set()
            for start in range(0, len(ids), 2000):
                chunk = ids[start : start + 2000]
                messages = await self.db(agents.desired_messages, chunk, self.plane.sealer)
                sends = []
                for sid in chunk:
                    session = self.sessions.get(sid)
                    message = messages.get(sid)
                    if session is None:
                        continue
                    if message is None:
                        sends.append(session.ws.close(protocol.CLOSE_UNKNOWN_SERVER,
                                                      "server deleted"))
                    elif message["revision"] != session.sent_revision:
                        session.sent_revision = message["revision"]
                        sends.append(session.ws.send(_json(message)))
                await asyncio.gather(*sends, return_exceptions=True)

    def queue_report(self, server_id: int, report: protocol.Report) -> None:
        self._reports.append((server_id, report))
        self._reports_waiting.set()

    async def _report_loop(self) -> None:
        """Reports arriving together are stored together, in one transaction."""
        while True:
            await self._reports_waiting.wait()
            await asyncio.sleep(0.02)  # let a burst gather
            self._reports_waiting.clear()
            batch, self._reports = self._reports, []
            try:
                await self.db(agents.record_reports, batch)
            except Exception:
                log.exception("storing %d reports failed", len(batch))

    # --- connections -------------------------------------------------------------------------

    async def _handle(self, ws: ServerConnection) -> None:
        try:
            who = self._identify(ws)
        except (CorralError, ValueError) as exc:
            await ws.close(protocol.CLOSE_UNKNOWN_SERVER, str(exc)[:120])
            return
        path = ws.request.path if ws.request else ""
        try:
            if path == protocol.CONNECT_PATH:
                await self._agent(ws, who)
            elif path.startswith(protocol.ARTIFACT_PATH):
                await self._artifact(ws, who, path.removeprefix(protocol.ARTIFACT_PATH))
            else:
                await ws.close(4404, "no such endpoint")
        except ConnectionClosed:
            pass

    def _identify(self, ws: ServerConnection) -> ServerIdentity:
        ssl_object = ws.transport.get_extra_info("ssl_object")
        der = ssl_object.getpeercert(binary_form=True) if ssl_object else None
        if not der:
            raise ValueError("no client certificate")
        return self.plane.ca.identify(x509.load_der_x509_certificate(der))

    async def _agent(self, ws: ServerConnection, who: ServerIdentity) -> None:
        try:
            hello = protocol.decode(await asyncio.wait_for(ws.recv(), HELLO_TIMEOUT))
        except (TimeoutError, ValueError):
            await ws.close(protocol.CLOSE_BAD_MESSAGE, "expected hello")
            return
        if not isinstance(hello, protocol.Hello):
            await ws.close(protocol.CLOSE_BAD_MESSAGE, "expected hello")
            return
        try:
            desired = await self.db(agents.connected, who, hello, self.plane.sealer)
        except CorralError as exc:
            log.info("refused server %s: %s", who.server_id, exc.message)
            await ws.close(protocol.CLOSE_REVOKED, exc.message[:120])
            return
        session = AgentSession(self, ws, who)
        previous = self.sessions.get(who.server_id)
        self.sessions[who.server_id] = session
        if previous is not None:
            await previous.ws.close(protocol.CLOSE_REPLACED, "replaced by a newer connection")
        log.info("server %s connected (agent %s)", who.server_id, hello.agentVersion)
        session.sent_revision = desired["revision"]
        await ws.send(_json(desired))
        try:
            await session.receive_loop()
        finally:
            if self.sessions.get(who.server_id) is session:
                del self.sessions[who.server_id]
                await self.db(agents.disconnected, [who.server_id])
                log.info("server %s disconnected", who.server_id)

    async def _artifact(self, ws: ServerConnection, who: ServerIdentity, sha256: str) -> None:
        def allowed(session: Any) -> bool:
            agents.admit(session, who)
            return agents.may_download(session, who.server_id, sha256)

        try:
            ok = await self.db(allowed)
        except CorralError:
            ok = False
        if not ok or not self.plane.store.exists(sha256):
            await ws.close(4404, "no such artifact for this server")
            return
        with self.plane.store.open(sha256) as f:
            while chunk := await asyncio.to_thread(f.read, protocol.CHUNK_BYTES):
                await ws.send(chunk)
        await ws.close(1000, "complete")

    # --- the sweeper ---------------------------------------------------------------------------

    async def _sweep_loop(self) -> None:
        period = max(0.2, min(5.0, self.plane.settings.heartbeat_timeout_seconds / 3))
        while True:
            await asyncio.sleep(period)
            try:
                await self.sweep()
            except Exception:
                log.exception("gateway sweep failed")

    async def sweep(self) -> None:
        heard, self.heard_from = self.heard_from, set()
        connected = list(self.sessions)
        timeout = self.plane.settings.heartbeat_timeout_seconds

        def work(session: Any) -> dict[int, int]:
            agents.seen(session, [sid for sid in heard if sid in self.sessions])
            agents.mark_silent_disconnected(session, timeout)
            return agents.revisions(session, connected)

        revisions = await self.db(work)
        self.push([sid for sid, rev in revisions.items()
                   if sid in self.sessions and self.sessions[sid].sent_revision != rev])
