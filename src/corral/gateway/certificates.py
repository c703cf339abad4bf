"""Certificates over the gateway: an agent's renewal (a CSR in, the next certificate out, over
the connection its current certificate opened), and following CA rotations, whichever replica
made them (docs/certificates.md)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
import time
from collections.abc import Callable

from websockets.exceptions import ConnectionClosed

from corral import wire
from corral.controlplane import ControlPlane
from corral.db.session import in_worker
from corral.domain import certificates
from corral.errors import CorralError
from corral.gateway.connection import AgentConnection
from corral.gateway.periodic import every
from corral.gateway.tls import follow_authorities
from corral.pki.authority import Authorities

log = logging.getLogger(__name__)
FOLLOW_SECONDS = 5.0
MIN_RENEWAL_SECONDS = 10.0
"""between two renewals on one connection: a CSR costs a signature and a write"""


class Certificates:
    def __init__(self, plane: ControlPlane, tls: ssl.SSLContext,
                 resend: Callable[[], None]) -> None:
        self.plane = plane
        self.tls = tls
        self.resend = resend
        self._loop: asyncio.AbstractEventLoop | None = None

    def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self.plane.authority_listeners.append(self._changed)

    def stop(self) -> None:
        if self._changed in self.plane.authority_listeners:
            self.plane.authority_listeners.remove(self._changed)

    async def run(self) -> None:
        """Replicas share their CAs in the database: one that another replica rotated is
        taken here within a few seconds."""
        await every(FOLLOW_SECONDS, lambda: asyncio.to_thread(self.plane.follow_authorities),
                    "following the CAs")

    def _changed(self, _authorities: Authorities) -> None:
        """Called in whichever thread changed them; the TLS context is the event loop's."""
        if self._loop is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self._follow)

    def _follow(self) -> None:
        follow_authorities(self.plane, self.tls)
        # every agent here learns the CAs now trusted, even one whose desired state was pushed
        # a moment before this replica knew them (the change's notice can come first)
        self.resend()

    async def renew(self, conn: AgentConnection, request: wire.RenewCertificate) -> None:
        sid = conn.server_id
        now = time.monotonic()
        if now - conn.renewed_at < MIN_RENEWAL_SECONDS:
            answer = wire.CertificateIssued(error="renewed moments ago; try again later")
        else:
            conn.renewed_at = now
            try:
                # signed by the CA of the latest rotation, even one another replica made a
                # moment ago (this replica would otherwise notice within FOLLOW_SECONDS)
                await asyncio.to_thread(self.plane.follow_authorities)
                issued = await in_worker(self.plane.sessions, certificates.renew, self.plane.ca,
                                         conn.who, request.signatureRequest,
                                         self.plane.settings.agent_cert_ttl_seconds)
            except CorralError as exc:
                log.warning("server %s: certificate renewal refused: %s", sid, exc.message)
                with contextlib.suppress(Exception):
                    await in_worker(self.plane.sessions, certificates.note_problem, sid,
                                    exc.message)
                answer = wire.CertificateIssued(error=exc.message)
            else:
                log.info("server %s: certificate renewed (serial %s, valid until %s)", sid,
                         issued.serial, f"{issued.not_after:%Y-%m-%dT%H:%M:%SZ}")
                answer = wire.CertificateIssued(certificate=issued.pem,
                                                caCertificates=self.plane.authorities.bundle_pem)
        with contextlib.suppress(ConnectionClosed):
            await conn.ws.send(wire.encode(answer))
