"""MuleSoft's own `anypoint-cli-v4` (runtime-mgr plugin), unchanged, against a real Corral.

The CLI only speaks HTTPS, so the control plane serves its API with a certificate of its own CA
and the CLI trusts that CA through NODE_EXTRA_CA_CERTS (recipe: docs/anypoint-cli.md)."""

from __future__ import annotations

import fcntl
import hashlib
import os
import shutil
import signal
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.e2e.apps import app_port, app_zip, ask
from tests.e2e.operator import ADMIN_PASSWORD, Operator
from tests.e2e.processes import AgentProcess, ServeProcess, free_port
from tests.support import eventually

VERSION = "1.6.12"
# in the user's cache folder, like npm's own cache: a fresh clone on the same machine reuses it
CACHE = (Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "corral-tests"
         / f"anypoint-cli-{VERSION}")
BIN = CACHE / "node_modules" / ".bin" / "anypoint-cli-v4"


@pytest.fixture(scope="session")
def anypoint_cli() -> Path:
    """Install the published CLI from npm once (scripts off: one of its dependencies would try
    to download a browser), and give its plugins the command manifests they were published
    without (see `_write_manifests`)."""
    npm = shutil.which("npm")
    if npm is None and not BIN.exists():
        pytest.skip("npm is not installed, so anypoint-cli-v4 cannot be installed from npm")
    CACHE.mkdir(parents=True, exist_ok=True)
    with open(CACHE.parent / f".anypoint-cli-{VERSION}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # parallel test workers install it once
        if not BIN.exists():
            r = subprocess.run([str(npm), "install", "--prefix", str(CACHE), "--ignore-scripts",
                                "--no-audit", "--no-fund", f"anypoint-cli-v4@{VERSION}"],
                               capture_output=True, text=True, timeout=900)
            assert r.returncode == 0, r.stderr[-2000:]
        _write_manifests(CACHE / "node_modules")
    return BIN


def _write_manifests(modules: Path) -> None:
    """oclif reads a plugin's commands from its `oclif.manifest.json`, which `oclif manifest`
    writes when a plugin is packed. anypoint-cli-v4's own plugins ship without one, so every
    start loads every command of every plugin: about 2 s of CPU per call, a sixth of the
    suite's process time. The manifest is written here once, with the installed @oclif/core
    (what `oclif manifest` runs): the same commands, each loaded when it is called."""
    plugins = sorted(p for p in modules.glob("anypoint-cli-*")
                     if not (p / "oclif.manifest.json").exists())
    if not plugins:
        return
    node = shutil.which("node")
    assert node is not None, "npm installed the CLI, so node is there"
    r = subprocess.run([node, str(Path(__file__).with_name("oclif_manifests.js")),
                        *map(str, plugins)], env={**os.environ, "NODE_PATH": str(modules)},
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]


@pytest.fixture
def control_plane(serve: ServeProcess) -> ServeProcess:
    serve.tls = True
    serve.env["CORRAL_ADMIN_PASSWORD"] = ADMIN_PASSWORD
    serve.start()
    return serve


class Anypoint:
    def __init__(self, binary: Path, serve: ServeProcess, home: Path) -> None:
        home.mkdir(parents=True, exist_ok=True)
        self.binary = binary
        self.env = {
            "PATH": os.environ["PATH"], "HOME": str(home),
            "XDG_CONFIG_HOME": str(home / ".config"),
            "NODE_EXTRA_CA_CERTS": str(serve.ca_path),
            "ANYPOINT_HOST": f"127.0.0.1:{serve.port}",
            "ANYPOINT_USERNAME": "admin", "ANYPOINT_PASSWORD": ADMIN_PASSWORD,
            "ANYPOINT_ENV": "Production",
        }

    def __call__(self, *args: str, ok: bool = True) -> str:
        r = subprocess.run(["timeout", "90", str(self.binary), *args, "--collectMetrics"],
                           env=self.env, capture_output=True, text=True, timeout=120,
                           stdin=subprocess.DEVNULL)
        out = r.stdout + r.stderr
        if ok:
            assert r.returncode == 0, f"anypoint-cli-v4 {' '.join(args)} → {r.returncode}\n{out}"
        return out


@dataclass
class Fleet:
    cli: Anypoint
    a: AgentProcess
    b: AgentProcess


@pytest.fixture
def fleet(tmp_path: Path, anypoint_cli: Path, control_plane: ServeProcess,
          agents: Callable[[str], AgentProcess]) -> Fleet:
    """The CLI against a control plane of its own with two running servers. The commands are
    split over three tests so that parallel workers share them (each call starts Node)."""
    return Fleet(Anypoint(anypoint_cli, control_plane, tmp_path / "home"),
                 agents("arm-a"), agents("arm-b"))


@pytest.mark.slow
def test_servers_and_groups(fleet: Fleet, operator: Operator) -> None:
    cli, a, b = fleet.cli, fleet.a, fleet.b
    listing = cli("runtime-mgr:server:list")
    assert "arm-a" in listing and "arm-b" in listing and "RUNNING" in listing
    assert "arm-a" in cli("runtime-mgr:server:describe", str(a.server_id))
    cli("runtime-mgr:server:modify", str(b.server_id), "--name", "arm-b2")
    assert operator.data(f"/servers/{b.server_id}")["name"] == "arm-b2"
    assert operator.registration_token() in cli("runtime-mgr:server:token")

    # server groups (ids go over the wire as strings)
    assert "Server group created" in cli("runtime-mgr:serverGroup:create", "armgroup",
                                         str(a.server_id))
    [group] = operator.data("/serverGroups")
    assert "armgroup" in cli("runtime-mgr:serverGroup:list")
    cli("runtime-mgr:serverGroup:add:server", str(group["id"]), str(b.server_id))
    assert "arm-b2" in cli("runtime-mgr:serverGroup:describe", str(group["id"]))
    cli("runtime-mgr:serverGroup:modify", str(group["id"]), "--name", "armgroup2")
    assert operator.data(f"/serverGroups/{group['id']}")["name"] == "armgroup2"

    # an error from Corral is printed with its message and a non-zero exit
    out = cli("runtime-mgr:serverGroup:create", "again", str(a.server_id), ok=False)
    assert "already belongs" in out

    cli("runtime-mgr:serverGroup:remove:server", str(group["id"]), str(b.server_id))
    cli("runtime-mgr:serverGroup:delete", str(group["id"]))
    assert operator.data("/serverGroups") == []


@pytest.mark.slow
def test_applications(fleet: Fleet, operator: Operator, tmp_path: Path) -> None:
    """Deploy to a group by name, list, describe, stop, start, restart, modify, download."""
    cli, a, b = fleet.cli, fleet.a, fleet.b
    group = operator.call("POST", "/serverGroups", expect=201, json={
        "name": "armgroup2", "serverIds": [a.server_id, b.server_id]}).json()["data"]
    v1, v2 = tmp_path / "svc.zip", tmp_path / "svc-v2.zip"
    v1.write_bytes(app_zip("v1", procfile="web: python3 app.py\n"))
    v2.write_bytes(app_zip("v2", procfile="web: python3 app.py\n"))
    out = cli("runtime-mgr:standalone-application:deploy", "armgroup2", "svc", str(v1))
    assert "created" in out
    [app] = operator.data("/applications")
    operator.wait_app(app["id"], "STARTED")
    assert "svc" in cli("runtime-mgr:standalone-application:list")
    described = cli("runtime-mgr:standalone-application:describe", "svc")  # by name
    assert "STARTED" in described and hashlib.sha1(v1.read_bytes()).hexdigest() in described
    cli("runtime-mgr:standalone-application:stop", str(app["id"]))
    operator.wait_app(app["id"], "STOPPED")
    cli("runtime-mgr:standalone-application:start", "svc")
    operator.wait_app(app["id"], "STARTED")
    pid = ask(app_port(a, "svc"))["pid"]
    cli("runtime-mgr:standalone-application:restart", "svc")
    eventually(lambda: operator.data(f"/applications/{app['id']}"),
               lambda a: (a["lastReportedStatus"], a["desiredStatus"]) == ("STARTED", "STARTED")
               and all(i["deploymentId"] == 2 for i in a["serverArtifacts"]),
               what="the restart's deployment started")
    assert ask(app_port(a, "svc"))["pid"] != pid
    assert "redeployed" in cli("runtime-mgr:standalone-application:modify", str(app["id"]),
                               str(v2))
    eventually(lambda: operator.data(f"/applications/{app['id']}"),
               lambda a: (a["lastReportedStatus"], a["desiredStatus"]) == ("STARTED", "STARTED")
               and all(i["deploymentId"] == 3 for i in a["serverArtifacts"]),
               what="the modify's deployment started")
    assert ask(app_port(b, "svc"))["version"] == "v2"
    # deploying a name that exists on the target redeploys it
    cli("runtime-mgr:standalone-application:deploy", "armgroup2", "svc", str(v1))
    assert len(operator.data("/applications")) == 1
    out_dir = tmp_path / "download"
    cli("runtime-mgr:standalone-application:artifact", str(app["id"]), str(out_dir))
    assert (out_dir / f"app_{app['id']}_artifact.zip").read_bytes() == v1.read_bytes()
    cli("runtime-mgr:standalone-application:modify", "svc", "--insight")
    components = operator.data(f"/targets/{group['id']}/components")
    tracking = next(c for c in components
                    if c["component"]["name"] == "mule.agent.tracking.service")
    assert tracking["enabled"] is True
    assert tracking["configuration"]["trackedApplications"][0]["appName"] == "svc"
    # log levels reach the running application (its file), without a restart
    pids = {n.server_id: ask(app_port(n, "svc"))["pid"] for n in (a, b)}
    cli("runtime-mgr:standalone-application:modify", "svc", "--log", "WARN:org.example")
    for node in (a, b):
        seen = eventually(lambda node=node: ask(app_port(node, "svc")),
                          lambda answer: answer["logLevels"] == {"org.example": "WARN"},
                          what=f"the levels reaching svc on server {node.server_id}")
        assert seen["pid"] == pids[node.server_id]
    cli("runtime-mgr:standalone-application:restart", "svc")  # a new process starts with them
    answer = eventually(lambda: ask(app_port(a, "svc")),
                        lambda answer: answer["pid"] != pids[a.server_id], what="the restart")
    assert answer["env"]["CORRAL_LOG_LEVELS"] == "org.example=WARN"
    cli("runtime-mgr:standalone-application:delete", "svc")
    assert operator.data("/applications") == []


@pytest.mark.slow
def test_clusters_and_server_delete(fleet: Fleet, operator: Operator) -> None:
    cli, a, b = fleet.cli, fleet.a, fleet.b
    out = cli("runtime-mgr:cluster:create", "armcluster", "--server", f"{b.server_id}:127.0.0.1")
    [cluster] = operator.data("/clusters")
    assert f"Created cluster with ID {cluster['id']}" in out
    assert "armcluster" in cli("runtime-mgr:cluster:list")
    assert "arm-b" in cli("runtime-mgr:cluster:describe", str(cluster["id"]))
    cli("runtime-mgr:cluster:modify", str(cluster["id"]), "--name", "armcluster2")
    assert operator.data(f"/clusters/{cluster['id']}")["name"] == "armcluster2"
    cli("runtime-mgr:cluster:add:server", str(cluster["id"]), str(a.server_id), "127.0.0.2")
    members = {s["id"]: s["serverIp"]
               for s in operator.data(f"/clusters/{cluster['id']}")["servers"]}
    assert members == {a.server_id: "127.0.0.2", b.server_id: "127.0.0.1"}
    cli("runtime-mgr:cluster:remove:server", str(cluster["id"]), str(b.server_id))
    assert [s["id"] for s in operator.data(f"/clusters/{cluster['id']}")["servers"]] == [
        a.server_id]
    cli("runtime-mgr:cluster:delete", str(cluster["id"]))
    assert operator.data("/clusters") == []

    cli("runtime-mgr:server:delete", str(b.server_id))
    assert [s["id"] for s in operator.data("/servers")] == [a.server_id]


@pytest.mark.slow
@pytest.mark.every_database
def test_copy_between_environments_to_a_cluster_with_a_node_down(
    fleet: Fleet, operator: Operator, control_plane: ServeProcess,
    agents: Callable[..., AgentProcess],
) -> None:
    """`copy` waits until the copy reports STARTED, STOPPED or DEPLOYMENT_FAILED. On a cluster
    the application is STARTED while it runs on one node (ARM's rule), so a node that is down
    does not hold the copy for ever."""
    cli, a = fleet.cli, fleet.a
    app = operator.deploy("svc", a.server_id, app_zip("v1", procfile="web: python3 app.py\n"))
    operator.wait_app(app["id"], "STARTED")
    sandbox = Operator(control_plane, ADMIN_PASSWORD, environment="Sandbox")
    nodes = [agents(f"arm-n{i}", "--cluster-port", str(free_port()), on=sandbox)
             for i in range(2)]
    sandbox.call("POST", "/clusters", expect=201, json={
        "name": "sandbox-ring", "multicastEnabled": False,
        "servers": [{"serverId": n.server_id, "serverIp": "127.0.0.1"} for n in nodes]})
    nodes[1].stop()
    sandbox.wait_server(nodes[1].server_id, "DISCONNECTED")

    org = operator.headers["X-ANYPNT-ORG-ID"]  # the CLI looks environments up by org id
    out = cli("runtime-mgr:standalone-application:copy", f"{org}:Production/svc",
              f"{org}:Sandbox/svc", "sandbox-ring")
    assert "Application copied" in out
    [copied] = sandbox.data("/applications")
    assert (copied["name"], copied["target"]["name"]) == ("svc", "sandbox-ring")
    assert (copied["lastReportedStatus"], copied["started"]) == ("STARTED", True)
    assert copied["detailedStatus"] == "PARTIALLY_STARTED"  # Corral's finer word, beside ARM's
    assert ask(app_port(nodes[0], "svc"))["version"] == "v1"
    assert [x["id"] for x in operator.data("/applications")] == [app["id"]]  # source untouched


@pytest.mark.slow
def test_standalone_alerts(fleet: Fleet, operator: Operator) -> None:
    """`standalone-alert create/list/describe/modify` as the CLI sends them (recipients by
    username through the organization's members), and the alert it created fires."""
    cli, b = fleet.cli, fleet.b
    out = cli("runtime-mgr:standalone-alert:create", "b is down", "--severity", "CRITICAL",
              "--resourceType", "server", "--resource", str(b.server_id),
              "--condition", "server-down", "--email", "ops@example.com",
              "--recipient", "admin", "--subject", "down: ${resource}", "--content", "look")
    assert "Hybrid alert created" in out
    cli("runtime-mgr:standalone-alert:create", "hot", "--severity", "WARNING",
        "--resourceType", "server", "--condition", "server-cpu", "--threshold", "95",
        "--operator", "gt", "--period", "5")
    alerts = {a["name"]: a for a in operator.data("/alerts")}
    down, hot = alerts["b is down"], alerts["hot"]
    assert down["condition"] == {"resourceType": "server", "type": "server-down",
                                 "resources": [str(b.server_id)], "event": "server-down"}
    admin = next(u for u in operator.http.get(
        f"/accounts/api/organizations/{operator.headers['X-ANYPNT-ORG-ID']}/members",
        headers=operator.headers).json()["data"] if u["username"] == "admin")
    assert down["actions"][0]["userIds"] == [admin["id"]]
    assert down["actions"][0]["emails"] == ["ops@example.com"]
    assert hot["condition"] == {"resourceType": "server", "type": "server-cpu",
                                "resources": ["*"], "threshold": 95,
                                "operator": "GREATER_THAN", "period": 5, "event": "server-cpu"}
    listed = cli("runtime-mgr:standalone-alert:list")
    assert "b is down" in listed and "server-cpu" in listed
    described = cli("runtime-mgr:standalone-alert:describe", down["id"])
    assert "server-down" in described and "ops@example.com" in described
    # `describe` prints `condition.event`, which ARM's answer carries
    assert any("Condition Event" in line and "server-down" in line
               for line in described.splitlines()), described

    assert "Hybrid alert modified" in cli(
        "runtime-mgr:standalone-alert:modify", hot["id"], "--severity", "CRITICAL",
        "--threshold", "80", "--resource", str(b.server_id))
    changed = operator.data(f"/alerts/{hot['id']}")
    assert (changed["severity"], changed["condition"]["threshold"],
            changed["condition"]["resources"]) == ("CRITICAL", 80, [str(b.server_id)])

    eventually(lambda: operator.data(f"/alerts/{down['id']}")["watching"], lambda n: n >= 1,
               timeout=30, what="the evaluator seeing the server running first")
    b.stop(signal.SIGKILL)
    fired = eventually(lambda: operator.data(f"/alerts/{down['id']}/history"), timeout=30,
                       what="the CLI's alert firing")
    assert fired[0]["state"] == "FIRING" and fired[0]["resourceName"] == "arm-b"
