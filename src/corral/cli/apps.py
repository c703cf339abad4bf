"""`corral app`: deploy, watch, start, stop, redeploy, delete, read logs."""

from __future__ import annotations

import getpass
import sys
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Annotated, Any, BinaryIO, cast

import typer
from rich.live import Live
from rich.progress import BarColumn, DownloadColumn, Progress, TransferSpeedColumn
from rich.table import Table

from corral.bundle import ZipRefused, check_bundle
from corral.cli.api_client import Api
from corral.cli.common import AppArg
from corral.cli.output import (
    Column,
    Format,
    OutputOpt,
    ago,
    console,
    fail,
    hint,
    show_list,
    show_object,
    status,
)
from corral.cli.profiles import Config
from corral.client.resources import PROPERTIES_SERVICE as SERVICE
from corral.client.resources import Upload, configuration

app_app = typer.Typer(help="Applications: deploy and operate them on targets.",
                      no_args_is_help=True)

WaitOpt = Annotated[bool, typer.Option("--wait", help="Watch every server until it settles; "
                                       "exit 1 on DEPLOYMENT_FAILED or timeout")]
TimeoutOpt = Annotated[float, typer.Option(help="Seconds --wait waits")]
TargetOpt = Annotated[str | None, typer.Option("--target", "-t",
                                               help="Server, group or cluster (name or id)")]
MaxParallelOpt = Annotated[int | None, typer.Option(
    "--max-parallel", min=1, help="Servers of a group or cluster updated at once (default: all)")]
AutoRevertOpt = Annotated[bool, typer.Option(
    "--auto-revert", help="On a failure, return every updated server to the last deployment")]
CanaryOpt = Annotated[int | None, typer.Option(
    "--canary", min=1, help="Update this many servers first, then wait for `corral app promote`")]
MinHealthyOpt = Annotated[float | None, typer.Option(
    "--min-healthy", min=0, help="Seconds an instance must stay healthy before it counts")]
DeadlineOpt = Annotated[float | None, typer.Option(
    "--health-deadline", min=1, help="Seconds an instance may take to become healthy")]


def _rollout(max_parallel: int | None, auto_revert: bool, canary: int | None,
             min_healthy: float | None, deadline: float | None) -> dict[str, Any] | None:
    """The rollout policy, when any rollout option is given."""
    policy: dict[str, Any] = {k: v for k, v in (
        ("maxParallel", max_parallel), ("canary", canary), ("minHealthySeconds", min_healthy),
        ("healthDeadlineSeconds", deadline)) if v is not None}
    if auto_revert:
        policy["autoRevert"] = True
    return policy or None


def _no_rollout_on(server: str) -> None:
    """Rollouts spread a change over a group's or cluster's servers; a lone server has nothing
    to spread it over, nor another server to keep serving while it reverts: say so, once."""
    hint(f"{server} is a single server: rollout options (--max-parallel, --canary, "
         "--auto-revert, --min-healthy, --health-deadline) apply to groups and clusters; "
         "deploying to it at once")


def _watch_rollout(api: Api, app_id: int, timeout: float) -> None:
    """Show the rollout advancing server by server until it ends; exit 1 unless it succeeded."""
    deadline = time.monotonic() + timeout
    shown: tuple[Any, ...] = ()
    while True:
        [now, *_] = api.apps.history(app_id)
        spread = now.get("rollout") or {}
        state = spread.get("state", now["state"])
        seen = (state, tuple(spread.get("updated") or ()),
                tuple((s["serverName"], s["status"]) for s in now["servers"]))
        if seen != shown:
            shown = seen
            servers = ", ".join(f"{s['serverName']}: {s['status']}" for s in now["servers"])
            console.print(f"deployment {now['deploymentId']}: {state}, "
                          f"{len(spread.get('updated') or [])}/{len(now['servers'])} servers "
                          f"updated ({servers})", highlight=False)
        if state in ("SUCCEEDED",):
            console.print(f"[green]rollout of deployment {now['deploymentId']} succeeded[/]")
            return
        if state == "WAITING":
            console.print(f"canary healthy: `corral app promote {app_id}` to go on, "
                          f"`corral app cancel {app_id}` to revert")
            return
        if state in ("FAILED", "REVERTED", "CANCELLED"):
            fail(f"rollout {state.lower()}: {spread.get('message', '')}")
        if time.monotonic() > deadline:
            fail(f"timed out after {timeout:g}s; the rollout is {state}")
        time.sleep(0.5)

