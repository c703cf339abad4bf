"""Servers: rename, delete (revoking the certificate), and what the agent reports."""

from __future__ import annotations

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from corral.db.models import (
    AppInstance,
    Application,
    RevokedCertificate,
    Server,
    new_secret_nonce,
)
from corral.domain import desired_state, measurements, narrative
from corral.domain.identity import Scope
from corral.domain.names import check_name
from corral.domain.targets import check_name_free, get_target

REVOKED_KEY = "corral.revoked_servers"


def rename(session: Session, scope: Scope, server_id: int, name: object) -> Server:
    server = get_target(session, scope, server_id, Server, lock=True)
    new_name = check_name(name, "name")
    if new_name != server.name:
        check_name_free(session, scope, Server, new_name)
        narrative.describe(f"rename server {server.name} to {new_name}")
        server.name = new_name
        desired_state.changed(session, servers=[server.id])
    return server


def delete_server(session: Session, scope: Scope, server_id: int) -> None:
    """Revoke its certificate, drop its own applications and its instances of others."""
    server = get_target(session, scope, server_id, Server, lock=True)
    members: list[int] = []
    if server.cluster is not None:
        # the deleted member's copy of the cluster key must stop working
        server.cluster.secret = new_secret_nonce()
        members = [s.id for s in server.cluster.servers if s.id != server.id]
        server.cluster_id = None
        session.flush()
    if server.certificate_serial:
        session.add(RevokedCertificate(serial=server.certificate_serial, server_id=server.id))
    session.execute(delete(AppInstance).where(AppInstance.server_id == server.id))
    own = list(session.scalars(select(Application).where(Application.target_id == server.id)))
    for app in own:
        session.delete(app)
    measurements.forget(session, servers=[server.id], applications=[a.id for a in own])
    session.flush()
    narrative.describe(f"delete server {server.name}")
    session.delete(server)
    session.info.setdefault(REVOKED_KEY, set()).add(server_id)
    desired_state.changed(session, servers=members)


def is_revoked(session: Session, serial: str) -> bool:
    return session.get(RevokedCertificate, serial) is not None
