"""The agent's side of the gateway: one outbound mutual-TLS websocket, reconnected with
jittered exponential back-off; hello, desired state in, reports out (liveness is the websocket pings)."""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import hashlib
import logging
import os
import platform
import random
import socket
import ssl
import struct
import sys
import time
from pathlib import Path

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus

from corral import wire
from corral.agent import AGENT_VERSION, certificates, logs
from corral.agent.layout import AgentDir, AgentError, Identity, base_of, write_identity
from corral.agent.measure import Meter, Pushed, Running
from corral.agent.reconciler import DownloadInterrupted, Reconciler
from corral.pki.keys import new_key_request

log = logging.getLogger(__name__)

BACKOFF_BASE = 0.5
BACKOFF_CAP = 30.0
REFUSED_CODES = {wire.CLOSE_REVOKED, wire.CLOSE_UNKNOWN_SERVER}
RENEWAL_ANSWER_SECONDS = 30.0
RENEWAL_RETRY_BASE = 30.0
RENEWAL_RETRY_CAP = 3600.0
EXPIRED_CHECK_SECONDS = 5.0
MIN_RENEWAL_GAP_SECONDS = 30.0


class Unreadable(Exception):
    """The control plane sent a message this agent cannot read (another protocol version)."""


class Backoff:
    """Full-jitter exponential back-off: uniform(0, min(cap, base·2ⁿ))."""

    def __init__(self, base: float = BACKOFF_BASE, cap: float = BACKOFF_CAP) -> None:
        self.base, self.cap, self.attempt = base, cap, 0

    def next(self) -> float:
        delay = random.uniform(self.base / 2, min(self.cap, self.base * 2**self.attempt))
        self.attempt += 1
        return delay

    def reset(self) -> None:
        self.attempt = 0


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


def local_addresses() -> list[dict[str, str]]:
    """IPv4 address of each interface (Linux ioctl; empty where unsupported)."""
    found = []
    for _, name in socket.if_nameindex():
        with contextlib.suppress(OSError), socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            packed = fcntl.ioctl(s.fileno(), 0x8915, struct.pack("256s", name.encode()[:15]))
            found.append({"ip": socket.inet_ntoa(packed[20:24]), "networkInterface": name})
    return found


