"""Real control plane, real agents, real application processes: every operation happens."""

from __future__ import annotations

import json
import signal
import socket
import stat
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.e2e.apps import app_port, app_zip, ask
from tests.e2e.operator import Operator
from tests.e2e.processes import AgentProcess, ServeProcess, register_agent
from tests.support import eventually, local_http

Agents = Callable[[str], AgentProcess]


def _timed_deploy(operator: Operator, name: str, target: int, archive: bytes,
                  **props: str) -> tuple[dict, float]:
    t0 = time.monotonic()
    app = operator.deploy(name, target, archive, props or None)
    app = operator.wait_app(app["id"], "STARTED")
    elapsed = time.monotonic() - t0
    print(f"\n[measure] deploy of {name!r} to target {target}: POST → STARTED in {elapsed:.2f}s")
    return app, elapsed


class TestRegistration:
    def test_register_writes_everything_or_nothing(
        self, tmp_path: Path, control_plane: ServeProcess, operator: Operator
    ) -> None:
        good = tmp_path / "a1"
        r = register_agent(control_plane, "not-a-token", "n1", good)
        assert r.returncode == 1 and "registration token refused" in r.stderr
        assert not good.exists()
        r = register_agent(ServeProcess(tmp_path / "x", "sqlite://"), "t", "n1", good, "--insecure")
        assert r.returncode == 1 and "cannot reach the control plane" in r.stderr
        assert not good.exists()

        token = operator.registration_token()
        r = register_agent(control_plane, token, "n1", good)
        assert r.returncode == 0, r.stderr
        assert stat.S_IMODE((good / "server.key").stat().st_mode) == 0o600
        identity = json.loads((good / "identity.json").read_text())
        assert identity["name"] == "n1"
        assert identity["gatewayUrl"].startswith("wss://127.0.0.1:")
        assert operator.data(f"/servers/{identity['serverId']}")["status"] == "CREATED"

        r = register_agent(control_plane, token, "n1", tmp_path / "a2")
        assert r.returncode == 1 and "name already taken" in r.stderr
        assert not (tmp_path / "a2").exists()
        r = register_agent(control_plane, token, "n2", good)
        assert r.returncode == 1 and "already holds a registered server" in r.stderr
        assert json.loads((good / "identity.json").read_text()) == identity
        assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


