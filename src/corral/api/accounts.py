"""Access management (`/accounts`): login, tokens, who am I, organizations and environments."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Query, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import PlainTextResponse
from sqlalchemy.orm import Session

from corral.api import links, schemas
from corral.api.bodies import json_or_form, openapi_json_or_form, read_small
from corral.api.deps import AdminDep, PrincipalDep, ReadSessionDep, SessionDep, TokenDep
from corral.controlplane import forget_first_password
from corral.db.models import ConnectedApp, User, now_ms
from corral.domain import accounts, audit, environments, views
from corral.domain.identity import Principal
from corral.errors import InvalidInput, Unauthenticated
from corral.http_context import PlaneDep, SourceDep, note_actor

router = APIRouter(prefix="/accounts", tags=["access management"])


@router.post(
    "/login",
    response_model=schemas.LoginOut,
    openapi_extra=openapi_json_or_form(schemas.LoginIn),
    responses={401: {"content": {"text/plain": {"example": "Unauthorized"}}},
               429: {"model": schemas.ErrorOut}},
)
async def login(request: Request, plane: PlaneDep, source: SourceDep) -> Any:
    """JSON, form fields, or (as some scripts send them) `username` and `password` in the query
    string. Bad credentials answer 401 with the plain-text body `Unauthorized`, ARM's answer,
    which scripts and the mule-maven-plugin look for."""
    raw = await read_small(request)
    if not raw.strip() and "username" in request.query_params:
        body = schemas.LoginIn.model_validate(dict(request.query_params))
    else:
        body = await json_or_form(request, schemas.LoginIn, raw)
    note_actor(request, "user", None, body.username)
    try:
        token = await run_in_threadpool(plane.signin.login, body.username, body.password,
                                        source, plane.settings.user_token_ttl_seconds)
    except Unauthenticated:
        return PlainTextResponse("Unauthorized", status_code=401,
                                 headers={"WWW-Authenticate": "Bearer"})
    return {"access_token": token, "token_type": "bearer",
            "redirectUrl": "/accounts/#/cs/profile/home"}


@router.post(
    "/api/v2/oauth2/token",
    response_model=schemas.TokenOut,
    openapi_extra=openapi_json_or_form(schemas.TokenIn),
    responses={429: {"model": schemas.ErrorOut}},
)
async def oauth2_token(request: Request, plane: PlaneDep, source: SourceDep) -> dict[str, Any]:
    body = await json_or_form(request, schemas.TokenIn)
    note_actor(request, "connectedApp", body.client_id[:255] if body.client_id else None)
    if body.grant_type != "client_credentials":
        raise InvalidInput("grant_type must be client_credentials")
    ttl = plane.settings.client_token_ttl_seconds
    token = await run_in_threadpool(plane.signin.client_credentials, body.client_id,
                                    body.client_secret, source, ttl)
    return {"access_token": token, "token_type": "bearer", "expires_in": ttl}


@router.post("/api/logout", status_code=204)
def logout(session: SessionDep, principal: PrincipalDep) -> Response:
    accounts.logout(session, principal)
    return Response(status_code=204)


def _me(session: Session, principal: Principal) -> dict[str, Any]:
    who = accounts.whoami(session, principal)
    return views.user(who) if isinstance(who, User) else views.app_as_user(who)


@router.get("/api/me")
def me(session: ReadSessionDep, principal: PrincipalDep, raw_token: TokenDep) -> dict[str, Any]:
    token = {"access_token": raw_token,
             "expires_in": max(0, (principal.expires_at - now_ms()) // 1000)}
    if principal.user_id is not None:
        return {"access_token": token, "user": _me(session, principal)}
    app = session.get_one(ConnectedApp, principal.client_id)
    return {
        "access_token": token,
        "client": views.connected_app(app),
        "organization": views.organization_ref(app.organization),
        "user": _me(session, principal),
    }


@router.get("/api/users/me", response_model=schemas.UserOut)
def users_me(session: ReadSessionDep, principal: PrincipalDep) -> dict[str, Any]:
    return _me(session, principal)


@router.get("/api/profile", response_model=schemas.UserOut)
def profile(session: ReadSessionDep, principal: PrincipalDep) -> dict[str, Any]:
    return _me(session, principal)


@router.get("/api/organizations/{org_id}", response_model=schemas.OrganizationOut)
def get_organization(session: ReadSessionDep, principal: PrincipalDep, org_id: str) -> dict[str, Any]:
    return views.organization(accounts.own_organization(session, principal, org_id))


@router.get("/api/organizations/{org_id}/hierarchy", response_model=schemas.HierarchyOut)
def get_hierarchy(session: ReadSessionDep, principal: PrincipalDep, org_id: str) -> dict[str, Any]:
    """The business-group tree (older mule-maven-plugin versions walk it): one organization."""
    return views.hierarchy(accounts.own_organization(session, principal, org_id))


@router.get(
    "/api/organizations/{org_id}/members", response_model=schemas.DataList[schemas.MemberOut]
)
def list_members(session: ReadSessionDep, principal: PrincipalDep, org_id: str) -> dict[str, Any]:
    """Any member may list the organization's users (anypoint-cli resolves alert recipients
    with it); names and addresses only, never roles or environments."""
    org = accounts.own_organization(session, principal, org_id)
    found = accounts.list_users(session, org.id)
    return {"data": [views.member(u) for u in found], "total": len(found)}


@router.get(
    "/api/organizations/{org_id}/clients/{client_id}", response_model=schemas.ConnectedAppOut,
    response_model_exclude_unset=True,
)
def get_client(
    session: ReadSessionDep, principal: PrincipalDep, org_id: str, client_id: str
) -> dict[str, Any]:
    """A connected app's details: for an admin, or for the app itself."""
    org = accounts.own_organization(session, principal, org_id)
    if principal.client_id != client_id:
        principal.require("admin")
    return views.connected_app(accounts.get_connected_app(session, org.id, client_id))


