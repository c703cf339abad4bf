"""The API's read paths for servers and applications: ARM's shapes from plain columns, a few
queries per page whatever its size, no ORM objects. A group's servers are rendered once per page
however many of its applications the page holds (ADR 0007)."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from typing import Any

from sqlalchemy import Row, Select, and_, bindparam, func, or_, select
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


_ONE_SERVER = _servers_query().where(Server.id == bindparam("server_id"),
                                     Server.environment_id == bindparam("env"))


def server(session: Session, scope: Scope, server_id: int) -> dict[str, Any]:
    row = session.execute(_ONE_SERVER, {"server_id": server_id, "env": scope.environment_id}
                          ).first() if as_id(server_id) is not None else None
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
    """One application in one query (`_ONE_APPLICATION`): a row per server its target
    reaches, each with that server's instance and rollout pin."""
    rows = session.execute(_ONE_APPLICATION, {"app_id": app_id, "env": scope.environment_id}
                           ).all() if as_id(app_id) is not None else []
    if not rows:
        raise NotFound(f"application {app_id} not found")
    first = rows[0]
    members = _members(rows)
    if first.t_type == "SERVER":
        if not members:
            raise NotFound(f"application {app_id} not found")  # its server is going away
        target = members[0]
    elif first.t_type == "CLUSTER":
        target = views.cluster_fields(_Prefixed(first, "t_"), members)
    else:
        target = views.server_group_fields(_Prefixed(first, "t_"), members)
    instances = [_Prefixed(r, "i_") for r in rows if r.i_id is not None]
    pinned = {r.m_id: r.pinned for r in rows if r.pinned is not None}
    return views.application_fields(first, _Artifact(first), target, instances, pinned or None)


class _Prefixed:
    """The attributes `views` reads, from the columns of a wider row named with a prefix."""

    __slots__ = ("_prefix", "_row")

    def __init__(self, row: Row[Any], prefix: str) -> None:
        self._row, self._prefix = row, prefix

    def __getattr__(self, name: str) -> Any:
        return getattr(self._row, self._prefix + name)


_TARGETS, _SERVERS, _CLUSTERS = Target.__table__, Server.__table__, Cluster.__table__
_MEMBER, _MEMBER_GROUP, _MEMBER_CLUSTER = (_TARGETS.alias("mt"), _TARGETS.alias("mg"),
                                           _TARGETS.alias("mc"))


def _member_columns() -> list[Any]:
    """A member server's columns, named `m_<attribute>` (`_Prefixed`)."""
    on_targets = ("time_created", "time_updated", "name")
    return [*(_MEMBER.c[c].label(f"m_{c}") for c in on_targets),
            *(_SERVERS.c[c.key].label(f"m_{c.key}") for c in _SERVER_COLUMNS[:-2]
              if c.key not in on_targets),
            _MEMBER_GROUP.c.name.label("m_group_name"),
            _MEMBER_CLUSTER.c.name.label("m_cluster_name")]


def _target_columns() -> list[Any]:
    """A target's own columns, a cluster's included, named `t_<attribute>`."""
    return [*(_TARGETS.c[c].label(f"t_{c}")
              for c in ("type", "id", "name", "time_created", "time_updated")),
            *(_CLUSTERS.c[c].label(f"t_{c}")
              for c in ("multicast_enabled", "primary_node_id", "visibility"))]


def _with_members(query: Select[Any], target_id: Any, servers_on: Any) -> Select[Any]:
    return (query.outerjoin(_CLUSTERS, _CLUSTERS.c.id == target_id)
            .outerjoin(_SERVERS, servers_on)
            .outerjoin(_MEMBER, _MEMBER.c.id == _SERVERS.c.id)
            .outerjoin(_MEMBER_GROUP, _MEMBER_GROUP.c.id == _SERVERS.c.server_group_id)
            .outerjoin(_MEMBER_CLUSTER, _MEMBER_CLUSTER.c.id == _SERVERS.c.cluster_id))


def _members(rows: Sequence[Row[Any]]) -> list[dict[str, Any]]:
    return [views.server_fields(_Prefixed(r, "m_"), r.m_group_name, r.m_cluster_name)
            for r in rows if r.m_id is not None]


def _one_target(kind: type[ServerGroup] | type[Cluster]) -> Select[Any]:
    """A group or cluster and its servers: a row per server (one with none for no server)."""
    member_of = _SERVERS.c.server_group_id if kind is ServerGroup else _SERVERS.c.cluster_id
    query = select(*_target_columns(), *_member_columns()).select_from(_TARGETS)
    return (_with_members(query, _TARGETS.c.id, member_of == _TARGETS.c.id)
            .where(_TARGETS.c.id == bindparam("target_id"),
                   _TARGETS.c.type == ("SERVER_GROUP" if kind is ServerGroup else "CLUSTER"),
                   _TARGETS.c.environment_id == bindparam("env"))
            .order_by(_SERVERS.c.id))


_ONE_TARGET = {ServerGroup: _one_target(ServerGroup), Cluster: _one_target(Cluster)}


def group_or_cluster(session: Session, scope: Scope, target_id: int,
                     kind: type[ServerGroup] | type[Cluster]) -> dict[str, Any]:
    """One group or cluster of this environment, rendered, in one query."""
    rows = session.execute(_ONE_TARGET[kind], {"target_id": target_id,
                                                "env": scope.environment_id}
                           ).all() if as_id(target_id) is not None else []
    if not rows:
        raise NotFound(f"{'server group' if kind is ServerGroup else 'cluster'} {target_id} "
                       "not found")
    render = views.server_group_fields if kind is ServerGroup else views.cluster_fields
    return render(_Prefixed(rows[0], "t_"), _members(rows))


def _one_application() -> Select[Any]:
    instances, pins, history = AppInstance.__table__, RolloutPin.__table__, Deployment.__table__
    target_id = Application.target_id
    query = (select(*_APP_COLUMNS, *_target_columns(), *_member_columns(),
                    *(c.label(f"i_{c.key}") for c in (
                        instances.c.id, instances.c.server_id, instances.c.deployment_id,
                        instances.c.last_reported_status, instances.c.message,
                        instances.c.port, instances.c.serving, instances.c.discovered,
                        instances.c.time_created, instances.c.time_updated)),
                    history.c.number.label("pinned"))
             .select_from(Application)
             .join(Artifact, Artifact.id == Application.artifact_id)
             .join(_TARGETS, _TARGETS.c.id == target_id))
    return (_with_members(query, target_id, or_(
                _SERVERS.c.id == target_id, _SERVERS.c.server_group_id == target_id,
                _SERVERS.c.cluster_id == target_id))
            .outerjoin(instances, and_(instances.c.application_id == Application.id,
                                       instances.c.server_id == _SERVERS.c.id))
            .outerjoin(pins, and_(pins.c.application_id == Application.id,
                                  pins.c.server_id == _SERVERS.c.id))
            .outerjoin(history, history.c.id == pins.c.deployment_id)
            .where(Application.id == bindparam("app_id"),
                   Application.environment_id == bindparam("env"))
            .order_by(_SERVERS.c.id))


_ONE_APPLICATION = _one_application()


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