class TestServerLifecycle:
    @pytest.mark.every_database
    def test_deploy_stop_start_redeploy_delete(
        self, operator: Operator, agents: Agents
    ) -> None:
        agent = agents("node1")
        sid = agent.server_id
        server = operator.data(f"/servers/{sid}")
        assert server["status"] == "RUNNING"
        assert server["agentVersion"]
        assert any(a["ip"] == "127.0.0.1" for a in server["addresses"])
        assert server["runtimeInformation"]["pythonInformation"]["version"]
        assert server["lastSeen"] >= server["timeCreated"]

        app, _ = _timed_deploy(operator, "hello", sid, app_zip("v1"),
                               greeting="hi there", **{"http.port": "0"})
        [inst] = app["serverArtifacts"]
        assert inst["lastReportedStatus"] == "STARTED"
        port = app_port(agent, "hello")
        answer = ask(port)
        assert answer["version"] == "v1"
        assert answer["argv"] == ["hi there"]  # ${greeting}, quoted
        env = answer["env"]
        assert env["CORRAL_APP_NAME"] == "hello"
        assert env["CORRAL_SERVER_ID"] == str(sid)
        assert env["CORRAL_SERVER_NAME"] == "node1"
        assert env["greeting"] == env["GREETING"] == "hi there"
        assert env["PORT"] == str(port)
        first_pid = answer["pid"]

        operator.call("PATCH", f"/applications/{app['id']}", expect=200,
                      json={"desiredStatus": "STOPPED"})
        operator.wait_app(app["id"], "STOPPED")
        with pytest.raises(httpx.HTTPError):
            ask(port, timeout=1, settle=0)
        assert agent.app_pids("hello") == []

        operator.call("PATCH", f"/applications/{app['id']}", expect=200,
                      json={"desiredStatus": "STARTED"})
        operator.wait_app(app["id"], "STARTED")
        assert ask(port)["pid"] != first_pid

        operator.call("PATCH", f"/applications/{app['id']}", expect=200,
                      files={"file": ("hello-2.zip", app_zip("v2"), "application/zip")})
        eventually(lambda: operator.data(f"/applications/{app['id']}"),
                   lambda a: (a["lastReportedStatus"], a["desiredStatus"]) == ("STARTED", "STARTED")
                   and a["serverArtifacts"][0]["deploymentId"] == 2, what="deployment 2 started")
        assert ask(port)["version"] == "v2"
        assert agent.app_copies("hello") == 1
        apps_dir = agent.directory / "apps" / "hello"
        kept = [p.name for p in apps_dir.iterdir() if p.name != "log-levels"]
        assert len(kept) == 1  # the old version was removed

        operator.call("DELETE", f"/applications/{app['id']}", expect=204)
        eventually(lambda: (agent.app_pids("hello"), apps_dir.exists()),
                   lambda found: found == ([], False), timeout=15,
                   what="the deleted application's processes and folder gone")
        assert (agent.directory / "logs" / "hello.log").read_text().count("listening on") >= 3

    def test_crashing_app_restarts_with_backoff_then_fails(
        self, operator: Operator, agents: Agents
    ) -> None:
        agent = agents("crashy")
        archive = app_zip(procfile="web: echo boom; exit 3\n")
        app = operator.deploy("crashy", agent.server_id, archive)
        app = operator.wait_app(app["id"], "DEPLOYMENT_FAILED", timeout=30)
        message = app["serverArtifacts"][0]["message"]
        assert "exited with code 3" in message and "restart" in message
        log = (agent.directory / "logs" / "crashy.log").read_text()
        assert log.count("boom") >= 3

    def test_health_check_gates_started(self, operator: Operator, agents: Agents) -> None:
        agent = agents("healthy")
        slow = app_zip(procfile="web: sleep 2 && exec python3 app.py\n",
                       extra={"corral.toml": '[health]\nhttp = "/"\ntimeout = 20\n'})
        t0 = time.monotonic()
        app = operator.deploy("slow", agent.server_id, slow)
        starting = eventually(lambda: operator.data(f"/applications/{app['id']}"),
                              lambda a: a["serverArtifacts"][0]["lastReportedStatus"]
                              == "STARTING", what="the instance starting")
        assert starting["lastReportedStatus"] != "STARTED"  # its check has not passed yet
        operator.wait_app(app["id"], "STARTED")
        assert time.monotonic() - t0 >= 2
        broken = app_zip(procfile="web: sleep 600\n",
                         extra={"corral.toml": '[health]\ntcp = true\ntimeout = 1\n'})
        app = operator.deploy("never", agent.server_id, broken)
        app = operator.wait_app(app["id"], "DEPLOYMENT_FAILED")
        assert "health check" in app["serverArtifacts"][0]["message"]


class TestBadArchives:
    @pytest.mark.parametrize(
        ("members", "words"),
        [
            ({"Procfile": "web: sleep 60\n", "../escape.txt": "x"}, "outside"),
            ({"Procfile": "web: sleep 60\n", "/abs.txt": "x"}, "absolute"),
        ],
        ids=["zip-slip", "absolute"],
    )
    def test_refused_cleanly(self, operator: Operator, agents: Agents, tmp_path: Path,
                             members: dict[str, str], words: str) -> None:
        import io
        import zipfile

        agent = agents("strict")
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w") as z:
            for name, content in members.items():
                z.writestr(zipfile.ZipInfo(name), content)
        app = operator.deploy("bad", agent.server_id, buf.getvalue())
        app = operator.wait_app(app["id"], "DEPLOYMENT_FAILED")
        assert words in app["serverArtifacts"][0]["message"]
        assert not (agent.directory / "apps" / "escape.txt").exists()
        assert not (agent.directory / "escape.txt").exists()
        assert agent.app_pids("bad") == []

    def test_symlink_leaving_the_folder(self, operator: Operator, agents: Agents) -> None:
        import io
        import zipfile

        agent = agents("links")
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w") as z:
            z.writestr("Procfile", "web: cat secret\n")
            link = zipfile.ZipInfo("secret")
            link.external_attr = (stat.S_IFLNK | 0o777) << 16
            z.writestr(link, "../../../../../../etc/passwd")
        app = operator.deploy("links", agent.server_id, buf.getvalue())
        app = operator.wait_app(app["id"], "DEPLOYMENT_FAILED")
        assert "link leaving" in app["serverArtifacts"][0]["message"]


