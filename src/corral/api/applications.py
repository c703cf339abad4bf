"""`/hybrid/api/v1/applications`: deploy (multipart upload), redeploy, start/stop, delete."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import quote

from fastapi import APIRouter, Query, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse, StreamingResponse

from corral.api import envelope, links, schemas
from corral.api.bodies import body_ref, json_or_form, media_type, read_small
from corral.api.deps import (
    OperatorScopeDep,
    PrincipalDep,
    ReadSessionDep,
    ScopeDep,
    SessionDep,
)
from corral.artifacts.multipart import UploadForm
from corral.artifacts.store import iter_blob
from corral.controlplane import ControlPlane
from corral.db.session import transaction
from corral.domain import accounts, applications, deployments, history, logs, reads, secure
from corral.domain.identity import Principal, Scope
from corral.errors import AgentUnavailable, InvalidInput
from corral.http_context import PlaneDep, read_upload

PATH = "/hybrid/api/v1/applications"
router = APIRouter(prefix=PATH, tags=["applications"])
MAX_LOG_LINE = 32 * 1024
PAGE_CAP = 1000
One = schemas.Data[schemas.ApplicationOut]

_FILE = {"type": "string", "format": "binary"}
_CONFIGURATION = {"type": "string", "description": "JSON text, e.g. the properties service"}
DEPLOY_FORM = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {"schema": body_ref(schemas.PromoteIn)},
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["file", "artifactName", "targetId"],
                    "properties": {
                        "file": _FILE,
                        "artifactName": {"type": "string"},
                        "targetId": {"type": "integer"},
                        "configuration": _CONFIGURATION,
                    },
                }
            }
        },
    }
}
ARTIFACT_FORMS = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {"schema": body_ref(schemas.RedeployFromIn)},
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["file"],
                    "properties": {"file": _FILE, "configuration": _CONFIGURATION},
                }
            },
        }
    }
}
PATCH_FORMS = {
    "requestBody": {
        "content": {
            "application/json": {"schema": body_ref(schemas.DesiredStatusIn)},
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "properties": {"file": _FILE, "configuration": _CONFIGURATION},
                }
            },
        }
    }
}


@router.post("", status_code=202, response_model=One, response_model_exclude_unset=True,
             openapi_extra=DEPLOY_FORM, responses=links.created(202, "/data/id", *(
                 (method, f"{PATH}/{{app_id}}", "app_id")
                 for method in ("get", "patch", "delete")),
                 ("get", f"{PATH}/{{app_id}}/deployments", "app_id"),
                 ("post", f"{PATH}/{{app_id}}/rollback", "app_id")))
async def deploy(request: Request, plane: PlaneDep, scope: OperatorScopeDep,
                 principal: PrincipalDep) -> JSONResponse:
    """Multipart: the artifact uploaded. JSON: another application's artifact
    (`applicationSource`), as MuleSoft's promote script sends it."""
    form: UploadForm | None = None
    if media_type(request) == "application/json":
        promote = await json_or_form(request, schemas.PromoteIn)
        fields: dict[str, Any] = promote.model_dump(exclude={"applicationSource"})
        given: UploadForm | deployments.Promotion = deployments.Promotion(
            _source(promote.applicationSource), principal)
    else:
        form = given = await read_upload(request, plane)
        fields = dict(form.fields)

    def work() -> dict[str, Any]:
        with transaction(plane.sessions) as session:
            app = deployments.deploy(session, scope, fields, given, box=plane.secrets,
                                     by=accounts.display_name(session, principal))
            return reads.application(session, scope, app.id)

    try:
        return envelope.one(await run_in_threadpool(work), status_code=202)
    finally:
        if form is not None:
            form.abort()


@router.get("", response_model=schemas.DataList[schemas.ApplicationOut],
            response_model_exclude_unset=True)
def list_applications(
    session: ReadSessionDep,
    scope: ScopeDep,
    target_id: int | None = Query(None, alias="targetId"),
    artifact_name: str | None = Query(None, alias="artifactName"),
    offset: int = Query(0, ge=0, le=2**31 - 1),
    limit: int | None = Query(None, ge=1, le=2**31 - 1),
    sort: str | None = Query(None, max_length=32,
                             description="timeCreated, timeUpdated, name or id; -name: "
                                         "descending"),
) -> JSONResponse:
    """Without `limit`, every application (ARM's clients look applications up by name); a
    `limit` above the page cap is lowered to it, as ARM does."""
    apps, total = reads.applications(
        session, scope, target_id=target_id, artifact_name=artifact_name,
        offset=offset, limit=None if limit is None else min(limit, PAGE_CAP), sort=sort,
    )
    return envelope.many(apps, total)


