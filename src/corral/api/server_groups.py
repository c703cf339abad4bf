"""`/hybrid/api/v1/serverGroups`."""

from __future__ import annotations

from fastapi import APIRouter, Response
from fastapi.responses import JSONResponse

from corral.api import envelope, links, schemas
from corral.api.deps import OperatorScopeDep, ReadSessionDep, ScopeDep, SessionDep
from corral.db.models import ServerGroup
from corral.domain import reads, rollouts, server_groups
from corral.domain.targets import get_target, list_targets
from corral.http_context import PlaneDep

PATH = "/hybrid/api/v1/serverGroups"
router = APIRouter(prefix=PATH, tags=["server groups"])
Group = schemas.Data[schemas.ServerGroupOut]


@router.post("", status_code=201, response_model=Group, response_model_exclude_unset=True,
             responses=links.created(201, "/data/id", *(
                 (method, f"{PATH}/{{group_id}}", "group_id")
                 for method in ("get", "patch", "delete"))))
def create(
    session: SessionDep, plane: PlaneDep, scope: OperatorScopeDep, body: schemas.ServerGroupIn
) -> JSONResponse:
    group = server_groups.create(
        session, scope, name=body.name, server_ids=list(body.serverIds),
        max_size=plane.settings.max_group_size,
    )
    return envelope.one(reads.group_or_cluster(session, scope, group.id, ServerGroup),
                        status_code=201)


@router.get("", response_model=schemas.DataList[schemas.ServerGroupOut],
            response_model_exclude_unset=True)
def list_groups(session: ReadSessionDep, scope: ScopeDep) -> JSONResponse:
    groups = list_targets(session, scope, ServerGroup)
    shown = reads.targets(session, [g.id for g in groups])
    return envelope.many([shown[g.id] for g in groups], len(groups))


@router.get("/{group_id}", response_model=Group, response_model_exclude_unset=True)
def get_group(session: ReadSessionDep, scope: ScopeDep, group_id: int) -> JSONResponse:
    return envelope.one(reads.group_or_cluster(session, scope, group_id, ServerGroup))


@router.patch("/{group_id}", response_model=Group, response_model_exclude_unset=True)
def rename(
    session: SessionDep, scope: OperatorScopeDep, group_id: int, body: schemas.TargetPatchIn
) -> JSONResponse:
    """Rename, and/or set the group's default rollout policy for redeploys."""
    group = get_target(session, scope, group_id, ServerGroup)
    if body.name is not None:
        group = server_groups.rename(session, scope, group_id, body.name)
    if "rollout" in body.model_fields_set:
        rollouts.set_default(session, group, body.rollout)
    return envelope.one(reads.group_or_cluster(session, scope, group.id, ServerGroup))


@router.post("/{group_id}/servers/{server_id}", response_model=Group,
             response_model_exclude_unset=True)
def add_server(
    session: SessionDep, plane: PlaneDep, scope: OperatorScopeDep, group_id: int, server_id: int
) -> JSONResponse:
    group = server_groups.add_server(
        session, scope, group_id, server_id, plane.settings.max_group_size
    )
    return envelope.one(reads.group_or_cluster(session, scope, group.id, ServerGroup))


@router.delete("/{group_id}/servers/{server_id}", status_code=204)
def remove_server(session: SessionDep, scope: OperatorScopeDep, group_id: int, server_id: int) -> Response:
    server_groups.remove_server(session, scope, group_id, server_id)
    return Response(status_code=204)


@router.delete("/{group_id}", status_code=204)
def delete(session: SessionDep, scope: OperatorScopeDep, group_id: int) -> Response:
    server_groups.delete_group(session, scope, group_id)
    return Response(status_code=204)
