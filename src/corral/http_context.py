"""What every HTTP handler, API or console, may ask of a request: the control plane it runs
in, the caller's address, and an artifact upload. The composition root (`corral.app`) puts the
control plane on the application; api and web both read it from here, so neither imports the
other. It also says how their routers join the application."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, FastAPI, Request

from corral.artifacts.multipart import UploadForm, read_multipart
from corral.controlplane import ControlPlane


def get_plane(request: Request) -> ControlPlane:
    plane: ControlPlane = request.app.state.plane
    return plane


PlaneDep = Annotated[ControlPlane, Depends(get_plane)]


def client_address(request: Request) -> str:
    """The caller's address (a trusted proxy's X-Forwarded-For is applied by the server)."""
    return request.client.host if request.client else "unknown"


SourceDep = Annotated[str, Depends(client_address)]


async def read_upload(request: Request, plane: ControlPlane) -> UploadForm:
    """The request's multipart form, its file streamed into the artifact store (uncommitted:
    the caller commits it through the domain or aborts it)."""
    return await read_multipart(request.headers.get("content-type", ""),
                                request.headers.get("content-length"), request.stream(),
                                plane.store, plane.settings.max_artifact_bytes)


AUDIT_ACTOR = "corral_audit_actor"
AUDIT_ENVIRONMENT = "corral_audit_environment"


def note_actor(request: Request, kind: str, actor_id: str | None, name: str = "",
               organization_id: str | None = None) -> None:
    """Who asks (for the audit trail, written once the answer is known): the API's and the
    console's sign-in code say so as soon as they know."""
    setattr(request.state, AUDIT_ACTOR, (kind, actor_id, name, organization_id))


def note_environment(request: Request, environment_id: str) -> None:
    setattr(request.state, AUDIT_ENVIRONMENT, environment_id)


def add_routes(app: FastAPI, router: APIRouter) -> None:
    """Put a router's routes on the application as they are. Each was built, with its
    dependencies' signatures read and its models made, when its module was imported;
    `include_router` would build them all again, lazily, for each application made (some
    120 ms of CPU for each one: the in-process tests make one for every test). The routers give
    their routes no options at inclusion (prefix and tags are applied as each route is made),
    so nothing is lost."""
    app.router.routes.extend(router.routes)
