"""Console pages for applications: table, deploy form, status, actions, live log tail."""

from __future__ import annotations

import json
from typing import Any

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse, Response

from corral.api import views
from corral.api.applications import deploy_uploaded, redeploy_uploaded
from corral.api.uploads import read_upload
from corral.db.models import Cluster, Server, ServerGroup
from corral.domain import applications
from corral.domain.configuration import PROPERTIES_SERVICE
from corral.domain.errors import CorralError
from corral.domain.targets import list_targets
from corral.gateway.server import AgentUnavailable
from corral.web.actions import act, read
from corral.web.session import ConsoleDep

router = APIRouter(include_in_schema=False)


@router.get("/apps", response_class=HTMLResponse)
def app_list(console: ConsoleDep, partial: str | None = None) -> HTMLResponse:
    apps = read(console, lambda s: [views.application(a) for a in
                                    applications.list_applications(s, console.scope)[0]])
    return console.render("_apps_table.html" if partial else "apps.html", apps=apps)


@router.get("/apps/new", response_class=HTMLResponse)
def deploy_form(console: ConsoleDep) -> HTMLResponse:
    def load(session: Any) -> list[dict[str, Any]]:
        targets = []
        for kind, label in ((Server, "server"), (ServerGroup, "group"), (Cluster, "cluster")):
            for t in list_targets(session, console.scope, kind):
                if isinstance(t, Server) and (t.server_group_id or t.cluster_id):
                    continue  # reached through its group or cluster
                targets.append({"id": t.id, "name": t.name, "kind": label})
        return targets

    return console.render("deploy.html", targets=read(console, load))


def _properties(text: str) -> dict[str, str]:
    props = {}
    for line in text.splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            key, _, value = line.partition("=")
            props[key.strip()] = value.strip()
    return props


@router.post("/apps")
async def deploy(request: Request, console: ConsoleDep) -> Response:
    form = await read_upload(request, console.plane.store, console.plane.settings.max_artifact_bytes)
    props = _properties(form.fields.pop("properties", ""))
    if props:
        form.fields["configuration"] = json.dumps(
            {PROPERTIES_SERVICE: {"applicationName": form.fields.get("artifactName", ""),
                                  "properties": props}})
    try:
        body = await run_in_threadpool(deploy_uploaded, console.plane, console.scope, form)
    except CorralError as exc:
        return console.render("_flash.html", status_code=200, error=exc.message)
    finally:
        form.abort()
    return console.redirect(f"/apps/{body['data']['id']}", notice="Deployment started.")


@router.get("/apps/{app_id}", response_class=HTMLResponse)
def app_page(console: ConsoleDep, app_id: int, partial: str | None = None) -> HTMLResponse:
    app = read(console, lambda s: views.application(applications.get(s, console.scope, app_id)))
    return console.render("_app_status.html" if partial else "app.html", app=app)


@router.post("/apps/{app_id}/{action}")
async def app_action(request: Request, console: ConsoleDep, app_id: int, action: str) -> Response:
    scope = console.scope
    if action == "redeploy" and request.headers.get("content-type", "").startswith("multipart/"):
        form = await read_upload(request, console.plane.store,
                                 console.plane.settings.max_artifact_bytes)
        try:
            await run_in_threadpool(redeploy_uploaded, console.plane, scope, app_id, form)
        except CorralError as exc:
            return console.redirect(f"/apps/{app_id}", error=exc.message)
        finally:
            form.abort()
        return console.redirect(f"/apps/{app_id}", notice="Redeploying with the new file.")
    changes = {
        "start": (lambda s: applications.set_desired_status(s, scope, app_id, "STARTED"),
                  "Starting."),
        "stop": (lambda s: applications.set_desired_status(s, scope, app_id, "STOPPED"),
                 "Stopping."),
        "redeploy": (lambda s: applications.redeploy(s, scope, app_id, artifact=None,
                                                     configuration=None), "Redeploying."),
        "delete": (lambda s: applications.delete_application(s, scope, app_id),
                   "Application deleted; its servers remove it."),
    }
    if action not in changes:
        return console.redirect(f"/apps/{app_id}", error=f"unknown action {action!r}")
    fn, notice = changes[action]
    then = "/apps" if action == "delete" else f"/apps/{app_id}"
    return await run_in_threadpool(act, console, fn, then=then, notice=notice,
                                   back=f"/apps/{app_id}")


@router.get("/apps/{app_id}/logs", response_class=HTMLResponse)
async def log_tail(request: Request, console: ConsoleDep, app_id: int, server: int,
                   lines: int = 200) -> HTMLResponse:
    def instance() -> tuple[str, int]:
        def load(s: Any) -> tuple[str, int]:
            app = applications.get(s, console.scope, app_id)
            return app.name, applications.pick_instance(app, server)
        return read(console, load)

    name, sid = await run_in_threadpool(instance)
    gateway = getattr(request.app.state, "gateway", None)
    collected: list[str] = []
    error = None
    try:
        if gateway is None:
            raise AgentUnavailable("no agent gateway runs in this process")
        async for batch in gateway.session_for(sid).logs(name, min(lines, 2000), follow=False):
            collected.extend(batch)
    except AgentUnavailable as exc:
        error = str(exc)
    return console.render("_logs.html", lines=collected, error=error)
