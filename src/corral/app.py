"""The composition root: the control plane's one ASGI application. The REST API and the console
are installed side by side, so neither package imports the other; both reach the control plane
through `corral.http_context`, and the agents through `ControlPlane.agents`."""

from __future__ import annotations

from fastapi import FastAPI

from corral import __version__
from corral.api import routes as api
from corral.api.answers import Answers
from corral.api.audit import AuditTrail
from corral.api.metrics import RequestTimer
from corral.api.middleware import BodyLimit, OneTrailingSlash, RequestId, SecurityHeaders
from corral.controlplane import ControlPlane
from corral.web import routes as console


def create_app(plane: ControlPlane) -> FastAPI:
    app = FastAPI(
        title="Corral",
        version=__version__,
        description="Self-hosted runtime manager speaking the Anypoint Runtime Manager hybrid "
        "REST API. Hybrid calls need `Authorization: Bearer`, `X-ANYPNT-ORG-ID` and "
        "`X-ANYPNT-ENV-ID`.",
        redirect_slashes=False,  # one trailing slash is taken off before routing instead
        docs_url=None,  # api/docs.py serves Swagger UI's files itself
        redoc_url=None,
    )
    app.state.plane = plane
    api.install(app)
    console.install(app)
    app.add_middleware(Answers, plane=lambda: plane)  # innermost: kept answers are timed too
    app.add_middleware(BodyLimit, max_body=lambda: plane.settings.max_body_bytes,
                       max_upload=lambda: plane.settings.max_artifact_bytes)
    app.add_middleware(AuditTrail, plane=lambda: plane)  # sees every answer, 413s included
    app.add_middleware(SecurityHeaders)
    app.add_middleware(RequestTimer)  # every request is timed, refusals included
    app.add_middleware(RequestId)  # every log line of a request carries its id
    app.add_middleware(OneTrailingSlash)  # outermost: everything inside sees one form of a path
    return app
