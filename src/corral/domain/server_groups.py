"""Server groups: one deployment target made of individual servers, instances isolated."""

from __future__ import annotations

from sqlalchemy.orm import Session

from corral.db.models import Application, Server, ServerGroup
from corral.domain import applications, desired_state, measurements, narrative, rollouts
from corral.domain.identity import Scope
from corral.domain.names import as_id, check_name
from corral.domain.targets import (
    applications_on,
    check_name_free,
    check_size,
    get_target,
    joinable_server,
    joinable_servers,
    lock_members,
)
from corral.errors import Conflict, NotFound


def create(
    session: Session, scope: Scope, *, name: object, server_ids: list[object], max_size: int | None
) -> ServerGroup:
    group_name = check_name(name, "name")
    check_name_free(session, scope, ServerGroup, group_name)
    servers = joinable_servers(session, scope, server_ids)
    check_size(0, len(servers), max_size, "server group")
    group = ServerGroup(
        organization_id=scope.organization_id, environment_id=scope.environment_id, name=group_name
    )
    session.add(group)
    session.flush()
    for server in servers:
        server.server_group_id = group.id
    narrative.describe(f"create group {group.name}")
    # nothing its servers run changes: a new group has no applications yet (membership is not
    # part of a server's desired state), so nothing is pushed
    return group


def rename(session: Session, scope: Scope, group_id: int, name: object) -> ServerGroup:
    group = get_target(session, scope, group_id, ServerGroup, lock=True)
    new_name = check_name(name, "name")
    if new_name != group.name:
        check_name_free(session, scope, ServerGroup, new_name)
        narrative.describe(f"rename group {group.name} to {new_name}")
        group.name = new_name
    return group


def add_server(
    session: Session, scope: Scope, group_id: int, server_id: object, max_size: int | None
) -> ServerGroup:
    """The group's applications are deployed to the newcomer."""
    group = get_target(session, scope, group_id, ServerGroup, lock=True)
    server = joinable_server(session, scope, server_id)
    check_size(len(group.servers), 1, max_size, "server group")
    server.server_group_id = group.id
    narrative.describe(f"add {server.name} to group {group.name}")
    session.flush()
    session.expire(group, ["servers"])
    apps = applications_on(session, group.id)
    for app in apps:
        applications.sync_instances(session, app)
    if apps:
        desired_state.changed(session, servers=[server.id])
    return group


def remove_server(session: Session, scope: Scope, group_id: int, server_id: int) -> None:
    """The server keeps the group's applications, now as its own."""
    group = get_target(session, scope, group_id, ServerGroup, lock=True)
    lock_members(session, group)
    server = session.get(Server, server_id) if as_id(server_id) is not None else None
    if server is None or server.server_group_id != group.id:
        raise NotFound(f"server {server_id} is not in server group {group_id}")
    apps = applications_on(session, group.id)
    _no_rollout(session, apps, f"remove server {server.id} from server group {group.id}")
    for app in apps:
        applications.split_off(session, app, server)
    server.server_group_id = None
    narrative.describe(f"remove {server.name} from group {group.name}")
    if apps:  # the same applications, now under their own ids
        desired_state.changed(session, servers=[server.id])


def delete_group(session: Session, scope: Scope, group_id: int) -> None:
    """As ARM does: each group application is cloned onto each of the group's servers as that
    server's own (same artifact, properties and deployment: nothing restarts), then the group
    goes."""
    group = get_target(session, scope, group_id, ServerGroup, lock=True)
    lock_members(session, group)
    apps = applications_on(session, group.id)
    _no_rollout(session, apps, f"delete server group {group.id}")
    servers = list(group.servers)
    for app in apps:
        for server in servers:
            applications.split_off(session, app, server)
        session.delete(app)
    measurements.forget(session, applications=[a.id for a in apps])
    for server in servers:
        server.server_group_id = None
    session.flush()
    narrative.describe(f"delete group {group.name}")
    session.delete(group)
    if apps:  # the same applications, now under the servers' own ids
        desired_state.changed(session, servers=[s.id for s in servers])


def _no_rollout(session: Session, apps: list[Application], what: str) -> None:
    """A server leaving takes its own copy of each application as it runs it; while a rollout
    pins servers to different deployments that copy would be wrong, and the history that a
    rollback needs would go with the group's application. Refused until the rollout ends."""
    for app in apps:
        if rollouts.in_progress(session, app.id) is not None:
            raise Conflict(f"cannot {what}: application {app.name!r} has a rollout in "
                           "progress; promote, cancel or let it finish first")
