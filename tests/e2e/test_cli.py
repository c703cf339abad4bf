"""Every `corral` client command, run as a process against a real control plane and agents."""

from __future__ import annotations

import stat
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.apps import app_port, app_zip, ask
from tests.e2e.operator import ADMIN_PASSWORD, Cli, Operator
from tests.e2e.processes import CORRAL, AgentProcess, ServeProcess
from tests.support import eventually

Agents = Callable[[str], AgentProcess]


def test_login_logout_and_environments(tmp_path: Path, control_plane: ServeProcess,
                                       operator: Operator) -> None:
    cli = Cli(tmp_path)
    r = cli("server", "list", ok=False)
    assert r.returncode == 1 and "not logged in" in r.stderr
    r = cli("login", "--url", control_plane.url, "--username", "admin", "--password", "wrong",
            ok=False)
    assert r.returncode == 1
    assert r.stderr.strip().splitlines() == ["error: invalid username or password (HTTP 401)"]
    r = cli("login", "--url", control_plane.url, "--username", "admin", ok=False)
    assert r.returncode == 1 and "--password" in r.stderr  # no terminal to prompt at
    r = cli("login", "--url", control_plane.url, "--username", "admin", "--password",
            ADMIN_PASSWORD)
    assert "environment Production" in r.stdout
    assert stat.S_IMODE(cli.config.stat().st_mode) == 0o600
    envs = cli.json("env", "list")
    assert {e["name"] for e in envs} == {"Production", "Sandbox"}
    assert _current(cli) == "Production"

    operator.call("POST", "/serverGroups", expect=201, json={"name": "prod-only"})
    assert [g["name"] for g in cli.json("group", "list")] == ["prod-only"]
    cli("env", "use", "Sandbox")
    assert _current(cli) == "Sandbox"
    assert cli.json("group", "list") == []
    assert "No server groups" in cli("group", "list").stdout
    r = cli("env", "use", "Nowhere", ok=False)
    assert r.returncode == 1 and "no environment 'Nowhere'" in r.stderr
    cli.env["CORRAL_ENV"] = "Production"  # the environment variable wins over the profile
    assert [g["name"] for g in cli.json("group", "list")] == ["prod-only"]
    del cli.env["CORRAL_ENV"]
    # admins create, rename and delete environments; one that holds something stays
    assert "Created environment Staging" in cli("env", "create", "Staging").stdout
    cli("env", "rename", "Staging", "Stage")
    assert {e["name"] for e in cli.json("env", "list")} == {"Production", "Sandbox", "Stage"}
    r = cli("env", "delete", "Production", "--yes", ok=False)
    assert r.returncode == 1 and "still holds 1 servers, server groups or clusters" in r.stderr
    assert "Deleted environment Stage" in cli("env", "delete", "Stage", "--yes").stdout
    assert {e["name"] for e in cli.json("env", "list")} == {"Production", "Sandbox"}

    cli("logout")
    r = cli("group", "list", ok=False)
    assert r.returncode == 1 and "not logged in" in r.stderr

    r = operator.http.post("/accounts/api/connectedApplications",
                           headers={"Authorization": operator.headers["Authorization"]},
                           json={"client_name": "ci"})
    creds = r.json()
    cli.env["CORRAL_CLIENT_SECRET"] = creds["client_secret"]
    r = cli("login", "--url", control_plane.url, "--client-id", creds["client_id"])
    assert "connected app" in r.stdout
    assert cli.json("server", "list") == []


