"""Helpers shared by the CLI's server-side commands."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

if TYPE_CHECKING:
    from corral.config import Settings

DataDirOpt = Annotated[
    Path | None,
    typer.Option("--data-dir", help="Where the database, CA and artifacts live [CORRAL_DATA_DIR]"),
]

# The arguments commands share, each with what `--help` says of it.
AppArg = Annotated[str, typer.Argument(help="The application, by name or ID", show_default=False)]
ServerArg = Annotated[str, typer.Argument(help="The server, by name or ID", show_default=False)]
GroupArg = Annotated[str, typer.Argument(help="The server group, by name or ID",
                                         show_default=False)]
ClusterArg = Annotated[str, typer.Argument(help="The cluster, by name or ID", show_default=False)]
NewNameArg = Annotated[str, typer.Argument(help="The new name", show_default=False)]
UserArg = Annotated[str, typer.Argument(help="The user's sign-in name", show_default=False)]


def settings_from(**overrides: Any) -> Settings:
    """CLI flags override `CORRAL_*` environment variables, which override defaults. A value
    that cannot be used is one line per setting, naming its variable, and exit 2. (Imported
    here: the client commands start faster without the settings machinery.)"""
    from pydantic import ValidationError

    from corral.config import Settings

    try:
        return Settings(**{k: v for k, v in overrides.items() if v is not None})
    except ValidationError as exc:
        for error in exc.errors():
            name = ".".join(str(part) for part in error["loc"])
            if not name:  # a rule across settings names its variables itself
                typer.echo(f"error: {error['msg'].removeprefix('Value error, ')}", err=True)
                continue
            typer.echo(f"error: CORRAL_{name.upper()} ({error.get('input')!r}): {error['msg']}",
                       err=True)
        raise typer.Exit(2) from None
