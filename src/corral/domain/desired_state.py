"""Each server's desired state: what it should run, computed from the applications that reach
it. Stored with a revision number that grows on every change; the gateway pushes it."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, selectinload

from corral.db.models import Application, Artifact, Cluster, Server, ServerArtifact
from corral.domain.configuration import properties_of

CHANGED_KEY = "corral.changed_servers"


CHUNK = 2000  # ids per IN (...) list


def _cluster_document(c: Cluster) -> dict[str, Any]:
    return {
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


def _applications(session: Session, server_ids: list[int]) -> dict[int, list[dict[str, Any]]]:
    """Every application instance of these servers, in one query, sorted by name."""
    rows = session.execute(
        select(
            ServerArtifact.server_id, ServerArtifact.deployment_id, ServerArtifact.desired_status,
            Application.id, Application.name, Application.configuration,
            Artifact.sha256, Artifact.sha1, Artifact.size, Artifact.file_name,
        )
        .join(Application, Application.id == ServerArtifact.application_id)
        .join(Artifact, Artifact.id == Application.artifact_id)
        .where(ServerArtifact.server_id.in_(server_ids))
        .order_by(ServerArtifact.server_id, Application.name)
    ).all()
    properties: dict[int, dict[str, str]] = {}
    found: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for sid, deployment, status, app_id, name, conf, sha256, sha1, size, file_name in rows:
        if app_id not in properties:
            properties[app_id] = properties_of(conf or {})
        found[sid].append({
            "name": name,
            "applicationId": app_id,
            "deploymentId": deployment,
            "desiredStatus": status,
            "artifact": {"sha256": sha256, "sha1": sha1, "size": size, "fileName": file_name},
            "properties": properties[app_id],
        })
    return found


def refresh(session: Session, server_ids: Iterable[int]) -> None:
    """Recompute the desired state of these servers (a few queries for any number of them);
    bump the revision where it changed."""
    ids = sorted(set(server_ids))
    if not ids:
        return
    session.flush()
    session.expire_all()  # memberships may have moved under loaded relationships
    changed: set[int] = session.info.setdefault(CHANGED_KEY, set())
    clusters: dict[int, dict[str, Any]] = {}
    for start in range(0, len(ids), CHUNK):
        chunk = ids[start : start + CHUNK]
        apps = _applications(session, chunk)
        servers = session.scalars(
            select(Server).where(Server.id.in_(chunk))
            .options(selectinload(Server.cluster).selectinload(Cluster.servers))
        )
        for server in servers:
            cluster = None
            if server.cluster is not None:
                if server.cluster.id not in clusters:
                    clusters[server.cluster.id] = _cluster_document(server.cluster)
                cluster = clusters[server.cluster.id]
            document = {
                "serverId": server.id,
                "serverName": server.name,
                "cluster": cluster,
                "applications": apps.get(server.id, []),
            }
            if document != server.desired_state:
                server.desired_state = document
                server.desired_revision += 1
                changed.add(server.id)
    session.flush()
