"""The FastAPI application of the control plane."""

from __future__ import annotations

from fastapi import FastAPI

from corral import __version__
from corral.api import (
    accounts,
    applications,
    clusters,
    errors,
    health,
    server_groups,
    servers,
    targets,
)
from corral.api.middleware import BodyLimit, SecurityHeaders
from corral.controlplane import ControlPlane
from corral.web import app as console


def create_app(plane: ControlPlane) -> FastAPI:
    app = FastAPI(
        title="Corral",
        version=__version__,
        description="Self-hosted runtime manager speaking the Anypoint Runtime Manager hybrid "
        "REST API. Hybrid calls need `Authorization: Bearer`, `X-ANYPNT-ORG-ID` and "
        "`X-ANYPNT-ENV-ID`.",
    )
    app.state.plane = plane
    errors.install(app)
    for module in (health, accounts, servers, server_groups, clusters, applications, targets):
        app.include_router(module.router)
    console.install(app)
    app.add_middleware(BodyLimit, max_body=lambda: plane.settings.max_body_bytes,
                       max_upload=lambda: plane.settings.max_artifact_bytes)
    app.add_middleware(SecurityHeaders)
    return app
