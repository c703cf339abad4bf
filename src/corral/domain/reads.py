"""The API's read paths for servers and applications: ARM's shapes from plain columns, a few
queries per page whatever its size, no ORM objects. A group's servers are rendered once per page
however many of its applications the page holds (ADR 0007)."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from typing import Any

from sqlalchemy import Row, Select, func, or_, select
from sqlalchemy.orm import Session, aliased

from corral.db.chunks import chunked
from corral.db.models import (
    AppInstance,
    Application,
    Artifact,
    Cluster,
    Deployment,
    RolloutPin,
    Server,
    ServerGroup,
    Target,
)
from corral.domain import views
from corral.domain.identity import Scope
from corral.domain.names import as_id, check_text
from corral.errors import InvalidInput, NotFound

_group = aliased(Target)
_cluster = aliased(Target)
_SERVER_COLUMNS = (
    Server.id, Server.time_created, Server.time_updated, Server.name, Server.mule_version,
    Server.gateway_version, Server.agent_version, Server.status, Server.addresses,
    Server.runtime_information, Server.certificate_expires_at, Server.last_seen,
    Server.server_group_id, Server.cluster_id, Server.cluster_ip, Server.certificate_issued_at,
    Server.certificate_issuer, Server.certificate_problem, Server.renewal_due,
    _group.name.label("group_name"), _cluster.name.label("cluster_name"),
)


def _servers_query() -> Select[Any]:
    return (select(*_SERVER_COLUMNS)
            .outerjoin(_group, _group.id == Server.server_group_id)
            .outerjoin(_cluster, _cluster.id == Server.cluster_id))


def _server_view(row: Row[Any]) -> dict[str, Any]:
    return views.server_fields(row, row.group_name, row.cluster_name)


def servers(session: Session, scope: Scope, *, offset: int = 0,
            limit: int | None = None) -> tuple[list[dict[str, Any]], int]:
    where = Server.environment_id == scope.environment_id
    total = session.scalar(select(func.count(Server.id)).where(where)) or 0
    query = _servers_query().where(where).order_by(Server.id).offset(offset)
    if limit is not None:
        query = query.limit(limit)
    return [_server_view(r) for r in session.execute(query)], total


def server(session: Session, scope: Scope, server_id: int) -> dict[str, Any]:
    row = session.execute(_servers_query().where(
        Server.id == server_id, Server.environment_id == scope.environment_id)).first() \
        if as_id(server_id) is not None else None
    if row is None:
        raise NotFound(f"server {server_id} not found")
    return _server_view(row)


def targets(session: Session, ids: Iterable[int]) -> dict[int, dict[str, Any]]:
    """Rendered targets by id (servers, groups with their servers, clusters with theirs):
    one query per 2,000 targets, three when groups or clusters are among them."""
    wanted = sorted(set(ids))
    out: dict[int, dict[str, Any]] = {}
    for chunk in chunked(wanted):
        asked = set(chunk)
        members: dict[int, list[dict[str, Any]]] = defaultdict(list)
        for row in session.execute(_servers_query().where(or_(
                Server.id.in_(chunk), Server.server_group_id.in_(chunk),
                Server.cluster_id.in_(chunk))).order_by(Server.id)):
            shown = _server_view(row)
            if row.id in asked:
                out[row.id] = shown
            for owner in (row.server_group_id, row.cluster_id):
                if owner is not None:
                    members[owner].append(shown)
        others = [t for t in chunk if t not in out]
        if not others:
            continue  # servers only: no group or cluster to read
        for g in session.execute(select(ServerGroup.id, ServerGroup.name,
                                        ServerGroup.time_created, ServerGroup.time_updated)
                                 .where(ServerGroup.id.in_(others))):
            out[g.id] = views.server_group_fields(g, members[g.id])
        for c in session.execute(select(
                Cluster.id, Cluster.name, Cluster.time_created, Cluster.time_updated,
                Cluster.multicast_enabled, Cluster.primary_node_id, Cluster.visibility)
                .where(Cluster.id.in_(others))):
            out[c.id] = views.cluster_fields(c, members[c.id])
    return out


def target(session: Session, target_id: int) -> dict[str, Any]:
    """One rendered target (a group of ten thousand servers in one query for its members)."""
    return targets(session, [target_id])[target_id]


_APP_COLUMNS = (
    Application.id, Application.name, Application.target_id, Application.time_created,
    Application.time_updated, Application.time_started, Application.desired_status,
    Application.deployment_id, Application.configuration,
    Artifact.id.label("art_id"), Artifact.file_name, Artifact.sha1, Artifact.sha256,
    Artifact.size, Artifact.time_updated.label("art_time_updated"),
)

SORTS = {"id": Application.id, "name": Application.name,
         "timeCreated": Application.time_created, "timeUpdated": Application.time_updated}


class _Artifact:
    """The artifact's attributes as `views.artifact` reads them, from an application row."""

    __slots__ = ("file_name", "id", "sha1", "sha256", "size", "time_updated")

    def __init__(self, row: Row[Any]) -> None:
        self.id, self.file_name, self.sha1 = row.art_id, row.file_name, row.sha1
        self.sha256, self.size, self.time_updated = row.sha256, row.size, row.art_time_updated


