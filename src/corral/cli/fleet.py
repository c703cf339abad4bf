"""`corral server | group | cluster`: the machines and how they are grouped."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from corral.cli.api_client import Api
from corral.cli.common import ClusterArg, GroupArg, NewNameArg, ServerArg
from corral.cli.output import (
    Column,
    Format,
    OutputOpt,
    ago,
    console,
    show_list,
    show_object,
    status,
    when,
)

server_app = typer.Typer(help="Servers registered with Corral.", no_args_is_help=True)
group_app = typer.Typer(help="Server groups: one target, instances isolated.", no_args_is_help=True)
cluster_app = typer.Typer(help="Clusters: one target, instances aware of each other.",
                          no_args_is_help=True)

YesOpt = Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation")]

SERVER_COLUMNS: list[Column] = [
    ("ID", lambda s: s["id"]),
    ("NAME", lambda s: s["name"]),
    ("STATUS", lambda s: status(s["status"])),
    ("GROUP/CLUSTER", lambda s: s.get("serverGroupName") or s.get("clusterName") or ""),
    ("AGENT", lambda s: s.get("agentVersion")),
    ("ADDRESSES", lambda s: ", ".join(a["ip"] for a in s.get("addresses") or [] if a["ip"] != "127.0.0.1")),
    ("LAST SEEN", lambda s: ago(s.get("lastSeen"))),
]


KINDS = {"SERVER": ("server", "servers"), "SERVER_GROUP": ("server group", "groups"),
         "CLUSTER": ("cluster", "clusters")}
"""A target's type → what messages call it, and the `Api` resource that holds it."""


def _rename(kind: str, ident: str, name: str) -> None:
    api = Api.from_config()
    label, resource = KINDS[kind]
    target = api.find_target(ident, (kind,))
    getattr(api, resource).rename(target["id"], name)
    console.print(f"{label.capitalize()} {target['id']} is now named {name}")


def _delete(kind: str, ident: str, yes: bool) -> None:
    api = Api.from_config()
    label, resource = KINDS[kind]
    target = api.find_target(ident, (kind,))
    if not yes and not typer.confirm(f"Delete {label} {target['id']} ({target['name']})?"):
        raise typer.Exit(1)
    getattr(api, resource).delete(target["id"])
    console.print(f"Deleted {label} {target['id']}")


# --- servers -------------------------------------------------------------------------------


@server_app.command("list")
def server_list(output: OutputOpt = Format.table) -> None:
    """List servers with their status."""
    servers = Api.from_config().servers.list()
    show_list(output, servers, SERVER_COLUMNS,
              "No servers yet. Get a token with `corral server token`, then on the server run "
              "`corral agent register --manager URL --dir DIR TOKEN NAME`.")


@server_app.command("show")
def server_show(server: ServerArg, output: OutputOpt = Format.table) -> None:
    """Show one server (name or id)."""
    api = Api.from_config()
    s = api.servers.get(api.find_target(server, ("SERVER",))["id"])
    runtime = s.get("runtimeInformation") or {}
    show_object(output, s, [
        ("ID", lambda x: x["id"]), ("Name", lambda x: x["name"]),
        ("Status", lambda x: status(x["status"])),
        ("Group", lambda x: x.get("serverGroupName")), ("Cluster", lambda x: x.get("clusterName")),
        ("Agent", lambda x: x.get("agentVersion")),
        ("Host", lambda x: runtime.get("hostname")),
        ("OS", lambda x: " ".join(str(v) for v in (runtime.get("osInformation") or {}).values()
                                  if v)[:80]),
        ("Python", lambda x: (runtime.get("pythonInformation") or {}).get("version")),
        ("Addresses", lambda x: ", ".join(a["ip"] for a in x.get("addresses") or [])),
        ("Last seen", lambda x: ago(x.get("lastSeen"))),
        ("Registered", lambda x: ago(x["timeCreated"])),
        ("Certificate until", lambda x: when(x.get("certificateExpirationDate"))),
        ("Certificate CA", lambda x: (x.get("certificateAuthority") or "")[:23]),
        ("Renewal asked", lambda x: when(x.get("certificateRenewalDue"))),
        ("Message", lambda x: x.get("statusMessage")),
    ])