@router.get("/{app_id}", response_model=One, response_model_exclude_unset=True)
def get_application(session: ReadSessionDep, scope: ScopeDep, app_id: int) -> JSONResponse:
    return envelope.one(reads.application(session, scope, app_id))


@router.patch("/{app_id}", response_model=One, response_model_exclude_unset=True,
              openapi_extra=PATCH_FORMS)
async def patch_application(
    request: Request, plane: PlaneDep, scope: OperatorScopeDep, principal: PrincipalDep,
    app_id: int
) -> Any:
    """JSON `desiredStatus` starts or stops; multipart redeploys (no file: the same artifact)."""
    if media_type(request) == "multipart/form-data":
        form = await read_upload(request, plane)
    else:
        body = await read_small(request)
        if body.strip():
            change = await json_or_form(request, schemas.DesiredStatusIn, body)

            def start_or_stop() -> dict[str, Any]:
                with transaction(plane.sessions) as session:
                    deployments.set_desired_status(session, scope, app_id,
                                                   change.desiredStatus, change.rollout)
                    return reads.application(session, scope, app_id)

            return envelope.one(await run_in_threadpool(start_or_stop))
        form = UploadForm()  # no body at all: the current artifact again

    return await _redeploy(plane, scope, principal, app_id, dict(form.fields), form)


@router.patch("/{app_id}/artifact", response_model=One, response_model_exclude_unset=True,
              openapi_extra=ARTIFACT_FORMS)
async def replace_artifact(request: Request, plane: PlaneDep, scope: OperatorScopeDep,
                           principal: PrincipalDep, app_id: int) -> JSONResponse:
    """Redeploy with a new artifact: another application's (JSON `applicationSource`, as
    MuleSoft's promote script sends it) or an uploaded file (multipart, as on
    `PATCH /applications/{id}`)."""
    if media_type(request) == "application/json":
        change = await json_or_form(request, schemas.RedeployFromIn)
        fields = change.model_dump(exclude={"applicationSource"})
        promotion = deployments.Promotion(_source(change.applicationSource), principal)
        return await _redeploy(plane, scope, principal, app_id, fields, promotion)
    form = await read_upload(request, plane)
    if form.file is None:
        form.abort()
        raise InvalidInput("send the artifact as a file part, or applicationSource as JSON")
    return await _redeploy(plane, scope, principal, app_id, dict(form.fields), form)


async def _redeploy(plane: ControlPlane, scope: Scope, principal: Principal, app_id: int,
                    fields: dict[str, Any], given: UploadForm | deployments.Promotion
                    ) -> JSONResponse:
    def work() -> dict[str, Any]:
        with transaction(plane.sessions) as session:
            deployments.redeploy(session, scope, app_id, fields, given, box=plane.secrets,
                                 by=accounts.display_name(session, principal))
            return reads.application(session, scope, app_id)

    try:
        app = await run_in_threadpool(work)
    finally:
        if isinstance(given, UploadForm):
            given.abort()
    # ARM's CLI waits for the server to close after a redeploy; close it.
    return envelope.one(app, headers={"Connection": "close"})


def _source(given: schemas.ApplicationSourceIn | None) -> dict[str, Any]:
    if given is None:
        raise InvalidInput("send the artifact as multipart/form-data (a file part), or JSON "
                           'naming another application: "applicationSource": '
                           '{"source": "HYBRID", "id": N}')
    return given.model_dump()


@router.get("/{app_id}/deployments", response_model=schemas.DataList[schemas.DeploymentOut])
def deployment_history(session: ReadSessionDep, scope: ScopeDep, app_id: int) -> JSONResponse:
    """Every deployment of the application, newest first: artifact, properties, who, when,
    state, and what each server did."""
    app = applications.get(session, scope, app_id)
    found = history.listing(session, app)
    return envelope.many(found, len(found))


@router.get("/{app_id}/secureProperties",
            response_model=schemas.Data[dict[str, schemas.SecureDigestOut]])
def secure_digests(session: ReadSessionDep, scope: OperatorScopeDep, plane: PlaneDep,
                   app_id: int) -> JSONResponse:
    """Corral's own: for each secure property, a salted HMAC-SHA256 of its value (a new salt on
    every call), so that `corral plan` can tell a changed secret from an unchanged one without
    the value leaving the control plane. Operators and admins only: they may deploy code that
    reads the values anyway; viewers may not."""
    app = applications.get(session, scope, app_id)
    return envelope.one(secure.digests(app.configuration, plane.secrets))


