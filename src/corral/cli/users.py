"""`corral user`: the organization's users and their roles (an admin's commands), and one's own
password, over the API."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from corral.cli.api_client import Api
from corral.cli.common import UserArg
from corral.cli.output import Column, Format, OutputOpt, fail, show_list, show_object

user_app = typer.Typer(help="Users and their roles (viewer, operator, admin).",
                       no_args_is_help=True)
RoleOpt = Annotated[str, typer.Option(help="viewer (reads), operator (also changes the fleet "
                                           "and applications) or admin (also users)")]
USER_COLUMNS: list[Column] = [
    ("USERNAME", lambda u: u["username"]), ("ROLE", lambda u: u.get("role", "")),
    ("ENABLED", lambda u: "yes" if u.get("enabled", True) else "no"),
    ("ENVIRONMENTS", lambda u: "all" if u.get("environments") is None
     else ", ".join(u["environments"])),
    ("ID", lambda u: u["id"]),
]


def _users_path(api: Api) -> str:
    return f"/accounts/api/organizations/{api.profile.org_id}/users"


def _find(api: Api, name: str) -> dict[str, Any]:
    users = api.get_json(_users_path(api))["data"]
    for user in users:
        if name in (user["username"], user["id"]):
            return dict(user)
    fail(f"no user {name!r}")


@user_app.command("list")
def user_list(output: OutputOpt = Format.table) -> None:
    """List the organization's users with their roles."""
    api = Api.from_config()
    show_list(output, api.get_json(_users_path(api))["data"], USER_COLUMNS, "No users.")


@user_app.command("create")
def user_create(
    username: UserArg,
    role: RoleOpt = "viewer",
    password: Annotated[str, typer.Option(prompt=True, hide_input=True,
                                          confirmation_prompt=True,
                                          envvar="CORRAL_NEW_USER_PASSWORD")] = "",
    output: OutputOpt = Format.table,
) -> None:
    """Create a user (admin only)."""
    api = Api.from_config()
    user = api.request("POST", _users_path(api), json={
        "username": username, "password": password, "role": role}).json()
    show_object(output, user, USER_COLUMNS)


@user_app.command("set")
def user_set(
    username: UserArg,
    role: Annotated[str | None, typer.Option(help="viewer, operator or admin")] = None,
    enabled: Annotated[bool | None, typer.Option(
        "--enable/--disable", help="Disabling ends the user's sessions at once")] = None,
    output: OutputOpt = Format.table,
) -> None:
    """Change a user's role, or disable or enable the user (admin only)."""
    api = Api.from_config()
    user = _find(api, username)
    body: dict[str, Any] = {}
    if role is not None:
        body["role"] = role
    if enabled is not None:
        body["enabled"] = enabled
    if not body:
        fail("nothing to change: give --role, --enable or --disable")
    changed = api.request("PATCH", f"{_users_path(api)}/{user['id']}", json=body).json()
    show_object(output, changed, USER_COLUMNS)


@user_app.command("delete")
def user_delete(
    username: UserArg,
    yes: Annotated[bool, typer.Option("--yes", help="Do not ask")] = False,
) -> None:
    """Delete a user; their sessions end at once (admin only)."""
    api = Api.from_config()
    user = _find(api, username)
    if not yes and not typer.confirm(f"Delete user {user['username']}?"):
        raise typer.Exit(1)
    api.request("DELETE", f"{_users_path(api)}/{user['id']}")
    typer.echo(f"Deleted user {user['username']}")


@user_app.command("passwd")
def user_passwd(
    current: Annotated[str, typer.Option("--current", prompt="Current password",
                                         hide_input=True)] = "",
    new: Annotated[str, typer.Option("--new", prompt="New password", hide_input=True,
                                     confirmation_prompt=True)] = "",
) -> None:
    """Change your own password; your other sessions end."""
    api = Api.from_config(need_env=False)
    api.request("PUT", "/accounts/api/users/me/password",
                json={"currentPassword": current, "newPassword": new})
    typer.echo("Password changed; your other sessions have ended.")
