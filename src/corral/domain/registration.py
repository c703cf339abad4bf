"""Registration tokens and server registration by CSR."""

from __future__ import annotations

import secrets
from dataclasses import dataclass

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from corral.db.models import Environment, RegistrationToken, Server, now_ms
from corral.domain import desired_state
from corral.domain.accounts import token_digest
from corral.domain.names import check_name
from corral.errors import Conflict, NotFound, Unauthenticated
from corral.pki import CertificateAuthority, IssuedCertificate, load_csr
from corral.sealing import Sealer


@dataclass(frozen=True)
class Registration:
    server: Server
    certificate: IssuedCertificate


def current_token(session: Session, sealer: Sealer, environment_id: str, ttl_seconds: int) -> str:
    """The environment's valid reusable registration token; a new one once the last has expired
    (tokens made with a use limit are not handed out here)."""
    now = now_ms()
    row = session.scalar(
        select(RegistrationToken)
        .where(
            RegistrationToken.environment_id == environment_id,
            RegistrationToken.revoked.is_(False),
            RegistrationToken.expires_at > now,
            RegistrationToken.max_uses.is_(None),
        )
        .order_by(RegistrationToken.expires_at.desc())
        .limit(1)
    )
    if row is not None:
        return sealer.unseal(row.sealed_token)
    return _new_token(session, sealer, environment_id, ttl_seconds)


def rotate_token(session: Session, sealer: Sealer, environment_id: str, ttl_seconds: int) -> str:
    """Revoke every token of the environment and make a new one."""
    session.execute(
        update(RegistrationToken)
        .where(RegistrationToken.environment_id == environment_id)
        .values(revoked=True)
    )
    return _new_token(session, sealer, environment_id, ttl_seconds)


def _new_token(session: Session, sealer: Sealer, environment_id: str, ttl_seconds: int,
               max_uses: int | None = None) -> str:
    token = secrets.token_hex(24)  # 192 random bits
    now = now_ms()
    session.add(
        RegistrationToken(
            token_hash=token_digest(token),
            environment_id=environment_id,
            sealed_token=sealer.seal(token),
            created_at=now,
            expires_at=now + ttl_seconds * 1000,
            max_uses=max_uses,
            uses=0,
        )
    )
    session.flush()
    return token


def create_token(session: Session, sealer: Sealer, environment_id: str, *, ttl_seconds: int,
                 max_uses: int | None) -> tuple[str, RegistrationToken]:
    """A token of its own, beside the environment's current one: for one batch of servers,
    with a use limit and a lifetime. ARM's reusable token is unaffected."""
    token = _new_token(session, sealer, environment_id, ttl_seconds, max_uses)
    return token, session.get_one(RegistrationToken, token_digest(token))


def list_tokens(session: Session, environment_id: str) -> list[RegistrationToken]:
    return list(session.scalars(
        select(RegistrationToken).where(RegistrationToken.environment_id == environment_id)
        .order_by(RegistrationToken.created_at.desc())))


def token_id(row: RegistrationToken) -> str:
    """A handle for a token that reveals nothing of it: a prefix of its digest."""
    return row.token_hash[:16]


def revoke_token(session: Session, environment_id: str, handle: str) -> None:
    row = None
    if len(handle) == 16 and all(c in "0123456789abcdef" for c in handle):
        row = session.scalar(select(RegistrationToken).where(
            RegistrationToken.environment_id == environment_id,
            RegistrationToken.token_hash.startswith(handle)))
    if row is None:
        raise NotFound(f"registration token {handle[:32]} not found")
    row.revoked = True


def environment_of_token(session: Session, token: str | None) -> Environment:
    """The environment a registration token admits to, counting one use of it."""
    if not token:
        raise Unauthenticated("a registration token is required (Authorization: Bearer <token>)")
    digest = token_digest(token[:256])
    used = session.execute(
        update(RegistrationToken)
        .where(RegistrationToken.token_hash == digest,
               RegistrationToken.revoked.is_(False),
               RegistrationToken.expires_at > now_ms(),
               (RegistrationToken.max_uses.is_(None))
               | (RegistrationToken.uses < RegistrationToken.max_uses))
        .values(uses=RegistrationToken.uses + 1)
    ).rowcount
    if not used:
        raise Unauthenticated("invalid, revoked, used-up or expired registration token")
    return session.get_one(RegistrationToken, digest).environment


def register_server(
    session: Session,
    ca: CertificateAuthority,
    *,
    token: str | None,
    name: object,
    csr_pem: object,
    mule_version: str,
    gateway_version: str,
    agent_version: str,
    certificate_days: int,
) -> Registration:
    env = environment_of_token(session, token)
    name = check_name(name, "muleLabel")
    load_csr(csr_pem)  # reject a bad CSR before anything is written
    taken = session.scalar(
        select(Server.id).where(Server.environment_id == env.id, Server.name == name)
    )
    if taken is not None:
        raise Conflict(f"a server named {name!r} already exists in this environment")
    server = Server(
        organization_id=env.organization_id,
        environment_id=env.id,
        name=name,
        mule_version=mule_version,
        gateway_version=gateway_version,
        agent_version=agent_version,
        status="CREATED",
    )
    session.add(server)
    session.flush()
    issued = ca.sign_server_csr(
        str(csr_pem),
        server_id=server.id,
        organization_id=env.organization_id,
        environment_id=env.id,
        validity_days=certificate_days,
    )
    server.certificate_serial = issued.serial
    server.certificate_expires_at = int(issued.not_after.timestamp() * 1000)
    desired_state.changed(session, servers=[server.id])
    return Registration(server, issued)
