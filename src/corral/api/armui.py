"""`/armui/api/v1`: the aggregated lists of ARM's own console, which scripts (kloudtek's
anypoint-tools, the usual Kubernetes de-registration script) read instead of the hybrid API."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from corral.api import envelope
from corral.api.deps import ReadSessionDep, ScopeDep
from corral.domain import reads, views
from corral.domain.targets import every_target

router = APIRouter(prefix="/armui/api/v1", tags=["console aggregation"])


@router.get("/servers")
def servers(session: ReadSessionDep, scope: ScopeDep) -> JSONResponse:
    """Servers on their own, server groups and clusters, each with `type`, its servers in
    `details.servers[]` and its applications in `deployments[]`."""
    apps, _ = reads.applications(session, scope)
    by_target: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for app in apps:
        by_target[app["target"]["id"]].append(app)
    found = every_target(session, scope, members=False)
    shown = reads.targets(session, [t.id for t in found])
    return envelope.many([views.armui_target(shown[t.id], by_target[t.id]) for t in found],
                         len(found))


@router.get("/applications")
def list_applications(session: ReadSessionDep, scope: ScopeDep) -> JSONResponse:
    apps, total = reads.applications(session, scope)
    return envelope.many([views.armui_application(a) for a in apps], total)