class TestGroups:
    @pytest.mark.every_database
    def test_group_deploy_join_and_leave(self, operator: Operator, agents: Agents) -> None:
        nodes = [agents(f"g{i}") for i in range(4)]
        ids = [n.server_id for n in nodes]
        group = operator.call("POST", "/serverGroups", expect=201,
                              json={"name": "web", "serverIds": [str(i) for i in ids[:3]]}
                              ).json()["data"]
        app, _ = _timed_deploy(operator, "site", group["id"], app_zip("g"))
        assert sorted(i["serverId"] for i in app["serverArtifacts"]) == sorted(ids[:3])
        ports = {n.server_id: app_port(n, "site") for n in nodes[:3]}
        pids = {sid: ask(port)["pid"] for sid, port in ports.items()}
        assert len(set(pids.values())) == 3

        # a server added later gets the group's applications
        operator.call("POST", f"/serverGroups/{group['id']}/servers/{ids[3]}", expect=200)
        operator.wait_app(app["id"], "STARTED")
        app = operator.data(f"/applications/{app['id']}")
        assert sorted(i["serverId"] for i in app["serverArtifacts"]) == sorted(ids)
        assert ask(app_port(nodes[3], "site"))["env"]["CORRAL_SERVER_NAME"] == "g3"

        # a removed server keeps them: the very same process goes on
        operator.call("DELETE", f"/serverGroups/{group['id']}/servers/{ids[0]}", expect=204)
        own = operator.data(f"/applications?targetId={ids[0]}")
        assert [a["name"] for a in own] == ["site"]
        time.sleep(1.0)  # proves something does not happen: the process is not restarted
        assert ask(ports[ids[0]])["pid"] == pids[ids[0]]
        own_app = operator.wait_app(own[0]["id"], "STARTED")
        assert own_app["serverArtifacts"][0]["serverId"] == ids[0]

        # deleting the group (as in ARM) leaves each remaining server its own copy, same process
        operator.call("DELETE", f"/serverGroups/{group['id']}", expect=204)
        operator.call("GET", f"/serverGroups/{group['id']}", expect=404)
        operator.call("GET", f"/applications/{app['id']}", expect=404)
        for node in nodes[1:]:
            own = operator.data(f"/applications?targetId={node.server_id}")
            assert [a["name"] for a in own] == ["site"]
            assert own[0]["artifact"]["fileChecksum"] == app["artifact"]["fileChecksum"]
            operator.wait_app(own[0]["id"], "STARTED")
        time.sleep(1.0)  # proves something does not happen: no process is restarted
        for node in nodes[1:3]:
            assert ask(ports[node.server_id])["pid"] == pids[node.server_id]


