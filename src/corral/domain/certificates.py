"""Server certificates after registration: renewal over the agent's own connection, a renewal
an operator asks for, re-registration of a server whose certificate ended while it was off,
and what a CA rotation still waits for (docs/certificates.md).

A renewal issues the next certificate beside the one in use; the agent's first connection with
it makes it the certificate and revokes the old one (`promote`), so a renewal lost on the way
(the connection broke, the agent died) costs nothing: the old certificate still works."""

from __future__ import annotations

import base64
import binascii
import datetime as dt
from dataclasses import dataclass
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.x509.oid import NameOID
from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from corral.db.models import RevokedCertificate, Server, now_ms
from corral.domain import desired_state, registration
from corral.domain.identity import Scope
from corral.domain.targets import get_target
from corral.errors import Conflict, Forbidden, InvalidInput, NotFound, Unauthenticated
from corral.pki.authority import (
    Authorities,
    CertificateAuthority,
    IssuedCertificate,
    ServerIdentity,
    load_csr,
)

RENEW_AT = 2 / 3
"""of a certificate's life: when its agent renews it"""
OVERDUE_AT = 5 / 6
"""of a certificate's life: not renewed by then, the server says so (status message, alert)"""
LEGACY_LIFE_MS = 365 * 24 * 3600 * 1000
"""certificates issued before renewal existed were for a year"""
MAX_CERTIFICATE_CHARS = 16 * 1024


def _issue(ca: CertificateAuthority, server: Server, csr: x509.CertificateSigningRequest,
           seconds: int) -> IssuedCertificate:
    not_after = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=seconds)
    return ca.sign_server_csr(csr, server_id=server.id, organization_id=server.organization_id,
                              environment_id=server.environment_id, validity_days=0,
                              not_after=not_after)


def _revoke(session: Session, server: Server, serial: str | None) -> None:
    if serial and session.get(RevokedCertificate, serial) is None:
        session.add(RevokedCertificate(serial=serial, server_id=server.id))


def renew(session: Session, ca: CertificateAuthority, who: ServerIdentity, csr_pem: str,
          seconds: int) -> IssuedCertificate:
    """Sign the next certificate of the server whose certificate `who` is (the one in use:
    a certificate not yet in use renews nothing). A next certificate issued earlier and never
    used is simply replaced: only the one in use and the next are ever admitted, so it needs
    no revocation row. One renewal per server per `renewal_pause_ms` while its next
    certificate waits unused, however many connections ask (the limit is in the database)."""
    server = session.get(Server, who.server_id)
    if server is None or server.environment_id != who.environment_id:
        raise NotFound(f"server {who.server_id} no longer exists")
    if who.serial != server.certificate_serial:
        raise Forbidden("only the certificate in use can be renewed")
    if server.next_certificate_serial and server.next_certificate_expires_at:
        age = now_ms() - (server.next_certificate_expires_at - seconds * 1000)
        wait = renewal_pause_ms(seconds) - age
        if wait > 0:
            raise Conflict(f"a renewed certificate was issued {max(0, age) // 1000} s ago and "
                           f"not used yet; connect with it, or renew again in "
                           f"{(wait + 999) // 1000} s")
    csr = load_csr(csr_pem)
    issued = _issue(ca, server, csr, seconds)
    server.next_certificate_serial = issued.serial
    server.next_certificate_expires_at = int(issued.not_after.timestamp() * 1000)
    return issued


def renewal_pause_ms(seconds: int) -> int:
    """How long a next certificate that is not used yet keeps its server from renewing again:
    ten minutes, or a tenth of a (short) certificate's life."""
    return min(600_000, seconds * 100)


def note_problem(session: Session, server_id: int, problem: str) -> None:
    session.execute(update(Server).where(Server.id == server_id)
                    .values(certificate_problem=problem[:300]))


