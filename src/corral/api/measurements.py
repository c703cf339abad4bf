"""`GET /hybrid/api/v1/servers/{id}/metrics` and `/applications/{id}/metrics`: series of the
agents' measurements, `?from=&to=` (epoch milliseconds or ISO 8601) and `?step=` (seconds)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Query
from fastapi.responses import JSONResponse

from corral.api import envelope
from corral.api.deps import ReadSessionDep, ScopeDep
from corral.db.models import Server
from corral.domain import applications, measurements
from corral.domain.targets import get_target
from corral.errors import InvalidInput
from corral.http_context import PlaneDep

router = APIRouter(prefix="/hybrid/api/v1", tags=["metrics"])
Instant = Annotated[str | None, Query(max_length=40, description="epoch ms or ISO 8601")]
Step = Annotated[int | None, Query(ge=1, le=86400, description="seconds per point")]


def _instant(value: str | None, name: str) -> int | None:
    if value is None:
        return None
    if value.isdigit() and len(value) <= 15:
        return int(value)
    try:
        return int(datetime.fromisoformat(value).timestamp() * 1000)
    except (ValueError, OverflowError, OSError) as exc:
        raise InvalidInput(f"{name} is epoch milliseconds or an ISO 8601 time") from exc


@router.get("/servers/{server_id}/metrics")
def server_metrics(session: ReadSessionDep, plane: PlaneDep, scope: ScopeDep, server_id: int,
                   frm: Annotated[str | None, Query(alias="from", max_length=40)] = None,
                   to: Instant = None, step: Step = None) -> JSONResponse:
    server = get_target(session, scope, server_id, Server)
    start, end, every = measurements.window(_instant(frm, "from"), _instant(to, "to"), step,
                                            plane.settings.metrics_seconds)
    return envelope.one(measurements.server_series(session, server.id, start, end, every))


@router.get("/applications/{app_id}/metrics")
def application_metrics(session: ReadSessionDep, plane: PlaneDep, scope: ScopeDep, app_id: int,
                        frm: Annotated[str | None, Query(alias="from", max_length=40)] = None,
                        to: Instant = None, step: Step = None,
                        serverId: Annotated[int | None, Query(ge=1, le=2**31)] = None,
                        ) -> JSONResponse:
    """Summed over the application's instances, or one server's with `serverId`."""
    app = applications.get(session, scope, app_id)
    start, end, every = measurements.window(_instant(frm, "from"), _instant(to, "to"), step,
                                            plane.settings.metrics_seconds)
    return envelope.one(measurements.application_series(session, app.id, start, end, every,
                                                        serverId))