class TestResilience:
    def test_agent_kill9_adopts_without_second_copy(self, operator: Operator,
                                                    agents: Agents) -> None:
        agent = agents("tough")
        app, _ = _timed_deploy(operator, "steady", agent.server_id, app_zip())
        port = app_port(agent, "steady")
        pid = ask(port)["pid"]
        agent.stop(signal.SIGKILL)
        assert ask(port)["pid"] == pid  # the application does not notice
        operator.wait_server(agent.server_id, "DISCONNECTED")
        agent.start()
        operator.wait_server(agent.server_id, "RUNNING")
        eventually(agent.output, lambda out: "steady: adopted" in out, what="the adoption")
        assert ask(port)["pid"] == pid
        assert agent.app_copies("steady") == 1
        operator.wait_app(app["id"], "STARTED")
        assert ask(port)["pid"] == pid
        # the adopted process is under control: stop works
        operator.call("PATCH", f"/applications/{app['id']}", expect=200,
                      json={"desiredStatus": "STOPPED"})
        operator.wait_app(app["id"], "STOPPED")
        assert agent.app_pids("steady") == []

    def test_local_api_port_kept_or_applications_repointed(self, operator: Operator,
                                                           agents: Agents) -> None:
        """The agent restarts: its local API comes back on the port its applications were
        given; when another program took that port, the applications are restarted with the
        new URL, never left with a dead one."""
        agent = agents("pointer")
        app, _ = _timed_deploy(operator, "pointed", agent.server_id, app_zip())
        port = app_port(agent, "pointed")
        first = ask(port)
        given = first["env"]["CORRAL_AGENT_URL"]
        assert local_http().post(given + "/v1/metrics", json={"messages": 1}).status_code == 204
        agent.stop()
        agent.start()
        eventually(agent.output, lambda out: out.count("pointed: adopted") == 1,
                   what="the adoption")
        assert local_http().post(given + "/v1/metrics", json={"messages": 1}, timeout=5
                          ).status_code == 204  # same port, same URL, same process
        assert ask(port)["pid"] == first["pid"]

        api_port = int(given.split(":")[2].split("/")[0])
        agent.stop()
        with socket.socket() as squatter:
            squatter.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            squatter.bind(("127.0.0.1", api_port))
            squatter.listen(1)
            agent.start()
            answer = eventually(lambda: _ask_quietly(port),
                                lambda a: a is not None and a["pid"] != first["pid"],
                                what="the application restarted with the new URL")
            moved = answer["env"]["CORRAL_AGENT_URL"]
            assert moved != given
            assert local_http().post(moved + "/v1/metrics", json={"messages": 1}, timeout=5
                              ).status_code == 204
        operator.wait_app(app["id"], "STARTED")

    @pytest.mark.every_database
    def test_apps_keep_running_while_control_plane_is_down(
        self, operator: Operator, agents: Agents, control_plane: ServeProcess
    ) -> None:
        agent = agents("lonely")
        app, _ = _timed_deploy(operator, "keeps", agent.server_id, app_zip())
        port = app_port(agent, "keeps")
        pid = ask(port)["pid"]
        assert control_plane.stop() == 0
        eventually(agent.output, lambda out: "connection to the control plane closed" in out
                   or "cannot reach the control plane" in out,
                   what="the agent noticing the control plane is gone")
        assert ask(port)["pid"] == pid
        # the agent itself restarts while the control plane is away: still no second copy
        agent.stop()
        before = len(agent.output())
        agent.start()
        eventually(lambda: agent.output()[before:],
                   lambda out: "keeps: adopted" in out and "cannot reach the control plane" in out,
                   what="the restarted agent adopting its application")
        assert ask(port)["pid"] == pid
        assert agent.app_copies("keeps") == 1
        control_plane.start()
        operator.wait_server(agent.server_id, "RUNNING", timeout=60)
        operator.wait_app(app["id"], "STARTED")
        operator.call("PATCH", f"/applications/{app['id']}", expect=200,
                      json={"desiredStatus": "STOPPED"})
        operator.wait_app(app["id"], "STOPPED")

    @pytest.mark.every_database
    def test_an_agent_that_missed_pushes_converges_on_reconnect(
        self, operator: Operator, agents: Agents
    ) -> None:
        """What a server runs is assembled from its group's rows when it is pushed (ADR 0007):
        an agent away while the group's application was redeployed, stopped and started again
        is sent the latest state when it returns, and runs that."""
        here, away = agents("here"), agents("away")
        group = operator.call("POST", "/serverGroups", expect=201, json={
            "name": "pair", "serverIds": [here.server_id, away.server_id]}).json()["data"]
        app, _ = _timed_deploy(operator, "site", group["id"], app_zip("v1"))
        assert ask(app_port(away, "site"))["version"] == "v1"
        away.stop(signal.SIGKILL)
        operator.wait_server(away.server_id, "DISCONNECTED")

        # three pushes the away agent never hears of
        path = f"/applications/{app['id']}"
        operator.call("PATCH", path, expect=200,
                      files={"file": ("site-2.zip", app_zip("v2"), "application/zip")})
        operator.call("PATCH", path, expect=200, json={"desiredStatus": "STOPPED"})
        operator.call("PATCH", path, expect=200, json={"desiredStatus": "STARTED"})

        def by_server(a: dict[str, Any]) -> dict[int, str]:
            return {i["serverId"]: i["lastReportedStatus"] for i in a["serverArtifacts"]}

        shown = eventually(lambda: operator.data(path),
                           lambda a: by_server(a)[here.server_id] == "STARTED",
                           what="deployment 2 started where the agent stayed")
        # the away instance last reported deployment 1: it is still to be updated
        assert by_server(shown)[away.server_id] == "DEPLOYING"
        assert shown["lastReportedStatus"] == "STARTED"  # counted: the connected server only
        assert ask(app_port(away, "site"))["version"] == "v1"  # untouched while away

        away.start()
        operator.wait_server(away.server_id, "RUNNING")
        converged = eventually(lambda: operator.data(path),
                               lambda a: set(by_server(a).values()) == {"STARTED"},
                               what="the returning agent on deployment 2")
        assert {i["deploymentId"] for i in converged["serverArtifacts"]} == {2}
        assert ask(app_port(away, "site"))["version"] == "v2"
        assert away.app_copies("site") == 1

    def test_deleted_server_is_refused(self, operator: Operator, agents: Agents) -> None:
        agent = agents("gone")
        operator.call("DELETE", f"/servers/{agent.server_id}", expect=204)
        eventually(agent.output, lambda out: "refused this server" in out, timeout=15,
                   what="the agent being refused")
        assert operator.call("GET", f"/servers/{agent.server_id}").status_code == 404
        assert agent.proc is not None and agent.proc.poll() is None  # alive, just refused


def _ask_quietly(port: int) -> dict[str, Any] | None:
    try:
        return ask(port, settle=0)
    except httpx.HTTPError:
        return None
