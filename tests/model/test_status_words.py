"""Status words under agents: simulated agents report over the real gateway of a real
`corral serve` while deploys, redeploys, stops, failures, a rollout with revert and a
disconnect happen; every answer of `GET /applications` sampled meanwhile is held against what
the agents really ran at that moment (ADR 0006). Above all, nothing that runs reads
UNDEPLOYED, and an application reads done (STARTED with `desiredStatus` STARTED) only when
what was asked runs."""

from __future__ import annotations

import hashlib
import json
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.e2e.operator import Operator
from tests.e2e.processes import ServeProcess
from tests.model.machine import ZIPS, bundle_zip
from tests.model.simulated import Fleet, SimAgent, Truth, identity
from tests.support import eventually

LAG = 2.0
"""Seconds a report may take from an agent to an answer of the API (a loaded CI machine)."""
ARM_WORDS = {"UNDEPLOYED", "STARTED", "STOPPED", "DEPLOYMENT_FAILED"}
BAD = bundle_zip("fails its health check")


@pytest.fixture
def fleet() -> Any:
    f = Fleet()
    yield f
    f.close()


def _register(operator: Operator, serve: ServeProcess, folder: Path, fleet: Fleet,
              name: str) -> int:
    key, csr = identity(folder, name)
    token = operator.registration_token()
    r = operator.http.post("/hybrid/api/v1/servers", headers={"Authorization": f"Bearer {token}"},
                           json={"muleLabel": name, "signatureRequest": csr})
    assert r.status_code == 200, r.text
    body = r.json()
    key.write_text(body["certificate"] + key.read_text())
    sid = int(body["serverId"])
    fleet.add(SimAgent(sid, key, f"wss://127.0.0.1:{serve.gateway_port}/agent/v1/connect",
                       serve.ca_path.read_text(),
                       failing={hashlib.sha256(BAD).hexdigest()}))
    operator.wait_server(sid, "RUNNING")
    return sid


class Sampler(threading.Thread):
    """`GET /applications` every 50 ms, with when each was asked and answered."""

    def __init__(self, operator: Operator) -> None:
        super().__init__(daemon=True)
        self.http = httpx.Client(base_url=operator.serve.url, headers=operator.headers,
                                 timeout=30)
        self.samples: list[tuple[float, float, list[dict[str, Any]]]] = []
        self.done = threading.Event()

    def run(self) -> None:
        while not self.done.is_set():
            t0 = time.monotonic()
            r = self.http.get("/hybrid/api/v1/applications")
            assert r.status_code == 200, r.text
            self.samples.append((t0, time.monotonic(), r.json()["data"]))
            time.sleep(0.05)
        self.http.close()


def _segments(timeline: list[Truth], start: float, end: float) -> list[Truth]:
    """The truths in force, as reported, at some moment of [start, end]."""
    known = [t for t in timeline if t.since is not None]
    shown = [t for t in known if start <= t.since <= end]  # type: ignore[operator]
    before = [t for t in known if t.since < start]  # type: ignore[operator]
    return ([before[-1]] if before else []) + shown


def _connected_throughout(agent: SimAgent, start: float, end: float) -> bool:
    state = False
    for at, up in agent.connected:
        if at > end:
            break
        if at >= start and not up:
            return False
        state = up if at < start else state and up
    return state


def _violations(fleet: Fleet, t0: float, t1: float, app: dict[str, Any]) -> list[str]:
    found: list[str] = []
    name, reported, desired = app["name"], app["lastReportedStatus"], app["desiredStatus"]
    if reported not in ARM_WORDS or desired not in ("STARTED", "STOPPED", "UPDATED"):
        found.append(f"words outside ARM's: {reported}/{desired}")
    if app["started"] != (reported == "STARTED"):
        found.append("started disagrees with lastReportedStatus")
    counted = [s["id"] for s in (app["target"].get("servers") or [app["target"]])
               if s["status"] == "RUNNING"]
    serving_somewhere = False
    done_everywhere = []
    for inst in app["serverArtifacts"]:
        agent = fleet.agents[inst["serverId"]]
        timeline = agent.timeline.get(name, [])
        if not _connected_throughout(agent, t0 - LAG, t1):
            continue  # an agent away (or coming back): its last report stands
        # the answer holds what the control plane knew at some moment of [t0, t1], from
        # reports up to LAG old: it served throughout only if it served until t1 too
        window = _segments(timeline, t0 - LAG, t1)
        serving = bool(window) and all(t.serving is not None for t in window)
        if serving and inst["lastReportedStatus"] == "UNDEPLOYED":
            found.append(f"server {inst['serverId']} serves {window[-1].serving} yet reads "
                         "UNDEPLOYED")
        if serving and inst["serverId"] in counted:
            serving_somewhere = True
        ran = any(t.serving == inst["deploymentId"]
                  for t in _segments(timeline, t0 - LAG, t1))
        if inst["lastReportedStatus"] == "STARTED" and not ran:
            found.append(f"server {inst['serverId']} reads STARTED for deployment "
                         f"{inst['deploymentId']}, which did not run there")
        if inst["serverId"] in counted:
            done_everywhere.append(ran)
    if serving_somewhere and reported == "UNDEPLOYED":
        found.append("it runs, yet reads UNDEPLOYED: " + json.dumps(
            [(i["serverId"], i["lastReportedStatus"], i["deploymentId"],
              [(round((t.since or 0) - t0, 2), t.deployment, t.status, t.serving)
               for t in _segments(fleet.agents[i["serverId"]].timeline.get(name, []),
                                  t0 - LAG, t1)])
             for i in app["serverArtifacts"]]))
    done = reported == "STARTED" and desired == "STARTED"
    cluster = app["target"]["type"] == "CLUSTER"
    if done and done_everywhere and not (any(done_everywhere) if cluster
                                         else all(done_everywhere)):
        found.append("reads done (STARTED/STARTED) while what was asked does not run")
    return found