@router.post("/{app_id}/rollback", response_model=One, response_model_exclude_unset=True)
async def rollback(request: Request, plane: PlaneDep, scope: OperatorScopeDep,
                   principal: PrincipalDep, app_id: int) -> JSONResponse:
    """Deploy again the exact artifact and configuration of `deploymentId` (a history `id`;
    default: the latest successful deployment before the current one)."""
    raw = await read_small(request)
    body = await json_or_form(request, schemas.RollbackIn, raw) if raw.strip() \
        else schemas.RollbackIn()

    def work() -> dict[str, Any]:
        with transaction(plane.sessions) as session:
            deployments.rollback(session, scope, app_id, body.deploymentId, box=plane.secrets,
                                 by=accounts.display_name(session, principal),
                                 rollout=body.rollout)
            return reads.application(session, scope, app_id)

    return envelope.one(await run_in_threadpool(work))


@router.post("/{app_id}/deployments/{history_id}/promote", response_model=One,
             response_model_exclude_unset=True)
def promote(session: SessionDep, scope: OperatorScopeDep, app_id: int,
            history_id: int) -> JSONResponse:
    """A canary's servers are healthy: release the rest of the rollout."""
    deployments.promote(session, scope, app_id, history_id)
    return envelope.one(reads.application(session, scope, app_id))


@router.post("/{app_id}/deployments/{history_id}/cancel", response_model=One,
             response_model_exclude_unset=True)
def cancel(session: SessionDep, scope: OperatorScopeDep, app_id: int,
           history_id: int) -> JSONResponse:
    """Stop the rollout now; every server it updated returns to the previous deployment."""
    deployments.cancel(session, scope, app_id, history_id)
    return envelope.one(reads.application(session, scope, app_id))


@router.delete("/{app_id}", status_code=204)
def delete_application(session: SessionDep, scope: OperatorScopeDep, app_id: str) -> Response:
    """204 whether or not it existed, whatever the id (ARM's contract: clients delete and then
    poll until GET answers 404)."""
    if app_id.isascii() and app_id.isdigit() and len(app_id) <= 12:
        deployments.delete(session, scope, int(app_id))
    return Response(status_code=204)


@router.get("/{app_id}/logs", responses={200: {"content": {"text/event-stream": {}}},
                                          429: {"model": schemas.ErrorOut}})
async def application_logs(
    plane: PlaneDep,
    scope: ScopeDep,
    principal: PrincipalDep,
    app_id: int,
    server_id: int | None = Query(None, alias="serverId"),
    lines: int = Query(100, ge=0, le=10000),
    follow: bool = False,
) -> Any:
    """The last `lines` of the application's log on one server, fetched from its agent;
    `follow=true` streams new lines as server-sent events: at most a few streams per token
    (429 beyond), and a stream whose reader falls behind ends with an `error` event."""
    if not follow:
        collected = await logs.tail(plane.readers, plane.agents, scope, app_id, server_id, lines)
        return {"data": collected, "total": len(collected)}
    holder = principal.user_id or principal.client_id or principal.token_hash
    plane.follows.take(holder)
    try:
        batches = await logs.follow(plane.readers, plane.agents, scope, app_id, server_id,
                                    lines)
    except BaseException:
        plane.follows.give_back(holder)
        raise

    async def events() -> AsyncIterator[str]:
        try:
            async with contextlib.aclosing(batches):  # the agent stops sending at once
                async for batch in batches:
                    for line in batch:
                        yield sse_data(line)
        except AgentUnavailable as exc:
            yield "event: error\n" + sse_data(str(exc))
        finally:
            plane.follows.give_back(holder)

    return StreamingResponse(events(), media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache"})


def content_disposition(file_name: str) -> str:
    """An ASCII `filename` any client reads, and the exact name in RFC 5987 `filename*`."""
    fallback = "".join(c if 32 <= ord(c) < 127 and c not in '"\\;' else "_"
                       for c in file_name) or "artifact.zip"
    exact = quote(file_name.encode("utf-8", "replace"), safe="")
    return f"attachment; filename=\"{fallback}\"; filename*=UTF-8''{exact}"


def sse_data(line: str) -> str:
    """One event carrying one line. A line is the agent's (and so an application's) text: a
    carriage return or newline in it would end the field and let it forge events, so both are
    shown escaped, and the line is bounded."""
    clean = line[:MAX_LOG_LINE].replace("\r", "\\r").replace("\n", "\\n")
    return f"data: {clean}\n\n"


@router.get("/{app_id}/artifact", response_class=StreamingResponse,
            responses={200: {"content": {"application/octet-stream": {}}}})
def download_artifact(
    session: ReadSessionDep, plane: PlaneDep, scope: ScopeDep, app_id: int
) -> StreamingResponse:
    app = applications.get(session, scope, app_id)
    art = app.artifact
    return StreamingResponse(
        iter_blob(plane.store, art.sha256),
        media_type="application/octet-stream",
        headers={
            "Content-Length": str(art.size),
            "Content-Disposition": content_disposition(art.file_name),
        },
    )
