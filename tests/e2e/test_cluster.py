"""Clusters that really cluster: a Raft group among real agents elects a primary, replicates a
store, fails over when the primary's agent is killed — with the control plane up or down."""

from __future__ import annotations

import signal
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.e2e.apps import app_port, app_zip, ask
from tests.e2e.operator import Operator
from tests.e2e.processes import AgentProcess, ServeProcess, free_port
from tests.support import eventually, local_http

Agents = Callable[..., AgentProcess]


def cluster_view(agent: AgentProcess) -> dict[str, Any] | None:
    try:
        r = local_http().get(agent.local_api + "/v1/cluster", timeout=2)
    except httpx.HTTPError:
        return None
    return r.json() if r.status_code == 200 else None


def wait_primary(nodes: list[AgentProcess], timeout: float = 30, not_this: int | None = None) -> int:
    """Until every node names the same primary (other than `not_this`)."""
    seen = eventually(lambda: [(v or {}).get("primaryNodeId") for v in map(cluster_view, nodes)],
                      lambda s: s[0] is not None and s[0] != not_this
                      and all(p == s[0] for p in s), timeout=timeout, what="a common primary")
    return int(seen[0])


def put(agent: AgentProcess, key: str, value: Any) -> httpx.Response:
    return local_http().put(f"{agent.local_api}/v1/cluster/store/{key}", json={"value": value}, timeout=10)


def wait_value(agent: AgentProcess, key: str, value: Any, timeout: float = 15) -> None:
    def read() -> Any:
        try:
            r = local_http().get(f"{agent.local_api}/v1/cluster/store/{key}", timeout=2)
        except httpx.HTTPError:
            return None
        return r.json().get("value") if r.status_code == 200 else None

    eventually(read, lambda got: got == value, timeout=timeout,
               what=f"{key} = {value!r} on server {agent.server_id}")


def _unicast(operator: Operator, nodes: list[AgentProcess]) -> dict[str, Any]:
    return operator.call("POST", "/clusters", expect=201, json={
        "name": "ring", "multicastEnabled": False,
        "servers": [{"serverId": str(n.server_id), "serverIp": "127.0.0.1"} for n in nodes],
    }).json()["data"]


@pytest.mark.slow
@pytest.mark.every_database
def test_unicast_failover_with_and_without_control_plane(
    operator: Operator, agents: Agents, control_plane: ServeProcess
) -> None:
    nodes = [agents(f"c{i}", "--cluster-port", str(free_port())) for i in range(3)]
    by_id = {n.server_id: n for n in nodes}
    cluster = _unicast(operator, nodes)
    primary = wait_primary(nodes)
    view = cluster_view(nodes[0])
    assert view is not None and view["clusterId"] == cluster["id"]
    assert sorted(m["serverId"] for m in view["members"]) == sorted(by_id)

    # the control plane shows the primary and who sees whom
    eventually(lambda: operator.data(f"/clusters/{cluster['id']}"),
               lambda shown: shown["primaryNodeId"] == primary
               and all(len(n["visibleNodeIds"]) == 2
                       for n in shown["visibilityMap"]["mapNodes"]),
               timeout=15, what="the primary and visibility shown")

    # applications on a cluster learn where they are
    app = operator.deploy("member", cluster["id"], app_zip())
    operator.wait_app(app["id"], "STARTED")
    env = ask(app_port(nodes[1], "member"))["env"]
    assert env["CORRAL_CLUSTER_ID"] == str(cluster["id"])
    assert sorted(env["CORRAL_CLUSTER_NODES"].split(",")) == sorted(map(str, by_id))
    assert env["CORRAL_AGENT_URL"] == nodes[1].app_url("member")
    assert local_http().get(env["CORRAL_AGENT_URL"] + "/v1/cluster").json()["nodeId"] == nodes[1].server_id

    # a write acknowledged on one node is read on every node; measure write latency
    assert put(nodes[0], "greeting", {"hello": "world"}).status_code == 200
    for n in nodes:
        wait_value(n, "greeting", {"hello": "world"})
    latencies = []
    for i in range(20):
        t0 = time.monotonic()
        assert put(nodes[i % 3], f"k{i}", i).status_code == 200
        latencies.append(time.monotonic() - t0)
    print(f"\n[measure] store write (acknowledged, 3 nodes): p50 "
          f"{statistics.median(latencies) * 1000:.1f} ms, max {max(latencies) * 1000:.1f} ms")
    lock = local_http().post(nodes[0].local_api + "/v1/cluster/locks/nightly-job", timeout=10).json()
    assert lock["acquired"] is True
    other = local_http().post(nodes[1].local_api + "/v1/cluster/locks/nightly-job", timeout=10).json()
    assert other["acquired"] is False

    def fail_over(label: str, leader: int) -> int:
        killed = by_id[leader]
        t0 = time.monotonic()
        killed.stop(signal.SIGKILL)
        survivors = [n for n in nodes if n is not killed]
        new = wait_primary(survivors, not_this=leader)
        print(f"[measure] failover ({label}): new primary {new} in {time.monotonic() - t0:.2f}s")
        assert put(survivors[0], f"after-{label}", label).status_code == 200
        killed.start()  # restarts and rejoins with the data
        wait_value(killed, f"after-{label}", label, timeout=30)
        wait_value(killed, "greeting", {"hello": "world"})
        return wait_primary(nodes)

    primary = fail_over("control plane up", primary)
    assert control_plane.stop() == 0
    primary = fail_over("control plane down", primary)
    assert put(by_id[primary], "while-down", True).status_code == 200
    for n in nodes:
        wait_value(n, "while-down", True)
    control_plane.start()
    operator.wait_server(nodes[0].server_id, "RUNNING", timeout=60)


