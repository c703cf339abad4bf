"""The agent's side of the gateway: one outbound mutual-TLS websocket, reconnected with
jittered exponential back-off (`backoff`); hello (`host`), desired state in, reports,
measurements and log lines out (liveness is the websocket pings). The certificate's renewal
(`renewal`) and artifact downloads (`downloads`) use the same credentials."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import ssl
import time
from pathlib import Path

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus

from corral import wire
from corral.agent import certificates, downloads, logs
from corral.agent.backoff import Backoff
from corral.agent.host import hello
from corral.agent.layout import AgentDir, AgentError, Identity, base_of, write_identity
from corral.agent.measure import Meter, Pushed, Running
from corral.agent.reconciler import Reconciler
from corral.agent.renewal import Renewal

log = logging.getLogger(__name__)

REFUSED_CODES = {wire.CLOSE_REVOKED, wire.CLOSE_UNKNOWN_SERVER}
EXPIRED_CHECK_SECONDS = 5.0


class Unreadable(Exception):
    """The control plane sent a message this agent cannot read (another protocol version)."""


def client_tls_context(layout: AgentDir) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=str(layout.ca))
    ctx.load_cert_chain(layout.certificate, layout.key)
    return ctx


def _files_stamp(layout: AgentDir) -> tuple[int, ...]:
    """Changes when key, certificate or trust bundle are replaced (a renewal, or a
    re-registration done while the agent runs)."""
    stamps = []
    for path in (layout.key, layout.certificate, layout.ca):
        try:
            stamps.append(path.stat().st_mtime_ns)
        except OSError:
            stamps.append(0)
    return tuple(stamps)


class Connection:
    def __init__(self, identity: Identity, layout: AgentDir, reconciler: Reconciler,
                 cluster_port: int | None = None, meter: Meter | None = None,
                 pushed: Pushed | None = None) -> None:
        self.identity = identity
        self.meter = meter
        self.pushed = pushed or Pushed()
        self.layout = layout
        self.reconciler = reconciler
        self.cluster_port = cluster_port
        self.tls = client_tls_context(layout)
        self._stamp = _files_stamp(layout)
        self.certificate = certificates.current(layout)
        self.connected = asyncio.Event()
        self.renewal = Renewal(layout, identity.serverId, lambda: self.certificate,
                               self._renewal_installed)
        self._renewed = False
        self._expired_said = 0.0
        self.log_streams: dict[str, asyncio.Task[None]] = {}
        self._turn = 0
        self.url = self.identity.connect_url

    def _next_gateway(self) -> None:
        """Each attempt after a failure or a lost connection goes to the next known gateway
        (another replica, when the control plane has several)."""
        urls = self.identity.connect_urls()
        self._turn = (self._turn + 1) % len(urls)
        self.url = urls[self._turn]

    def _learn_gateways(self, urls: list[str]) -> None:
        """The control plane's gateways as of this desired state, kept for the next start."""
        if not urls or urls == self.identity.gatewayUrls \
                or not all(u.startswith("wss://") for u in urls):
            return
        self.identity = self.identity.with_gateways(urls)
        with contextlib.suppress(OSError):
            write_identity(self.layout.identity, self.identity)
        log.info("the control plane has %d gateways: %s", len(urls), ", ".join(urls))

    def _reload_credentials(self) -> None:
        """Key, certificate or trust bundle replaced since the last attempt: use the new."""
        stamp = _files_stamp(self.layout)
        if stamp == self._stamp:
            return
        try:
            self.tls = client_tls_context(self.layout)
            self.certificate = certificates.current(self.layout)
        except (OSError, ssl.SSLError, AgentError) as exc:
            log.error("the agent's key or certificate cannot be used: %s", exc)
            return
        self._stamp = stamp
        log.info("using the certificate valid until %s",
                 certificates.expiry_text(self.certificate))

    async def run_forever(self) -> None:
        backoff = Backoff()
        while True:
            self._reload_credentials()
            if certificates.expired(self.certificate):
                # the gateway would refuse it; say why (not "cannot reach"), and look again
                # soon: a re-registration replaces the files while this agent runs
                if time.monotonic() - self._expired_said > 600 or not self._expired_said:
                    log.error(certificates.expired_advice(self.layout, self.certificate))
                    self._expired_said = time.monotonic()
                await asyncio.sleep(EXPIRED_CHECK_SECONDS)
                continue
            url = self.url
            pause: float | None = None
            self._renewed = False
            try:
                async with connect(url, ssl=self.tls, open_timeout=30,
                                   ping_interval=wire.AGENT_PING_SECONDS, ping_timeout=20,
                                   max_size=8 * 1024 * 1024,
                                   compression=None) as ws:
                    backoff.reset()
                    await self._converse(ws)
            except ConnectionClosed as exc:
                code = exc.rcvd.code if exc.rcvd else None
                if code in REFUSED_CODES:
                    log.error("the control plane refused this server: %s; stopping its "
                              "applications", exc.rcvd.reason if exc.rcvd else "")
                    self.refused()
                    backoff.attempt = max(backoff.attempt, 10)
                elif code == wire.CLOSE_UNSUPPORTED_VERSION:
                    self._cannot_talk(backoff, exc.rcvd.reason if exc.rcvd else "")
                elif code == wire.CLOSE_RESTARTING and exc.rcvd:
                    # the fleet comes back spread over the window the gateway asked for
                    pause = random.uniform(0, wire.reconnect_window(exc.rcvd.reason))
                    log.info("the control plane is restarting; reconnecting in %.1f s", pause)
                else:
                    log.warning("connection to the control plane closed (%s)", code)
            except Unreadable as exc:
                self._cannot_talk(backoff, str(exc))
            except (OSError, InvalidHandshake, InvalidStatus, TimeoutError) as exc:
                log.warning("cannot reach the control plane at %s: %s", url, exc)
            finally:
                self.connected.clear()
            if self._renewed:
                continue  # straight back, to the same gateway, with the new certificate
            self._next_gateway()
            await asyncio.sleep(backoff.next() if pause is None else pause)

    @staticmethod
    def _cannot_talk(backoff: Backoff, why: str) -> None:
        """The two sides speak different protocol versions (whichever noticed first): say so
        and retry at the long back-off; the applications keep running."""
        log.error("cannot understand the control plane: %s; applications keep running, "
                  "upgrade this agent", why)
        backoff.attempt = max(backoff.attempt, 10)

    def refused(self) -> None:
        """A deleted or revoked server runs nothing unmanaged: converge to an empty state."""
        current = self.reconciler.desired
        if current is not None and not current.applications and current.cluster is None:
            return
        self.reconciler.apply(wire.Desired(
            revision=current.revision if current else 0, serverId=self.identity.serverId,
            serverName=self.identity.name, cluster=None, applications=[]))

    async def _converse(self, ws: ClientConnection) -> None:
        await ws.send(wire.encode(hello(self.cluster_port)))
        self.connected.set()
        log.info("connected to %s as server %s", base_of(self.url), self.identity.serverId)
        tasks = [asyncio.create_task(self._reports(ws)),
                 asyncio.create_task(self._measurements(ws)),
                 asyncio.create_task(self.renewal.run(ws))]
        self.reconciler.changed.set()  # tell a (re)started control plane what runs here
        try:
            async for raw in ws:
                try:
                    message = wire.decode(raw)
                except ValueError as exc:
                    # e.g. a control plane upgraded to a protocol this agent does not speak:
                    # close with the reason; run_forever keeps retrying, slowly, while the
                    # applications keep running
                    await ws.close(*wire.close_code_for(exc))
                    raise Unreadable(str(exc)) from exc
                if isinstance(message, wire.Desired):
                    log.info("desired state revision %d (%d applications)", message.revision,
                             len(message.applications))
                    self._learn_gateways(message.gateways)
                    self.renewal.learn(message)
                    self.reconciler.apply(message)
                    self.reconciler.changed.set()
                elif isinstance(message, wire.CertificateIssued):
                    self.renewal.answered(message)
                elif isinstance(message, wire.LogsRequest):
                    self.log_streams[message.requestId] = asyncio.create_task(
                        self._send_logs(ws, message)
                    )
                elif isinstance(message, wire.LogsCancel):
                    stream = self.log_streams.pop(message.requestId, None)
                    if stream is not None:
                        stream.cancel()
        finally:
            for t in [*tasks, *self.log_streams.values()]:
                t.cancel()
            await asyncio.gather(*tasks, *self.log_streams.values(), return_exceptions=True)
            self.log_streams.clear()

    def _renewal_installed(self) -> None:
        """A renewed key and certificate are on disk: what state.json seals is sealed with
        the new key, and the next connection (straight away, to the same gateway) uses them."""
        self.reconciler.save()
        self._reload_credentials()
        self._renewed = True

    async def _reports(self, ws: ClientConnection) -> None:
        while True:
            await self.reconciler.changed.wait()
            await asyncio.sleep(0.05)  # let a burst of changes settle into one report
            self.reconciler.changed.clear()
            await ws.send(wire.encode(self.reconciler.report()))

    def _running(self) -> dict[str, Running]:
        now = time.monotonic()
        return {name: Running([p.pid for p in runner.procs.values()], runner.restarts,
                              now - runner.up_since)
                for name, runner in self.reconciler.runners.items() if runner.running}

    async def _measurements(self, ws: ClientConnection) -> None:
        """Every `metricsSeconds` of the desired state (not before the first one arrives)."""
        if self.meter is None:
            return
        while True:
            desired = self.reconciler.desired
            every = desired.metricsSeconds if desired is not None else 0.0
            if every <= 0:
                await asyncio.sleep(1.0)
                continue
            await asyncio.sleep(every)
            self.pushed.forget(self.reconciler.runners)
            try:
                sample = await asyncio.to_thread(self.meter.sample, self._running(),
                                                 self.pushed)
            except Exception:  # one reading that fails is skipped; the next is tried
                log.exception("measuring this server failed")
                continue
            await ws.send(wire.encode(sample))

    async def _send_logs(self, ws: ClientConnection, request: wire.LogsRequest) -> None:
        path = self.layout.log_file(request.application)
        rid = request.requestId
        try:
            if not path.exists() and request.application not in self.reconciler.runners:
                await ws.send(wire.encode(wire.LogLines(
                    requestId=rid, done=True,
                    error=f"application {request.application} has no log on this server")))
                return
            lines, offset = await asyncio.to_thread(logs.tail, path, request.lines)
            parts = list(logs.batches(lines)) or [[]]
            for i, part in enumerate(parts):
                last = i == len(parts) - 1
                await ws.send(wire.encode(wire.LogLines(
                    requestId=rid, lines=part, done=last and not request.follow)))
            if request.follow:
                async for batch in logs.follow(path, offset):
                    await ws.send(wire.encode(wire.LogLines(requestId=rid, lines=batch)))
        finally:
            self.log_streams.pop(rid, None)

    async def fetch(self, app: wire.DesiredApplication, destination: Path) -> None:
        """Download an artifact over the gateway's mutual TLS (`downloads.fetch`)."""
        await downloads.fetch(base_of(self.url), self.tls, self.layout, app, destination)
