"""`/hybrid/api/v1/clusters`."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Response
from fastapi.responses import JSONResponse

from corral.api import envelope, links, schemas
from corral.api.deps import OperatorScopeDep, ReadSessionDep, ScopeDep, SessionDep
from corral.db.models import Cluster
from corral.domain import clusters, reads, rollouts, views
from corral.domain.targets import get_target, list_targets
from corral.http_context import PlaneDep

PATH = "/hybrid/api/v1/clusters"
router = APIRouter(prefix=PATH, tags=["clusters"])
One = schemas.Data[schemas.ClusterOut]


@router.post("", status_code=201, response_model=One, response_model_exclude_unset=True,
             responses=links.created(201, "/data/id", *(
                 (method, f"{PATH}/{{cluster_id}}", "cluster_id")
                 for method in ("get", "patch", "delete")),
                 ("post", f"{PATH}/{{cluster_id}}/servers", "cluster_id")))
def create(
    session: SessionDep, plane: PlaneDep, scope: OperatorScopeDep, body: schemas.ClusterIn
) -> dict[str, Any]:
    cluster = clusters.create(
        session,
        scope,
        name=body.name,
        multicast=body.multicastEnabled,
        members=[m.model_dump() for m in body.servers],
        max_size=plane.settings.max_cluster_size,
    )
    return {"data": views.cluster(cluster)}


@router.get("", response_model=schemas.DataList[schemas.ClusterOut],
            response_model_exclude_unset=True)
def list_clusters(session: ReadSessionDep, scope: ScopeDep) -> JSONResponse:
    found = list_targets(session, scope, Cluster)
    return envelope.many([views.cluster(c) for c in found], len(found))


@router.get("/{cluster_id}", response_model=One, response_model_exclude_unset=True)
def get_cluster(session: ReadSessionDep, scope: ScopeDep, cluster_id: int) -> JSONResponse:
    return envelope.one(reads.group_or_cluster(session, scope, cluster_id, Cluster))


@router.patch("/{cluster_id}", response_model=One, response_model_exclude_unset=True)
def rename(
    session: SessionDep, scope: OperatorScopeDep, cluster_id: int, body: schemas.TargetPatchIn
) -> dict[str, Any]:
    """Rename, and/or set the cluster's default rollout policy for redeploys."""
    cluster = get_target(session, scope, cluster_id, Cluster)
    if body.name is not None:
        cluster = clusters.rename(session, scope, cluster_id, body.name)
    if "rollout" in body.model_fields_set:
        rollouts.set_default(session, cluster, body.rollout)
    return {"data": views.cluster(cluster)}


@router.post("/{cluster_id}/servers", response_model=One, response_model_exclude_unset=True)
def add_server(
    session: SessionDep,
    plane: PlaneDep,
    scope: OperatorScopeDep,
    cluster_id: int,
    body: schemas.ClusterMemberIn,
) -> dict[str, Any]:
    cluster = clusters.add_server(
        session, scope, cluster_id, body.model_dump(), plane.settings.max_cluster_size
    )
    return {"data": views.cluster(cluster)}


@router.patch("/{cluster_id}/servers/{server_id}", response_model=One,
              response_model_exclude_unset=True)
def modify_member(
    session: SessionDep, scope: OperatorScopeDep, cluster_id: int, server_id: int,
    body: schemas.ClusterMemberPatchIn,
) -> dict[str, Any]:
    """`{"serverIp"}`: where the member is reached (ARM's "modify clustering information")."""
    cluster = clusters.set_member_ip(session, scope, cluster_id, server_id, body.serverIp)
    return {"data": views.cluster(cluster)}


@router.delete("/{cluster_id}/servers/{server_id}", status_code=204)
def remove_server(
    session: SessionDep, scope: OperatorScopeDep, cluster_id: int, server_id: int
) -> Response:
    clusters.remove_server(session, scope, cluster_id, server_id)
    return Response(status_code=204)


@router.delete("/{cluster_id}", status_code=204)
def delete(session: SessionDep, scope: OperatorScopeDep, cluster_id: int) -> Response:
    clusters.delete_cluster(session, scope, cluster_id)
    return Response(status_code=204)
