"""Registration tokens and server registration by CSR."""

from __future__ import annotations

import datetime as dt
import secrets
from dataclasses import dataclass
from typing import Any, cast

from cryptography import x509
from sqlalchemy import ColumnElement, CursorResult, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from corral.db.models import Environment, RegistrationToken, Server, now_ms
from corral.domain import narrative
from corral.domain.accounts import token_digest
from corral.domain.names import check_name
from corral.errors import Conflict, NotFound, Unauthenticated
from corral.pki.authority import CertificateAuthority, IssuedCertificate, load_csr
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
    return row.token_hash[:HANDLE_LENGTH]


HANDLE_LENGTH = 16


def revoke_token(session: Session, environment_id: str, handle: str) -> None:
    row = None
    if len(handle) == HANDLE_LENGTH and all(c in "0123456789abcdef" for c in handle):
        row = session.scalar(select(RegistrationToken).where(
            RegistrationToken.environment_id == environment_id,
            RegistrationToken.token_hash.startswith(handle)))
    if row is None:
        raise NotFound(f"registration token {handle[:32]} not found")
    row.revoked = True


@dataclass(frozen=True)
class Admission:
    """A registration that reading found acceptable; `register_server` writes it."""

    digest: str
    environment_id: str
    organization_id: str
    name: str
    csr: x509.CertificateSigningRequest


def _usable(now: int) -> list[ColumnElement[bool]]:
    return [RegistrationToken.revoked.is_(False), RegistrationToken.expires_at > now,
            RegistrationToken.max_uses.is_(None)
            | (RegistrationToken.uses < RegistrationToken.max_uses)]


def admit(session: Session, *, token: str | None, name: object, csr_pem: object) -> Admission:
    """Everything that can refuse a registration by reading: the token, the name, the CSR. It
    runs in a read-only transaction before the write, so that a refused request (a guessed
    token, a hostile CSR) never waits for the writer, and the writer's turn stays short."""
    digest, environment_id, organization_id = _token_scope(session, token)
    label = check_name(name, "muleLabel")
    csr = load_csr(csr_pem)
    _check_name_free(session, environment_id, label)
    return Admission(digest, environment_id, organization_id, label, csr)


def use_token(session: Session, token: str | None) -> tuple[str, str]:
    """One use of a registration token, checked and counted at once: (environment id,
    organization id)."""
    digest, environment_id, organization_id = _token_scope(session, token)
    if not _count_use(session, digest):
        raise Unauthenticated("invalid, revoked, used-up or expired registration token")
    return environment_id, organization_id


def _token_scope(session: Session, token: str | None) -> tuple[str, str, str]:
    """(digest, environment id, organization id) of a usable registration token."""
    if not token:
        raise Unauthenticated("a registration token is required (Authorization: Bearer <token>)")
    digest = token_digest(token[:256])
    found = session.execute(
        select(RegistrationToken.environment_id, Environment.organization_id)
        .join(Environment, Environment.id == RegistrationToken.environment_id)
        .where(RegistrationToken.token_hash == digest, *_usable(now_ms()))).first()
    if found is None:
        raise Unauthenticated("invalid, revoked, used-up or expired registration token")
    return digest, found[0], found[1]


def _count_use(session: Session, digest: str) -> bool:
    """One use more, if the token is still usable (atomically: it may have been used up or
    revoked since it was read)."""
    result = session.execute(
        update(RegistrationToken)
        .where(RegistrationToken.token_hash == digest, *_usable(now_ms()))
        .values(uses=RegistrationToken.uses + 1)
        .execution_options(synchronize_session=False))  # no token object is in the session
    return bool(cast("CursorResult[Any]", result).rowcount)


def _check_name_free(session: Session, environment_id: str, name: str) -> None:
    taken = session.scalar(
        select(Server.id).where(Server.environment_id == environment_id, Server.name == name))
    if taken is not None:
        raise Conflict(f"a server named {name!r} already exists in this environment")


def register_server(
    session: Session,
    ca: CertificateAuthority,
    admission: Admission,
    *,
    mule_version: str,
    gateway_version: str,
    agent_version: str,
    certificate_seconds: int,
) -> Registration:
    """One use of the token (checked again, atomically: it may have been used up or revoked
    since), the server and its certificate: four statements in the writer's turn. The
    certificate's serial and end are chosen first so that the row is written once."""
    if not _count_use(session, admission.digest):
        raise Unauthenticated("invalid, revoked, used-up or expired registration token")
    serial = x509.random_serial_number()
    not_after = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=certificate_seconds)
    server = Server(
        organization_id=admission.organization_id,
        environment_id=admission.environment_id,
        name=admission.name,
        mule_version=mule_version,
        gateway_version=gateway_version,
        agent_version=agent_version,
        status="CREATED",
        certificate_serial=format(serial, "x"),
        certificate_expires_at=int(not_after.timestamp() * 1000),
        certificate_issuer=ca.fingerprint,
        certificate_issued_at=now_ms(),
    )
    session.add(server)
    try:
        session.flush()
    except IntegrityError:  # the same name registered meanwhile
        raise Conflict(f"a server named {admission.name!r} already exists in this "
                       "environment") from None
    narrative.describe(f"register server {server.name}")
    issued = ca.sign_server_csr(
        admission.csr,
        server_id=server.id,
        organization_id=admission.organization_id,
        environment_id=admission.environment_id,
        validity_days=0,
        serial=serial,
        not_after=not_after,
    )
    # nothing to push: a new server runs nothing until it is deployed to, and its agent is
    # sent its (empty) state when it connects
    return Registration(server, issued)