def applications(
    session: Session,
    scope: Scope,
    *,
    target_id: int | None = None,
    artifact_name: str | None = None,
    offset: int = 0,
    limit: int | None = None,
    sort: str | None = None,
) -> tuple[list[dict[str, Any]], int]:
    """A page of applications as ARM renders them. `sort` names a field (`timeCreated`,
    `name`, ...), `-` first for descending."""
    field = (sort or "id").strip()
    descending = field.startswith("-")
    column = SORTS.get(field.removeprefix("-"))
    if column is None:
        raise InvalidInput(f"sort must be one of {', '.join(SORTS)} (a leading - for "
                           "descending)")
    where = [Application.environment_id == scope.environment_id]
    if target_id is not None:
        if as_id(target_id) is None:
            return [], 0
        where.append(Application.target_id == target_id)
    if artifact_name:
        where.append(Application.name == check_text(artifact_name, "artifactName"))
    total = session.scalar(select(func.count(Application.id)).where(*where)) or 0
    query = (select(*_APP_COLUMNS).join(Artifact, Artifact.id == Application.artifact_id)
             .where(*where)
             .order_by(column.desc() if descending else column.asc(), Application.id)
             .offset(offset))
    if limit is not None:
        query = query.limit(limit)
    return _render(session, list(session.execute(query))), total


def application(session: Session, scope: Scope, app_id: int) -> dict[str, Any]:
    row = session.execute(
        select(*_APP_COLUMNS).join(Artifact, Artifact.id == Application.artifact_id)
        .where(Application.id == app_id, Application.environment_id == scope.environment_id)
    ).first() if as_id(app_id) is not None else None
    if row is None:
        raise NotFound(f"application {app_id} not found")
    return _render(session, [row])[0]


def _render(session: Session, rows: list[Row[Any]]) -> list[dict[str, Any]]:
    shown_targets = targets(session, {r.target_id for r in rows})
    instances: dict[int, list[Any]] = defaultdict(list)
    app_ids = [r.id for r in rows]
    for some in chunked(app_ids):
        for inst in session.execute(
                select(AppInstance.id, AppInstance.application_id, AppInstance.server_id,
                       AppInstance.deployment_id, AppInstance.last_reported_status,
                       AppInstance.message, AppInstance.port, AppInstance.serving,
                       AppInstance.discovered,
                       AppInstance.time_created, AppInstance.time_updated)
                .where(AppInstance.application_id.in_(some))
                .order_by(AppInstance.server_id)):
            instances[inst.application_id].append(inst)
    pinned: dict[int, dict[int, int]] = defaultdict(dict)
    for some in chunked(app_ids):
        for app_id, server_id, number in session.execute(
                select(RolloutPin.application_id, RolloutPin.server_id, Deployment.number)
                .join(Deployment, Deployment.id == RolloutPin.history_id)
                .where(RolloutPin.application_id.in_(some))):
            pinned[app_id][server_id] = number
    return [views.application_fields(r, _Artifact(r), shown_targets[r.target_id],
                                      instances[r.id], pinned.get(r.id)) for r in rows]


def fleet_counts(session: Session) -> dict[str, dict[str, int]]:
    """Servers by status, application instances by reported status and applications by
    desired status, over every environment (what `GET /metrics` exposes)."""
    def grouped(column: Any) -> dict[str, int]:
        return {str(value): int(n) for value, n in
                session.execute(select(column, func.count()).group_by(column))}

    return {"servers": grouped(Server.status),
            "instances": grouped(AppInstance.last_reported_status),
            "applications": grouped(Application.desired_status)}