KIND_SUFFIX = {"SERVER_GROUP": " (group)", "CLUSTER": " (cluster)"}
APP_COLUMNS: list[Column] = [  # fits 80 columns; `app show` and --output json have the rest
    ("ID", lambda a: a["id"]), ("NAME", lambda a: a["name"]),
    ("TARGET", lambda a: a["target"]["name"] + KIND_SUFFIX.get(a["target"]["type"], "")),
    ("STATUS", lambda a: status(a.get("detailedStatus") or a["lastReportedStatus"])),
    ("UP", lambda a: _counts(a)),
    ("PORT", lambda a: ", ".join(sorted({str(i["port"]) for i in a["serverArtifacts"]
                                          if i.get("port")}))),
    ("UPDATED", lambda a: ago(a["timeUpdated"])),
]


def _counts(app: dict[str, Any]) -> str:
    """Servers where it is STARTED, of those it is meant for."""
    insts = app["serverArtifacts"]
    started = sum(i["lastReportedStatus"] == "STARTED" for i in insts)
    return f"{started}/{len(insts)}"


def _properties(pairs: list[str] | None) -> dict[str, str]:
    props = {}
    for pair in pairs or []:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            fail(f"--property takes KEY=VALUE, not {pair!r}")
        props[key] = value
    return props


SecureOpt = Annotated[list[str] | None, typer.Option(
    "--secure-property", "-s",
    help="NAME=VALUE, write-only (repeat); NAME=- reads the value from standard input, out of "
    "the shell's history")]
SecureFileOpt = Annotated[list[str] | None, typer.Option(
    "--secure-property-file", help="NAME=PATH: the file's content is the value (repeat)")]


def _secure_properties(pairs: list[str] | None, files: list[str] | None,
                       unset: list[str] | None = None) -> dict[str, str | None]:
    """What `--secure-property`, `--secure-property-file` and `--unset-secure-property` give.
    Never echoed: an error names the option and the property, not the value."""
    secure: dict[str, str | None] = {}
    from_stdin = [pair.partition("=")[0] for pair in pairs or [] if pair.endswith("=-")]
    if len(from_stdin) > 1:
        fail("only one --secure-property can read standard input (NAME=-)")
    for pair in pairs or []:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            fail(f"--secure-property takes NAME=VALUE or NAME=- ({key or 'no name'!r} given)")
        if value == "-":
            if sys.stdin.isatty():
                value = getpass.getpass(f"{key}: ")
            else:
                value = sys.stdin.read().removesuffix("\n")
        secure[key] = value
    for pair in files or []:
        key, sep, path = pair.partition("=")
        if not sep or not key or not path:
            fail(f"--secure-property-file takes NAME=PATH, not {pair!r}")
        try:
            secure[key] = Path(path).read_text()
        except (OSError, UnicodeDecodeError) as exc:
            fail(f"cannot read {path} for secure property {key!r}: {exc}")
    for key in unset or []:
        secure[key] = None
    return secure


class _Counting:
    """A file whose reads advance a progress bar (httpx streams the upload through read())."""

    def __init__(self, f: BinaryIO, progress: Progress, task: Any) -> None:
        self._f, self._progress, self._task = f, progress, task

    def read(self, size: int = -1) -> bytes:
        data = self._f.read(size)
        self._progress.advance(self._task, len(data))
        return data

    def __getattr__(self, name: str) -> Any:
        return getattr(self._f, name)


def _upload(file: Path, send: Callable[[Upload], Any]) -> Any:
    """`send` the file (a deploy or redeploy) with a progress bar, after the bundle check."""
    if not file.is_file():
        fail(f"{file} is not a file")
    try:
        with open(file, "rb") as f:
            check_bundle(f)  # the control plane's own rule, before a long upload
    except ZipRefused as exc:
        fail(f"{file} cannot be deployed: {exc}")
    progress = Progress("[progress.description]{task.description}", BarColumn(),
                        DownloadColumn(), TransferSpeedColumn(), console=console,
                        disable=not console.is_terminal, transient=True)
    with progress, open(file, "rb") as f:
        task = progress.add_task(f"uploading {file.name}", total=file.stat().st_size)
        return send((file.name, cast(BinaryIO, _Counting(f, progress, task))))


