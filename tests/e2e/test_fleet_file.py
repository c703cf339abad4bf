"""`corral plan`, `corral apply`, `corral export` as processes against a real control plane
and real agents: plan, apply, plan again to no change; a changed property, membership, artifact
and secret; prune; export and plan again; a bad file changes nothing; an apply killed part way
is converged by the next."""

from __future__ import annotations

import json
import signal
import subprocess
import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.apps import app_port, app_zip, ask
from tests.e2e.operator import Cli, Operator
from tests.e2e.processes import FORKS, AgentProcess
from tests.support import eventually

pytestmark = [pytest.mark.every_database, pytest.mark.slow]

SECRET = "fleet-s3cret-$(id)-\u00e9"


def _write(folder: Path, text: str) -> Path:
    path = folder / "fleet.yaml"
    path.write_text(textwrap.dedent(text))
    return path


def _audit_total(operator: Operator) -> int:
    org = operator.headers["X-ANYPNT-ORG-ID"]
    r = operator.http.get(f"/accounts/api/organizations/{org}/auditEvents",
                          headers=operator.headers, params={"limit": 1})
    return int(r.json()["total"])


def _apps(operator: Operator) -> dict[str, dict[str, Any]]:
    return {a["name"]: a for a in operator.data("/applications")}


def test_plan_apply_change_prune_and_export(
        operator: Operator, agents: Callable[..., AgentProcess], cli: Cli, tmp_path: Path
        ) -> None:
    web1, web2 = agents("web-1"), agents("web-2")
    (tmp_path / "shop-v1.zip").write_bytes(app_zip("v1"))
    (tmp_path / "shop-v2.zip").write_bytes(app_zip("v2"))
    cli.env["SHOP_DB_PASSWORD"] = SECRET
    first = _write(tmp_path, """\
        environment: Production
        serverGroups:
          - name: web
            servers: [web-1]
        clusters:
          - name: cache
            multicastEnabled: false
            servers:
              - {name: web-2, ip: 127.0.0.1}
        applications:
          - name: shop
            target: web
            artifact: shop-v1.zip
            properties: {greeting: hello}
            secureProperties:
              db.password: {env: SHOP_DB_PASSWORD}
        """)
    r = cli("plan", "-f", str(first), ok=False)
    assert r.returncode == 2, r.stdout + r.stderr
    assert "+ server group web" in r.stdout and "+ cluster cache" in r.stdout
    assert "+ application shop" in r.stdout and "secureProperties.db.password: (set)" in r.stdout
    assert SECRET not in r.stdout + r.stderr
    plan = json.loads(cli("plan", "-f", str(first), "-o", "json", ok=False).stdout)
    assert plan["summary"] == {"create": 3, "change": 0, "replace": 0, "delete": 0}
    assert _apps(operator) == {}  # a plan changes nothing

    r = cli("apply", "-f", str(first), ok=False)  # no terminal, no --yes: refused
    assert r.returncode == 1 and "--yes" in r.stderr and _apps(operator) == {}
    r = cli("apply", "-f", str(first), "--yes", "--wait")
    assert "application shop: STARTED" in r.stdout and SECRET not in r.stdout
    env = ask(app_port(web1, "shop"))["env"]
    assert (env["greeting"], env["DB_PASSWORD"]) == ("hello", SECRET)
    cluster = {c["name"]: c for c in operator.data("/clusters")}["cache"]
    assert [(s["name"], s["serverIp"]) for s in cluster["servers"]] == [("web-2", "127.0.0.1")]

    # unchanged: no change planned, and applying it makes no call that changes anything
    audited = _audit_total(operator)
    assert cli("plan", "-f", str(first), ok=False).returncode == 0
    assert "No changes" in cli("apply", "-f", str(first), "--yes").stdout
    assert _audit_total(operator) == audited
    deployments = len(operator.data(f"/applications/{_apps(operator)['shop']['id']}/deployments"))

    # a property, the artifact, a member and the secret change; the cluster goes (--prune),
    # and its member joins the group (it leaves the cluster first)
    cli.env["SHOP_DB_PASSWORD"] = SECRET + "-2"
    text = first.read_text()
    second = _write(tmp_path, text.split("clusters:")[0].replace("servers: [web-1]",
                                                                 "servers: [web-1, web-2]")
                    + "applications:" + text.split("applications:")[1]
                    .replace("greeting: hello", "greeting: hi")
                    .replace("shop-v1.zip", "shop-v2.zip"))
    r = cli("plan", "-f", str(second), ok=False)
    assert r.returncode == 1 and "web-2 is in cache, which the file does not name" in r.stderr
    r = cli("plan", "-f", str(second), "--prune", ok=False)
    assert r.returncode == 2, r.stdout + r.stderr
    for expected in ("~ server group web", "- cluster cache", "~ application shop",
                     "properties.greeting: hello → hi", "artifact: sha256",
                     "secureProperties.db.password: (set) → (changed)"):
        assert expected in r.stdout, (expected, r.stdout)
    assert SECRET not in r.stdout
    cli("apply", "-f", str(second), "--prune", "--yes", "--wait")
    shop = _apps(operator)["shop"]
    assert len(operator.data(f"/applications/{shop['id']}/deployments")) == deployments + 1
    assert operator.data("/clusters") == []
    for agent in (web1, web2):
        got = eventually(lambda agent=agent: ask(app_port(agent, "shop")),
                         lambda a: a["version"] == "v2", what="v2 on every member")
        assert (got["env"]["greeting"], got["env"]["DB_PASSWORD"]) == ("hi", SECRET + "-2")
    assert cli("plan", "-f", str(second), "--prune", ok=False).returncode == 0

    # what the file does not name is left alone, unless --prune
    operator.deploy("stray", shop["target"]["id"], app_zip("stray"))
    assert cli("plan", "-f", str(second), ok=False).returncode == 0
    r = cli("plan", "-f", str(second), "--prune", ok=False)
    assert r.returncode == 2 and "- application stray" in r.stdout
    cli("apply", "-f", str(second), "--prune", "--yes")
    assert set(_apps(operator)) == {"shop"}

    # export: a file of the environment that plans to no change, with no zip and no secret
    exported = tmp_path / "exported.yaml"
    cli("export", "-f", str(exported))
    text = exported.read_text()
    assert "sha256:" in text and "keep: true" in text and SECRET not in text
    assert cli("plan", "-f", str(exported), "--prune", ok=False).returncode == 0


