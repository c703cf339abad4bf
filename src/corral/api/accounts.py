"""Access management (`/accounts`): login, tokens, who am I, organizations and environments."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.concurrency import run_in_threadpool
from sqlalchemy.orm import Session

from corral.api import schemas, views
from corral.api.bodies import json_or_form, openapi_json_or_form
from corral.api.deps import PlaneDep, PrincipalDep, SessionDep
from corral.db.models import ConnectedApp, Organization, User
from corral.db.session import transaction
from corral.domain import accounts
from corral.domain.accounts import Principal
from corral.domain.errors import Forbidden, InvalidInput, NotFound

router = APIRouter(prefix="/accounts", tags=["access management"])


@router.post(
    "/login",
    response_model=schemas.LoginOut,
    openapi_extra=openapi_json_or_form(schemas.LoginIn),
)
async def login(request: Request, plane: PlaneDep) -> dict[str, Any]:
    body = await json_or_form(request, schemas.LoginIn)

    def work() -> str:
        with transaction(plane.sessions) as session:
            return accounts.login(
                session, body.username, body.password, plane.settings.user_token_ttl_seconds
            )

    return {"access_token": await run_in_threadpool(work), "token_type": "bearer",
            "redirectUrl": "/home/"}


@router.post(
    "/api/v2/oauth2/token",
    response_model=schemas.TokenOut,
    openapi_extra=openapi_json_or_form(schemas.TokenIn),
)
async def oauth2_token(request: Request, plane: PlaneDep) -> dict[str, Any]:
    body = await json_or_form(request, schemas.TokenIn)
    if body.grant_type != "client_credentials":
        raise InvalidInput("grant_type must be client_credentials")
    ttl = plane.settings.client_token_ttl_seconds

    def work() -> str:
        with transaction(plane.sessions) as session:
            return accounts.client_credentials(session, body.client_id, body.client_secret, ttl)

    return {"access_token": await run_in_threadpool(work), "token_type": "bearer",
            "expires_in": ttl}


@router.post("/api/logout", status_code=204)
def logout(session: SessionDep, principal: PrincipalDep) -> Response:
    accounts.logout(session, principal)
    return Response(status_code=204)


def _me(session: Session, principal: Principal) -> dict[str, Any]:
    if principal.user_id is not None:
        return views.user(session.get_one(User, principal.user_id))
    return views.app_as_user(session.get_one(ConnectedApp, principal.client_id))


@router.get("/api/me")
def me(session: SessionDep, principal: PrincipalDep) -> dict[str, Any]:
    token = {"expires_at": principal.expires_at, "token_type": "bearer"}
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
def users_me(session: SessionDep, principal: PrincipalDep) -> dict[str, Any]:
    return _me(session, principal)


@router.get("/api/profile", response_model=schemas.UserOut)
def profile(session: SessionDep, principal: PrincipalDep) -> dict[str, Any]:
    return _me(session, principal)


def _own_org(session: Session, principal: Principal, org_id: str) -> Organization:
    org = session.get(Organization, org_id)
    if org is None:
        raise NotFound(f"organization {org_id} not found")
    if org.id != principal.organization_id:
        raise Forbidden(f"this token may not read organization {org_id}")
    return org


@router.get("/api/organizations/{org_id}", response_model=schemas.OrganizationOut)
def get_organization(session: SessionDep, principal: PrincipalDep, org_id: str) -> dict[str, Any]:
    return views.organization(_own_org(session, principal, org_id))


@router.get(
    "/api/organizations/{org_id}/environments",
    response_model=schemas.DataList[schemas.EnvironmentOut],
)
def list_environments(
    session: SessionDep, principal: PrincipalDep, org_id: str
) -> dict[str, Any]:
    org = _own_org(session, principal, org_id)
    envs = accounts.list_environments(session, org.id)
    return {"data": [views.environment(e) for e in envs], "total": len(envs)}


@router.get(
    "/api/organizations/{org_id}/environments/{env_id}", response_model=schemas.EnvironmentOut
)
def get_environment(
    session: SessionDep, principal: PrincipalDep, org_id: str, env_id: str
) -> dict[str, Any]:
    org = _own_org(session, principal, org_id)
    return views.environment(accounts.get_environment(session, org.id, env_id))


@router.post(
    "/api/organizations/{org_id}/environments",
    status_code=201,
    response_model=schemas.EnvironmentOut,
)
def create_environment(
    session: SessionDep, principal: PrincipalDep, org_id: str, body: schemas.EnvironmentIn
) -> dict[str, Any]:
    org = _own_org(session, principal, org_id)
    return views.environment(accounts.create_environment(session, org.id, body.name, body.type))


@router.post(
    "/api/organizations/{org_id}/users", status_code=201, response_model=schemas.UserOut
)
def create_user(
    session: SessionDep, principal: PrincipalDep, org_id: str, body: schemas.UserIn
) -> dict[str, Any]:
    org = _own_org(session, principal, org_id)
    user = accounts.create_user(
        session, org.id, body.username, body.password,
        first_name=body.firstName, last_name=body.lastName, email=body.email,
    )
    return views.user(user)


@router.post(
    "/api/connectedApplications", status_code=201, response_model=schemas.ConnectedAppOut
)
def create_connected_app(
    session: SessionDep, principal: PrincipalDep, body: schemas.ConnectedAppIn
) -> dict[str, Any]:
    app, secret = accounts.create_connected_app(
        session, principal.organization_id, body.client_name
    )
    return views.connected_app(app, secret)
