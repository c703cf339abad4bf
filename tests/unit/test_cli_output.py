"""How the CLI prints: help without value types on plain flags, hints and errors that are
never wrapped in the middle of a command."""

from __future__ import annotations

import io

import pytest
import typer
from rich.console import Console
from typer.testing import CliRunner

from corral.cli import app, output


def test_plain_flags_show_no_type() -> None:
    r = CliRunner().invoke(app, ["app", "deploy", "--help"], env={"COLUMNS": "120"})
    assert r.exit_code == 0
    wait = next(line for line in r.output.splitlines() if "--wait" in line)
    assert "<bool>" not in r.output, wait
    timeout = next(line for line in r.output.splitlines() if "--timeout" in line)
    assert "<float>" in timeout  # options that take a value still say which


def test_errors_and_hints_are_not_wrapped(monkeypatch: pytest.MonkeyPatch) -> None:
    narrow = io.StringIO()
    monkeypatch.setattr(output, "err_console", Console(file=narrow, width=30))
    monkeypatch.setattr(output, "console", Console(file=narrow, width=30))
    command = "corral app deploy FILE --name NAME --target TARGET"
    output.hint(f"No applications. Deploy one with `{command}`.")
    with pytest.raises(typer.Exit):
        output.fail(f"not logged in; run `{command}`")
    lines = narrow.getvalue().splitlines()
    assert len(lines) == 2 and all(command in line for line in lines)
