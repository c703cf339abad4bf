"""The agent's certificate renewed over its own connection: at two thirds of its life, or
within the window an operator or a CA rotation asks for (docs/certificates.md, ADR 0010)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Callable

from cryptography import x509
from websockets.asyncio.client import ClientConnection

from corral import wire
from corral.agent import certificates
from corral.agent.layout import AgentDir, AgentError
from corral.pki.keys import new_key_request

log = logging.getLogger(__name__)

RENEWAL_ANSWER_SECONDS = 30.0
RENEWAL_RETRY_BASE = 30.0
RENEWAL_RETRY_CAP = 3600.0
MIN_RENEWAL_GAP_SECONDS = 30.0


class Renewal:
    """When the next renewal is due, and the renewal itself on a connection. `certificate`
    reads the certificate in use; `installed` is called once a new one is on disk (the
    connection reloads its credentials and reconnects with them)."""

    def __init__(self, layout: AgentDir, server_id: int,
                 certificate: Callable[[], x509.Certificate],
                 installed: Callable[[], None]) -> None:
        self.layout = layout
        self.server_id = server_id
        self._certificate = certificate
        self._installed = installed
        self._wake = asyncio.Event()
        self._requested: float | None = None  # epoch seconds; an operator's or a rotation's
        self._failures = 0
        self._retry_at = 0.0
        self._answer: asyncio.Future[wire.CertificateIssued] | None = None

    def learn(self, desired: wire.Desired) -> None:
        """An operator or a CA rotation asks for a renewal within a window: a moment in it,
        picked at random so that a fleet spreads its renewals; and the CAs still trusted."""
        if desired.trustedCas and certificates.keep_trusting(self.layout, desired.trustedCas):
            log.info("the control plane trusts %d CA(s) now; the trust bundle follows",
                     len(desired.trustedCas))
        within = desired.renewCertificateWithin
        if within is None:
            return
        if self._requested is not None and self._requested <= time.time() + within:
            return  # the moment picked earlier is still inside the window
        self._requested = time.time() + random.uniform(0, within)
        log.info("the control plane asks for a certificate renewal (in %.0f s)",
                 self._requested - time.time())
        self._wake.set()

    def answered(self, message: wire.CertificateIssued) -> None:
        """The control plane's answer to the request in flight (if any is)."""
        if self._answer is not None and not self._answer.done():
            self._answer.set_result(message)

    def due(self) -> float:
        due = certificates.renewal_time(self._certificate())
        if self._requested is not None:
            due = min(due, self._requested)
        return max(due, self._retry_at)

    async def run(self, ws: ClientConnection) -> None:
        """Wait until due, then renew on `ws`. A failure is retried with back-off, and said in
        the log each time."""
        while True:
            wait = self.due() - time.time()
            if wait > 0:
                self._wake.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), min(wait, 3600.0))
                continue
            # counted before it is tried: an attempt the connection's end cuts short (a
            # control plane that cannot read the request closes it) waits its turn too
            self._failures += 1
            delay = min(RENEWAL_RETRY_CAP, RENEWAL_RETRY_BASE * 2 ** (self._failures - 1))
            self._retry_at = time.time() + delay
            try:
                await self._renew(ws)
            except (AgentError, OSError, TimeoutError) as exc:
                log.warning("renewing this server's certificate failed (%s); it is valid until "
                            "%s; retrying in %.0f s", exc,
                            certificates.expiry_text(self._certificate()), delay)
                continue
            return

    async def _renew(self, ws: ClientConnection) -> None:
        """A new key, its CSR over this connection, the certificate back and checked; then
        installed whole, and the connection closed to come back with it."""
        request = await asyncio.to_thread(new_key_request, str(self.server_id))
        self._answer = asyncio.get_running_loop().create_future()
        try:
            await ws.send(wire.encode(wire.RenewCertificate(signatureRequest=request.csr_pem)))
            answer = await asyncio.wait_for(self._answer, RENEWAL_ANSWER_SECONDS)
        finally:
            self._answer = None
        if answer.error or not answer.certificate:
            raise AgentError(f"the control plane refused: {answer.error or 'no certificate'}")
        certificate = answer.certificate
        certificates.check_issued(self.server_id, request.key_pem, certificate,
                                  answer.caCertificates)
        await asyncio.to_thread(certificates.install, self.layout, request.key_pem,
                                certificate, answer.caCertificates)
        self._installed()
        self._requested = None
        self._failures = 0
        # whatever the new certificate says (a clock far off), never renew in a loop
        self._retry_at = time.time() + MIN_RENEWAL_GAP_SECONDS
        log.info("certificate renewed, valid until %s; reconnecting with it",
                 certificates.expiry_text(self._certificate()))
        await ws.close(1000, wire.RENEWED_REASON)