def _summary(operator: Operator, app_id: int) -> list[Any]:
    a = operator.data(f"/applications/{app_id}")
    return [a["lastReportedStatus"], a["desiredStatus"],
            [(i["serverId"], i["lastReportedStatus"], i["deploymentId"])
             for i in a["serverArtifacts"]]]


def _wait_done(operator: Operator, app_id: int, reported: str = "STARTED",
               desired: str = "STARTED", timeout: float = 60) -> None:
    eventually(lambda: _summary(operator, app_id), lambda a: a[:2] == [reported, desired],
               timeout=timeout, what=f"application {app_id} {reported}/{desired}")


def _redeploy(operator: Operator, app_id: int, archive: bytes,
              rollout: dict[str, Any] | None = None) -> None:
    data = {"rollout": json.dumps(rollout)} if rollout else {}
    operator.call("PATCH", f"/applications/{app_id}", expect=200, data=data,
                  files={"file": ("app.zip", archive, "application/zip")})


@pytest.mark.e2e
@pytest.mark.slow
@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)  # words, not storage
def test_status_words_hold_against_what_agents_run(operator: Operator,
                                                   control_plane: ServeProcess,
                                                   fleet: Fleet, tmp_path: Path) -> None:
    keys = tmp_path / "keys"
    keys.mkdir()
    alone = _register(operator, control_plane, keys, fleet, "alone")
    grouped = [_register(operator, control_plane, keys, fleet, f"g{i}") for i in range(3)]
    clustered = [_register(operator, control_plane, keys, fleet, f"c{i}") for i in range(2)]
    group = operator.call("POST", "/serverGroups", expect=201,
                          json={"name": "g", "serverIds": grouped}).json()["data"]["id"]
    cluster = operator.call("POST", "/clusters", expect=201, json={
        "name": "c", "multicastEnabled": True,
        "servers": [{"serverId": s} for s in clustered]}).json()["data"]["id"]
    sampler = Sampler(operator)
    sampler.start()
    try:
        apps = {name: operator.deploy(name, target, ZIPS["v1"])["id"]
                for name, target in (("alone", alone), ("grp", group), ("clu", cluster))}
        for app_id in apps.values():
            _wait_done(operator, app_id)
        # plain redeploys: the old version serves while the new one is fetched
        _redeploy(operator, apps["alone"], ZIPS["v2"])
        _redeploy(operator, apps["clu"], ZIPS["v2"])
        _wait_done(operator, apps["alone"])
        _wait_done(operator, apps["clu"])
        # one server at a time, the first fails its health check, the rollout reverts
        _redeploy(operator, apps["grp"], BAD, {"maxParallel": 1, "autoRevert": True})
        eventually(lambda: operator.data(f"/applications/{apps['grp']}/deployments"),
                   lambda h: h[0]["rollout"] and h[0]["rollout"]["state"] == "REVERTED",
                   timeout=60, what="the rollout reverted")
        _wait_done(operator, apps["grp"])
        # stop and start again
        operator.call("PATCH", f"/applications/{apps['grp']}", expect=200,
                      json={"desiredStatus": "STOPPED"})
        _wait_done(operator, apps["grp"], "STOPPED", "STOPPED")
        operator.call("PATCH", f"/applications/{apps['grp']}", expect=200,
                      json={"desiredStatus": "STARTED"})
        _wait_done(operator, apps["grp"])
        # a member away during a redeploy converges when it returns
        fleet.set_online(grouped[1], False)
        operator.wait_server(grouped[1], "DISCONNECTED")
        _redeploy(operator, apps["grp"], ZIPS["v3"])
        _wait_done(operator, apps["grp"])
        fleet.set_online(grouped[1], True)
        eventually(lambda: operator.data(f"/applications/{apps['grp']}"),
                   lambda a: all(i["lastReportedStatus"] == "STARTED"
                                 and i["deploymentId"] == a["serverArtifacts"][0]["deploymentId"]
                                 for i in a["serverArtifacts"]),
                   timeout=60, what="the member that was away runs the redeploy")
    finally:
        sampler.done.set()
        sampler.join(30)
    problems = []
    for t0, t1, listed in sampler.samples:
        for app in listed:
            problems += [f"{app['name']} at {t0:.2f}: {p}"
                         for p in _violations(fleet, t0, t1, app)]
    print(f"status words: {len(sampler.samples)} samples, {len(problems)} disagreements")
    assert len(sampler.samples) > 100
    assert not problems, "\n".join(problems[:40])
