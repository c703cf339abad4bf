"""`/hybrid/api/v1/alerts`: ARM's standalone alerts, in the shapes anypoint-cli's
`runtime-mgr standalone-alert` commands send and read, and each alert's firings."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, Path, Query, Response
from fastapi.responses import JSONResponse

from corral.api import envelope
from corral.api.deps import (
    OperatorScopeDep,
    PrincipalDep,
    ReadSessionDep,
    ScopeDep,
    SessionDep,
)
from corral.domain import alerts, views
from corral.http_context import PlaneDep

router = APIRouter(prefix="/hybrid/api/v1/alerts", tags=["alerts"])
PAGE_CAP = 500
AlertBody = Annotated[dict[str, Any], Body(
    description="name, severity (INFO, WARNING, CRITICAL), condition {resourceType, type, "
    "resources, threshold, operator, period}, actions [{type: email, emails, userIds, "
    "subject, content} or {type: webhook, url, secret}], enabled, description")]


def _shown(session: Any, alert: Any) -> dict[str, Any]:
    return views.alert(alert, alerts.looked_at(session, [alert.id]).get(alert.id))


def _one(session: Any, alert: Any) -> JSONResponse:
    return envelope.one(_shown(session, alert))


@router.get("")
def list_alerts(session: ReadSessionDep, scope: ScopeDep,
                offset: Annotated[int, Query(ge=0, le=10**9)] = 0,
                limit: Annotated[int | None, Query(ge=1, le=PAGE_CAP)] = None,
                sort: Annotated[str, Query(max_length=32)] = "createdAt") -> JSONResponse:
    """Without `limit`, every alert up to the page cap: clients that find an alert by name
    (go-facade) send none; anypoint-cli sends its own (10)."""
    found, total = alerts.listing(session, scope, offset, limit or PAGE_CAP, sort)
    looked_at = alerts.looked_at(session, [a.id for a in found])
    return envelope.many([views.alert(a, looked_at.get(a.id)) for a in found], total)


@router.post("")
def create(session: SessionDep, plane: PlaneDep, scope: OperatorScopeDep,
           body: AlertBody) -> JSONResponse:
    """200 with the new alert as a list of one, as ARM answers (go-facade's `postAlert`
    checks both)."""
    alert = alerts.create(session, scope, body, deny=plane.webhook_deny)
    return envelope.many([_shown(session, alert)], 1)


@router.get("/{alert_id}")
def describe(session: ReadSessionDep, scope: ScopeDep, alert_id: str) -> JSONResponse:
    return _one(session, alerts.get(session, scope, alert_id))


@router.patch("/{alert_id}")
def modify(session: SessionDep, plane: PlaneDep, scope: OperatorScopeDep, alert_id: str,
           body: AlertBody) -> JSONResponse:
    return _one(session, alerts.update(session, scope, alert_id, body,
                                       deny=plane.webhook_deny))


@router.delete("/{alert_id}")
def delete(session: SessionDep, scope: OperatorScopeDep, alert_id: str) -> Response:
    """200 with no body, as ARM answers (go-facade's `deleteSingleAlert` checks for 200)."""
    alerts.remove(session, scope, alert_id)
    return Response(status_code=200)


@router.get("/resource/{resource_id}/history")
def resource_history(session: ReadSessionDep, scope: ScopeDep, principal: PrincipalDep,
                     resource_id: Annotated[str, Path(max_length=64)],
                     offset: Annotated[int, Query(ge=0, le=10**9)] = 0,
                     limit: Annotated[int, Query(ge=1, le=500)] = 50) -> JSONResponse:
    """Every firing about one server, group, cluster or application, by any alert of the
    environment, newest first."""
    events, total = alerts.resource_history(session, scope, resource_id, offset, limit,
                                            detailed=principal.may("admin"))
    return envelope.many(events, total)


@router.get("/{alert_id}/history")
def history(session: ReadSessionDep, scope: ScopeDep, principal: PrincipalDep, alert_id: str,
            offset: Annotated[int, Query(ge=0, le=10**9)] = 0,
            limit: Annotated[int, Query(ge=1, le=500)] = 50) -> JSONResponse:
    """Every firing (FIRING, RESOLVED), newest first, with how each notification went."""
    events, total = alerts.history(session, scope, alert_id, offset, limit,
                                   detailed=principal.may("admin"))
    return envelope.many(events, total)
