"""`corral plan`, `corral apply`, `corral export`: an environment described in one reviewed
file (docs/fleet-file.md)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.markup import escape

from corral.cli.api_client import Api
from corral.cli.output import Format, OutputOpt, console, fail
from corral.client import ApiError

if TYPE_CHECKING:  # imported when a command runs: `corral --help` stays quick
    from corral.fleetfile import Prepared

FileOpt = Annotated[Path, typer.Option("--file", "-f", help="The fleet file (YAML)",
                                       show_default=False)]
PruneOpt = Annotated[bool, typer.Option(
    "--prune", help="Also delete the environment's groups, clusters and applications the file "
    "does not name (never servers)")]
STYLE = {"create": "green", "change": "yellow", "replace": "magenta", "delete": "red"}


def _prepared(file: Path, prune: bool) -> tuple[Api, Prepared]:
    from corral import fleetfile
    from corral.fleetfile.document import FileRefused

    api = Api.from_config()
    try:
        return api, fleetfile.prepare(api.client, file, prune=prune,
                                      environment=api.profile.env_name)
    except FileRefused as exc:
        fail(str(exc))
    except ApiError as exc:
        fail(exc.message)


def _show(made: Prepared, file: Path) -> None:
    from corral.fleetfile.plan import KIND_WORDS, SYMBOLS

    plan = made.plan
    if plan.empty:
        console.print(f"No changes: environment {plan.environment} is as {file.name} says.")
        return
    for c in plan.changes:
        style = STYLE[c.action]
        console.print(f"[{style}]{SYMBOLS[c.action]} {KIND_WORDS[c.kind]} {escape(c.name)}[/]",
                      highlight=False)
        for f in c.fields:
            before = f"{escape(f.before)} → " if f.before else ""
            console.print(f"    {escape(f.name)}: {before}{escape(f.after) or '(none)'}",
                          highlight=False)
    n = plan.counts()
    console.print(f"Plan for {plan.environment}: {n['create']} to create, {n['change']} to "
                  f"change, {n['replace']} to replace, {n['delete']} to delete.")


def plan(file: FileOpt, prune: PruneOpt = False, output: OutputOpt = Format.table) -> None:
    """Show what `corral apply` would change, and change nothing.

    Exit status as `terraform plan -detailed-exitcode`: 0 no change, 2 changes, 1 an error.

    Examples:
      corral plan -f fleet.yaml
      corral plan -f fleet.yaml --prune -o json
    """
    _, made = _prepared(file, prune)
    if output is Format.json:
        console.print_json(json.dumps(made.plan.as_json()))
    else:
        _show(made, file)
    raise typer.Exit(0 if made.plan.empty else 2)


def apply(
    file: FileOpt,
    prune: PruneOpt = False,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Act without asking")] = False,
    wait: Annotated[bool, typer.Option(
        "--wait", help="Wait until every application deployed or changed settles")] = False,
    timeout: Annotated[float, typer.Option(help="Seconds --wait waits at most")] = 300,
) -> None:
    """Show the plan, ask, and carry it out.

    Groups and clusters first, then applications; pruned applications before pruned groups.
    Only changed artifacts are uploaded. A failure stops there and says what was done and what
    was not: run it again to converge.

    Examples:
      corral apply -f fleet.yaml
      corral apply -f fleet.yaml --yes --wait
    """
    from corral.fleetfile.apply import Applier, ApplyFailed

    api, made = _prepared(file, prune)
    _show(made, file)
    if made.plan.empty:
        return
    if not yes:
        if not sys.stdin.isatty():
            fail("no terminal to ask at: give --yes to apply without asking")
        if not typer.confirm("Apply these changes?"):
            fail("nothing was changed")
    applier = Applier(api.client, made.current,
                      lambda step: console.print(f"  {escape(step)}", highlight=False))
    try:
        done = applier.run(made.plan, wait=wait, timeout=timeout)
    except ApplyFailed as exc:
        console.print(f"{len(exc.done)} step(s) done; not done:", highlight=False)
        for step in exc.left:
            console.print(f"  {escape(step)}", highlight=False)
        fail(f"{exc.message}. Run it again to converge.")
    console.print(f"Applied: {len(done)} step(s).")


def export(
    environment: Annotated[str | None, typer.Option(
        "--env", help="The environment (default: the current one)")] = None,
    file: Annotated[Path | None, typer.Option(
        "--file", "-f", help="Write here (default: standard output)")] = None,
) -> None:
    """Write an environment as a fleet file that plans to no change.

    Artifacts are named by checksum (no zip needed); secure properties are `{keep: true}`:
    their values never leave the control plane.
    """
    from corral.fleetfile import export as exporting
    from corral.fleetfile import state

    api = Api.from_config()
    try:
        chosen = api.client.use_environment(environment or api.profile.env_name,
                                            api.client.headers.get("X-ANYPNT-ORG-ID"))
        text = exporting.document(state.read(api.client),
                                  chosen.env_name or environment or "")
    except ApiError as exc:
        fail(exc.message)
    except state.StateRefused as exc:
        fail(str(exc))
    if file is None:
        sys.stdout.write(text)
    else:
        file.write_text(text)
        console.print(f"Wrote {file}")
