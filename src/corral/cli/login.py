"""`corral login | logout | env`: sign-ins kept in profiles."""

from __future__ import annotations

import contextlib
import sys
from typing import Annotated, Any

import typer

from corral.cli.api_client import Api
from corral.cli.output import Format, OutputOpt, console, fail, show_list
from corral.cli.profiles import Config, Profile, trust
from corral.client import ApiError, Client

env_app = typer.Typer(help="Environments: list, create, rename and delete them (admins), and "
                      "choose the one commands act in.", no_args_is_help=True)


def login(
    url: Annotated[str | None, typer.Option(help="Corral's URL [CORRAL_URL]")] = None,
    username: Annotated[str | None, typer.Option("--username", "-u")] = None,
    password: Annotated[str | None, typer.Option(
        "--password", envvar="CORRAL_PASSWORD", help="The user's password; prompted for when absent at a terminal")] = None,
    client_id: Annotated[str | None, typer.Option(help="Connected app client id")] = None,
    client_secret: Annotated[str | None, typer.Option(
        envvar="CORRAL_CLIENT_SECRET", help="The connected app's secret")] = None,
    env: Annotated[str | None, typer.Option(help="Environment to act in")] = None,
    ca_cert: Annotated[str | None, typer.Option(help="CA certificate for an HTTPS URL")] = None,
    profile: Annotated[str | None, typer.Option(help="Profile name (several Corrals)")] = None,
) -> None:
    """Log in with a username and password, or as a connected app; keep the token."""
    config = Config.load()
    name = profile or config.name
    stored = config.profiles.get(name, Profile())
    target_url = (url or stored.url).rstrip("/")
    client = Client(target_url, verify=trust(ca_cert or stored.ca_cert), timeout=30)
    try:
        if client_id:
            if not client_secret:
                client_secret = typer.prompt("Client secret", hide_input=True)
            token = client.login_client(client_id, client_secret)
            who = f"connected app {client_id}"
        else:
            if not username:
                if not sys.stdin.isatty():
                    fail("--username is required when not at a terminal")
                username = typer.prompt("Username")
            if not password:
                if not sys.stdin.isatty():
                    fail("--password or CORRAL_PASSWORD is required when not at a terminal")
                password = typer.prompt("Password", hide_input=True)
            token = client.login(username, password)
            who = username
    except ApiError as exc:
        fail(exc.message)
    fresh = Profile(url=target_url, token=token, username=who,
                    ca_cert=ca_cert or stored.ca_cert, client_id=client_id,
                    env_name=env or stored.env_name)
    api = Api(fresh)  # resolves org and environment now, so mistakes show at once
    config.profiles[name] = api.profile
    config.current = name
    config.save()
    console.print(f"Logged in to {target_url} as {who}; environment [bold]{api.profile.env_name}[/]")


def logout() -> None:
    """Revoke the token and forget it."""
    config = Config.load()
    stored = config.profiles.get(config.name)
    if stored is None or not stored.token:
        console.print("Not logged in.")
        return
    with contextlib.suppress(ApiError):  # the token is forgotten here either way
        Client(stored.url, token=stored.token, verify=trust(stored.ca_cert),
               timeout=10).send("POST", "/accounts/api/logout")
    stored.token = None
    config.save()
    console.print("Logged out.")


@env_app.command("list")
def env_list(output: OutputOpt = Format.table) -> None:
    """List the organization's environments."""
    api = Api.from_config(need_env=False)
    _, envs = _environments(api)
    current = api.profile.env_name
    show_list(output, envs, [
        ("", lambda e: "*" if e["name"] == current else ""),
        ("NAME", lambda e: e["name"]), ("TYPE", lambda e: e["type"]), ("ID", lambda e: e["id"]),
    ], "No environments.")


def _environments(api: Api) -> tuple[str, list[dict[str, Any]]]:
    org = api.get_json("/accounts/api/users/me")["organization"]["id"]
    return org, api.get_json(f"/accounts/api/organizations/{org}/environments")["data"]


def _environment(api: Api, ident: str) -> tuple[str, dict[str, Any]]:
    org, envs = _environments(api)
    found = [e for e in envs if ident in (e["name"], e["id"])]
    if not found:
        fail(f"no environment named {ident!r}; `corral env list` shows them")
    return org, found[0]


@env_app.command("create")
def env_create(
    name: Annotated[str, typer.Argument(help="The new environment's name")],
    kind: Annotated[str, typer.Option("--type", help="sandbox, production or design")]
    = "sandbox",
) -> None:
    """Create an environment (admins)."""
    api = Api.from_config(need_env=False)
    org, _ = _environments(api)
    env = api.request("POST", f"/accounts/api/organizations/{org}/environments",
                      json={"name": name, "type": kind}).json()
    console.print(f"Created environment [bold]{env['name']}[/] ({env['type']}, id {env['id']})")


@env_app.command("rename")
def env_rename(
    ident: Annotated[str, typer.Argument(help="Environment name or id")],
    new_name: Annotated[str, typer.Argument(help="Its new name")],
) -> None:
    """Rename an environment (admins); ids, servers and applications stay."""
    api = Api.from_config(need_env=False)
    org, env = _environment(api, ident)
    api.request("PUT", f"/accounts/api/organizations/{org}/environments/{env['id']}",
                json={"name": new_name})
    console.print(f"Renamed environment {env['name']} to [bold]{new_name}[/]")


@env_app.command("delete")
def env_delete(
    ident: Annotated[str, typer.Argument(help="Environment name or id")],
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation")]
    = False,
) -> None:
    """Delete an empty environment (admins): one that still holds servers, groups, clusters or
    applications is refused."""
    api = Api.from_config(need_env=False)
    org, env = _environment(api, ident)
    if not yes and not typer.confirm(f"Delete environment {env['name']} ({env['id']})?"):
        raise typer.Exit(1)
    api.request("DELETE", f"/accounts/api/organizations/{org}/environments/{env['id']}")
    console.print(f"Deleted environment {env['name']}")


@env_app.command("use")
def env_use(name: Annotated[str, typer.Argument(help="Environment name or id")]) -> None:
    """Act in this environment from now on."""
    config = Config.load()
    active = config.active()
    active.env_id, active.env_name = None, name
    api = Api(active)
    stored = config.profiles.setdefault(config.name, Profile(url=active.url))
    stored.env_id, stored.env_name = api.profile.env_id, api.profile.env_name
    config.save()
    console.print(f"Now acting in environment [bold]{api.profile.env_name}[/]")
