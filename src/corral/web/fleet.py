"""Console pages for servers, server groups and clusters."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, Response
from sqlalchemy.orm import Session

from corral.db.models import Cluster, Server, ServerGroup
from corral.db.session import transaction
from corral.domain import applications, clusters, registration, server_groups, servers, views
from corral.domain.status import instance_report
from corral.domain.targets import get_target, list_targets
from corral.web import monitoring
from corral.web.actions import act, read
from corral.web.console import ConsoleDep

router = APIRouter(include_in_schema=False)


def _servers(session: Session, console: Any) -> list[dict[str, Any]]:
    return [views.server(s) for s in list_targets(session, console.scope, Server)]


def _free(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [s for s in rows if "serverGroupId" not in s and "clusterId" not in s]


# --- servers -------------------------------------------------------------------------------


@router.get("/servers", response_class=HTMLResponse)
def server_list(console: ConsoleDep, partial: str | None = None) -> HTMLResponse:
    rows = read(console, lambda s: _servers(s, console))
    template = "_servers_table.html" if partial else "servers.html"
    return console.render(template, servers=rows)


@router.get("/servers/add", response_class=HTMLResponse)
def add_server(console: ConsoleDep) -> HTMLResponse:
    settings = console.plane.settings
    console.require("operator")
    with transaction(console.plane.sessions) as session:
        token = registration.current_token(session, console.plane.sealer,
                                           console.scope.environment_id,
                                           settings.registration_token_ttl_seconds)
    manager = str(console.request.base_url).rstrip("/")
    ca = " --ca-cert ca.pem" if manager.startswith("https") else \
        f" --ca-fingerprint {console.plane.ca.fingerprint}"
    command = f"corral agent register --manager {manager} --dir /var/lib/corral-agent{ca} {token} NAME"
    return console.render("add_server.html", token=token, command=command)


@router.get("/servers/{server_id}", response_class=HTMLResponse)
def server_page(console: ConsoleDep, server_id: int) -> HTMLResponse:
    def load(session: Session) -> dict[str, Any]:
        server = get_target(session, console.scope, server_id, Server)
        apps = []
        for inst, app in applications.instances_on(session, server.id):
            status, message = instance_report(inst.last_reported_status, inst.message,
                                              inst.deployment_id, app.deployment_id)
            apps.append({"id": app.id, "name": app.name, "desired": app.desired_status,
                         "status": status, "message": message,
                         "deploymentId": app.deployment_id})
        return {"server": views.server(server), "apps": apps,
                "charts": monitoring.server_charts(session, console, server.id)}

    return console.render("server.html", **read(console, load))


@router.post("/servers/{server_id}/rename")
def rename_server(console: ConsoleDep, server_id: int, name: Annotated[str, Form()]) -> Response:
    return act(console, lambda s: servers.rename(s, console.scope, server_id, name),
               then=f"/servers/{server_id}", notice="Server renamed.", back=f"/servers/{server_id}")


@router.post("/servers/{server_id}/delete")
def delete_server(console: ConsoleDep, server_id: int) -> Response:
    return act(console, lambda s: servers.delete_server(s, console.scope, server_id),
               then="/servers", notice="Server deleted; its agent is refused from now on.",
               back=f"/servers/{server_id}")


# --- server groups -------------------------------------------------------------------------


@router.get("/groups", response_class=HTMLResponse)
def group_list(console: ConsoleDep) -> HTMLResponse:
    def load(session: Session) -> dict[str, Any]:
        return {"groups": [views.server_group(g) for g in
                           list_targets(session, console.scope, ServerGroup)],
                "free": _free(_servers(session, console))}

    return console.render("groups.html", **read(console, load))


@router.post("/groups")
def create_group(console: ConsoleDep, name: Annotated[str, Form()],
                 server: Annotated[list[int] | None, Form()] = None) -> Response:
    return act(console, lambda s: server_groups.create(
        s, console.scope, name=name, server_ids=list(server or []),
        max_size=console.plane.settings.max_group_size),
        then=lambda g: f"/groups/{g.id}", notice="Server group created.", back="/groups")


@router.get("/groups/{group_id}", response_class=HTMLResponse)
def group_page(console: ConsoleDep, group_id: int) -> HTMLResponse:
    def load(session: Session) -> dict[str, Any]:
        group = get_target(session, console.scope, group_id, ServerGroup)
        return {"group": views.server_group(group), "free": _free(_servers(session, console))}

    return console.render("group.html", **read(console, load))


@router.post("/groups/{group_id}/servers")
def add_to_group(console: ConsoleDep, group_id: int, server: Annotated[int, Form()]) -> Response:
    return act(console, lambda s: server_groups.add_server(
        s, console.scope, group_id, server, console.plane.settings.max_group_size),
        then=f"/groups/{group_id}", notice="Server added; the group's applications follow.",
        back=f"/groups/{group_id}")


@router.post("/groups/{group_id}/servers/{server_id}/remove")
def remove_from_group(console: ConsoleDep, group_id: int, server_id: int) -> Response:
    return act(console, lambda s: server_groups.remove_server(s, console.scope, group_id, server_id),
               then=f"/groups/{group_id}",
               notice="Server removed; it keeps the group's applications as its own.",
               back=f"/groups/{group_id}")


@router.post("/groups/{group_id}/delete")
def delete_group(console: ConsoleDep, group_id: int) -> Response:
    return act(console, lambda s: server_groups.delete_group(s, console.scope, group_id),
               then="/groups", notice="Server group deleted.", back=f"/groups/{group_id}")


# --- clusters ------------------------------------------------------------------------------


@router.get("/clusters", response_class=HTMLResponse)
def cluster_list(console: ConsoleDep) -> HTMLResponse:
    def load(session: Session) -> dict[str, Any]:
        return {"clusters": [views.cluster(c) for c in
                             list_targets(session, console.scope, Cluster)],
                "free": _free(_servers(session, console))}

    return console.render("clusters.html", **read(console, load))


@router.post("/clusters")
async def create_cluster(request: Request, console: ConsoleDep) -> Response:
    form = await request.form()
    chosen = [int(str(v)) for v in form.getlist("server") if str(v).isdigit()]
    members = [{"serverId": sid, "serverIp": str(form.get(f"ip_{sid}") or "") or None}
               for sid in chosen]
    return act(console, lambda s: clusters.create(
        s, console.scope, name=str(form.get("name", "")), multicast=form.get("multicast") == "on",
        members=members, max_size=console.plane.settings.max_cluster_size),
        then=lambda c: f"/clusters/{c.id}", notice="Cluster created.", back="/clusters")


@router.get("/clusters/{cluster_id}", response_class=HTMLResponse)
def cluster_page(console: ConsoleDep, cluster_id: int, partial: str | None = None) -> HTMLResponse:
    def load(session: Session) -> dict[str, Any]:
        cluster = get_target(session, console.scope, cluster_id, Cluster)
        return {"cluster": views.cluster(cluster), "free": _free(_servers(session, console))}

    return console.render("_cluster_members.html" if partial else "cluster.html",
                          **read(console, load))


@router.post("/clusters/{cluster_id}/servers")
def add_to_cluster(console: ConsoleDep, cluster_id: int, server: Annotated[int, Form()],
                   ip: Annotated[str, Form()] = "") -> Response:
    return act(console, lambda s: clusters.add_server(
        s, console.scope, cluster_id, {"serverId": server, "serverIp": ip or None},
        console.plane.settings.max_cluster_size),
        then=f"/clusters/{cluster_id}", notice="Server added to the cluster.",
        back=f"/clusters/{cluster_id}")


@router.post("/clusters/{cluster_id}/servers/{server_id}/remove")
def remove_from_cluster(console: ConsoleDep, cluster_id: int, server_id: int) -> Response:
    return act(console, lambda s: clusters.remove_server(s, console.scope, cluster_id, server_id),
               then=f"/clusters/{cluster_id}", notice="Server removed from the cluster.",
               back=f"/clusters/{cluster_id}")


@router.post("/clusters/{cluster_id}/delete")
def delete_cluster(console: ConsoleDep, cluster_id: int) -> Response:
    return act(console, lambda s: clusters.delete_cluster(s, console.scope, cluster_id),
               then="/clusters", notice="Cluster deleted.", back=f"/clusters/{cluster_id}")
