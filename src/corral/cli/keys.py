"""`corral keys`: the keys that seal secure property values, rotated with every control plane
stopped (docs/security.md, "Secure properties")."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from corral.cli.common import DataDirOpt, settings_from

app = typer.Typer(help="Keys that seal secrets.", no_args_is_help=True)


@app.command()
def rotate(
    data_dir: DataDirOpt = None,
    new_master_key_file: Annotated[Path | None, typer.Option(
        "--new-master-key-file",
        help="Replicas: the master key every replica is started with from now on (a file, so "
        "that it stays out of the shell's history)")] = None,
    force: Annotated[bool, typer.Option(
        "--force", help="Rotate although a control plane ran on the database within the last "
        "minute (one that crashed)")] = False,
) -> None:
    """Seal every secure property value again with a new key; on replicas, seal the keys they
    share with a new master key.

    Stop every control plane of the database first. Then start them again (replicas with the
    new CORRAL_MASTER_KEY). A crash part way leaves every value readable: run it again.
    """
    from corral.controlplane import CannotStart, rotate_keys
    from corral.errors import CorralError

    settings = settings_from(data_dir=data_dir)
    try:
        new_master = new_master_key_file.read_text() if new_master_key_file else None
        done = rotate_keys(settings, new_master, force=force)
    except OSError as exc:
        typer.echo(f"error: cannot read {new_master_key_file}: {exc.strerror}", err=True)
        raise typer.Exit(2) from None
    except CannotStart as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    except CorralError as exc:
        typer.echo(f"error: {exc.message}", err=True)
        raise typer.Exit(1) from None
    typer.echo(f"sealed again: the secure properties of {done.rows} row(s), with a new key")
    if done.master_key_changed:
        typer.echo("the shared keys are sealed with the new master key: start every replica "
                   "with it (CORRAL_MASTER_KEY or CORRAL_MASTER_KEY_FILE)")