def test_a_bad_file_changes_nothing_and_a_killed_apply_converges(
        operator: Operator, agents: Callable[..., AgentProcess], cli: Cli, tmp_path: Path
        ) -> None:
    agents("solo-1")
    (tmp_path / "app.zip").write_bytes(app_zip("v1"))
    audited = _audit_total(operator)
    for bad, message in (
            ("applications: [\n  - name: a\n", "not valid YAML"),
            ("serverGroups:\n  - name: g\n    servers: [nobody]\n", "line 2: server group g: "
             "no server 'nobody'"),
            ("applications:\n  - name: a\n    target: solo-1\n    artifact: missing.zip\n",
             "line 2: application a: cannot read the artifact missing.zip"),
            ("applications:\n  - name: a\n    target: solo-1\n    artifact: app.zip\n"
             "    colour: blue\n", "line 5: applications[0] (a): 'colour' is not a field"),
            ("applications:\n  - name: a\n    target: solo-1\n    artifact: app.zip\n"
             "    secureProperties: {pw: {env: NOT_SET_ANYWHERE}}\n",
             "NOT_SET_ANYWHERE is not set"),
            ("serverGroups:\n  - name: g\n  - name: g\n", "line 3: server group g: the name is "
             "already used on line 2")):
        path = _write(tmp_path, bad)
        r = cli("apply", "-f", str(path), "--yes", ok=False)
        assert r.returncode == 1 and message in r.stderr, (bad, r.stderr)
        assert "Traceback" not in r.stderr
    assert _audit_total(operator) == audited and _apps(operator) == {}

    # ten applications; the apply is killed after the first, and the next one converges
    many = "applications:\n" + "".join(
        f"  - {{name: app-{i}, target: solo-1, artifact: app.zip}}\n" for i in range(10))
    path = _write(tmp_path, many)
    proc = FORKS.popen(["apply", "-f", str(path), "--yes"],
                       env={**cli.env, "PYTHONUNBUFFERED": "1"}, stdout=subprocess.PIPE,
                       stderr=subprocess.STDOUT, text=True)
    assert proc.stdout is not None
    for line in proc.stdout:
        if "+ application app-0" in line and line.startswith("  "):  # the step done
            proc.send_signal(signal.SIGKILL)
            break
    proc.wait(30)

    def plan_beside_the_applications() -> tuple[set[str], str, set[str]]:
        # a create in flight when the client died still ends on the server: the plan counts
        # only applications that were there before it and after it
        before = set(_apps(operator))
        r = cli("plan", "-f", str(path), ok=False)
        assert r.returncode == 2, r.stdout + r.stderr
        return before, r.stdout, set(_apps(operator))

    made, said, _ = eventually(plan_beside_the_applications, lambda p: p[0] == p[2],
                               what="the applications settling around a plan")
    assert "app-0" in made and len(made) < 10, made
    assert f"{10 - len(made)} to create" in said
    cli("apply", "-f", str(path), "--yes")
    assert set(_apps(operator)) == {f"app-{i}" for i in range(10)}
    assert cli("plan", "-f", str(path), ok=False).returncode == 0