def test_multicast_cluster_forms_without_ips(operator: Operator, agents: Agents) -> None:
    group_port = str(free_port())
    flags = ["--multicast-interface", "127.0.0.1", "--multicast-port", group_port]
    nodes = [agents(f"m{i}", "--cluster-port", str(free_port()), *flags) for i in range(3)]
    cluster = operator.call("POST", "/clusters", expect=201, json={
        "name": "mesh", "multicastEnabled": "true",
        "servers": [{"serverId": str(n.server_id)} for n in nodes]}).json()["data"]
    assert all(s.get("serverIp") is None for s in cluster["servers"])
    primary = wait_primary(nodes, timeout=45)
    assert primary in {n.server_id for n in nodes}
    assert put(nodes[2], "found", "each other").status_code == 200
    for n in nodes:
        wait_value(n, "found", "each other")


def test_removed_server_leaves_and_strangers_stay_out(
    operator: Operator, agents: Agents, tmp_path: Path
) -> None:
    nodes = [agents(f"r{i}", "--cluster-port", str(free_port())) for i in range(3)]
    outsider = agents("outsider", "--cluster-port", str(free_port()))
    cluster = _unicast(operator, nodes)
    wait_primary(nodes)
    assert put(nodes[0], "secret-plan", "42").status_code == 200
    wait_value(nodes[2], "secret-plan", "42")

    r = local_http().get(outsider.local_api + "/v1/cluster", timeout=5)
    assert r.status_code == 404 and "not in a cluster" in r.json()["message"]

    # a Raft node that knows the members' addresses but not the cluster's secret learns nothing
    from pysyncobj import SyncObj, SyncObjConf
    from pysyncobj.batteries import ReplDict

    spy_store = ReplDict()
    addresses = [m["address"] for m in cluster_view(nodes[0])["members"]]  # type: ignore[index]
    spy = SyncObj(f"127.0.0.1:{free_port()}", addresses,
                  SyncObjConf(password="not-the-secret", connectionRetryTime=0.5),
                  consumers=[spy_store])
    try:
        time.sleep(4)  # proves something does not happen: the spy learns nothing meanwhile
        assert spy_store.get("secret-plan") is None
        assert spy._getLeader() is None
    finally:
        spy.destroy()

    # a server removed through the API leaves the group; the others go on
    leaving = nodes[2]
    operator.call("DELETE", f"/clusters/{cluster['id']}/servers/{leaving.server_id}", expect=204)
    eventually(lambda: cluster_view(leaving), lambda view: view is None, timeout=20,
               what="the removed server leaving its cluster")
    remaining = nodes[:2]
    wait_primary(remaining)
    eventually(lambda: {m["serverId"] for m in (cluster_view(remaining[0]) or {})
                        .get("members", [])},
               lambda members: members == {n.server_id for n in remaining}, timeout=20,
               what="the remaining members")
    assert put(remaining[1], "after-removal", 1).status_code == 200
    wait_value(remaining[0], "after-removal", 1)


@pytest.mark.every_database
def test_deleting_a_cluster_removes_its_applications(operator: Operator, agents: Agents) -> None:
    """As in ARM: the applications stop and go, the servers stay registered and standalone."""
    nodes = [agents(f"d{i}", "--cluster-port", str(free_port())) for i in range(2)]
    cluster = _unicast(operator, nodes)
    r = operator.deploy("shared", cluster["id"], app_zip("d"))
    app = operator.wait_app(r["id"], "STARTED")
    pids = [ask(app_port(n, "shared"))["pid"] for n in nodes]
    operator.call("DELETE", f"/clusters/{cluster['id']}", expect=204)
    operator.call("GET", f"/applications/{app['id']}", expect=404)
    for pid in pids:
        eventually(lambda pid=pid: Path(f"/proc/{pid}").exists(), lambda alive: not alive,
                   timeout=20, what=f"application process {pid} stopping")
    for node in nodes:
        server = operator.data(f"/servers/{node.server_id}")
        assert server["status"] == "RUNNING" and "clusterId" not in server
        assert operator.data(f"/applications?targetId={node.server_id}") == []
        eventually(lambda node=node: cluster_view(node), lambda view: view is None, timeout=20,
                   what="the server leaving its deleted cluster")