@server_app.command("renew-cert")
def server_renew_cert(server: ServerArg) -> None:
    """Have the server's agent renew its certificate now (at its next contact if away)."""
    api = Api.from_config()
    target = api.find_target(server, ("SERVER",))
    api.servers.renew_certificate(target["id"])
    console.print(f"Server {target['id']} ({target['name']}) will renew its certificate at its "
                  "agent's next contact; `corral server show` shows when it has")


@server_app.command("rename")
def server_rename(server: ServerArg, name: NewNameArg) -> None:
    """Rename a server."""
    _rename("SERVER", server, name)


@server_app.command("delete")
def server_delete(server: ServerArg, yes: YesOpt = False) -> None:
    """Delete a server: its certificate is revoked and its agent refused."""
    _delete("SERVER", server, yes)


@server_app.command("token")
def server_token(
    rotate: Annotated[bool, typer.Option(help="Revoke the current token, make a new one")] = False,
    max_uses: Annotated[int | None, typer.Option(
        help="Make a separate token good for this many registrations")] = None,
    expires_in: Annotated[int | None, typer.Option(
        help="...and for this many seconds (with --max-uses)")] = None,
) -> None:
    """Print the registration token for new servers of this environment."""
    api = Api.from_config()
    if max_uses is not None:
        body: dict[str, int] = {"maxUses": max_uses}
        if expires_in is not None:
            body["expiresInSeconds"] = expires_in
        token = api.servers.new_registration_token(body)
    else:
        token = api.servers.registration_token(rotate=rotate)
    typer.echo(token)


@server_app.command("ca-fingerprint")
def server_ca_fingerprint() -> None:
    """Print the control plane's CA fingerprint, for `corral agent register --ca-fingerprint`."""
    api = Api.from_config()
    r = api.request("GET", "/hybrid/api/v1/servers/registrationToken")
    typer.echo(r.json()["caFingerprint"])


# --- groups --------------------------------------------------------------------------------

GROUP_COLUMNS: list[Column] = [
    ("ID", lambda g: g["id"]), ("NAME", lambda g: g["name"]),
    ("STATUS", lambda g: status(g.get("detailedStatus") or g["status"])),
    ("SERVERS", lambda g: ", ".join(s["name"] for s in g["servers"])),
]


def _server_ids(api: Api, servers: list[str]) -> list[int]:
    return [api.find_target(s, ("SERVER",))["id"] for s in servers]


@group_app.command("create")
def group_create(name: Annotated[str, typer.Argument(help="The new group's name")],
                 servers: Annotated[list[str] | None, typer.Argument(
                     help="Its servers, by name or ID")] = None,
                 output: OutputOpt = Format.table) -> None:
    """Create a server group from individual servers (names or ids)."""
    api = Api.from_config()
    g = api.groups.create(name, _server_ids(api, servers or []))
    _show_group(output, g)


@group_app.command("list")
def group_list(output: OutputOpt = Format.table) -> None:
    """List server groups."""
    show_list(output, Api.from_config().groups.list(), GROUP_COLUMNS,
              "No server groups. Create one with `corral group create NAME SERVER...`.")


def _show_group(output: Format, g: dict[str, Any]) -> None:
    if output is Format.json:
        show_object(output, g, [])
        return
    console.print(f"[bold]{g['name']}[/] (server group {g['id']}) {status(g['status'])}")
    show_list(output, g["servers"], SERVER_COLUMNS, "No servers in this group.")


@group_app.command("show")
def group_show(group: GroupArg, output: OutputOpt = Format.table) -> None:
    """Show a server group and its servers."""
    api = Api.from_config()
    _show_group(output, api.groups.get(api.find_target(group, ("SERVER_GROUP",))["id"]))


@group_app.command("add")
def group_add(group: GroupArg, server: ServerArg) -> None:
    """Add a server; the group's applications are deployed to it."""
    api = Api.from_config()
    gid = api.find_target(group, ("SERVER_GROUP",))["id"]
    sid = api.find_target(server, ("SERVER",))["id"]
    api.groups.add(gid, sid)
    console.print(f"Added server {sid} to server group {gid}")


@group_app.command("remove")
def group_remove(group: GroupArg, server: ServerArg) -> None:
    """Remove a server; it keeps the group's applications as its own."""
    api = Api.from_config()
    gid = api.find_target(group, ("SERVER_GROUP",))["id"]
    sid = api.find_target(server, ("SERVER",))["id"]
    api.groups.remove(gid, sid)
    console.print(f"Removed server {sid} from server group {gid}")