def _wait(api: Api, app_id: int, want: str, timeout: float, min_deployment: int = 0) -> None:
    """Show each server's status live until all reach `want`."""
    deadline = time.monotonic() + timeout
    last_seen: dict[int, tuple[str, str | None]] = {}
    live = Live(console=console, auto_refresh=False) if console.is_terminal else None
    try:
        if live:
            live.start()
        while True:
            app = api.apps.get(app_id)
            insts = app["serverArtifacts"]
            current = [i for i in insts if i["deploymentId"] >= min_deployment]
            if live:
                live.update(_status_table(app), refresh=True)
            else:
                for i in insts:
                    seen = (_word(app, i), i.get("message"))
                    if last_seen.get(i["serverId"]) != seen:
                        last_seen[i["serverId"]] = seen
                        note = f" ({seen[1]})" if seen[1] else ""
                        console.print(f"{i['serverName']}: {seen[0]}{note}", highlight=False)
            failed = [i for i in current if i["lastReportedStatus"] == "DEPLOYMENT_FAILED"]
            if failed:
                if live:
                    live.stop()
                    live = None
                fail("; ".join(f"{i['serverName']}: {i.get('message') or 'deployment failed'}"
                               for i in failed))
            if insts and len(current) == len(insts) and all(
                    i["lastReportedStatus"] == want for i in insts):
                break
            if time.monotonic() > deadline:
                if live:
                    live.stop()
                    live = None
                fail(f"timed out after {timeout:g}s waiting for {want}; "
                     f"status is {app['lastReportedStatus']}")
            time.sleep(0.5)
    finally:
        if live:
            live.stop()
    console.print(f"[green]{app['name']}[/] is {want} on {len(insts)} server(s)")


def _status_table(app: dict[str, Any]) -> Table:
    table = Table(title=f"{app['name']}: {app['lastReportedStatus']}", box=None,
                  header_style="bold", title_justify="left")
    for col in ("SERVER", "DEPLOYMENT", "STATUS", "URL", "MESSAGE"):
        table.add_column(col)
    for i in app["serverArtifacts"]:
        table.add_row(i["serverName"], str(i["deploymentId"]), status(_word(app, i)),
                      _url(i), i.get("message") or "")
    return table


def _word(app: dict[str, Any], instance: dict[str, Any]) -> str:
    """An instance that has not run yet but is meant to reads "deploying", not `UNDEPLOYED`
    (which reads as a failure on the first line of a new deploy)."""
    word = str(instance["lastReportedStatus"])
    if word == "UNDEPLOYED" and app["desiredStatus"] in ("STARTED", "UPDATED"):
        return "deploying"
    return word


def _url(instance: dict[str, Any]) -> str:
    """Where a running instance answers; none for one that does not run."""
    return str(instance.get("url") or "") if instance["lastReportedStatus"] == "STARTED" else ""


