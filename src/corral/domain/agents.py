"""What the gateway does to the database on an agent's behalf: connect, report, heartbeat."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from corral.db.models import Application, Artifact, Cluster, Server, ServerArtifact, now_ms
from corral.domain import desired_state
from corral.domain.servers import is_revoked
from corral.errors import Forbidden, NotFound
from corral.pki import ServerIdentity
from corral.sealing import Sealer
from corral.wire import ClusterReport, Desired, Hello, Report


def admit(session: Session, who: ServerIdentity) -> Server:
    """The server a verified client certificate belongs to, if it may still connect."""
    if is_revoked(session, who.serial):
        raise Forbidden(f"certificate of server {who.server_id} is revoked")
    server = session.get(Server, who.server_id)
    if server is None or server.environment_id != who.environment_id:
        raise NotFound(f"server {who.server_id} no longer exists")
    if server.certificate_serial != who.serial:
        raise Forbidden(f"certificate of server {who.server_id} has been replaced")
    return server


def connected(
    session: Session, who: ServerIdentity, hello: Hello, sealer: Sealer
) -> Desired:
    """Record the hello; returns the server's desired-state message."""
    server = admit(session, who)
    old_port = (server.runtime_information or {}).get("clusterPort")
    server.status = "RUNNING"
    server.agent_version = hello.agentVersion
    server.addresses = [a.model_dump() for a in hello.addresses]
    server.runtime_information = {
        "hostname": hello.hostname,
        "osInformation": hello.osInformation,
        "pythonInformation": hello.pythonInformation,
        "clusterPort": hello.clusterPort,
    }
    server.last_seen = now_ms()
    if server.cluster is not None and old_port != hello.clusterPort:
        # every member's view of where this one listens changes
        desired_state.refresh(session, [m.id for m in server.cluster.servers])
        server = session.get_one(Server, server.id)
    return _message(server.desired_revision, server.desired_state, sealer)


def _message(revision: int, document: dict[str, Any] | None, sealer: Sealer) -> Desired:
    """The wire form of a stored desired state. The stored cluster section holds a nonce; the
    member gets the secret derived from it, so no cluster key is ever kept in the database."""
    document = dict(document or {})
    cluster = document.get("cluster")
    if cluster:
        document["cluster"] = {**cluster, "secret": cluster_secret(sealer, cluster["id"],
                                                                   cluster["secret"])}
    return Desired.model_validate({**document, "revision": revision})


def cluster_secret(sealer: Sealer, cluster_id: int, nonce: str) -> str:
    return sealer.derive(f"cluster:{cluster_id}:{nonce}")


def revisions(session: Session, server_ids: Iterable[int]) -> dict[int, int]:
    ids = list(server_ids)
    if not ids:
        return {}
    rows = session.execute(select(Server.id, Server.desired_revision).where(Server.id.in_(ids)))
    return {sid: rev for sid, rev in rows}


def disconnected(session: Session, server_ids: Iterable[int]) -> None:
    ids = list(server_ids)
    if ids:
        session.execute(
            update(Server).where(Server.id.in_(ids), Server.status == "RUNNING")
            .values(status="DISCONNECTED", last_seen=now_ms())
        )


def seen(session: Session, server_ids: Iterable[int]) -> None:
    """One UPDATE for every connected agent heard from since the last flush."""
    ids = list(server_ids)
    if ids:
        session.execute(
            update(Server).where(Server.id.in_(ids)).values(last_seen=now_ms(), status="RUNNING")
        )


def mark_silent_disconnected(session: Session, timeout_seconds: float) -> int:
    """Servers marked RUNNING that nobody has heard from within the timeout (a hung connection,
    or a replica that died) become DISCONNECTED. Returns how many."""
    cutoff = now_ms() - int(timeout_seconds * 1000)
    query = update(Server).where(Server.status == "RUNNING", Server.last_seen < cutoff)
    return session.execute(query.values(status="DISCONNECTED")).rowcount or 0


def record_reports(session: Session, batch: list[tuple[int, Report]]) -> int:
    """Store what agents reported, many at once: each application's status on its instance for
    that server. Statuses about an older deployment than the instance's current one are
    ignored. Returns how many instances changed."""
    latest: dict[int, Report] = {}
    for server_id, report in batch:
        latest[server_id] = report  # a later snapshot supersedes an earlier one
    for server_id, report in latest.items():
        if report.cluster is not None:
            _record_cluster_view(session, server_id, report.cluster)
    now = now_ms()
    ids = sorted(latest)
    updates: list[dict[str, Any]] = []
    for start in range(0, len(ids), 2000):
        chunk = ids[start : start + 2000]
        rows = session.execute(
            select(ServerArtifact.id, ServerArtifact.server_id, ServerArtifact.deployment_id,
                   ServerArtifact.last_reported_status, ServerArtifact.message,
                   ServerArtifact.port, Application.name)
            .join(Application, Application.id == ServerArtifact.application_id)
            .where(ServerArtifact.server_id.in_(chunk))
        ).all()
        entries = {sid: {a.name: a for a in latest[sid].applications} for sid in chunk}
        for inst_id, sid, deployment, status, message, port, name in rows:
            entry = entries[sid].get(name)
            if entry is None or entry.deploymentId != deployment:
                continue
            if (status, message, port) != (entry.status, entry.message, entry.port):
                updates.append({"id": inst_id, "last_reported_status": entry.status,
                                "message": entry.message, "port": entry.port,
                                "time_updated": now})
        session.execute(update(Server).where(Server.id.in_(chunk)).values(last_seen=now))
    if updates:
        session.execute(update(ServerArtifact), updates)
    return len(updates)


def desired_messages(
    session: Session, server_ids: list[int], sealer: Sealer
) -> dict[int, Desired]:
    """The desired-state messages of these servers in one query (absent: deleted)."""
    rows = session.execute(
        select(Server.id, Server.desired_revision, Server.desired_state)
        .where(Server.id.in_(server_ids))
    ).all()
    return {sid: _message(rev, doc, sealer) for sid, rev, doc in rows}


def _record_cluster_view(session: Session, server_id: int, view: ClusterReport) -> None:
    server = session.get(Server, server_id)
    cluster = session.get(Cluster, view.clusterId)
    if server is None or cluster is None or server.cluster_id != cluster.id:
        return  # a stale report from before a membership change
    members = {m.id for m in cluster.servers}
    nodes = dict((cluster.visibility or {}).get("mapNodes", {}))
    seen = {
        "visibleNodeIds": sorted(m.serverId for m in view.members
                                 if m.alive and m.serverId != server_id and m.serverId in members),
        "unknownNodeIps": [],
    }
    if nodes.get(str(server_id)) != seen:
        nodes[str(server_id)] = seen
        cluster.visibility = {"mapNodes": nodes}
    primary = view.primaryNodeId if view.primaryNodeId in members else None
    if primary is not None and cluster.primary_node_id != primary:
        cluster.primary_node_id = primary


def may_download(session: Session, server_id: int, sha256: str) -> bool:
    """An agent may fetch only artifacts of applications meant for its server."""
    found = session.scalar(
        select(ServerArtifact.id)
        .join(Application, Application.id == ServerArtifact.application_id)
        .join(Artifact, Artifact.id == Application.artifact_id)
        .where(ServerArtifact.server_id == server_id, Artifact.sha256 == sha256)
        .limit(1)
    )
    return found is not None
