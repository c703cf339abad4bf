"""What the gateway does to the database on an agent's behalf: connect, report, vouch."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, cast

from sqlalchemy import Table, or_, select, update
from sqlalchemy.orm import Session

from corral.db.chunks import chunked
from corral.db.models import (
    AppInstance,
    Application,
    Artifact,
    Cluster,
    Deployment,
    RevokedCertificate,
    RolloutPin,
    Server,
    now_ms,
)
from corral.domain import certificates, desired_state, history
from corral.domain.servers import is_revoked
from corral.errors import CorralError, Forbidden, NotFound
from corral.pki.authority import ServerIdentity
from corral.sealing import Sealer
from corral.wire import ClusterReport, Hello, Report

_servers = cast(Table, Server.__table__)


def admit(session: Session, who: ServerIdentity) -> Server:
    """The server a verified client certificate belongs to, if it may still connect."""
    server = session.get(Server, who.server_id)
    refusal = _refusal(who, server, revoked=is_revoked(session, who.serial))
    if refusal is not None:
        raise refusal
    assert server is not None
    return server


def _refusal(who: ServerIdentity, server: Server | None, *, revoked: bool) -> CorralError | None:
    if revoked:
        return Forbidden(f"certificate of server {who.server_id} is revoked")
    if server is None or server.environment_id != who.environment_id:
        return NotFound(f"server {who.server_id} no longer exists")
    if who.serial not in (server.certificate_serial, server.next_certificate_serial):
        return Forbidden(f"certificate of server {who.server_id} has been replaced")
    return None


def connected(session: Session, hellos: list[tuple[ServerIdentity, Hello]],
              told: desired_state.Told, replica_id: str | None = None,
              ) -> list[tuple[int, str] | CorralError]:
    """Admit agents that said hello together (after a restart, thousands within seconds) and
    record what each said, and which replica holds it, in a few queries for all of them.
    Returns, in order, each one's desired-state message (revision, wire text) or why it is
    refused."""
    serials = sorted({who.serial for who, _ in hellos})
    revoked = set(session.scalars(
        select(RevokedCertificate.serial).where(RevokedCertificate.serial.in_(serials))))
    servers = {s.id: s for s in session.scalars(
        select(Server).where(Server.id.in_(sorted({who.server_id for who, _ in hellos}))))}
    now = now_ms()
    outcome: list[CorralError | None] = []
    moved_clusters: set[int] = set()
    for who, _hello in hellos:  # renewed certificates first: the ones they replace are
        server = servers.get(who.server_id)  # refused in this same batch
        if server is not None and server.next_certificate_serial == who.serial \
                and server.environment_id == who.environment_id and who.serial not in revoked:
            revoked.add(server.certificate_serial)
            certificates.promote(server, who, session)
    for who, hello in hellos:
        server = servers.get(who.server_id)
        refusal = _refusal(who, server, revoked=who.serial in revoked)
        outcome.append(refusal)
        if refusal is not None or server is None:
            continue
        old_port = (server.runtime_information or {}).get("clusterPort")
        server.status = "RUNNING"
        server.replica_id = replica_id
        server.agent_version = hello.agentVersion
        server.addresses = [a.model_dump() for a in hello.addresses]
        server.runtime_information = {
            "hostname": hello.hostname,
            "osInformation": hello.osInformation,
            "pythonInformation": hello.pythonInformation,
            "clusterPort": hello.clusterPort,
        }
        server.last_seen = now
        if server.cluster_id is not None and old_port != hello.clusterPort:
            moved_clusters.add(server.cluster_id)  # every member's view of it changes
    session.flush()
    desired_state.changed(session, targets=moved_clusters)
    admitted = {who.server_id for (who, _), no in zip(hellos, outcome, strict=True) if no is None}
    messages = desired_state.messages(session, sorted(admitted), told)
    return [refusal if refusal is not None else messages[who.server_id]
            for (who, _), refusal in zip(hellos, outcome, strict=True)]


def cluster_secret(sealer: Sealer, cluster_id: int, nonce: str) -> str:
    return sealer.derive(f"cluster:{cluster_id}:{nonce}")


def revisions(session: Session, server_ids: Iterable[int]) -> dict[int, int]:
    ids = sorted(server_ids)
    found: dict[int, int] = {}
    for some in chunked(ids):
        found.update((sid, rev) for sid, rev in session.execute(
            select(_servers.c.id, _servers.c.desired_revision)
            .where(_servers.c.id.in_(some))))
    return found


def disconnected(session: Session, server_ids: Iterable[int],
                 replica_id: str | None = None) -> None:
    """These agents left this replica. One already held by another replica (it moved there
    while this one was stopping) is left as it is."""
    ids = sorted(server_ids)
    now = now_ms()
    mine = or_(_servers.c.replica_id.is_(None), _servers.c.replica_id == replica_id)
    for some in chunked(ids):
        session.execute(
            update(_servers).where(_servers.c.id.in_(some),
                                   _servers.c.status == "RUNNING", mine)
            .values(status="DISCONNECTED", last_seen=now, replica_id=None))


def let_go(session: Session, replica_id: str) -> None:
    """A stopping replica's last word: every agent it holds is DISCONNECTED, also one whose
    hello it stored but never answered (it was not among its connections yet), which would
    otherwise read RUNNING until the silence sweep."""
    session.execute(update(_servers).where(_servers.c.replica_id == replica_id,
                                           _servers.c.status == "RUNNING")
                    .values(status="DISCONNECTED", last_seen=now_ms(), replica_id=None))


def seen(session: Session, server_ids: Iterable[int], replica_id: str | None = None) -> None:
    """The gateway vouches for its connected agents: one UPDATE per 2,000 of them."""
    ids = sorted(server_ids)
    now = now_ms()
    for some in chunked(ids):
        session.execute(update(_servers).where(_servers.c.id.in_(some))
                        .values(last_seen=now, status="RUNNING", replica_id=replica_id))


def mark_silent_disconnected(session: Session, timeout_seconds: float) -> int:
    """Servers marked RUNNING that nobody has heard from within the timeout (a hung connection,
    or a replica that died) become DISCONNECTED. Returns how many."""
    cutoff = now_ms() - int(timeout_seconds * 1000)
    query = update(Server).where(Server.status == "RUNNING", Server.last_seen < cutoff)
    result = session.execute(query.values(status="DISCONNECTED", replica_id=None))
    return int(getattr(result, "rowcount", 0) or 0)


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
    moved: set[int] = set()
    for chunk in chunked(ids):
        rows = session.execute(
            select(AppInstance.id, AppInstance.server_id, AppInstance.deployment_id,
                   AppInstance.last_reported_status, AppInstance.message,
                   AppInstance.port, AppInstance.serving, Application.name,
                   Application.deployment_id, Application.id)
            .join(Application, Application.id == AppInstance.application_id)
            .where(AppInstance.server_id.in_(chunk))
        ).all()
        entries = {sid: {a.name: a for a in latest[sid].applications} for sid in chunk}
        pinned = {(sid, app_id): number for sid, app_id, number in session.execute(
            select(RolloutPin.server_id, RolloutPin.application_id, Deployment.number)
            .join(Deployment, Deployment.id == RolloutPin.history_id)
            .where(RolloutPin.server_id.in_(chunk)))}
        for inst_id, sid, had, status, message, port, serving, name, current, app_id in rows:
            current = pinned.get((sid, app_id), current)  # a rollout has not reached it
            entry = entries[sid].get(name)
            if entry is None or entry.deploymentId != current:
                continue  # about an older deployment, or not yet about this one
            now_serving = entry.status == "STARTED" if entry.serving is None else entry.serving
            if (had, status, message, port, serving) != \
                    (current, entry.status, entry.message, entry.port, now_serving):
                updates.append({"id": inst_id, "deployment_id": current,
                                "last_reported_status": entry.status,
                                "message": entry.message, "port": entry.port,
                                "serving": now_serving, "time_updated": now})
                moved.add(app_id)
        session.execute(update(Server).where(Server.id.in_(chunk)).values(last_seen=now))
    if updates:
        session.execute(update(AppInstance), updates)
        history.settle(session, moved)
    return len(updates)


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
        select(AppInstance.id)
        .join(Application, Application.id == AppInstance.application_id)
        .join(Artifact, Artifact.id == Application.artifact_id)
        .where(AppInstance.server_id == server_id, Artifact.sha256 == sha256)
        .limit(1)
    )
    if found is None:  # what a rollout keeps this server on
        found = session.scalar(
            select(RolloutPin.server_id)
            .join(Deployment, Deployment.id == RolloutPin.history_id)
            .join(Artifact, Artifact.id == Deployment.artifact_id)
            .where(RolloutPin.server_id == server_id, Artifact.sha256 == sha256).limit(1))
    return found is not None