@app_app.command("deploy")
def deploy(
    file: Annotated[Path | None, typer.Argument(
        help="The artifact: a zip with a Procfile (or --from an application)")] = None,
    name: Annotated[str, typer.Option("--name", "-n", help="Application name")] = "",
    target: Annotated[str, typer.Option("--target", "-t", help="Server, group or cluster")] = "",
    source: Annotated[str | None, typer.Option(
        "--from", help="Deploy this application's artifact instead of a file (name or id; "
        "its bytes are shared, not uploaded again)")] = None,
    source_env: Annotated[str | None, typer.Option(
        "--from-env", help="The environment of --from (default: the current one)")] = None,
    prop: Annotated[list[str] | None, typer.Option("--property", "-p", help="KEY=VALUE (repeat)")] = None,
    secure_prop: SecureOpt = None,
    secure_file: SecureFileOpt = None,
    wait: WaitOpt = False,
    timeout: TimeoutOpt = 300,
    output: OutputOpt = Format.table,
    max_parallel: MaxParallelOpt = None,
    auto_revert: AutoRevertOpt = False,
    canary: CanaryOpt = None,
    min_healthy: MinHealthyOpt = None,
    health_deadline: DeadlineOpt = None,
) -> None:
    """Deploy a new application: upload its artifact, or promote another application's.

    `--from` and `--from-env` name the application whose artifact is deployed again (its bytes
    are shared, not uploaded). On a group or cluster, the rollout options update a few servers
    at a time.

    Examples:
      corral app deploy shop.zip --name shop --target web
      corral app deploy --from shop --from-env Sandbox --name shop --target prod-web
      corral app deploy shop.zip -n shop -t web -s db.password=- < password.txt
    """
    if not name or not target:
        fail("--name and --target are required")
    if (file is None) == (source is None):
        fail("give either a FILE to upload or --from APPLICATION")
    api = Api.from_config()
    t = api.find_target(target)
    rollout = _rollout(max_parallel, auto_revert, canary, min_healthy, health_deadline)
    if rollout and t["type"] == "SERVER":
        _no_rollout_on(t["name"])
        rollout = None
    props = _properties(prop)
    secure = _secure_properties(secure_prop, secure_file)
    conf = configuration(name, props, secure) if props or secure else None
    if source is not None:
        origin = _in_environment(source_env).find_app(source) if source_env \
            else api.find_app(source)
        app = api.apps.deploy(name, t["id"], configuration=conf, rollout=rollout,
                              source=origin["id"])
    else:
        assert file is not None
        app = _upload(file, lambda up: api.apps.deploy(name, t["id"], up, configuration=conf,
                                                       rollout=rollout))
    if output is Format.json and not wait:
        show_object(output, app, [])
        return
    console.print(f"Deployed {name} as application {app['id']} to {t['name']}")
    if wait and rollout and t["type"] != "SERVER":
        _watch_rollout(api, app["id"], timeout)
    elif wait:
        _wait(api, app["id"], "STARTED", timeout)


def _in_environment(env: str) -> Api:
    """The signed-in profile, acting in another environment for one command."""
    profile = replace(Config.load().active(), env_id=None, env_name=env)
    return Api(profile)


@app_app.command("list")
def app_list(target: TargetOpt = None, output: OutputOpt = Format.table) -> None:
    """List applications."""
    api = Api.from_config()
    show_list(output, api.apps.list(api.find_target(target)["id"] if target else None),
              APP_COLUMNS,
              "No applications. Deploy one with `corral app deploy FILE --name NAME --target T`.")


@app_app.command("show")
def app_show(application: AppArg, target: TargetOpt = None, output: OutputOpt = Format.table) -> None:
    """Show an application and its status on each server."""
    app = Api.from_config().find_app(application, target)
    if output is Format.json:
        show_object(output, app, [])
        return
    props = (app.get("configuration") or {}).get(SERVICE, {}).get("properties") or {}
    secure = (app.get("configuration") or {}).get(SERVICE, {}).get("secureProperties") or {}
    show_object(output, app, [
        ("ID", lambda a: a["id"]), ("Name", lambda a: a["name"]),
        ("Target", lambda a: f"{a['target']['name']} ({a['target']['type']})"),
        ("Desired", lambda a: a["desiredStatus"]),
        ("Status", lambda a: status(a.get("detailedStatus") or a["lastReportedStatus"])),
        ("File", lambda a: f"{a['artifact']['fileName']} ({a['artifact']['fileSize']} bytes, "
                           f"sha1 {a['artifact']['fileChecksum'][:12]})"),
        ("Properties", lambda a: ", ".join(f"{k}={v}" for k, v in props.items())),
        ("Secure", lambda a: ", ".join(f"{k}={v}" for k, v in secure.items())),
        ("Updated", lambda a: ago(a["timeUpdated"])),
    ])
    console.print(_status_table(app))


def _set_status(application: str, target: str | None, desired: str, wait: bool,
                timeout: float, max_parallel: int | None) -> None:
    api = Api.from_config()
    app = api.find_app(application, target)
    api.apps.set_status(app["id"], desired,
                        None if max_parallel is None else {"maxParallel": max_parallel})
    console.print(f"{app['name']} ({app['id']}): desired status {desired}")
    if wait:
        _wait(api, app["id"], desired, timeout)


@app_app.command("start")
def app_start(application: AppArg, target: TargetOpt = None, wait: WaitOpt = False,
              timeout: TimeoutOpt = 300, max_parallel: MaxParallelOpt = None) -> None:
    """Start an application on every server of its target."""
    _set_status(application, target, "STARTED", wait, timeout, max_parallel)


