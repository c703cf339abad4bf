"""`/hybrid/api/v1/servers`: registration tokens, registration by CSR, servers."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Query, Response
from fastapi.responses import JSONResponse
from sqlalchemy import func, select
from sqlalchemy.orm import selectinload

from corral import __version__
from corral.api import schemas, views
from corral.api.deps import PlaneDep, ScopeDep, SessionDep, TokenDep
from corral.db.models import Server
from corral.domain import registration, servers
from corral.domain.targets import get_target

router = APIRouter(prefix="/hybrid/api/v1/servers", tags=["servers"])


@router.get("/registrationToken", response_model=schemas.Data[str])
def registration_token(session: SessionDep, plane: PlaneDep, scope: ScopeDep) -> dict[str, Any]:
    ttl = plane.settings.registration_token_ttl_seconds
    return {"data": registration.current_token(session, plane.sealer, scope.environment_id, ttl)}


@router.post("/registrationToken", response_model=schemas.Data[str])
def rotate_registration_token(
    session: SessionDep, plane: PlaneDep, scope: ScopeDep
) -> dict[str, Any]:
    """Corral's addition: revoke the environment's registration tokens and issue a new one."""
    ttl = plane.settings.registration_token_ttl_seconds
    return {"data": registration.rotate_token(session, plane.sealer, scope.environment_id, ttl)}


@router.post("", summary="Register a server (authorised by a registration token)")
def register(
    session: SessionDep, plane: PlaneDep, token: TokenDep, body: schemas.RegistrationIn
) -> dict[str, Any]:
    result = registration.register_server(
        session,
        plane.ca,
        token=token,
        name=body.muleLabel,
        csr_pem=body.signatureRequest,
        mule_version=body.muleVersion,
        gateway_version=body.gatewayVersion,
        agent_version=body.agentVersion or __version__,
        certificate_days=plane.settings.server_certificate_days,
    )
    return {
        "certificate": result.certificate.pem,
        "caCertificate": plane.ca.certificate_pem,
        "environmentUrls": {
            "authProxyUrl": plane.settings.api_url,
            "mcmWebsocketUrl": plane.settings.gateway_url,
        },
        "serverId": result.server.id,
    }


@router.get("", response_model=schemas.DataList[schemas.ServerOut], response_model_exclude_unset=True)
def list_servers(
    session: SessionDep,
    scope: ScopeDep,
    offset: int = Query(0, ge=0),
    limit: int | None = Query(None, ge=1, le=10000),
) -> JSONResponse:
    where = Server.environment_id == scope.environment_id
    total = session.scalar(select(func.count()).select_from(Server).where(where)) or 0
    query = (
        select(Server)
        .where(where)
        .order_by(Server.id)
        .offset(offset)
        .options(selectinload(Server.server_group), selectinload(Server.cluster))
    )
    if limit is not None:
        query = query.limit(limit)
    return views.many([views.server(s) for s in session.scalars(query)], total)


@router.get("/{server_id}", response_model=schemas.Data[schemas.ServerOut],
            response_model_exclude_unset=True)
def get_server(session: SessionDep, scope: ScopeDep, server_id: int) -> JSONResponse:
    return views.one(views.server(get_target(session, scope, server_id, Server)))


@router.patch("/{server_id}", response_model=schemas.Data[schemas.ServerOut],
              response_model_exclude_unset=True)
def rename_server(
    session: SessionDep, scope: ScopeDep, server_id: int, body: schemas.RenameIn
) -> dict[str, Any]:
    return {"data": views.server(servers.rename(session, scope, server_id, body.name))}


@router.delete("/{server_id}", status_code=204)
def delete_server(session: SessionDep, scope: ScopeDep, server_id: int) -> Response:
    servers.delete_server(session, scope, server_id)
    return Response(status_code=204)
