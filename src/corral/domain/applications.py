"""Applications: deploy to a target, redeploy, start/stop, delete; one instance per server."""

from __future__ import annotations

from typing import Any, cast

from sqlalchemy import ColumnElement, Table, delete, func, insert, literal, or_, select
from sqlalchemy.orm import Session

from corral.artifacts import BlobInfo
from corral.db.models import (
    AppInstance,
    Application,
    Artifact,
    Deployment,
    Server,
    Target,
    now_ms,
)
from corral.domain import desired_state, measurements, narrative
from corral.domain.configuration import with_application_name
from corral.domain.identity import Scope
from corral.domain.names import as_id, check_application_name
from corral.domain.status import DESIRED_STATUSES
from corral.domain.targets import lock_rows
from corral.errors import Conflict, InvalidInput, NotFound

_servers = cast(Table, Server.__table__)


def record_artifact(
    session: Session, scope: Scope, *, name: str, file_name: str, blob: BlobInfo
) -> Artifact:
    artifact = Artifact(
        organization_id=scope.organization_id,
        name=name,
        file_name=file_name or f"{name}.zip",
        sha256=blob.sha256,
        sha1=blob.sha1,
        size=blob.size,
    )
    session.add(artifact)
    session.flush()
    return artifact


def resolve_target(session: Session, scope: Scope, target_id: object) -> Target:
    try:
        tid = int(target_id)  # type: ignore[call-overload]
    except (TypeError, ValueError) as exc:
        raise InvalidInput(f"targetId {target_id!r} is not an integer id") from exc
    target = session.get(Target, tid) if as_id(tid) is not None else None
    if target is None or target.environment_id != scope.environment_id:
        raise NotFound(f"target {tid} not found")
    reason = not_deployable(target)
    if reason is not None:
        raise Conflict(reason)
    return target


def not_deployable(target: Target) -> str | None:
    """Why applications cannot target this directly, or None. A member server is reached
    through its group or cluster. A server that never connected is refused, as ARM refuses it
    ("the target must be a running server"); one that connected once and is away now takes
    the deployment and converges when its agent returns."""
    if isinstance(target, Server):
        if target.status == "CREATED":
            return (f"server {target.id} has never connected: the target must be a running "
                    "server (start its agent with `corral agent run`, then deploy)")
        if target.server_group_id is not None:
            return (f"server {target.id} belongs to server group {target.server_group_id}; "
                    "deploy to the group")
        if target.cluster_id is not None:
            return f"server {target.id} belongs to cluster {target.cluster_id}; deploy to the cluster"
    return None


def check_deployable(session: Session, scope: Scope, name: object, target_id: object) -> Target:
    """Everything about a deployment that can be refused before the upload is kept."""
    app_name = check_application_name(name)
    target = resolve_target(session, scope, target_id)
    taken = session.scalar(
        select(Application.id).where(
            Application.target_id == target.id, Application.name == app_name
        )
    )
    if taken is not None:
        raise Conflict(f"an application named {app_name!r} is already deployed to target {target.id}")
    return target


def add(
    session: Session,
    scope: Scope,
    *,
    name: str,
    target: Target,
    artifact: Artifact,
    configuration: dict[str, Any],
) -> Application:
    app = Application(
        organization_id=scope.organization_id,
        environment_id=scope.environment_id,
        name=name,
        target_id=target.id,
        artifact_id=artifact.id,
        desired_status="STARTED",
        configuration=with_application_name(configuration, name),
        time_started=now_ms(),
    )
    session.add(app)
    session.flush()
    sync_instances(session, app, new=True)
    _changed(session, app.target_id)
    return app


def _reaches(target_id: int) -> ColumnElement[bool]:
    """Servers an application on this target runs on: the server itself, or the members."""
    return or_(_servers.c.id == target_id, _servers.c.server_group_id == target_id,
               _servers.c.cluster_id == target_id)


def sync_instances(session: Session, app: Application, *, new: bool = False) -> None:
    """One instance row per member server of the target, for what its agent reports: add the
    missing, drop the departed (a `new` application has none to drop). Two statements for any
    size of group; what each server should run is read from the application itself when it is
    pushed, so the caller tells the servers whose state moved (`desired_state.changed`)."""
    session.flush()
    now = now_ms()
    have = select(AppInstance.server_id).where(AppInstance.application_id == app.id)
    newcomers = select(
        literal(app.id), _servers.c.id, literal(0), literal("UNDEPLOYED"), literal(False),
        literal(now), literal(now),
    ).where(_reaches(app.target_id), _servers.c.id.not_in(have))
    session.execute(insert(AppInstance).from_select(
        ["application_id", "server_id", "deployment_id", "last_reported_status", "discovered",
         "time_created", "time_updated"], newcomers))
    session.expire(app, ["server_artifacts"])
    if new:
        return
    reached = select(_servers.c.id).where(_reaches(app.target_id))
    session.execute(delete(AppInstance).where(
        AppInstance.application_id == app.id, AppInstance.server_id.not_in(reached)))
    measurements.forget_instances(session, app.id, reached)


