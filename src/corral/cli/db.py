"""`corral db`: schema migrations."""

from __future__ import annotations

import typer

from corral.cli.common import DataDirOpt, settings_from

app = typer.Typer(help="Database schema.", no_args_is_help=True)


@app.command()
def upgrade(data_dir: DataDirOpt = None) -> None:
    """Apply every pending migration (the control plane also does this at start)."""
    from corral.db.migrate import upgrade as run_upgrade
    from corral.db.session import make_engine

    settings = settings_from(data_dir=data_dir)
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    engine = make_engine(settings.resolved_database_url)
    try:
        run_upgrade(engine)
    finally:
        engine.dispose()
    typer.echo("database is up to date")
