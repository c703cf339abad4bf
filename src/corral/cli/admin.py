"""`corral admin`: users, environments and connected apps, straight on the database."""

from __future__ import annotations

from typing import Annotated

import typer

from corral.cli.common import DataDirOpt, UserArg, settings_from
from corral.errors import CorralError, NotFound

app = typer.Typer(help="Administer users, environments and connected apps.", no_args_is_help=True)


def _run(data_dir: object, action):  # type: ignore[no-untyped-def]
    from corral.controlplane import CannotStart, ControlPlane
    from corral.db.session import transaction
    from corral.domain.accounts import default_organization

    try:
        plane = ControlPlane.open(settings_from(data_dir=data_dir))
    except CannotStart as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    try:
        plane.bootstrap()
        with transaction(plane.sessions) as session:
            return action(session, default_organization(session).id)
    except CorralError as exc:
        typer.echo(f"error: {exc.message}", err=True)
        raise typer.Exit(1) from exc
    finally:
        plane.close()


RoleOpt = Annotated[str, typer.Option(help="viewer, operator or admin")]


@app.command("create-user")
def create_user(
    username: UserArg,
    data_dir: DataDirOpt = None,
    role: RoleOpt = "viewer",
    password: Annotated[
        str, typer.Option(prompt=True, hide_input=True, confirmation_prompt=True,
                          envvar="CORRAL_NEW_USER_PASSWORD")
    ] = "",
) -> None:
    """Create a user in the organization."""
    from corral.domain import accounts

    user_id = _run(data_dir, lambda s, org: accounts.create_user(
        s, org, username, password, role=role).id)
    typer.echo(f"created user {username} ({user_id}, {role})")


@app.command("set-user")
def set_user(
    username: UserArg,
    data_dir: DataDirOpt = None,
    role: Annotated[str | None, typer.Option(help="viewer, operator or admin")] = None,
    enabled: Annotated[bool | None, typer.Option("--enable/--disable")] = None,
    password: Annotated[str | None, typer.Option(
        envvar="CORRAL_NEW_USER_PASSWORD", help="Reset the password (ends the user's sessions)")
    ] = None,
) -> None:
    """Change a user's role, password or whether it may sign in (a way back in for an
    operator locked out of the API)."""
    from sqlalchemy import select

    from corral.db.models import User
    from corral.domain import accounts

    def change(session, org):  # type: ignore[no-untyped-def]
        user_id = session.scalar(select(User.id).where(User.username == username))
        if user_id is None:
            raise NotFound(f"no user {username!r}")
        user = accounts.update_user(session, org, user_id, role=role, enabled=enabled,
                                    password=password)
        return user.role, user.enabled

    new_role, on = _run(data_dir, change)
    typer.echo(f"user {username}: {new_role}, {'enabled' if on else 'disabled'}")
    if password is not None:
        from corral.controlplane import CREDENTIALS_FILE, forget_first_password

        folder = settings_from(data_dir=data_dir).data_dir
        if forget_first_password(folder, username):
            typer.echo(f"removed {folder / CREDENTIALS_FILE}: it held the old password")


@app.command("create-env")
def create_env(
    name: Annotated[str, typer.Argument(help="The new environment's name")],
    data_dir: DataDirOpt = None,
    env_type: Annotated[str, typer.Option("--type", help="production or sandbox")] = "sandbox",
) -> None:
    """Create an environment."""
    from corral.domain import accounts

    env_id = _run(data_dir, lambda s, org: accounts.create_environment(s, org, name, env_type).id)
    typer.echo(f"created environment {name} ({env_id})")


@app.command("create-connected-app")
def create_connected_app(name: Annotated[str, typer.Argument(help="The app's name")],
                         data_dir: DataDirOpt = None, role: RoleOpt = "viewer") -> None:
    """Create a connected app; prints its client id and secret (shown only once)."""
    from corral.domain import accounts

    def make(session, org):  # type: ignore[no-untyped-def]
        app_row, secret = accounts.create_connected_app(session, org, name, role=role)
        return app_row.client_id, secret

    client_id, secret = _run(data_dir, make)
    typer.echo(f"client_id={client_id}\nclient_secret={secret}")


@app.command("list-envs")
def list_envs(data_dir: DataDirOpt = None) -> None:
    """List the environments with their ids (for X-ANYPNT-ENV-ID)."""
    from corral.domain import accounts

    rows = _run(
        data_dir,
        lambda s, org: [(e.id, e.name, e.type, org) for e in accounts.list_environments(s, org)],
    )
    for env_id, name, env_type, org in rows:
        typer.echo(f"{env_id}  {name:<16} {env_type:<10} org={org}")