def hello(cluster_port: int | None) -> wire.Hello:
    return wire.Hello(
        agentVersion=AGENT_VERSION,
        hostname=socket.gethostname(),
        addresses=[wire.Address(**a) for a in local_addresses()],
        osInformation={"name": platform.system(), "release": platform.release(),
                       "version": platform.version(), "architecture": platform.machine()},
        pythonInformation={"version": platform.python_version(),
                           "implementation": platform.python_implementation(),
                           "executable": sys.executable},
        clusterPort=cluster_port,
    )


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
        self._renewal_wake = asyncio.Event()
        self._requested_renewal: float | None = None  # epoch seconds; an operator's or a rotation's
        self._renewal_failures = 0
        self._retry_renewal_at = 0.0
        self._renewal_answer: asyncio.Future[wire.CertificateIssued] | None = None
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
                 asyncio.create_task(self._renewal(ws))]
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
                    self._learn_renewal(message)
                    self.reconciler.apply(message)
                    self.reconciler.changed.set()
                elif isinstance(message, wire.CertificateIssued):
                    answer = self._renewal_answer
                    if answer is not None and not answer.done():
                        answer.set_result(message)
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

    # --- the certificate ---------------------------------------------------------------------

    def _learn_renewal(self, desired: wire.Desired) -> None:
        """An operator or a CA rotation asks for a renewal within a window: a moment in it,
        picked at random so that a fleet spreads its renewals; and the CAs still trusted."""
        if desired.trustedCas and certificates.keep_trusting(self.layout, desired.trustedCas):
            log.info("the control plane trusts %d CA(s) now; the trust bundle follows",
                     len(desired.trustedCas))
        within = desired.renewCertificateWithin
        if within is None:
            return
        if self._requested_renewal is not None and \
                self._requested_renewal <= time.time() + within:
            return  # the moment picked earlier is still inside the window
        self._requested_renewal = time.time() + random.uniform(0, within)
        log.info("the control plane asks for a certificate renewal (in %.0f s)",
                 self._requested_renewal - time.time())
        self._renewal_wake.set()

    def _renewal_due(self) -> float:
        due = certificates.renewal_time(self.certificate)
        if self._requested_renewal is not None:
            due = min(due, self._requested_renewal)
        return max(due, self._retry_renewal_at)

    async def _renewal(self, ws: ClientConnection) -> None:
        """At two thirds of the certificate's life (or when asked): a new key, its CSR over
        this connection, the certificate back; then reconnect with it. A failure is retried
        with back-off, and said in the log each time."""
        while True:
            wait = self._renewal_due() - time.time()
            if wait > 0:
                self._renewal_wake.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._renewal_wake.wait(), min(wait, 3600.0))
                continue
            # counted before it is tried: an attempt the connection's end cuts short (a
            # control plane that cannot read the request closes it) waits its turn too
            self._renewal_failures += 1
            delay = min(RENEWAL_RETRY_CAP, RENEWAL_RETRY_BASE * 2 ** (self._renewal_failures - 1))
            self._retry_renewal_at = time.time() + delay
            try:
                await self._renew(ws)
            except (AgentError, OSError, TimeoutError) as exc:
                log.warning("renewing this server's certificate failed (%s); it is valid until "
                            "%s; retrying in %.0f s", exc,
                            certificates.expiry_text(self.certificate), delay)
                continue
            return

    async def _renew(self, ws: ClientConnection) -> None:
        request = await asyncio.to_thread(new_key_request, str(self.identity.serverId))
        self._renewal_answer = asyncio.get_running_loop().create_future()
        try:
            await ws.send(wire.encode(wire.RenewCertificate(signatureRequest=request.csr_pem)))
            answer = await asyncio.wait_for(self._renewal_answer, RENEWAL_ANSWER_SECONDS)
        finally:
            self._renewal_answer = None
        if answer.error or not answer.certificate:
            raise AgentError(f"the control plane refused: {answer.error or 'no certificate'}")
        certificate = answer.certificate
        certificates.check_issued(self.identity.serverId, request.key_pem, certificate,
                                  answer.caCertificates)
        await asyncio.to_thread(certificates.install, self.layout, request.key_pem,
                                certificate, answer.caCertificates)
        self.reconciler.save()  # what state.json seals is sealed with the new key now
        self._reload_credentials()
        self._requested_renewal = None
        self._renewal_failures = 0
        # whatever the new certificate says (a clock far off), never renew in a loop
        self._retry_renewal_at = time.time() + MIN_RENEWAL_GAP_SECONDS
        self._renewed = True
        log.info("certificate renewed, valid until %s; reconnecting with it",
                 certificates.expiry_text(self.certificate))
        await ws.close(1000, wire.RENEWED_REASON)

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
        """Download an artifact over the gateway's mutual TLS, verify it, then keep it."""
        url = base_of(self.url) + wire.ARTIFACT_PATH + app.artifact.sha256
        tmp = self.layout.artifacts / "tmp" / f"{app.artifact.sha256}.part"
        tmp.parent.mkdir(parents=True, exist_ok=True)
        digest = hashlib.sha256()
        size = 0
        try:
            async with connect(url, ssl=self.tls, open_timeout=10,
                               max_size=wire.CHUNK_BYTES * 2, compression=None) as ws:
                with open(tmp, "wb") as out:
                    try:
                        async for chunk in ws:
                            if isinstance(chunk, str):
                                raise ValueError("unexpected text frame in an artifact download")
                            digest.update(chunk)
                            size += len(chunk)
                            if size > app.artifact.size:
                                raise ValueError("artifact is larger than announced")
                            out.write(chunk)
                    except ConnectionClosed:
                        pass
                    out.flush()
                    os.fsync(out.fileno())
                if ws.close_code in (None, 1001, 1006, wire.CLOSE_RESTARTING):
                    # the gateway went away mid-download: not the deployment's fault
                    raise DownloadInterrupted(f"artifact download broke off ({ws.close_code})")
                if ws.close_code != 1000:
                    raise ValueError(f"artifact download refused: {ws.close_reason or ws.close_code}")
            if digest.hexdigest() != app.artifact.sha256:
                raise ValueError("downloaded artifact does not match its sha256 checksum")
            os.replace(tmp, destination)
        except (OSError, InvalidHandshake, TimeoutError) as exc:
            raise DownloadInterrupted(f"artifact download failed: {exc}") from exc
        finally:
            tmp.unlink(missing_ok=True)
