"""`/hybrid/api/v1/servers`: registration tokens, registration by CSR, servers."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import JSONResponse

from corral import __version__
from corral.api import envelope, links, schemas
from corral.api.deps import OperatorScopeDep, ReadSessionDep, ScopeDep, SessionDep, TokenDep
from corral.controlplane import ControlPlane
from corral.db.session import transaction
from corral.domain import certificates, reads, registration, servers, views
from corral.errors import Unauthenticated
from corral.http_context import PlaneDep, SourceDep, note_actor, note_environment

log = logging.getLogger(__name__)

PATH = "/hybrid/api/v1/servers"
router = APIRouter(prefix=PATH, tags=["servers"])


@router.get("/registrationToken", response_model=schemas.RegistrationTokenOut)
def registration_token(
    session: SessionDep, plane: PlaneDep, scope: OperatorScopeDep
) -> dict[str, Any]:
    """The environment's reusable registration token (ARM's), and the CA fingerprint an agent
    pins when it registers over plain HTTP."""
    ttl = plane.settings.registration_token_ttl_seconds
    return {"data": registration.current_token(session, plane.sealer, scope.environment_id, ttl),
            "caFingerprint": plane.ca.fingerprint}


@router.post("/registrationToken", response_model=schemas.RegistrationTokenOut)
def rotate_registration_token(
    session: SessionDep, plane: PlaneDep, scope: OperatorScopeDep
) -> dict[str, Any]:
    """Corral's addition: revoke the environment's registration tokens and issue a new one."""
    ttl = plane.settings.registration_token_ttl_seconds
    return {"data": registration.rotate_token(session, plane.sealer, scope.environment_id, ttl),
            "caFingerprint": plane.ca.fingerprint}




@router.post("/registrationTokens", status_code=201)
def create_registration_token(
    session: SessionDep, plane: PlaneDep, scope: OperatorScopeDep,
    body: schemas.RegistrationTokenIn,
) -> dict[str, Any]:
    """Corral's addition: a token with a use limit and a lifetime of its own (revocable)."""
    token, row = registration.create_token(
        session, plane.sealer, scope.environment_id,
        ttl_seconds=body.expiresInSeconds or plane.settings.registration_token_ttl_seconds,
        max_uses=body.maxUses)
    return {"data": token, "caFingerprint": plane.ca.fingerprint, **views.registration_token(row)}


@router.get("/registrationTokens")
def list_registration_tokens(session: ReadSessionDep, scope: OperatorScopeDep) -> dict[str, Any]:
    """Every registration token of the environment, without the tokens themselves."""
    rows = registration.list_tokens(session, scope.environment_id)
    return {"data": [views.registration_token(r) for r in rows], "total": len(rows)}


@router.delete("/registrationTokens/{token_id}", status_code=204)
def revoke_registration_token(
    session: SessionDep, scope: OperatorScopeDep, token_id: str
) -> Response:
    registration.revoke_token(session, scope.environment_id, token_id)
    return Response(status_code=204)


@router.post("", summary="Register a server (authorised by a registration token)",
             responses={429: {"model": schemas.ErrorOut}, **links.created(200, "/serverId", *(
                 (method, f"{PATH}/{{server_id}}", "server_id")
                 for method in ("get", "patch", "delete")))})
def register(
    request: Request, plane: PlaneDep, token: TokenDep, source: SourceDep,
    body: schemas.RegistrationIn
) -> dict[str, Any]:
    """Rate-limited per source address; failed tokens count like failed sign-ins."""
    note_actor(request, "registrationToken", None, body.muleLabel)
    plane.registrations.admit(source)
    try:
        with transaction(plane.readers) as session:
            admission = registration.admit(session, token=token, name=body.muleLabel,
                                           csr_pem=body.signatureRequest)
        note_actor(request, "registrationToken", None, body.muleLabel,
                   admission.organization_id)
        note_environment(request, admission.environment_id)
        with transaction(plane.sessions) as session:
            result = registration.register_server(
                session,
                plane.ca,
                admission,
                mule_version=body.muleVersion,
                gateway_version=body.gatewayVersion,
                agent_version=body.agentVersion or __version__,
                certificate_seconds=plane.settings.agent_cert_ttl_seconds,
            )
            server_id, server_name = result.server.id, result.server.name
    except Unauthenticated:
        plane.registrations.failed(source)
        log.warning("registration refused from %s: bad registration token", source)
        raise
    log.info("server %s (%r) registered from %s", server_id, server_name, source)
    return _registered(plane, result.certificate.pem, server_id)


