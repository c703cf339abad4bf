"""How the CLI prints: help without value types on plain flags, hints and errors that are
never wrapped in the middle of a command."""

from __future__ import annotations

import io
import re
from typing import Any

import pytest
import typer
import typer.main
from rich.console import Console
from typer.testing import CliRunner

from corral.cli import app, output


def test_plain_flags_show_no_type() -> None:
    r = CliRunner().invoke(app, ["app", "deploy", "--help"], env={"COLUMNS": "120"})
    assert r.exit_code == 0
    wait = next(line for line in r.output.splitlines() if "--wait" in line)
    assert "<bool>" not in r.output, wait
    timeout = next(line for line in r.output.splitlines() if "--timeout" in line)
    assert "TIMEOUT" in timeout  # an option that takes a value names it, as gh and nomad do
    output_line = next(line for line in r.output.splitlines() if "--output" in line)
    assert "table|json" in output_line  # a choice lists its choices
    for python_type in ("<str>", "<float>", "<list[str]>", "<int range>", "<bool>"):
        assert python_type not in r.output
    serve = CliRunner().invoke(app, ["serve", "--help"], env={"COLUMNS": "120"}).output
    assert "--no-tls" in serve and "<bool>" not in serve  # on/off pairs take no value either
    summaries = CliRunner().invoke(app, ["app", "--help"], env={"COLUMNS": "100"}).output
    deploy = next(line for line in summaries.splitlines() if "│ deploy " in line)
    assert deploy.rstrip(" │").endswith("another application's.")  # one sentence, one line


def _commands() -> list[tuple[list[str], Any]]:
    """Every command of `corral`, with the words that call it (Typer's own click)."""
    root = typer.main.get_command(app)
    ctx = root.context_class(root)
    found: list[tuple[list[str], Any]] = []

    def walk(command: Any, path: list[str]) -> None:
        if hasattr(command, "list_commands"):
            for name in command.list_commands(ctx):
                sub = command.get_command(ctx, name)
                assert sub is not None
                walk(sub, [*path, name])
        else:
            found.append((path, command))

    walk(root, [])
    return found


def test_every_argument_is_described_and_named_plainly() -> None:
    """`corral X --help` says what each argument takes, names it in capitals in the usage
    line (`APPLICATION`, `[FILE]`), and shows no Python type anywhere."""
    commands = _commands()
    assert len(commands) > 40
    for path, command in commands:
        ctx = command.context_class(command)
        for param in command.params:
            if param.param_type_name != "argument":
                continue
            where = f"corral {' '.join(path)}: {param.name}"
            assert param.help, where
            assert param._usage_display_name().strip("[].") == param.name.upper(), where
            assert param.display_type_rich(ctx) is None, where
    for path in (["group", "create"], ["app", "redeploy"], ["agent", "register"]):
        shown = CliRunner().invoke(app, [*path, "--help"], env={"COLUMNS": "120"}).output
        usage = next(line for line in shown.splitlines() if "Usage:" in line)
        assert "{" not in usage and "<" not in usage, usage
        assert re.search(r"<(str|int|float|bool|path|file|list)", shown) is None, shown


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


def test_an_instance_not_yet_running_reads_deploying_and_has_no_url() -> None:
    from corral.cli.apps import _status_table

    app_json = {"name": "shop", "lastReportedStatus": "UNDEPLOYED", "desiredStatus": "STARTED",
                "serverArtifacts": [
                    {"serverName": "web-1", "deploymentId": 1, "lastReportedStatus": "UNDEPLOYED",
                     "url": "http://10.0.0.1:8081/"},
                    {"serverName": "web-2", "deploymentId": 1,
                     "lastReportedStatus": "DEPLOYMENT_FAILED", "url": "http://10.0.0.2:8081/",
                     "message": "exited with code 3"},
                    {"serverName": "web-3", "deploymentId": 1, "lastReportedStatus": "STARTED",
                     "url": "http://10.0.0.3:8081/"}]}
    shown = io.StringIO()
    Console(file=shown, width=120).print(_status_table(app_json))
    rows = {line.split()[0]: line for line in shown.getvalue().splitlines()[2:]}
    assert "deploying" in rows["web-1"] and "UNDEPLOYED" not in rows["web-1"]
    assert "http" not in rows["web-1"] and "http" not in rows["web-2"]
    assert "http://10.0.0.3:8081/" in rows["web-3"]
    stopped = io.StringIO()
    Console(file=stopped, width=120).print(_status_table(
        app_json | {"desiredStatus": "STOPPED", "serverArtifacts": app_json["serverArtifacts"][:1]}))
    assert "UNDEPLOYED" in stopped.getvalue()  # meant to be stopped: the word stays