def promote(server: Server, who: ServerIdentity, session: Session) -> None:
    """The agent connected with its next certificate: that is now its certificate, and the
    one before is refused from here on."""
    _revoke(session, server, server.certificate_serial)
    server.certificate_serial = who.serial
    server.certificate_expires_at = server.next_certificate_expires_at
    server.certificate_issued_at = now_ms()
    server.certificate_issuer = who.issuer or None
    server.next_certificate_serial = None
    server.next_certificate_expires_at = None
    server.renewal_due = None
    server.certificate_problem = None


def request_renewal(session: Session, scope: Scope, server_id: int) -> Server:
    """An operator's renewal: the agent renews at its next contact (now, if connected)."""
    server = get_target(session, scope, server_id, Server)
    server.renewal_due = now_ms()
    desired_state.changed(session, servers=[server.id])
    return server


def overdue(issued_at: int | None, expires_at: int | None, now: int | None = None) -> bool:
    """Past five sixths of its life and not renewed: renewal has been failing."""
    if expires_at is None:
        return False
    start = issued_at if issued_at is not None else expires_at - LEGACY_LIFE_MS
    now = now_ms() if now is None else now
    return now >= start + (expires_at - start) * OVERDUE_AT


def status_message(s: Any) -> str | None:
    """What the server view says about its certificate when something is wrong."""
    if s.certificate_problem:
        return f"certificate renewal failed: {s.certificate_problem}"
    if overdue(s.certificate_issued_at, s.certificate_expires_at):
        ends = dt.datetime.fromtimestamp(s.certificate_expires_at / 1000, dt.UTC)
        return f"certificate not renewed; it expires at {ends:%Y-%m-%dT%H:%M:%SZ}"
    return None


# --- a server whose certificate ended --------------------------------------------------------

@dataclass(frozen=True)
class Reregistration:
    server: Server
    certificate: IssuedCertificate


def reregister(session: Session, authorities: Authorities, *, token: str | None,
               server_id: int, csr_pem: object, certificate_pem: object, proof: object,
               seconds: int) -> Reregistration:
    """A new certificate for an existing server, for an agent that cannot connect any more
    (its certificate expired while it was off). It takes both a registration token of the
    server's environment (one use) and the server's old key: `proof` is the CSR signed with
    it, and `certificate_pem` the old certificate, which must be the server's latest and
    signed by a CA still trusted. A token alone registers new servers; it cannot take over
    one that exists."""
    if not isinstance(certificate_pem, str) or not 0 < len(certificate_pem) <= MAX_CERTIFICATE_CHARS:
        raise InvalidInput("certificate must be the server's previous certificate (PEM)")
    try:
        old = x509.load_pem_x509_certificate(certificate_pem.encode())
    except ValueError as exc:
        raise InvalidInput("certificate could not be parsed as a PEM certificate") from exc
    who = authorities.identify(old)  # InvalidInput when no trusted CA signed it
    environment_id, _organization = registration.use_token(session, token)
    server = session.get(Server, server_id) if isinstance(server_id, int) else None
    if server is None or server.environment_id != environment_id or who.server_id != server.id:
        raise NotFound(f"server {server_id} not found in the token's environment")
    if who.serial not in (server.certificate_serial, server.next_certificate_serial):
        raise Forbidden(f"that is not server {server_id}'s latest certificate")
    if not isinstance(csr_pem, str):
        raise InvalidInput("signatureRequest is not a PEM certificate signing request")
    _check_proof(old, csr_pem, proof)
    csr = load_csr(csr_pem)
    _revoke(session, server, server.certificate_serial)
    _revoke(session, server, server.next_certificate_serial)
    issued = _issue(authorities.signer, server, csr, seconds)
    server.certificate_serial = issued.serial
    server.certificate_expires_at = int(issued.not_after.timestamp() * 1000)
    server.certificate_issued_at = now_ms()
    server.certificate_issuer = authorities.signer.fingerprint
    server.next_certificate_serial = server.next_certificate_expires_at = None
    server.renewal_due = None
    server.certificate_problem = None
    return Reregistration(server, issued)