@app_app.command("stop")
def app_stop(application: AppArg, target: TargetOpt = None, wait: WaitOpt = False,
             timeout: TimeoutOpt = 300, max_parallel: MaxParallelOpt = None) -> None:
    """Stop an application on every server of its target."""
    _set_status(application, target, "STOPPED", wait, timeout, max_parallel)


@app_app.command("redeploy")
def app_redeploy(
    application: AppArg,
    file: Annotated[Path | None, typer.Argument(help="New artifact; none redeploys the current")] = None,
    target: TargetOpt = None,
    wait: WaitOpt = False,
    timeout: TimeoutOpt = 300,
    max_parallel: MaxParallelOpt = None,
    auto_revert: AutoRevertOpt = False,
    canary: CanaryOpt = None,
    min_healthy: MinHealthyOpt = None,
    health_deadline: DeadlineOpt = None,
    secure_prop: SecureOpt = None,
    secure_file: SecureFileOpt = None,
    unset_secure: Annotated[list[str] | None, typer.Option(
        "--unset-secure-property", help="NAME: remove this secure property (repeat)")] = None,
) -> None:
    """Redeploy with a new artifact, or restart with the current one.

    On a group or cluster, the rollout options update a few servers at a time. Secure
    properties not named are kept; the other properties stay as they are.

    Examples:
      corral app redeploy shop shop-2.zip --wait
      corral app redeploy shop --max-parallel 1 --auto-revert --wait
      corral app redeploy shop --secure-property-file db.password=./db-password
    """
    api = Api.from_config()
    app = api.find_app(application, target)
    rollout = _rollout(max_parallel, auto_revert, canary, min_healthy, health_deadline)
    if rollout and app["target"]["type"] == "SERVER":
        _no_rollout_on(app["target"]["name"])
        rollout = None
    secure = _secure_properties(secure_prop, secure_file, unset_secure)
    conf = None
    if secure:  # the current configuration again (masked values are kept), these changed
        conf = dict(app.get("configuration") or {})
        service = dict(conf.get(SERVICE) or {"applicationName": app["name"]})
        service["secureProperties"] = {**(service.get("secureProperties") or {}), **secure}
        conf[SERVICE] = service
    if file is not None:
        updated = _upload(file, lambda up: api.apps.redeploy(app["id"], up, configuration=conf,
                                                             rollout=rollout))
    else:
        updated = api.apps.redeploy(app["id"], configuration=conf, rollout=rollout)
    [now, *_] = api.apps.history(app["id"])
    deployment = now["deploymentId"]
    console.print(f"Redeployed {app['name']} ({app['id']}), deployment {deployment}"
                  + (" (rolling out)" if now.get("rollout") else ""))
    if wait and now.get("rollout"):
        _watch_rollout(api, app["id"], timeout)
    elif wait and updated["desiredStatus"] in ("STARTED", "UPDATED"):  # UPDATED: settling
        _wait(api, app["id"], "STARTED", timeout, min_deployment=deployment)


HISTORY_COLUMNS: list[Column] = [
    ("ID", lambda d: d["id"]), ("DEPLOYMENT", lambda d: d["deploymentId"]),
    ("KIND", lambda d: d["kind"] + (f" to {d['rolledBackTo']}" if d.get("rolledBackTo") else "")),
    ("STATE", lambda d: status(d["state"])),
    ("ARTIFACT", lambda d: f"{d['artifact']['name']} ({d['artifact']['sha256'][:12]})"),
    ("BY", lambda d: d["createdBy"]),
    ("STARTED", lambda d: ago(d["startedAt"])),
    ("SERVERS", lambda d: ", ".join(
        f"{s['serverName']}: {s['status']}" + (f" ({s['message']})" if s.get("message") else "")
        for s in d["servers"])),
]


@app_app.command("history")
def app_history(application: AppArg, target: TargetOpt = None,
                output: OutputOpt = Format.table) -> None:
    """Every deployment of an application, newest first: artifact, who, state, each server."""
    api = Api.from_config()
    app = api.find_app(application, target)
    show_list(output, api.apps.history(app["id"]),
              HISTORY_COLUMNS, "No deployments recorded.")


