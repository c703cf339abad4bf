"""Request dependencies: the control plane, one DB session per request, who is calling and in
which org + environment. Authentication uses its own short transaction so that a long upload
never holds a database transaction open."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends, Header, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.orm import Session

from corral.controlplane import ControlPlane
from corral.db.session import transaction
from corral.domain import accounts
from corral.domain.accounts import Principal, Scope

bearer = HTTPBearer(auto_error=False, description="a token from POST /accounts/login")


def get_plane(request: Request) -> ControlPlane:
    plane: ControlPlane = request.app.state.plane
    return plane


PlaneDep = Annotated[ControlPlane, Depends(get_plane)]


def get_session(plane: PlaneDep) -> Iterator[Session]:
    with transaction(plane.sessions) as session:
        yield session


SessionDep = Annotated[Session, Depends(get_session)]


def bearer_token(
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
) -> str | None:
    return credentials.credentials if credentials else None


TokenDep = Annotated[str | None, Depends(bearer_token)]


def get_principal(plane: PlaneDep, token: TokenDep) -> Principal:
    with transaction(plane.sessions) as session:
        return accounts.authenticate(session, token)


PrincipalDep = Annotated[Principal, Depends(get_principal)]


def get_scope(
    plane: PlaneDep,
    principal: PrincipalDep,
    org_id: Annotated[str | None, Header(alias="X-ANYPNT-ORG-ID")] = None,
    env_id: Annotated[str | None, Header(alias="X-ANYPNT-ENV-ID")] = None,
) -> Scope:
    with transaction(plane.sessions) as session:
        return accounts.resolve_scope(session, principal, org_id, env_id)


ScopeDep = Annotated[Scope, Depends(get_scope)]