def _check_proof(old: x509.Certificate, csr_pem: str, proof: object) -> None:
    if not isinstance(proof, str) or len(proof) > 2048:
        raise InvalidInput("proof must be the signature request signed with the old key "
                           "(base64)")
    try:
        signature = base64.b64decode(proof, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise InvalidInput("proof is not base64") from exc
    key = old.public_key()
    data = csr_pem.encode()
    try:
        if isinstance(key, ec.EllipticCurvePublicKey):
            key.verify(signature, data, ec.ECDSA(hashes.SHA256()))
        elif isinstance(key, rsa.RSAPublicKey):
            key.verify(signature, data, padding.PKCS1v15(), hashes.SHA256())
        else:
            raise InvalidInput("the old certificate's key type cannot prove anything")
    except InvalidSignature as exc:
        raise Unauthenticated("proof does not verify with the old certificate's key") from exc


# --- CA rotation -------------------------------------------------------------------------------

def rotation_started(session: Session, previous: str, spread_seconds: float) -> int:
    """Every server is asked to renew (under the new CA) within the spread; certificates
    recorded before CAs were told apart are the previous CA's. Returns how many servers."""
    session.execute(update(Server).where(Server.certificate_issuer.is_(None))
                    .values(certificate_issuer=previous))
    due = now_ms() + int(spread_seconds * 1000)
    ids = list(session.scalars(select(Server.id)))
    session.execute(update(Server).values(renewal_due=due))
    desired_state.changed(session, servers=ids)
    return len(ids)


def resume_rotation(session: Session, authorities: Authorities, spread_seconds: float) -> int:
    """Servers still on the retiring CA that no renewal was asked of: asked now, within the
    spread (a rotation interrupted between its CA files and its database commit). Returns
    how many."""
    assert authorities.retiring is not None
    session.execute(update(Server).where(Server.certificate_issuer.is_(None))
                    .values(certificate_issuer=authorities.retiring.fingerprint))
    ids = list(session.scalars(select(Server.id).where(
        Server.certificate_issuer != authorities.signer.fingerprint,
        Server.renewal_due.is_(None))))
    if ids:
        session.execute(update(Server).where(Server.id.in_(ids))
                        .values(renewal_due=now_ms() + int(spread_seconds * 1000)))
        desired_state.changed(session, servers=ids)
    return len(ids)


def rotation(session: Session, authorities: Authorities, *, listed: int = 50
             ) -> dict[str, Any]:
    """Where a rotation stands: the CAs, and the servers still on the old one."""
    signer = authorities.signer.fingerprint
    on_old = (Server.certificate_issuer != signer) | Server.certificate_issuer.is_(None)
    total = session.scalar(select(func.count()).select_from(Server)) or 0
    waiting = session.scalar(select(func.count()).select_from(Server).where(on_old)) or 0
    servers = [{"id": sid, "name": name, "status": status, "environmentId": env}
               for sid, name, status, env in session.execute(
                   select(Server.id, Server.name, Server.status, Server.environment_id)
                   .where(on_old).order_by(Server.id).limit(listed))]
    return {
        "signer": _ca_view(authorities.signer),
        "retiring": _ca_view(authorities.retiring) if authorities.retiring else None,
        "rotating": authorities.retiring is not None,
        "servers": total,
        "serversOnOldCa": waiting if authorities.retiring is not None else 0,
        "waitingServers": servers if authorities.retiring is not None else [],
    }


def _ca_view(ca: CertificateAuthority) -> dict[str, Any]:
    cert = ca.certificate
    return {"fingerprint": ca.fingerprint,
            "subject": cert.subject.rfc4514_string({NameOID.SERIAL_NUMBER: "serialNumber"}),
            "notBefore": int(cert.not_valid_before_utc.timestamp() * 1000),
            "notAfter": int(cert.not_valid_after_utc.timestamp() * 1000)}
