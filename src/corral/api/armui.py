"""`/armui/api/v1`: the aggregated lists of ARM's own console, which scripts (kloudtek's
anypoint-tools, the usual Kubernetes de-registration script) read instead of the hybrid API."""

from __future__ import annotations

from collections import defaultdict

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from corral.api import envelope
from corral.api.deps import ReadSessionDep, ScopeDep
from corral.db.models import Application
from corral.domain import applications, views
from corral.domain.targets import every_target

router = APIRouter(prefix="/armui/api/v1", tags=["console aggregation"])


@router.get("/servers")
def servers(session: ReadSessionDep, scope: ScopeDep) -> JSONResponse:
    """Servers on their own, server groups and clusters, each with `type`, its servers in
    `details.servers[]` and its applications in `deployments[]`."""
    apps, _ = applications.list_applications(session, scope)
    by_target: dict[int, list[Application]] = defaultdict(list)
    for app in apps:
        by_target[app.target_id].append(app)
    found = every_target(session, scope, members=False)
    return envelope.many([views.armui_target(t, by_target[t.id]) for t in found], len(found))


@router.get("/applications")
def list_applications(session: ReadSessionDep, scope: ScopeDep) -> JSONResponse:
    apps, total = applications.list_applications(session, scope)
    return envelope.many([views.armui_application(a) for a in apps], total)
