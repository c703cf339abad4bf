"""Clusters: servers whose application instances know each other (multicast or unicast)."""

from __future__ import annotations

import ipaddress
from typing import Any

from sqlalchemy.orm import Session

from corral.db.models import Cluster, Server, new_secret_nonce
from corral.domain import applications, desired_state, measurements, narrative
from corral.domain.identity import Scope
from corral.domain.names import as_id, check_name
from corral.domain.targets import (
    applications_on,
    check_name_free,
    check_size,
    get_target,
    joinable_server,
    lock_members,
)
from corral.errors import InvalidInput, NotFound


def _check_ip(ip: object, server_id: object, multicast: bool) -> str | None:
    if ip is None or ip == "":
        if multicast:
            return None
        raise InvalidInput(f"a unicast cluster needs serverIp for server {server_id}")
    try:
        return str(ipaddress.ip_address(str(ip)))
    except ValueError as exc:
        raise InvalidInput(f"serverIp {ip!r} of server {server_id} is not an IP address") from exc


def create(
    session: Session,
    scope: Scope,
    *,
    name: object,
    multicast: bool,
    members: list[dict[str, Any]],
    max_size: int | None,
) -> Cluster:
    cluster_name = check_name(name, "name")
    if not members:
        raise InvalidInput("a cluster needs at least one server (servers: "
                           "[{serverId, serverIp}])")
    check_name_free(session, scope, Cluster, cluster_name)
    chosen: list[tuple[Server, str | None]] = []
    seen: set[int] = set()
    for member in members:
        ip = _check_ip(member.get("serverIp"), member.get("serverId"), multicast)
        server = joinable_server(session, scope, member.get("serverId"))
        if server.id in seen:
            raise InvalidInput(f"server {server.id} is listed twice")
        seen.add(server.id)
        chosen.append((server, ip))
    check_size(0, len(chosen), max_size, "cluster")
    cluster = Cluster(
        organization_id=scope.organization_id,
        environment_id=scope.environment_id,
        name=cluster_name,
        multicast_enabled=multicast,
    )
    session.add(cluster)
    session.flush()
    for server, ip in chosen:
        server.cluster_id = cluster.id
        server.cluster_ip = ip
    narrative.describe(f"create cluster {cluster.name}")
    desired_state.changed(session, servers=seen)
    return cluster


def rename(session: Session, scope: Scope, cluster_id: int, name: object) -> Cluster:
    cluster = get_target(session, scope, cluster_id, Cluster, lock=True)
    new_name = check_name(name, "name")
    if new_name != cluster.name:
        check_name_free(session, scope, Cluster, new_name)
        narrative.describe(f"rename cluster {cluster.name} to {new_name}")
        cluster.name = new_name
        desired_state.changed(session, targets=[cluster.id])
    return cluster


def add_server(
    session: Session,
    scope: Scope,
    cluster_id: int,
    member: dict[str, Any],
    max_size: int | None,
) -> Cluster:
    cluster = get_target(session, scope, cluster_id, Cluster, lock=True)
    ip = _check_ip(member.get("serverIp"), member.get("serverId"), cluster.multicast_enabled)
    server = joinable_server(session, scope, member.get("serverId"))
    check_size(len(cluster.servers), 1, max_size, "cluster")
    server.cluster_id = cluster.id
    server.cluster_ip = ip
    narrative.describe(f"add {server.name} to cluster {cluster.name}")
    cluster.secret = new_secret_nonce()  # the group re-forms under a key the newcomer gets
    session.flush()
    session.expire(cluster, ["servers"])
    for app in applications_on(session, cluster.id):
        applications.sync_instances(session, app)
    # every member's view of the membership changes
    desired_state.changed(session, targets=[cluster.id])
    return cluster


def set_member_ip(
    session: Session, scope: Scope, cluster_id: int, server_id: int, ip: object
) -> Cluster:
    """ARM's "modify clustering information": the address a member is reached at. Every
    member's view of the membership changes, so each is told."""
    cluster = get_target(session, scope, cluster_id, Cluster, lock=True)
    lock_members(session, cluster)
    server = _member(session, cluster, server_id)
    address = _check_ip(ip, server_id, cluster.multicast_enabled)
    if address != server.cluster_ip:
        server.cluster_ip = address
        session.flush()
        desired_state.changed(session, targets=[cluster.id])
    return cluster


def _member(session: Session, cluster: Cluster, server_id: int) -> Server:
    server = session.get(Server, server_id) if as_id(server_id) is not None else None
    if server is None or server.cluster_id != cluster.id:
        raise NotFound(f"server {server_id} is not in cluster {cluster.id}")
    return server


def remove_server(session: Session, scope: Scope, cluster_id: int, server_id: int) -> None:
    """The server leaves; the cluster's applications are removed from it."""
    cluster = get_target(session, scope, cluster_id, Cluster, lock=True)
    lock_members(session, cluster)
    server = _member(session, cluster, server_id)
    affected = [s.id for s in cluster.servers]
    narrative.describe(f"remove {server.name} from cluster {cluster.name}")
    server.cluster_id = None
    server.cluster_ip = None
    cluster.secret = new_secret_nonce()  # what the leaver holds no longer opens the group
    if cluster.primary_node_id == server.id:
        cluster.primary_node_id = None
    session.flush()
    session.expire(cluster, ["servers"])
    for app in applications_on(session, cluster.id):
        applications.sync_instances(session, app)
    desired_state.changed(session, servers=affected)


def delete_cluster(session: Session, scope: Scope, cluster_id: int) -> None:
    """As ARM does: the cluster's applications are removed from its servers (their processes
    stop), the servers stay registered and become standalone."""
    cluster = get_target(session, scope, cluster_id, Cluster, lock=True)
    lock_members(session, cluster)
    apps = applications_on(session, cluster.id)
    for app in apps:
        session.delete(app)
    measurements.forget(session, applications=[a.id for a in apps])
    ids = [s.id for s in cluster.servers]
    for server in cluster.servers:
        server.cluster_id = None
        server.cluster_ip = None
    session.flush()
    narrative.describe(f"delete cluster {cluster.name}")
    session.delete(cluster)
    desired_state.changed(session, servers=ids)