@group_app.command("rename")
def group_rename(group: GroupArg, name: NewNameArg) -> None:
    """Rename a server group."""
    _rename("SERVER_GROUP", group, name)


@group_app.command("delete")
def group_delete(group: GroupArg, yes: YesOpt = False) -> None:
    """Delete a server group (it must have no applications)."""
    _delete("SERVER_GROUP", group, yes)


# --- clusters ------------------------------------------------------------------------------

CLUSTER_COLUMNS: list[Column] = [
    ("ID", lambda c: c["id"]), ("NAME", lambda c: c["name"]),
    ("STATUS", lambda c: status(c["status"])),
    ("MODE", lambda c: "multicast" if c["multicastEnabled"] else "unicast"),
    ("PRIMARY", lambda c: c.get("primaryNodeId") or ""),
    ("SERVERS", lambda c: ", ".join(s["name"] for s in c["servers"])),
]


def _member(api: Api, spec: str) -> tuple[int, str | None]:
    """`SERVER` or `SERVER=IP`: (its id, its address)."""
    server, _, ip = spec.partition("=")
    return int(api.find_target(server, ("SERVER",))["id"]), ip or None


@cluster_app.command("create")
def cluster_create(
    name: Annotated[str, typer.Argument(help="The new cluster's name")],
    multicast: Annotated[bool, typer.Option("--multicast", help="Peers find each other by "
                                            "multicast; otherwise give --server ID=IP")] = False,
    server: Annotated[list[str] | None, typer.Option(
        "--server", help="A member: SERVER or SERVER=IP (repeat)")] = None,
    output: OutputOpt = Format.table,
) -> None:
    """Create a cluster (unicast clusters need every server's IP)."""
    api = Api.from_config()
    c = api.clusters.create(name, multicast, [_member(api, s) for s in server or []])
    _show_cluster(output, c)


@cluster_app.command("list")
def cluster_list(output: OutputOpt = Format.table) -> None:
    """List clusters."""
    show_list(output, Api.from_config().clusters.list(), CLUSTER_COLUMNS,
              "No clusters. Create one with `corral cluster create NAME --server ID=IP ...`.")


def _show_cluster(output: Format, c: dict[str, Any]) -> None:
    if output is Format.json:
        show_object(output, c, [])
        return
    mode = "multicast" if c["multicastEnabled"] else "unicast"
    console.print(f"[bold]{c['name']}[/] (cluster {c['id']}, {mode}) {status(c['status'])}"
                  f"  primary: {c.get('primaryNodeId') or '-'}")
    show_list(output, c["servers"], [*SERVER_COLUMNS[:3], ("IP", lambda s: s.get("serverIp"))],
              "No servers in this cluster.")


@cluster_app.command("show")
def cluster_show(cluster: ClusterArg, output: OutputOpt = Format.table) -> None:
    """Show a cluster, its members and its primary node."""
    api = Api.from_config()
    _show_cluster(output, api.clusters.get(api.find_target(cluster, ("CLUSTER",))["id"]))


@cluster_app.command("add")
def cluster_add(cluster: ClusterArg, server: Annotated[str, typer.Argument(help="SERVER or SERVER=IP")]) -> None:
    """Add a server to a cluster."""
    api = Api.from_config()
    cid = api.find_target(cluster, ("CLUSTER",))["id"]
    sid, ip = _member(api, server)
    api.clusters.add(cid, sid, ip)
    console.print(f"Added server {sid} to cluster {cid}")


@cluster_app.command("remove")
def cluster_remove(cluster: ClusterArg, server: ServerArg) -> None:
    """Remove a server from a cluster (the cluster's applications leave it)."""
    api = Api.from_config()
    cid = api.find_target(cluster, ("CLUSTER",))["id"]
    sid = api.find_target(server, ("SERVER",))["id"]
    api.clusters.remove(cid, sid)
    console.print(f"Removed server {sid} from cluster {cid}")


@cluster_app.command("rename")
def cluster_rename(cluster: ClusterArg, name: NewNameArg) -> None:
    """Rename a cluster."""
    _rename("CLUSTER", cluster, name)


@cluster_app.command("delete")
def cluster_delete(cluster: ClusterArg, yes: YesOpt = False) -> None:
    """Delete a cluster (it must have no applications)."""
    _delete("CLUSTER", cluster, yes)


