"""`/hybrid/api/v1/alerts`: ARM's standalone alerts, in the shapes anypoint-cli's
`runtime-mgr standalone-alert` commands send and read, and each alert's firings."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, Query, Response
from fastapi.responses import JSONResponse

from corral.api import envelope
from corral.api.deps import (
    OperatorScopeDep,
    PrincipalDep,
    ReadSessionDep,
    ScopeDep,
    SessionDep,
)
from corral.domain import alerts
from corral.http_context import PlaneDep

router = APIRouter(prefix="/hybrid/api/v1/alerts", tags=["alerts"])
AlertBody = Annotated[dict[str, Any], Body(
    description="name, severity (INFO, WARNING, CRITICAL), condition {resourceType, type, "
    "resources, threshold, operator, period}, actions [{type: email, emails, userIds, "
    "subject, content} or {type: webhook, url, secret}], enabled, description")]


def _one(session: Any, alert: Any, status_code: int = 200) -> JSONResponse:
    return envelope.one(alerts.view(alert, alerts.looked_at(session, [alert.id]).get(alert.id)),
                        status_code=status_code)


@router.get("")
def list_alerts(session: ReadSessionDep, scope: ScopeDep,
                offset: Annotated[int, Query(ge=0, le=10**9)] = 0,
                limit: Annotated[int, Query(ge=1, le=500)] = 25,
                sort: Annotated[str, Query(max_length=32)] = "createdAt") -> JSONResponse:
    found, total = alerts.listing(session, scope, offset, limit, sort)
    looked_at = alerts.looked_at(session, [a.id for a in found])
    return envelope.many([alerts.view(a, looked_at.get(a.id)) for a in found], total)


@router.post("", status_code=201)
def create(session: SessionDep, plane: PlaneDep, scope: OperatorScopeDep,
           body: AlertBody) -> JSONResponse:
    return _one(session, alerts.create(session, scope, body, deny=plane.webhook_deny), 201)


@router.get("/{alert_id}")
def describe(session: ReadSessionDep, scope: ScopeDep, alert_id: str) -> JSONResponse:
    return _one(session, alerts.get(session, scope, alert_id))


@router.patch("/{alert_id}")
def modify(session: SessionDep, plane: PlaneDep, scope: OperatorScopeDep, alert_id: str,
           body: AlertBody) -> JSONResponse:
    return _one(session, alerts.update(session, scope, alert_id, body,
                                       deny=plane.webhook_deny))


@router.delete("/{alert_id}", status_code=204)
def delete(session: SessionDep, scope: OperatorScopeDep, alert_id: str) -> Response:
    alerts.remove(session, scope, alert_id)
    return Response(status_code=204)


@router.get("/{alert_id}/history")
def history(session: ReadSessionDep, scope: ScopeDep, principal: PrincipalDep, alert_id: str,
            offset: Annotated[int, Query(ge=0, le=10**9)] = 0,
            limit: Annotated[int, Query(ge=1, le=500)] = 50) -> JSONResponse:
    """Every firing (FIRING, RESOLVED), newest first, with how each notification went."""
    events, total = alerts.history(session, scope, alert_id, offset, limit,
                                   detailed=principal.may("admin"))
    return envelope.many(events, total)
