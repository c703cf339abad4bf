"""Request dependencies of the API: one DB session per request, who is calling, with
which role, in which org + environment. Authentication uses its own short read-only transaction
so that a long upload never holds a database transaction open."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends, Header, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.orm import Session

from corral.db.session import transaction
from corral.domain.identity import Principal, Scope
from corral.http_context import PlaneDep, note_actor, note_environment

bearer = HTTPBearer(auto_error=False, description="a token from POST /accounts/login")


def get_session(plane: PlaneDep) -> Iterator[Session]:
    with transaction(plane.sessions) as session:
        yield session


SessionDep = Annotated[Session, Depends(get_session, scope="function")]
"""A writing transaction (on SQLite, these take turns). It commits when the handler returns,
before the response is sent (`scope="function"`; FastAPI's default would commit after it): a
client that has its answer sees its change in the next request, and a commit that fails is
answered as the failure it is."""


def get_read_session(plane: PlaneDep) -> Iterator[Session]:
    with transaction(plane.readers) as session:
        yield session


ReadSessionDep = Annotated[Session, Depends(get_read_session, scope="function")]
"""A read-only transaction: never waits for a writer."""


def bearer_token(
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
) -> str | None:
    return credentials.credentials if credentials else None


TokenDep = Annotated[str | None, Depends(bearer_token)]


def get_principal(request: Request, plane: PlaneDep, token: TokenDep) -> Principal:
    principal = plane.principals.resolve(plane.readers, token, None, None, scoped=False)[0]
    note_principal(request, principal)
    return principal


def note_principal(request: Request, principal: Principal) -> None:
    """For the audit trail: a user, or a connected app."""
    if principal.user_id is not None:
        note_actor(request, "user", principal.user_id, "", principal.organization_id)
    else:
        note_actor(request, "connectedApp", principal.client_id, "", principal.organization_id)


PrincipalDep = Annotated[Principal, Depends(get_principal)]


def get_admin(principal: PrincipalDep) -> Principal:
    principal.require("admin")
    return principal


AdminDep = Annotated[Principal, Depends(get_admin)]


def get_scope(
    request: Request,
    plane: PlaneDep,
    token: TokenDep,
    _principal: PrincipalDep,
    org_id: Annotated[str | None, Header(alias="X-ANYPNT-ORG-ID")] = None,
    env_id: Annotated[str | None, Header(alias="X-ANYPNT-ENV-ID")] = None,
) -> Scope:
    scope = plane.principals.resolve(plane.readers, token, org_id, env_id, scoped=True)[1]
    assert scope is not None
    note_environment(request, scope.environment_id)
    return scope


ScopeDep = Annotated[Scope, Depends(get_scope)]
"""Where a hybrid call acts; enough for reading (the viewer role)."""


def get_operator_scope(principal: PrincipalDep, scope: ScopeDep) -> Scope:
    principal.require("operator")
    return scope


OperatorScopeDep = Annotated[Scope, Depends(get_operator_scope)]
"""Where a hybrid call that changes something acts: the operator role or more."""
