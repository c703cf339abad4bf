"""The `corral` command."""

from __future__ import annotations

import typer

from corral.cli import admin, agent, db, serve

app = typer.Typer(
    name="corral",
    help="Corral: register servers, group them, and deploy applications to them.",
    no_args_is_help=True,
    add_completion=True,
)
app.command("serve")(serve.serve)
app.add_typer(admin.app, name="admin")
app.add_typer(db.app, name="db")
app.add_typer(agent.app, name="agent")


def main() -> None:
    app()