def _changed(session: Session, target_id: int) -> None:
    """Every server the target reaches is told (one UPDATE of revisions, one notification)."""
    desired_state.changed(session, servers=[target_id], targets=[target_id])


def split_off(session: Session, app: Application, server: Server) -> Application:
    """A server leaves a group: its instance becomes an application of the server itself."""
    own = Application(
        organization_id=app.organization_id,
        environment_id=app.environment_id,
        name=app.name,
        target_id=server.id,
        artifact_id=app.artifact_id,
        desired_status=app.desired_status,
        configuration=app.configuration,
        deployment_id=app.deployment_id,
        time_started=app.time_started,
    )
    session.add(own)
    session.flush()
    for inst in list(app.server_artifacts):
        if inst.server_id == server.id:
            inst.application_id = own.id
    measurements.move(session, app.id, server.id, own.id)
    session.flush()
    session.expire(app, ["server_artifacts"])
    return own


def get(session: Session, scope: Scope, app_id: int, *, lock: bool = False) -> Application:
    """With `lock`, changes of one application take turns (its row stays locked until the
    transaction ends)."""
    if lock and as_id(app_id) is not None:
        lock_rows(session, Application, [app_id])
    app = session.get(Application, app_id, populate_existing=lock) \
        if as_id(app_id) is not None else None
    if app is None or app.environment_id != scope.environment_id:
        raise NotFound(f"application {app_id} not found")
    return app


def instances_on(session: Session, server_id: int) -> list[tuple[AppInstance, Application]]:
    """Every application instance a server runs, by application name."""
    rows = session.execute(
        select(AppInstance, Application)
        .join(Application, Application.id == AppInstance.application_id)
        .where(AppInstance.server_id == server_id).order_by(Application.name))
    return [(inst, app) for inst, app in rows]


def pick_instance(app: Application, server_id: int | None) -> int:
    """The server of one of the application's instances (the only one, when not named)."""
    servers = [i.server_id for i in app.server_artifacts]
    if server_id is None:
        if len(servers) == 1:
            return servers[0]
        listed = ", ".join(map(str, servers)) or "none"
        raise InvalidInput(f"serverId is required: application {app.id} runs on servers {listed}")
    if server_id not in servers:
        raise NotFound(f"application {app.id} has no instance on server {server_id}")
    return server_id


def next_deployment(
    session: Session,
    scope: Scope,
    app_id: int,
    *,
    artifact: Artifact | None,
    configuration: dict[str, Any] | None,
) -> Application:
    """A new deployment of the application: new file, new configuration, or the same again."""
    app = get(session, scope, app_id, lock=True)
    if artifact is not None:
        app.artifact_id = artifact.id
    if configuration is not None:
        app.configuration = with_application_name(configuration, app.name)
    # after a revert the current number is below the newest one in the history
    latest = session.scalar(select(func.max(Deployment.number))
                            .where(Deployment.application_id == app.id)) or 0
    app.deployment_id = max(app.deployment_id, latest) + 1
    app.time_updated = now_ms()
    _changed(session, app.target_id)
    session.expire(app, ["artifact", "server_artifacts"])
    return app


def store_desired_status(session: Session, scope: Scope, app_id: int, status: str) -> Application:
    if status not in DESIRED_STATUSES:
        raise InvalidInput(f"desiredStatus must be one of {', '.join(DESIRED_STATUSES)}")
    app = get(session, scope, app_id, lock=True)
    if app.desired_status != status:
        app.desired_status = status
        app.time_updated = now_ms()
        if status == "STARTED":
            app.time_started = now_ms()
        _changed(session, app.target_id)
    return app


def delete_application(session: Session, scope: Scope, app_id: int) -> None:
    """No error when it does not exist (ARM answers 204 either way)."""
    try:
        app = get(session, scope, app_id, lock=True)
    except NotFound:
        return
    narrative.describe(f"delete {app.name}")
    _changed(session, app.target_id)
    measurements.forget(session, applications=[app.id])
    session.delete(app)
