"""Each server's desired state: what it should run, computed from the applications that reach
it. Stored with a revision number that grows on every change; the gateway pushes it."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, selectinload

from corral.db.models import Application, Server, ServerArtifact
from corral.domain.configuration import properties_of

CHANGED_KEY = "corral.changed_servers"


def compute(session: Session, server: Server) -> dict[str, Any]:
    instances = session.scalars(
        select(ServerArtifact)
        .where(ServerArtifact.server_id == server.id)
        .options(selectinload(ServerArtifact.application).selectinload(Application.artifact))
    ).all()
    applications = []
    for inst in sorted(instances, key=lambda i: i.application.name):
        app = inst.application
        applications.append(
            {
                "name": app.name,
                "applicationId": app.id,
                "deploymentId": inst.deployment_id,
                "desiredStatus": inst.desired_status,
                "artifact": {
                    "sha256": app.artifact.sha256,
                    "sha1": app.artifact.sha1,
                    "size": app.artifact.size,
                    "fileName": app.artifact.file_name,
                },
                "properties": properties_of(app.configuration),
            }
        )
    cluster = None
    if server.cluster is not None:
        c = server.cluster
        cluster = {
            "id": c.id,
            "name": c.name,
            "multicastEnabled": c.multicast_enabled,
            "secret": c.secret,
            "members": [
                {
                    "serverId": m.id,
                    "serverIp": m.cluster_ip,
                    "clusterPort": (m.runtime_information or {}).get("clusterPort"),
                }
                for m in c.servers
            ],
        }
    return {
        "serverId": server.id,
        "serverName": server.name,
        "cluster": cluster,
        "applications": applications,
    }


def refresh(session: Session, server_ids: Iterable[int]) -> None:
    """Recompute the desired state of these servers; bump the revision where it changed."""
    ids = sorted(set(server_ids))
    if not ids:
        return
    session.flush()
    session.expire_all()  # memberships may have moved under loaded relationships
    changed: set[int] = session.info.setdefault(CHANGED_KEY, set())
    for server in session.scalars(select(Server).where(Server.id.in_(ids))):
        document = compute(session, server)
        if document != server.desired_state:
            server.desired_state = document
            server.desired_revision += 1
            changed.add(server.id)
    session.flush()

