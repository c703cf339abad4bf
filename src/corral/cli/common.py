"""Helpers shared by the CLI's server-side commands."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from corral.config import Settings

DataDirOpt = Annotated[
    Path | None,
    typer.Option("--data-dir", help="Where the database, CA and artifacts live [CORRAL_DATA_DIR]"),
]


def settings_from(**overrides: Any) -> Settings:
    """CLI flags override `CORRAL_*` environment variables, which override defaults."""
    return Settings(**{k: v for k, v in overrides.items() if v is not None})
