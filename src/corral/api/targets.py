"""`/hybrid/api/v1/targets/{id}/components`: agent components as ARM's CLI uses them."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Body

from corral.api.deps import OperatorScopeDep, ScopeDep, SessionDep
from corral.db.models import TargetComponent
from corral.domain import components

router = APIRouter(prefix="/hybrid/api/v1/targets", tags=["targets"])


def _view(c: TargetComponent) -> dict[str, Any]:
    return {"id": c.id, "component": {"id": c.id, "name": c.name}, "enabled": c.enabled,
            "configuration": c.configuration}


@router.get("/{target_id}/components")
def list_components(session: SessionDep, scope: ScopeDep, target_id: int) -> dict[str, Any]:
    found = components.list_components(session, scope, target_id)
    return {"data": [_view(c) for c in found], "total": len(found)}


@router.patch("/{target_id}/components/{component_id}")
def update_component(session: SessionDep, scope: OperatorScopeDep, target_id: int, component_id: int,
                     body: dict[str, Any] = Body(...)) -> dict[str, Any]:
    return {"data": _view(components.update_component(session, scope, target_id, component_id,
                                                       body))}
