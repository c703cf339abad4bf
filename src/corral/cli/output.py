"""How the CLI prints: Rich tables for people, JSON for scripts, one-line errors."""

from __future__ import annotations

import datetime as dt
import json
import sys
from collections.abc import Callable, Sequence
from enum import Enum
from typing import Annotated, Any, NoReturn

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text
from typer.core import TyperArgument, TyperOption

console = Console()
err_console = Console(stderr=True)


class Format(str, Enum):
    table = "table"
    json = "json"


OutputOpt = Annotated[
    Format, typer.Option("--output", "-o", help="table for people, json for scripts")
]

STATUS_STYLES = {
    "RUNNING": "green", "STARTED": "green", "CREATED": "cyan", "DISCONNECTED": "red",
    "DEPLOYMENT_FAILED": "bold red", "STOPPED": "yellow", "PARTIALLY_STARTED": "yellow",
    "PARTIALLY_RUNNING": "yellow", "UNDEPLOYED": "dim", "DEPLOYING": "blue", "STARTING": "blue",
    "STOPPING": "blue", "SUCCEEDED": "green", "FAILED": "bold red", "ROLLED_BACK": "yellow",
    "CANCELLED": "dim", "IN_PROGRESS": "blue",
}


def fail(message: str, code: int = 1) -> NoReturn:
    # soft_wrap: the terminal wraps, never Rich in the middle of a command to copy
    err_console.print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True)
    raise typer.Exit(code)


def hint(message: str) -> None:
    """A line that names a command to run: never wrapped in the middle of it."""
    console.print(message, style="dim", soft_wrap=True, highlight=False)


def readable_help() -> None:
    """Typer's help shows Python's types: `--wait <bool>` (as if a flag took a value),
    `--name <str>`, `--property <list[str]>`, and arguments as `{name} <str>`. Show instead
    what `gh` and `nomad` show: nothing after a flag (on/off pairs too), the choices of a
    choice, otherwise the value's name (`--name NAME`, `--max-parallel MAX_PARALLEL`), and an
    argument by its name in capitals (`corral app start APPLICATION`, `[FILE]` when optional)
    with no type: its description says what it takes."""
    show = TyperOption.display_type_rich

    def option_type(self: TyperOption, ctx: Any) -> str | None:
        if self.is_flag:
            return None
        if self.type_descriptor.is_choice:
            return (show(self, ctx) or "").strip("<>")
        long = next((o for o in self.opts if o.startswith("--")), self.opts[0])
        return long.lstrip("-").upper().replace("-", "_")

    def argument_in_usage(self: TyperArgument) -> str:
        name = self.display_name_raw.upper()
        name = name if self.required else f"[{name}]"
        return f"{name}..." if self.nargs != 1 else name

    TyperOption.display_type_rich = option_type  # type: ignore[method-assign]
    TyperArgument.display_type_rich = lambda self, ctx: None  # type: ignore[method-assign]
    TyperArgument._usage_display_name = argument_in_usage  # type: ignore[method-assign]


def status(value: str | None) -> str:
    if not value:
        return ""
    style = STATUS_STYLES.get(value)
    return f"[{style}]{value}[/]" if style else value


def ago(ms: int | None) -> str:
    if not ms:
        return ""
    seconds = int(dt.datetime.now(dt.UTC).timestamp() - ms / 1000)
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit} ago"
    return f"{max(seconds, 0)}s ago"


def when(ms: int | None) -> str:
    """A moment as UTC time, and how far off it is."""
    if not ms:
        return ""
    moment = dt.datetime.fromtimestamp(ms / 1000, dt.UTC)
    seconds = int(ms / 1000 - dt.datetime.now(dt.UTC).timestamp())
    if seconds < 0:
        return f"{moment:%Y-%m-%d %H:%M:%S} UTC ({ago(ms)})"
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{moment:%Y-%m-%d %H:%M:%S} UTC (in {seconds // size}{unit})"
    return f"{moment:%Y-%m-%d %H:%M:%S} UTC (in {seconds}s)"


Column = tuple[str, Callable[[dict[str, Any]], Any]]


SHORT_CELL = 20
"""A column whose values are at most this long is never shortened (`DEPLOYMENT_FAILED`)."""


def show_list(fmt: Format, rows: Sequence[dict[str, Any]], columns: Sequence[Column],
              empty: str) -> None:
    if fmt is Format.json:
        print_json(list(rows))
        return
    if not rows:
        hint(empty)
        return
    cells = [[str(value) if (value := get(row)) is not None else "" for _, get in columns]
             for row in rows]
    table = Table(box=None, header_style="bold", pad_edge=False)
    for (title, _), width in zip(columns, _fitted(columns, cells), strict=True):
        table.add_column(title, no_wrap=True, overflow="ellipsis", width=width)
    for line in cells:
        table.add_row(*line)
    console.print(table)


def _fitted(columns: Sequence[Column], cells: list[list[str]]) -> list[int]:
    """One line per row in the terminal's width: short values (status words, counts, times)
    are never cut; longer ones (names, messages) share what is left and end in an ellipsis
    when it is not enough. `show` and `--output json` keep them whole."""
    widest = [max([len(title), *(len(Text.from_markup(line[n]).plain) for line in cells)])
              for n, (title, _) in enumerate(columns)]
    flexible = [n for n, w in enumerate(widest) if w > SHORT_CELL]
    room = console.width - 2 * (len(columns) - 1)  # two spaces between columns
    left = room - sum(w for n, w in enumerate(widest) if n not in flexible)
    needed = sum(widest[n] for n in flexible)
    if needed <= left:
        return widest
    # each shortened column keeps room for its title, and shares the rest by how long it is
    titles = {n: len(columns[n][0]) for n in flexible}
    spare = max(0, left - sum(titles.values()))
    more = sum(widest[n] - titles[n] for n in flexible) or 1
    return [titles[n] + spare * (w - titles[n]) // more if n in flexible else w
            for n, w in enumerate(widest)]


def show_object(fmt: Format, obj: dict[str, Any], fields: Sequence[Column]) -> None:
    if fmt is Format.json:
        print_json(obj)
        return
    table = Table(box=None, show_header=False, pad_edge=False)
    table.add_column(style="bold")
    table.add_column()
    for title, get in fields:
        value = get(obj)
        table.add_row(title, "" if value is None else str(value))
    console.print(table)


def print_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2) + "\n")
