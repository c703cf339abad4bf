"""Console pages for applications: table, deploy form, status, actions, live log tail."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse, Response
from sqlalchemy.orm import Session

from corral.db.session import transaction
from corral.domain import applications, deployments, history, logs, reads
from corral.domain.configuration import parse_properties_text
from corral.errors import AgentUnavailable, CorralError
from corral.http_context import read_upload
from corral.web import monitoring
from corral.web.actions import PageError, act, read
from corral.web.console import ConsoleDep

router = APIRouter(include_in_schema=False)


@router.get("/apps", response_class=HTMLResponse)
def app_list(console: ConsoleDep, partial: str | None = None) -> HTMLResponse:
    apps = read(console, lambda s: reads.applications(s, console.scope)[0])
    return console.render("_apps_table.html" if partial else "apps.html", apps=apps)


@router.get("/apps/new", response_class=HTMLResponse)
def deploy_form(console: ConsoleDep) -> HTMLResponse:
    targets = read(console, lambda s: deployments.deployable_targets(s, console.scope))
    return console.render("deploy.html", targets=targets, secure_rows=SECURE_ROWS)


SECURE_ROWS = 3
"""Name and password fields for secure properties on the deploy and redeploy forms."""


def _secure_fields(fields: dict[str, str], *, empty_removes: bool) -> dict[str, str | None]:
    """`secureName<N>`/`secureValue<N>` pairs taken out of the form. On a redeploy a name with
    no value removes that secure property; on a deploy it is left out."""
    given: dict[str, str | None] = {}
    for n in range(1, SECURE_ROWS + 1):
        name = fields.pop(f"secureName{n}", "").strip()
        value = fields.pop(f"secureValue{n}", "")
        if name and (value or empty_removes):
            given[name] = value or None
    return given


@router.post("/apps")
async def deploy(request: Request, console: ConsoleDep) -> Response:
    form = await read_upload(request, console.plane)
    properties = parse_properties_text(form.fields.pop("properties", ""))
    secrets = _secure_fields(form.fields, empty_removes=False)

    def work() -> int:
        with transaction(console.plane.sessions) as session:
            return deployments.deploy(session, console.scope, form.fields, form,
                                      box=console.plane.secrets, properties=properties,
                                      secure_properties=secrets, by=console.who).id

    try:
        app_id = await run_in_threadpool(work)
    except CorralError as exc:
        return console.render("_flash.html", status_code=200, error=exc.message)
    finally:
        form.abort()
    return console.redirect(f"/apps/{app_id}", notice="Deployment started.")


@router.get("/apps/{app_id}", response_class=HTMLResponse)
def app_page(console: ConsoleDep, app_id: int, partial: str | None = None) -> HTMLResponse:
    def load(s: Session) -> tuple[dict[str, Any], list[dict[str, Any]], list[Any]]:
        app = applications.get(s, console.scope, app_id)
        return (reads.application(s, console.scope, app_id), history.listing(s, app),
                [] if partial else monitoring.application_charts(s, console, app.id))

    app, past, charts = read(console, load)
    return console.render("_app_status.html" if partial else "app.html", app=app,
                          deployments=past, charts=charts, secure_rows=SECURE_ROWS)


@router.post("/apps/{app_id}/rollout/{history_id}/{action}")
async def app_rollout(console: ConsoleDep, app_id: int, history_id: int, action: str) -> Response:
    here = f"/apps/{app_id}"
    changes = {"promote": (deployments.promote, "Promoted: the other servers follow."),
               "cancel": (deployments.cancel,
                          "Cancelled: every server returns to the previous deployment.")}
    if action not in changes:
        return console.redirect(here, error=f"unknown action {action!r}")
    fn, notice = changes[action]
    return await run_in_threadpool(
        act, console, lambda s: fn(s, console.scope, app_id, history_id), then=here,
        notice=notice, back=here)


@router.post("/apps/{app_id}/rollback/{history_id}")
async def app_rollback(console: ConsoleDep, app_id: int, history_id: int) -> Response:
    here = f"/apps/{app_id}"
    return await run_in_threadpool(
        act, console, lambda s: deployments.rollback(s, console.scope, app_id, history_id,
                                                     box=console.plane.secrets, by=console.who),
        then=here, notice="Rolling back.", back=here)


@router.post("/apps/{app_id}/{action}")
async def app_action(request: Request, console: ConsoleDep, app_id: int, action: str) -> Response:
    scope = console.scope
    here = f"/apps/{app_id}"
    box = console.plane.secrets
    if action == "redeploy" and request.headers.get("content-type", "").startswith("multipart/"):
        form = await read_upload(request, console.plane)
        secrets = _secure_fields(form.fields, empty_removes=True)
        notice = "Redeploying with the new file." if form.file is not None else \
            "Redeploying with the secure properties changed."
        try:
            return await run_in_threadpool(
                act, console, lambda s: deployments.redeploy(
                    s, scope, app_id, form.fields, form, box=box, secure_properties=secrets,
                    by=console.who),
                then=here, notice=notice, back=here)
        finally:
            form.abort()
    changes: dict[str, tuple[Callable[[Session], Any], str]] = {
        "start": (lambda s: deployments.set_desired_status(s, scope, app_id, "STARTED"),
                  "Starting."),
        "stop": (lambda s: deployments.set_desired_status(s, scope, app_id, "STOPPED"),
                 "Stopping."),
        "redeploy": (lambda s: deployments.redeploy(s, scope, app_id, box=box, by=console.who),
                     "Redeploying."),
        "delete": (lambda s: deployments.delete(s, scope, app_id),
                   "Application deleted; its servers remove it."),
    }
    if action not in changes:
        return console.redirect(here, error=f"unknown action {action!r}")
    fn, notice = changes[action]
    return await run_in_threadpool(act, console, fn, then="/apps" if action == "delete" else here,
                                   notice=notice, back=here)


@router.get("/apps/{app_id}/logs", response_class=HTMLResponse)
async def log_tail(console: ConsoleDep, app_id: int, server: int,
                   lines: int = 200) -> HTMLResponse:
    try:
        collected = await logs.tail(console.plane.readers, console.plane.agents, console.scope,
                                    app_id, server, min(lines, 2000))
    except AgentUnavailable as exc:
        return console.render("_logs.html", lines=[], error=exc.message)
    except CorralError as exc:
        raise PageError.of(exc) from exc
    return console.render("_logs.html", lines=collected, error=None)