def test_app_list_fits_80_columns_without_cutting_a_status(
        monkeypatch: pytest.MonkeyPatch) -> None:
    from corral.cli.apps import APP_COLUMNS

    narrow = io.StringIO()
    monkeypatch.setattr(output, "console", Console(file=narrow, width=80))
    failed = {"id": 12, "name": "storefront-checkout-service", "desiredStatus": "STARTED",
              "lastReportedStatus": "DEPLOYMENT_FAILED", "timeUpdated": 0,
              "target": {"name": "production-web-servers", "type": "SERVER_GROUP"},
              "serverArtifacts": [{"lastReportedStatus": "DEPLOYMENT_FAILED", "port": 8081},
                                  {"lastReportedStatus": "STARTED", "port": 8081}]}
    running = failed | {"id": 3, "name": "hello", "lastReportedStatus": "STARTED",
                        "target": {"name": "web-1", "type": "SERVER"}}
    output.show_list(output.Format.table, [failed, running], APP_COLUMNS, "none")
    lines = narrow.getvalue().splitlines()
    assert len(lines) == 3, lines  # a header and one line per application
    assert all(len(line) <= 80 for line in lines)
    assert "DEPLOYMENT_FAILED" in lines[1] and "1/2" in lines[1] and "8081" in lines[1]
    assert "web-1 " in lines[2] and "STARTED" in lines[2]


def test_app_history_is_one_line_per_deployment_at_80_columns(
        monkeypatch: pytest.MonkeyPatch) -> None:
    from corral.cli.apps import HISTORY_COLUMNS

    narrow = io.StringIO()
    monkeypatch.setattr(output, "console", Console(file=narrow, width=80))
    failed = {"id": 7, "deploymentId": 3, "kind": "redeploy", "state": "DEPLOYMENT_FAILED",
              "artifact": {"name": "storefront.zip", "sha256": "ab" * 32},
              "createdBy": "admin", "startedAt": 0,
              "servers": [{"serverName": "web-1", "status": "DEPLOYMENT_FAILED",
                           "message": "health check failed: GET /health answered 500 three "
                                      "times in a row; reverted to deployment 2"},
                          {"serverName": "web-2", "status": "WAITING",
                           "message": "never reached: runs deployment 2"}]}
    output.show_list(output.Format.table, [failed, failed | {"id": 6, "state": "SUCCEEDED"}],
                     HISTORY_COLUMNS, "none")
    lines = narrow.getvalue().splitlines()
    assert len(lines) == 3, lines
    assert all(len(line) <= 80 for line in lines)
    assert "DEPLOYMENT_FAILED" in lines[1] and "SUCCEEDED" in lines[2]


def test_audit_rows_say_what_happened_or_drop_the_api_prefixes(monkeypatch: pytest.MonkeyPatch) -> None:
    from corral.cli.audit import AUDIT_COLUMNS

    shown = io.StringIO()
    monkeypatch.setattr(output, "console", Console(file=shown, width=100))
    event = {"time": 1796600000000, "actor": {"name": "admin", "kind": "user"},
             "source": "127.0.0.1", "action": "PATCH /hybrid/api/v1/applications/{app_id}",
             "resource": "/hybrid/api/v1/applications/12", "outcome": "success", "status": 200}
    user = event | {"action": "POST /accounts/api/organizations/{org_id}/users",
                    "resource": "/accounts/api/organizations/4f1c0e2a-aaaa/users"}
    said = event | {"description": "redeploy storefront (deployment 3)"}
    output.show_list(output.Format.table, [event, user, said], AUDIT_COLUMNS, "none")
    lines = shown.getvalue().splitlines()
    assert len(lines) == 4 and all(len(line) <= 100 for line in lines)
    assert "PATCH /applications/12 " in lines[1]  # what was changed, when nothing said more
    assert "POST /users " in lines[2] and "…" not in "".join(lines)
    assert "redeploy storefront (deployment 3)" in lines[3] and "PATCH" not in lines[3]
