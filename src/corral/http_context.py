"""What every HTTP handler, API or console, may ask of a request: the control plane it runs
in, the caller's address, and an artifact upload. The composition root (`corral.app`) puts the
control plane on the application; api and web both read it from here, so neither imports the
other."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

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
