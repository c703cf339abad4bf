"""`/hybrid/api/v1/targets`: every target in one list, and agent components as ARM's CLI uses
them."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body
from fastapi.responses import JSONResponse

from corral.api import envelope
from corral.api.deps import OperatorScopeDep, ReadSessionDep, ScopeDep, SessionDep
from corral.domain import components, views
from corral.domain.targets import every_target

router = APIRouter(prefix="/hybrid/api/v1/targets", tags=["targets"])




@router.get("")
def list_targets(session: ReadSessionDep, scope: ScopeDep) -> JSONResponse:
    """Servers, server groups and clusters in one list, each with its `type`."""
    found = every_target(session, scope)
    return envelope.many([views.render_target(t) for t in found], len(found))


@router.get("/{target_id}/components")
def list_components(session: SessionDep, scope: ScopeDep, target_id: int) -> dict[str, Any]:
    found = components.list_components(session, scope, target_id)
    return {"data": [views.component(c) for c in found], "total": len(found)}


@router.patch("/{target_id}/components/{component_id}")
def update_component(session: SessionDep, scope: OperatorScopeDep, target_id: int, component_id: int,
                     body: Annotated[dict[str, Any], Body()]) -> dict[str, Any]:
    changed = components.update_component(session, scope, target_id, component_id, body)
    return {"data": views.component(changed)}
