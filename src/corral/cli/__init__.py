"""The `corral` command: the control plane, the agent, and the client for people."""

from __future__ import annotations

import typer

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


def main() -> None:
    app(prog_name="corral")