@router.get(
    "/api/organizations/{org_id}/environments",
    response_model=schemas.DataList[schemas.EnvironmentOut],
)
def list_environments(
    session: ReadSessionDep, principal: PrincipalDep, org_id: str
) -> dict[str, Any]:
    org = accounts.own_organization(session, principal, org_id)
    envs = accounts.list_environments(session, org.id)
    return {"data": [views.environment(e) for e in envs], "total": len(envs)}


@router.get(
    "/api/organizations/{org_id}/environments/{env_id}", response_model=schemas.EnvironmentOut
)
def get_environment(
    session: ReadSessionDep, principal: PrincipalDep, org_id: str, env_id: str
) -> dict[str, Any]:
    org = accounts.own_organization(session, principal, org_id)
    return views.environment(accounts.get_environment(session, org.id, env_id))


@router.post(
    "/api/organizations/{org_id}/environments",
    status_code=201,
    response_model=schemas.EnvironmentOut,
    responses=links.created(201, "/id", *(
        (method, "/accounts/api/organizations/{org_id}/environments/{env_id}", "env_id")
        for method in ("get", "put", "delete"))),
)
def create_environment(
    session: SessionDep, principal: AdminDep, org_id: str, body: schemas.EnvironmentIn
) -> dict[str, Any]:
    org = accounts.own_organization(session, principal, org_id)
    return views.environment(accounts.create_environment(session, org.id, body.name, body.type))


@router.put(
    "/api/organizations/{org_id}/environments/{env_id}", response_model=schemas.EnvironmentOut
)
def rename_environment(
    session: SessionDep, principal: AdminDep, org_id: str, env_id: str,
    body: schemas.EnvironmentRenameIn,
) -> dict[str, Any]:
    org = accounts.own_organization(session, principal, org_id)
    return views.environment(environments.rename(session, org.id, env_id, body.name))


@router.delete("/api/organizations/{org_id}/environments/{env_id}", status_code=204)
def delete_environment(
    session: SessionDep, principal: AdminDep, org_id: str, env_id: str
) -> Response:
    """Only an environment that holds no server, group, cluster or application (409), and not
    the organization's last one."""
    org = accounts.own_organization(session, principal, org_id)
    environments.delete_environment(session, org.id, env_id)
    return Response(status_code=204)


@router.get(
    "/api/organizations/{org_id}/auditEvents",
    response_model=schemas.DataList[schemas.AuditEventOut],
)
def audit_events(
    session: ReadSessionDep,
    principal: PrincipalDep,
    plane: PlaneDep,
    org_id: str,
    environment_id: str | None = Query(None, alias="environmentId", max_length=64),
    actor: str | None = Query(None, max_length=255),
    resource: str | None = Query(None, max_length=1024),
    action: str | None = Query(None, max_length=255),
    since: int | None = Query(None, alias="from", ge=0, le=2**62,
                              description="milliseconds since the epoch, inclusive"),
    until: int | None = Query(None, alias="to", ge=0, le=2**62,
                              description="milliseconds since the epoch, exclusive"),
    offset: int = Query(0, ge=0, le=2**31 - 1),
    limit: int = Query(100, ge=1, le=audit.MAX_PAGE),
) -> dict[str, Any]:
    """Changes asked of the control plane, newest first: admins read the whole organization,
    other roles the events of their environments. Events cannot be changed or deleted."""
    plane.audit.store()  # the events of answers already given, before this read begins
    found, total = audit.search(session, principal, org_id, environment_id=environment_id,
                                actor=actor, resource=resource, action=action, since=since,
                                until=until, offset=offset, limit=limit)
    return {"data": found, "total": total}