@app_app.command("rollback")
def app_rollback(
    application: AppArg,
    deployment: Annotated[int | None, typer.Argument(
        help="The history ID to restore (`corral app history`); default: the latest "
             "successful deployment before the current one")] = None,
    target: TargetOpt = None,
    wait: WaitOpt = False,
    timeout: TimeoutOpt = 300,
) -> None:
    """Deploy again the exact artifact and properties of an earlier deployment."""
    api = Api.from_config()
    app = api.find_app(application, target)
    api.apps.rollback(app["id"], deployment)
    [now, *_] = api.apps.history(app["id"])
    console.print(f"Rolled {app['name']} ({app['id']}) back to deployment "
                  f"{now['rolledBackTo']}: {now['artifact']['name']}, now deployment "
                  f"{now['deploymentId']}")
    if wait and app["desiredStatus"] == "STARTED":
        _wait(api, app["id"], "STARTED", timeout, min_deployment=now["deploymentId"])


def _current_rollout(api: Api, application: str, target: str | None) -> tuple[dict[str, Any],
                                                                           dict[str, Any]]:
    app = api.find_app(application, target)
    [now, *_] = api.apps.history(app["id"])
    if not now.get("rollout") or now["rollout"]["state"] not in ("RUNNING", "WAITING"):
        fail(f"{app['name']} has no rollout in progress")
    return app, now


@app_app.command("promote")
def app_promote(application: AppArg, target: TargetOpt = None, wait: WaitOpt = False,
                timeout: TimeoutOpt = 300) -> None:
    """A canary is healthy: roll out to the other servers."""
    api = Api.from_config()
    app, now = _current_rollout(api, application, target)
    api.apps.promote(app["id"], now["id"])
    console.print(f"Promoted deployment {now['deploymentId']} of {app['name']}")
    if wait:
        _watch_rollout(api, app["id"], timeout)


@app_app.command("cancel")
def app_cancel(application: AppArg, target: TargetOpt = None) -> None:
    """Stop a rollout; every server it updated returns to the previous deployment."""
    api = Api.from_config()
    app, now = _current_rollout(api, application, target)
    api.apps.cancel(app["id"], now["id"])
    console.print(f"Cancelled deployment {now['deploymentId']} of {app['name']}; its servers "
                  "return to the previous one")


@app_app.command("delete")
def app_delete(application: AppArg, target: TargetOpt = None,
               yes: Annotated[bool, typer.Option("--yes", "-y")] = False) -> None:
    """Delete an application; its servers stop and remove it."""
    api = Api.from_config()
    app = api.find_app(application, target)
    if not yes and not typer.confirm(f"Delete application {app['id']} ({app['name']})?"):
        raise typer.Exit(1)
    api.apps.delete(app["id"])
    console.print(f"Deleted application {app['id']}")


@app_app.command("logs")
def app_logs(
    application: AppArg,
    server: Annotated[str | None, typer.Option("--server", "-s",
                                               help="Which server (needed for groups)")] = None,
    lines: Annotated[int, typer.Option("--lines", "-n")] = 100,
    follow: Annotated[bool, typer.Option("--follow", "-f", help="Stream new lines")] = False,
    target: TargetOpt = None,
) -> None:
    """Print the application's log on one server (fetched from its agent)."""
    api = Api.from_config()
    app = api.find_app(application, target)
    params: dict[str, Any] = {"lines": lines}
    if server is not None:
        params["serverId"] = api.find_target(server, ("SERVER",))["id"]
    elif len(app["serverArtifacts"]) > 1:  # say it in the command's words, not the API's
        choices = " or ".join(f"--server {i['serverName']}" for i in app["serverArtifacts"])
        fail(f"{app['name']} runs on {len(app['serverArtifacts'])} servers; pass {choices}")
    if not follow:
        for line in api.apps.logs(app["id"], params):
            typer.echo(line)
        return
    params["follow"] = "true"
    try:
        for event_line in api.stream(f"/applications/{app['id']}/logs", params=params):
            if event_line.startswith("data: "):
                typer.echo(event_line[6:])
            elif event_line.startswith("event: error"):
                fail("the log stream ended: the server's agent went away")
    except KeyboardInterrupt:
        raise typer.Exit(0) from None
