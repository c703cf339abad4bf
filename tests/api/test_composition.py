"""Sequences of valid calls that once broke Corral (found by the model, `tests/model/`): each
is kept here as a plain example."""

from __future__ import annotations

from corral import wire
from corral.controlplane import ControlPlane
from corral.db.models import ServerGroup
from corral.db.session import transaction
from corral.domain import agents
from tests.api.conftest import Api, make_zip
from tests.api.test_rollouts import _group_on_v1, _redeploy


def _console_targets(api: Api) -> dict[int, list[int]]:
    r = api.client.get("/armui/api/v1/servers", headers=api.headers)
    assert r.status_code == 200, r.text
    return {t["id"]: [s["id"] for s in t["details"]["servers"]] for t in r.json()["data"]}


def test_an_empty_group_lists_in_the_console(api: Api) -> None:
    """An empty group once made `/armui/api/v1/servers` answer 500 for the whole environment
    (the group was taken for its own only server); so did a group whose last member left or
    was deleted, and an application on an empty group."""
    empty = api.post("/serverGroups", json={"name": "empty"}).json()["data"]["id"]
    assert _console_targets(api) == {empty: []}
    s1, s2 = api.register("s1"), api.register("s2")
    left = api.post("/serverGroups", json={"name": "left", "serverIds": [s1]}).json()["data"]
    gone = api.post("/serverGroups", json={"name": "gone", "serverIds": [s2]}).json()["data"]
    assert api.delete(f"/serverGroups/{left['id']}/servers/{s1}").status_code == 204
    assert api.delete(f"/servers/{s2}").status_code == 204
    assert _console_targets(api) == {s1: [s1], empty: [], left["id"]: [], gone["id"]: []}
    app = api.deploy("on-empty", empty).json()["data"]
    assert (app["serverArtifacts"], app["lastReportedStatus"]) == ([], "UNDEPLOYED")
    r = api.client.get("/armui/api/v1/applications", headers=api.headers)
    assert r.status_code == 200 and [a["id"] for a in r.json()["data"]] == [app["id"]]


def test_ids_are_never_reused(api: Api, plane: ControlPlane) -> None:
    """SQLite gave a new row the id of the newest deleted one: a script polling a deleted
    application until 404 found the next one instead. Nor after a restart."""
    server = api.register("s")
    first = api.deploy("first", server).json()["data"]["id"]
    assert api.delete(f"/applications/{first}").status_code == 204
    second = api.deploy("second", server).json()["data"]["id"]
    assert second > first
    assert api.get(f"/applications/{first}").status_code == 404
    group = api.post("/serverGroups", json={"name": "g"}).json()["data"]["id"]
    assert api.delete(f"/serverGroups/{group}").status_code == 204
    cluster = api.post("/clusters", json={"name": "c", "multicastEnabled": True,
                                          "servers": [{"serverId": api.register("m")}]}
                       ).json()["data"]["id"]
    assert cluster > group
    assert api.get(f"/serverGroups/{group}").status_code == 404
    assert api.delete(f"/clusters/{cluster}").status_code == 204
    plane.close()
    again = ControlPlane.open(plane.settings)
    try:
        with transaction(again.sessions) as s:
            group_again = ServerGroup(organization_id=api.org_id, environment_id=api.env_id,
                                      name="after-restart")
            s.add(group_again)
            s.flush()
            assert group_again.id > cluster
    finally:
        again.close()


def test_a_redeploy_never_reads_undeployed_while_the_old_version_runs(
        api: Api, plane: ControlPlane) -> None:
    """A group of three runs v1; a redeploy one server at a time fails on the first server and
    is reverted. v1 runs on the two others all along (and on the first until it stops it), so
    the application must never read UNDEPLOYED; it read so from the PATCH until the revert."""
    sids, app = _group_on_v1(api, plane, "web")
    _redeploy(api, app, "v2", {"maxParallel": 1, "autoRevert": True})

    def status() -> tuple[str, str, bool]:
        a = api.get(f"/applications/{app['id']}").json()["data"]
        return a["lastReportedStatus"], a["desiredStatus"], a["started"]

    assert status() == ("STARTED", "UPDATED", True)  # ARM's PATCH answer says STARTED too

    def report(status: str, serving: bool | None) -> None:
        with transaction(plane.sessions) as s:
            agents.record_reports(s, [(sids[0], wire.Report(revision=2, applications=[
                wire.ApplicationReport(name="web", deploymentId=2, status=status,
                                       serving=serving)]))])

    report("DEPLOYING", True)  # fetching v2, v1 still running there
    assert status() == ("STARTED", "UPDATED", True)
    report("STARTING", False)  # v1 stopped there, v2 starting; the two others run v1
    assert status() == ("STARTED", "UPDATED", True)
    report("DEPLOYMENT_FAILED", False)
    assert status() == ("DEPLOYMENT_FAILED", "STARTED", False)  # settled: it failed
    # an agent of the version before `serving`: a DEPLOYING report says nothing of what runs
    report("DEPLOYING", None)
    assert status()[0] == "STARTED"


def test_a_first_deploy_partly_started_is_started_but_not_done(api: Api,
                                                               plane: ControlPlane) -> None:
    """It runs on one server of two: not UNDEPLOYED; `desiredStatus` reads UPDATED until it
    runs on both, so a client waiting for STARTED/STARTED does not stop early."""
    sids = [api.register(f"p{i}") for i in range(2)]
    group = api.post("/serverGroups", json={"name": "p", "serverIds": sids}).json()["data"]
    app = api.deploy("p", group["id"], make_zip()).json()["data"]
    assert (app["lastReportedStatus"], app["desiredStatus"]) == ("UNDEPLOYED", "STARTED")
    with transaction(plane.sessions) as s:
        agents.record_reports(s, [(sids[0], wire.Report(revision=1, applications=[
            wire.ApplicationReport(name="p", deploymentId=1, status="STARTED")]))])
    shown = api.get(f"/applications/{app['id']}").json()["data"]
    assert (shown["lastReportedStatus"], shown["desiredStatus"]) == ("STARTED", "UPDATED")
    with transaction(plane.sessions) as s:
        agents.record_reports(s, [(sids[1], wire.Report(revision=1, applications=[
            wire.ApplicationReport(name="p", deploymentId=1, status="STARTED")]))])
    shown = api.get(f"/applications/{app['id']}").json()["data"]
    assert (shown["lastReportedStatus"], shown["desiredStatus"]) == ("STARTED", "STARTED")