@pytest.mark.slow
def test_fleet_and_applications(tmp_path: Path, cli: Cli, operator: Operator,
                                agents: Agents) -> None:
    token = cli("server", "token").stdout.strip()
    assert token == operator.registration_token()
    a, b, c = agents("node-a"), agents("node-b"), agents("node-c")

    servers = cli.json("server", "list")
    assert [s["name"] for s in servers] == ["node-a", "node-b", "node-c"]
    assert all(s["status"] == "RUNNING" for s in servers)
    table = cli("server", "list").stdout
    assert "node-a" in table and "RUNNING" in table and "\x1b[" not in table
    assert cli.json("server", "show", "node-b")["id"] == b.server_id
    assert "Python" in cli("server", "show", str(b.server_id)).stdout
    cli("server", "rename", "node-c", "node-c2")
    assert cli.json("server", "show", "node-c2")["id"] == c.server_id

    # groups
    group = cli.json("group", "create", "web", "node-a")
    assert [s["id"] for s in group["servers"]] == [a.server_id]
    cli("group", "add", "web", "node-b")
    assert len(cli.json("group", "show", "web")["servers"]) == 2
    r = cli("group", "add", "web", "node-b", ok=False)
    assert r.returncode == 1 and "already belongs" in r.stderr

    # deploy with --wait: each server's status shown until it settles
    v1 = tmp_path / "site-v1.zip"
    v1.write_bytes(app_zip("v1"))
    t0 = time.monotonic()
    r = cli("app", "deploy", str(v1), "--name", "site", "--target", "web",
            "--property", "greeting=hello", "--wait")
    print(f"\n[measure] corral app deploy --wait to a group of 2: {time.monotonic() - t0:.2f}s")
    assert "site is STARTED on 2 server(s)" in r.stdout
    assert "node-a: STARTED" in r.stdout
    apps = cli.json("app", "list")
    assert [(x["name"], x["lastReportedStatus"]) for x in apps] == [("site", "STARTED")]
    assert cli.json("app", "list", "--target", "node-c2") == []
    shown = cli("app", "show", "site").stdout
    assert "greeting=hello" in shown and "node-b" in shown
    assert ask(app_port(a, "site"))["argv"] == ["hello"]
    # where each instance listens: its PORT, and a URL on the server's address
    ports = {i["serverName"]: i["port"] for i in apps[0]["serverArtifacts"]}
    assert ports == {"node-a": app_port(a, "site"), "node-b": app_port(b, "site")}
    assert f":{app_port(a, 'site')}/" in shown
    assert str(app_port(a, "site")) in cli("app", "list").stdout

    # logs: one server's tail, and a follow that sees a new line arrive
    r = cli("app", "logs", "site", ok=False)
    assert r.returncode == 1 and r.stderr.strip().splitlines() == [
        "error: site runs on 2 servers; pass --server node-a or --server node-b"]
    tail = cli("app", "logs", "site", "--server", "node-a", "--lines", "5").stdout
    assert "listening on" in tail
    follower = subprocess.Popen([*CORRAL, "app", "logs", "site", "--server", "node-a",
                                 "--lines", "0", "--follow"], env=cli.env, text=True,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    followed: list[str] = []
    reader = threading.Thread(target=lambda: followed.extend(iter(follower.stdout.readline, "")),  # type: ignore[union-attr]
                              daemon=True)
    reader.start()
    try:
        # a request, again until the follower shows one: it streams lines as they are written
        eventually(lambda: (ask(app_port(a, "site")), list(followed))[1],
                   lambda lines: any("GET / HTTP/1.1" in line for line in lines), timeout=30,
                   what="a request in the followed log")
    finally:
        follower.terminate()
        follower.communicate(timeout=10)

    # stop / start / redeploy with and without a file
    assert "STOPPED on 2" in cli("app", "stop", "site", "--wait").stdout
    assert "STARTED on 2" in cli("app", "start", "site", "--wait").stdout
    v2 = tmp_path / "site-v2.zip"
    v2.write_bytes(app_zip("v2"))
    r = cli("app", "redeploy", "site", str(v2), "--wait")
    assert "deployment 2" in r.stdout and "STARTED on 2" in r.stdout
    assert ask(app_port(b, "site"))["version"] == "v2"
    r = cli("app", "redeploy", "site", "--wait")
    assert "deployment 3" in r.stdout

    # history: three deployments, the newest first, each settled on both servers; a rollback
    # restores deployment 1's artifact and properties on the real agents
    hist = cli.json("app", "history", "site")
    assert [(d["deploymentId"], d["kind"], d["state"]) for d in hist] == [
        (3, "redeploy", "SUCCEEDED"), (2, "redeploy", "SUCCEEDED"), (1, "deploy", "SUCCEEDED")]
    assert all(d["createdBy"] == "admin" for d in hist)
    assert {s["status"] for d in hist for s in d["servers"]} == {"STARTED"}
    assert "SUCCEEDED" in cli("app", "history", "site").stdout
    r = cli("app", "rollback", "site", str(hist[-1]["id"]), "--wait")
    assert f"back to deployment {hist[-1]['id']}" in r.stdout and "STARTED on 2" in r.stdout
    answer = ask(app_port(a, "site"))
    assert answer["version"] == "v1" and answer["argv"] == ["hello"]
    [now, rolled, *_] = cli.json("app", "history", "site")
    assert (now["kind"], now["state"], rolled["state"]) == ("rollback", "SUCCEEDED",
                                                             "ROLLED_BACK")
    assert now["artifact"] == hist[-1]["artifact"] and now["properties"] == {"greeting": "hello"}

    # a rollout, one server at a time, watched as it advances
    r = cli("app", "redeploy", "site", str(v2), "--max-parallel", "1", "--min-healthy", "1",
            "--wait")
    assert "(rolling out)" in r.stdout and "1/2 servers updated" in r.stdout
    assert "2/2 servers updated" in r.stdout and "rollout of deployment 5 succeeded" in r.stdout
    assert ask(app_port(a, "site"))["version"] == ask(app_port(b, "site"))["version"] == "v2"
    r = cli("app", "promote", "site", ok=False)
    assert r.returncode == 1 and "no rollout in progress" in r.stderr

    # promote: node-c2 runs site's artifact, named rather than uploaded again
    r = cli("app", "deploy", "--from", "site", "--name", "site-copy", "--target", "node-c2",
            "--wait")
    assert "site-copy is STARTED on 1 server(s)" in r.stdout
    assert ask(app_port(c, "site-copy"))["version"] == "v2"
    r = cli("app", "deploy", "--from", "site", "--from-env", "Sandbox", "--name", "x",
            "--target", "node-c2", ok=False)
    assert r.returncode == 1 and "no application named or numbered 'site'" in r.stderr
    # rollout options on a lone server are said to apply to groups and clusters, not ignored
    r = cli("app", "redeploy", "site-copy", "--max-parallel", "1", "--auto-revert", "--wait")
    assert "node-c2 is a single server: rollout options" in r.stdout
    assert "site-copy is STARTED on 1 server(s)" in r.stdout
    cli("app", "delete", "site-copy", "--yes")

    # a file that is no application bundle is refused before it is sent
    bad = tmp_path / "bad.zip"
    bad.write_bytes(app_zip(procfile="not a procfile line\n"))
    r = cli("app", "deploy", str(bad), "--name", "bad", "--target", "node-c2", ok=False)
    assert r.returncode == 1 and "cannot be deployed" in r.stderr and "Procfile line 1" in r.stderr
    assert cli.json("app", "list", "--target", "node-c2") == []

    # a failing deployment makes --wait exit non-zero with the agent's message
    unhealthy = tmp_path / "unhealthy.zip"
    unhealthy.write_bytes(app_zip(procfile="web: sleep 600\n", extra={
        "corral.toml": "[health]\ntcp = true\ntimeout = 1\n"}))
    r = cli("app", "deploy", str(unhealthy), "--name", "bad", "--target", "node-c2", "--wait",
            ok=False)
    assert r.returncode == 1 and "health check" in r.stderr
    r = cli("app", "deploy", str(unhealthy), "--name", "bad", "--target", "node-c2", ok=False)
    assert r.returncode == 1 and "already deployed" in r.stderr and "(HTTP 409)" in r.stderr

    cli("group", "remove", "web", "node-b")
    assert [x["target"]["name"] for x in cli.json("app", "list", "--target", "node-b")] == ["node-b"]
    r = cli("app", "show", "site", ok=False)
    assert r.returncode == 1 and "names several applications" in r.stderr
    cli("app", "delete", "site", "--target", "web", "--yes")
    cli("app", "delete", "site", "--target", "node-b", "--yes")
    cli("app", "delete", "bad", "--yes")
    assert cli.json("app", "list") == []
    assert "No applications" in cli("app", "list").stdout
    cli("group", "rename", "web", "web2")
    cli("group", "delete", "web2", "--yes")
    assert cli.json("group", "list") == []

    # clusters
    cluster = cli.json("cluster", "create", "cl", "--server", "node-c2=127.0.0.1")
    assert cluster["multicastEnabled"] is False and cluster["servers"][0]["serverIp"] == "127.0.0.1"
    r = cli("cluster", "add", "cl", "node-b", ok=False)
    assert r.returncode == 1 and "serverIp" in r.stderr
    cli("cluster", "add", "cl", "node-b=127.0.0.2")
    assert len(cli.json("cluster", "show", "cl")["servers"]) == 2
    assert "unicast" in cli("cluster", "list").stdout
    cli("cluster", "remove", "cl", "node-b")
    cli("cluster", "rename", "cl", "cl2")
    cli("cluster", "delete", "cl2", "--yes")
    r = cli("cluster", "create", "empty", "--multicast", ok=False)
    assert r.returncode == 1 and "at least one server" in r.stderr
    assert cli.json("cluster", "create", "mc", "--multicast", "--server", "node-b"
                    )["multicastEnabled"] is True

    cli("server", "delete", "node-b", "--yes")
    assert [s["name"] for s in cli.json("server", "list")] == ["node-a", "node-c2"]
    r = cli("server", "show", "node-b", ok=False)
    assert r.returncode == 1 and "no server named" in r.stderr


def test_help_is_there_for_newcomers(tmp_path: Path) -> None:
    cli = Cli(tmp_path)
    top = cli("--help").stdout
    for word in ("login", "server", "group", "cluster", "app", "agent", "serve"):
        assert word in top
    deploy = cli("app", "deploy", "--help").stdout
    assert "--wait" in deploy and "--property" in deploy
    # what `--show-completion` prints, asked for by name: shell detection walks the process
    # tree, which a test run started outside any shell does not have
    cli.env["_CORRAL_COMPLETE"] = "source_bash"
    completion = cli().stdout
    del cli.env["_CORRAL_COMPLETE"]
    assert "_corral_completion" in completion and "complete -o default" in completion


def test_users_and_roles(tmp_path: Path, cli: Cli, control_plane: ServeProcess) -> None:
    cli.env["CORRAL_NEW_USER_PASSWORD"] = "viv-password-1"
    made = cli.json("user", "create", "viv", "--role", "viewer")
    assert made["role"] == "viewer" and made["enabled"] is True
    assert {u["username"]: u["role"] for u in cli.json("user", "list")} == {
        "admin": "admin", "viv": "viewer"}
    viv = Cli(tmp_path / "viv")
    viv("login", "--url", control_plane.url, "--username", "viv", "--password", "viv-password-1")
    r = viv("group", "create", "nope", ok=False)
    assert r.returncode == 1 and "operator role" in r.stderr and "403" in r.stderr
    assert cli.json("user", "set", "viv", "--role", "operator")["role"] == "operator"
    viv("group", "create", "yes")
    cli("user", "set", "viv", "--disable")
    r = viv("group", "list", ok=False)
    assert r.returncode == 1 and "401" in r.stderr
    cli("user", "delete", "viv", "--yes")
    assert [u["username"] for u in cli.json("user", "list")] == ["admin"]
    cli("user", "passwd", "--current", ADMIN_PASSWORD, "--new", "admin-password-2")
    cli("group", "list")  # this session stays

    # every step above is in the audit trail, with its actor; the viewer's refusal as a failure
    trail = cli.json("audit", "--limit", "100")
    steps = [(e["actor"]["name"], e["action"], e["status"]) for e in reversed(trail)]
    users = "/accounts/api/organizations/{org_id}/users"
    assert ("admin", f"POST {users}", 201) in steps
    assert ("viv", "POST /hybrid/api/v1/serverGroups", 403) in steps
    assert ("viv", "POST /hybrid/api/v1/serverGroups", 201) in steps
    assert [s for s in steps if s[1] == f"PATCH {users}/{{user_id}}"] == [
        ("admin", f"PATCH {users}/{{user_id}}", 200)] * 2
    assert ("admin", f"DELETE {users}/{{user_id}}", 204) in steps
    assert cli.json("audit", "--actor", "viv") and all(
        e["actor"]["name"] == "viv" for e in cli.json("audit", "--actor", "viv"))
    table = cli("audit", "--action", "DELETE").stdout
    assert "DELETE" in table and "success (204)" in table
    assert "No audit events match." in cli("audit", "--since", "2999-01-01").stdout


def test_certificates_from_the_command_line(cli: Cli, agents: Agents) -> None:
    node = agents("cert-node")
    before = (node.directory / "server.pem").read_bytes()
    assert "will renew its certificate" in cli("server", "renew-cert", "cert-node").stdout
    eventually(lambda: (node.directory / "server.pem").read_bytes(), lambda b: b != before,
               what="the agent renewing")
    shown = cli("server", "show", "cert-node").stdout
    assert "Certificate until" in shown and "Certificate CA" in shown
    state = cli.json("ca", "status")
    assert state["rotating"] is False and state["servers"] == 1
    assert "Still on the old CA" in cli("ca", "rotate").stdout
    r = cli("ca", "rotate", ok=False)
    assert r.returncode == 1 and "already under way" in r.stderr
    r = cli("ca", "retire-old", ok=False)
    assert r.returncode == 1 and "1 server(s) still hold" in r.stderr
    cli("server", "renew-cert", "cert-node")  # now, rather than within the rotation's spread
    eventually(lambda: cli.json("ca", "status")["serversOnOldCa"], lambda n: n == 0,
               timeout=60, what="the agent moving to the new CA")
    assert "retired" in cli("ca", "retire-old").stdout
    assert cli.json("ca", "status")["retiring"] is None


def _current(cli: Any) -> str:
    """The environment `corral env list` marks as the one in use (its row alone has `*`)."""
    marked = [line.split() for line in cli("env", "list").stdout.splitlines()
              if line.split()[:1] == ["*"]]
    assert len(marked) == 1, marked
    return marked[0][1]