@router.get(
    "/api/organizations/{org_id}/users", response_model=schemas.DataList[schemas.UserOut]
)
def list_users(session: ReadSessionDep, principal: AdminDep, org_id: str) -> dict[str, Any]:
    org = accounts.own_organization(session, principal, org_id)
    found = accounts.list_users(session, org.id)
    return {"data": [views.user(u) for u in found], "total": len(found)}


@router.post(
    "/api/organizations/{org_id}/users", status_code=201, response_model=schemas.UserOut,
    responses=links.created(201, "/id", *(
        (method, "/accounts/api/organizations/{org_id}/users/{user_id}", "user_id")
        for method in ("patch", "delete"))),
)
def create_user(
    session: SessionDep, principal: AdminDep, org_id: str, body: schemas.UserIn
) -> dict[str, Any]:
    org = accounts.own_organization(session, principal, org_id)
    user = accounts.create_user(
        session, org.id, body.username, body.password,
        first_name=body.firstName, last_name=body.lastName, email=body.email,
        role=body.role, environment_ids=body.environments,
    )
    return views.user(user)


@router.patch(
    "/api/organizations/{org_id}/users/{user_id}", response_model=schemas.UserOut
)
def update_user(
    session: SessionDep, plane: PlaneDep, principal: AdminDep, org_id: str, user_id: str,
    body: schemas.UserPatchIn,
) -> dict[str, Any]:
    """Change a user's `role`, `enabled`, `environments` or `password`. Disabling a user or
    setting its password ends its tokens at once."""
    org = accounts.own_organization(session, principal, org_id)
    envs = body.environments if "environments" in body.model_fields_set else ...
    user = accounts.update_user(session, org.id, user_id, role=body.role, enabled=body.enabled,
                                password=body.password, environment_ids=envs)
    if body.password is not None:
        forget_first_password(plane.settings.data_dir, user.username)
    return views.user(user)


@router.delete("/api/organizations/{org_id}/users/{user_id}", status_code=204)
def delete_user(
    session: SessionDep, principal: AdminDep, org_id: str, user_id: str
) -> Response:
    org = accounts.own_organization(session, principal, org_id)
    accounts.delete_user(session, org.id, user_id)
    return Response(status_code=204)


@router.put("/api/users/me/password", status_code=204,
            responses={429: {"model": schemas.ErrorOut}})
async def change_password(plane: PlaneDep, principal: PrincipalDep, source: SourceDep,
                          body: schemas.PasswordIn) -> Response:
    """The signed-in user's own password; their other tokens end, this one stays. Wrong
    current passwords are throttled like failed sign-ins (429 with `Retry-After`)."""
    username = await run_in_threadpool(plane.signin.change_password, principal,
                                       body.currentPassword, body.newPassword, source)
    forget_first_password(plane.settings.data_dir, username)
    return Response(status_code=204)


@router.post(
    "/api/connectedApplications", status_code=201, response_model=schemas.ConnectedAppOut
)
def create_connected_app(
    session: SessionDep, principal: AdminDep, body: schemas.ConnectedAppIn
) -> dict[str, Any]:
    app, secret = accounts.create_connected_app(
        session, principal.organization_id, body.client_name, role=body.role,
        environment_ids=body.environments,
    )
    return views.connected_app(app, secret)


@router.patch(
    "/api/connectedApplications/{client_id}", response_model=schemas.ConnectedAppOut
)
def update_connected_app(
    session: SessionDep, principal: AdminDep, client_id: str, body: schemas.ConnectedAppPatchIn
) -> dict[str, Any]:
    """Change an app's `role`, `environments`, or `enabled` (disabling ends its tokens)."""
    envs = body.environments if "environments" in body.model_fields_set else ...
    app = accounts.update_connected_app(session, principal.organization_id, client_id,
                                        role=body.role, enabled=body.enabled,
                                        environment_ids=envs)
    return views.connected_app(app)


@router.delete("/api/connectedApplications/{client_id}", status_code=204)
def delete_connected_app(session: SessionDep, principal: AdminDep, client_id: str) -> Response:
    """The app and every token it holds stop working at once."""
    accounts.delete_connected_app(session, principal.organization_id, client_id)
    return Response(status_code=204)