def _registered(plane: ControlPlane, certificate: str, server_id: int) -> dict[str, Any]:
    """ARM's answer to a registration: the certificate, the CAs to trust (both during a CA
    rotation, the signing one first), where the gateway is."""
    return {
        "certificate": certificate,
        "caCertificate": plane.authorities.bundle_pem,
        "environmentUrls": {
            "authProxyUrl": plane.settings.api_url,
            "mcmWebsocketUrl": plane.settings.mcm_websocket_url,
            "gatewayUrls": plane.settings.agent_gateway_urls,
        },
        "serverId": server_id,
    }


@router.get("", response_model=schemas.DataList[schemas.ServerOut], response_model_exclude_unset=True)
def list_servers(
    session: ReadSessionDep,
    scope: ScopeDep,
    offset: int = Query(0, ge=0, le=2**31 - 1),
    limit: int | None = Query(None, ge=1, le=10000),
) -> JSONResponse:
    found, total = reads.servers(session, scope, offset=offset, limit=limit)
    return envelope.many(found, total)


@router.get("/{server_id}", response_model=schemas.Data[schemas.ServerOut],
            response_model_exclude_unset=True)
def get_server(session: ReadSessionDep, scope: ScopeDep, server_id: int) -> JSONResponse:
    return envelope.one(reads.server(session, scope, server_id))


@router.patch("/{server_id}", response_model=schemas.Data[schemas.ServerOut],
              response_model_exclude_unset=True)
def rename_server(
    session: SessionDep, scope: OperatorScopeDep, server_id: int, body: schemas.RenameIn
) -> dict[str, Any]:
    return {"data": views.server(servers.rename(session, scope, server_id, body.name))}


@router.delete("/{server_id}", status_code=204)
def delete_server(session: SessionDep, scope: OperatorScopeDep, server_id: int) -> Response:
    servers.delete_server(session, scope, server_id)
    return Response(status_code=204)


@router.post("/{server_id}/certificate", status_code=202,
             response_model=schemas.Data[schemas.ServerOut], response_model_exclude_unset=True)
def renew_certificate(session: SessionDep, scope: OperatorScopeDep,
                      server_id: int) -> dict[str, Any]:
    """Corral's addition: the server's agent renews its certificate at its next contact (at
    once, when it is connected); `certificateRenewalDue` shows it asked until it has."""
    return {"data": views.server(certificates.request_renewal(session, scope, server_id))}


@router.post("/{server_id}/reregistration",
             summary="A new certificate for a server whose certificate expired (authorised by "
                     "a registration token and the server's old key)",
             responses={429: {"model": schemas.ErrorOut}})
def reregister(
    request: Request, plane: PlaneDep, token: TokenDep, source: SourceDep, server_id: int,
    body: schemas.ReregistrationIn,
) -> dict[str, Any]:
    """Corral's addition, used by `corral agent reregister`. Rate-limited and counted like a
    registration: a failed token counts as a failed sign-in from that address."""
    note_actor(request, "registrationToken", None, str(server_id))
    plane.registrations.admit(source)
    try:
        with transaction(plane.sessions) as session:
            result = certificates.reregister(
                session, plane.authorities, token=token, server_id=server_id,
                csr_pem=body.signatureRequest, certificate_pem=body.certificate,
                proof=body.proof, seconds=plane.settings.agent_cert_ttl_seconds)
            note_environment(request, result.server.environment_id)
            name = result.server.name
    except Unauthenticated:
        plane.registrations.failed(source)
        log.warning("re-registration of server %s refused from %s", server_id, source)
        raise
    log.info("server %s (%r) re-registered from %s", server_id, name, source)
    return _registered(plane, result.certificate.pem, server_id)
