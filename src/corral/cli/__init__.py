"""The `corral` command: the control plane, the agent, and the client for people."""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from typing import Any

import typer
import typer.main
from typer.models import DeveloperExceptionConfig

from corral.cli import (
    admin,
    agent,
    apps,
    audit,
    ca,
    db,
    fleet,
    fleetfile,
    keys,
    login,
    serve,
    users,
)
from corral.cli.output import readable_help

readable_help()

app = typer.Typer(
    name="corral",
    help="Corral: register servers, group them, and deploy applications to them.\n\n"
    "Start with `corral login --url URL`, then `corral server list`.",
    no_args_is_help=True,
    add_completion=True,
    rich_markup_mode="rich",
)
app.command("serve", rich_help_panel="Run")(serve.serve)
app.add_typer(agent.app, name="agent", rich_help_panel="Run")
app.add_typer(admin.app, name="admin", rich_help_panel="Run")
app.add_typer(db.app, name="db", rich_help_panel="Run")
app.add_typer(keys.app, name="keys", rich_help_panel="Run")
app.command("login", rich_help_panel="Sign-in")(login.login)
app.command("logout", rich_help_panel="Sign-in")(login.logout)
app.add_typer(login.env_app, name="env", rich_help_panel="Organization")
app.add_typer(users.user_app, name="user", rich_help_panel="Organization")
app.add_typer(fleet.server_app, name="server", rich_help_panel="Fleet")
app.add_typer(fleet.group_app, name="group", rich_help_panel="Fleet")
app.add_typer(fleet.cluster_app, name="cluster", rich_help_panel="Fleet")
app.add_typer(ca.ca_app, name="ca", rich_help_panel="Fleet")
app.add_typer(apps.app_app, name="app", rich_help_panel="Applications")
app.command("audit", rich_help_panel="Organization")(audit.audit)
app.command("plan", rich_help_panel="Fleet file")(fleetfile.plan)
app.command("apply", rich_help_panel="Fleet file")(fleetfile.apply)
app.command("export", rich_help_panel="Fleet file")(fleetfile.export)


@functools.cache
def command() -> Callable[..., Any]:
    """`app` as the click command that runs it, built once per process. Building it reads the
    signatures of some 130 commands, about 60 ms: one process runs one command, but the test
    run's fork server builds it before it forks hundreds of `corral` processes
    (tests/forkserver.py)."""
    return typer.main.get_command(app)


def main() -> None:
    """What `app(prog_name="corral")` does (typer's `Typer.__call__`), on the command built
    once: an error no command handled is still shown by typer's hook."""
    if sys.excepthook is not typer.main.except_hook:
        sys.excepthook = typer.main.except_hook
    try:
        command()(prog_name="corral")
    except Exception as e:
        setattr(e, typer.main._typer_developer_exception_attr_name, DeveloperExceptionConfig(
            pretty_exceptions_enable=app.pretty_exceptions_enable,
            pretty_exceptions_show_locals=app.pretty_exceptions_show_locals,
            pretty_exceptions_short=app.pretty_exceptions_short))
        raise
