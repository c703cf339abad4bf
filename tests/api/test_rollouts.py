"""Rollouts, step by step against the database: which servers are sent what, when a batch is
released, how a failure stops or reverts, canaries and their promotion or cancellation. The
reports are stored the way the gateway stores them; the real agents' version of these runs in
tests/e2e/test_rollouts.py."""

from __future__ import annotations

import json
from typing import Any

from corral.controlplane import ControlPlane
from corral.db.models import Rollout, now_ms
from corral.db.session import transaction
from corral.domain import rollouts
from tests.api.conftest import Api, desired, make_zip
from tests.api.test_history import _history, _report


def _group_on_v1(api: Api, plane: ControlPlane, name: str) -> tuple[list[int], dict[str, Any]]:
    sids = [api.register(f"{name}-{i}") for i in range(3)]
    group = api.post("/serverGroups", json={"name": name, "serverIds": sids}).json()["data"]
    app = api.deploy(name, group["id"], make_zip({"Procfile": "web: v1\n"})).json()["data"]
    for sid in sids:
        _report(plane, sid, name, 1, "STARTED")
    assert _history(api, app["id"])[0]["state"] == "SUCCEEDED"
    return sids, app


def _redeploy(api: Api, app: dict[str, Any], version: str, rollout: dict[str, Any] | None
              ) -> None:
    data = {"rollout": json.dumps(rollout)} if rollout is not None else {}
    r = api.patch(f"/applications/{app['id']}", data=data,
                  files={"file": (f"{version}.zip", make_zip({"Procfile": f"web: {version}\n"}),
                                  "application/zip")})
    assert r.status_code == 200, r.text


def _sent(plane: ControlPlane, sid: int) -> int:
    """The deployment number this server is sent."""
    [app] = desired(plane, sid)["applications"]
    return int(app["deploymentId"])


def _advance(plane: ControlPlane, later_ms: int = 0) -> None:
    with transaction(plane.sessions) as s:
        for rollout in s.query(Rollout).filter(Rollout.state == "RUNNING"):
            rollouts.advance(s, rollout, now_ms() + later_ms)


def test_one_at_a_time_then_revert_on_failure(api: Api, plane: ControlPlane) -> None:
    sids, app = _group_on_v1(api, plane, "revert")
    _redeploy(api, app, "v2", {"maxParallel": 1, "autoRevert": True})
    assert [_sent(plane, sid) for sid in sids] == [2, 1, 1]  # only the first is released
    _advance(plane)
    assert [_sent(plane, sid) for sid in sids] == [2, 1, 1]  # it has not reported yet
    _report(plane, sids[0], "revert", 2, "DEPLOYMENT_FAILED",
            "process web exited with code 1; restart 3 in 2.0s")
    # the rollout ends its deployment, not the report: a reverted one never reads FAILED
    assert _history(api, app["id"])[0]["state"] == "IN_PROGRESS"
    _advance(plane)
    assert [_sent(plane, sid) for sid in sids] == [1, 1, 1]  # every server back on v1
    v2, v1 = _history(api, app["id"])
    assert v2["state"] == "ROLLED_BACK" and v2["rollout"]["state"] == "REVERTED"
    # every word true of what each server did: the failed one by name, with no restart to
    # come; the two the rollout never reached kept v1 and say so
    assert v2["rollout"]["message"] == "revert-0: process web exited with code 1; restart 3 " \
        "in 2.0s"
    assert v2["rollout"]["updated"] == [sids[0]]
    shown = {s["serverId"]: s for s in v2["servers"]}
    assert (shown[sids[0]]["status"], shown[sids[0]]["message"]) == (
        "DEPLOYMENT_FAILED", "process web exited with code 1")
    for sid in sids[1:]:
        assert (shown[sid]["status"], shown[sid]["message"]) == ("WAITING",
                                                                "never reached: runs deployment 1")
    assert v1["state"] == "SUCCEEDED"
    # the next redeploy takes the next number, not one the reverted deployment used
    _redeploy(api, app, "v3", None)
    assert _history(api, app["id"])[0]["deploymentId"] == 3
    assert [_sent(plane, sid) for sid in sids] == [3, 3, 3]


def test_healthy_batches_release_the_next_until_done(api: Api, plane: ControlPlane) -> None:
    sids, app = _group_on_v1(api, plane, "healthy")
    _redeploy(api, app, "v2", {"maxParallel": 2, "minHealthySeconds": 5})
    assert [_sent(plane, sid) for sid in sids] == [2, 2, 1]
    for sid in sids[:2]:
        _report(plane, sid, "healthy", 2, "STARTED")
    _advance(plane)
    assert _sent(plane, sids[2]) == 1  # healthy, but not yet for 5 s
    _advance(plane, later_ms=6000)
    assert _sent(plane, sids[2]) == 2
    _report(plane, sids[2], "healthy", 2, "STARTED")
    _advance(plane, later_ms=7000)  # healthy from now on
    assert _history(api, app["id"])[0]["rollout"]["state"] == "RUNNING"
    _advance(plane, later_ms=13000)
    [v2, _v1] = _history(api, app["id"])
    assert (v2["state"], v2["rollout"]["state"]) == ("SUCCEEDED", "SUCCEEDED")


def test_a_deadline_missed_stops_without_reverting(api: Api, plane: ControlPlane) -> None:
    sids, app = _group_on_v1(api, plane, "stuck")
    _redeploy(api, app, "v2", {"maxParallel": 1, "healthDeadlineSeconds": 30})
    _report(plane, sids[0], "stuck", 2, "STARTING")
    _advance(plane, later_ms=31_000)
    assert [_sent(plane, sid) for sid in sids] == [2, 1, 1]  # stopped where it was
    v2 = _history(api, app["id"])[0]
    assert (v2["state"], v2["rollout"]["state"]) == ("FAILED", "FAILED")
    assert "not healthy within 30 s (last: STARTING)" in v2["rollout"]["message"]


def test_a_failure_without_revert_fails_the_deployment_at_the_rollouts_step(
        api: Api, plane: ControlPlane) -> None:
    sids, app = _group_on_v1(api, plane, "fails")
    _redeploy(api, app, "v2", {"maxParallel": 1})
    _report(plane, sids[0], "fails", 2, "DEPLOYMENT_FAILED", "process web exited with code 1")
    assert _history(api, app["id"])[0]["state"] == "IN_PROGRESS"
    _advance(plane)
    v2 = _history(api, app["id"])[0]
    assert (v2["state"], v2["rollout"]["state"]) == ("FAILED", "FAILED")
    assert [_sent(plane, sid) for sid in sids] == [2, 1, 1]  # stopped where it was
    _report(plane, sids[0], "fails", 2, "STARTED")  # a later report changes nothing ended
    assert _history(api, app["id"])[0]["state"] == "FAILED"


def test_a_canary_waits_for_promotion_or_is_cancelled(api: Api, plane: ControlPlane) -> None:
    sids, app = _group_on_v1(api, plane, "canary")
    _redeploy(api, app, "v2", {"canary": 1})
    _report(plane, sids[0], "canary", 2, "STARTED")
    _advance(plane)
    v2 = _history(api, app["id"])[0]
    assert v2["rollout"]["state"] == "WAITING" and "promote" in v2["rollout"]["message"]
    assert [_sent(plane, sid) for sid in sids] == [2, 1, 1]
    r = api.post(f"/applications/{app['id']}/deployments/{v2['id']}/promote")
    assert r.status_code == 200, r.text
    assert [_sent(plane, sid) for sid in sids] == [2, 2, 2]  # the rest at once (no maxParallel)

    _redeploy(api, app, "v3", {"canary": 1})
    v3 = _history(api, app["id"])[0]
    assert [_sent(plane, sid) for sid in sids] == [3, 2, 2]
    r = api.post(f"/applications/{app['id']}/deployments/{v3['id']}/cancel")
    assert r.status_code == 200, r.text
    assert [_sent(plane, sid) for sid in sids] == [2, 2, 2]
    v3 = _history(api, app["id"])[0]
    assert (v3["state"], v3["rollout"]["state"]) == ("CANCELLED", "CANCELLED")
    for action in ("promote", "cancel"):  # nothing in progress any more
        r = api.post(f"/applications/{app['id']}/deployments/{v3['id']}/{action}")
        assert r.status_code == 404, r.text


def test_a_group_default_policy_and_refusals(api: Api, plane: ControlPlane) -> None:
    sids, app = _group_on_v1(api, plane, "default")
    group_id = app["target"]["id"]
    for bad, says in (({"maxParallel": 0}, "maxParallel must be an integer from 1"),
                      ({"maxParallel": "2"}, "maxParallel must be an integer"),
                      ({"autoRevert": "yes"}, "autoRevert must be true or false"),
                      ({"speed": 3}, "unknown field 'speed'")):
        r = api.patch(f"/serverGroups/{group_id}", json={"rollout": bad})
        assert r.status_code == 400 and says in r.json()["message"], r.text
    r = api.patch(f"/applications/{app['id']}", data={"rollout": "{not json"},
                  files={"file": ("x.zip", make_zip(), "application/zip")})
    assert r.status_code == 400 and "rollout is not valid JSON" in r.json()["message"]
    assert api.patch(f"/serverGroups/{group_id}", json={}).status_code == 400

    r = api.patch(f"/serverGroups/{group_id}", json={"rollout": {"maxParallel": 1}})
    assert r.status_code == 200, r.text
    _redeploy(api, app, "v2", None)  # no policy given: the group's
    assert [_sent(plane, sid) for sid in sids] == [2, 1, 1]
    assert api.patch(f"/serverGroups/{group_id}", json={"rollout": None}).status_code == 200
    _redeploy(api, app, "v3", None)  # cleared: all at once, as ARM does
    assert [_sent(plane, sid) for sid in sids] == [3, 3, 3]
    assert api.patch(f"/serverGroups/{group_id}", json={"name": "renamed"}).status_code == 200


def _status_sent(plane: ControlPlane, sid: int) -> str:
    [app] = desired(plane, sid)["applications"]
    return str(app["desiredStatus"])


def test_a_stop_and_a_start_honour_max_parallel(api: Api, plane: ControlPlane) -> None:
    sids, app = _group_on_v1(api, plane, "paced")
    r = api.patch(f"/applications/{app['id']}",
                  json={"desiredStatus": "STOPPED", "rollout": {"maxParallel": 2}})
    assert r.status_code == 200, r.text
    assert [_status_sent(plane, sid) for sid in sids] == ["STOPPED", "STOPPED", "STARTED"]
    r = api.patch(f"/applications/{app['id']}", json={"desiredStatus": "STARTED"})
    assert r.status_code == 409 and "rollout in progress" in r.json()["message"]
    for sid in sids[:2]:
        _report(plane, sid, "paced", 1, "STOPPED")
    _advance(plane)
    assert [_status_sent(plane, sid) for sid in sids] == ["STOPPED"] * 3
    _report(plane, sids[2], "paced", 1, "STOPPED")
    _advance(plane)
    [v1] = _history(api, app["id"])
    assert (v1["rollout"]["desiredStatus"], v1["rollout"]["state"]) == ("STOPPED", "SUCCEEDED")
    assert v1["state"] == "SUCCEEDED"  # the deployment itself is what it was

    # a group's default paces an ARM client's plain start as well
    api.patch(f"/serverGroups/{app['target']['id']}", json={"rollout": {"maxParallel": 1}})
    assert api.patch(f"/applications/{app['id']}",
                     json={"desiredStatus": "STARTED"}).status_code == 200
    assert [_status_sent(plane, sid) for sid in sids] == ["STARTED", "STOPPED", "STOPPED"]


def _apps_sent(plane: ControlPlane, sid: int) -> list[tuple[str, int]]:
    return [(a["name"], a["deploymentId"]) for a in desired(plane, sid)["applications"]]


def test_a_first_deploy_rolls_out_and_a_failure_removes_it(api: Api,
                                                           plane: ControlPlane) -> None:
    sids = [api.register(f"fresh-{i}") for i in range(3)]
    group = api.post("/serverGroups", json={"name": "fresh", "serverIds": sids}).json()["data"]
    r = api.post("/applications", data={
        "artifactName": "fresh", "targetId": str(group["id"]),
        "rollout": json.dumps({"maxParallel": 2, "autoRevert": True})},
        files={"file": ("fresh.zip", make_zip(), "application/zip")})
    assert r.status_code == 202, r.text
    app = r.json()["data"]
    assert [_apps_sent(plane, sid) for sid in sids] == [[("fresh", 1)], [("fresh", 1)], []]
    [first] = _history(api, app["id"])
    assert {s["status"] for s in first["servers"]} == {"DEPLOYING", "WAITING"}
    _report(plane, sids[0], "fresh", 1, "STARTED")
    _report(plane, sids[1], "fresh", 1, "DEPLOYMENT_FAILED", "crashed")
    _advance(plane)
    assert [_apps_sent(plane, sid) for sid in sids] == [[], [], []]  # it runs nowhere now
    [first] = _history(api, app["id"])
    assert (first["state"], first["rollout"]["state"]) == ("ROLLED_BACK", "REVERTED")

    _redeploy(api, app, "v2", None)  # a version that works reaches every server
    assert [_apps_sent(plane, sid) for sid in sids] == [[("fresh", 2)]] * 3
    r = api.post("/applications", data={"artifactName": "bad", "targetId": str(group["id"]),
                                        "rollout": '{"canary": -1}'},
                 files={"file": ("bad.zip", make_zip(), "application/zip")})
    assert r.status_code == 400 and "canary" in r.json()["message"]


def test_log_levels_reach_servers_a_rollout_has_not_reached(api: Api,
                                                            plane: ControlPlane) -> None:
    sids, app = _group_on_v1(api, plane, "levels")
    _redeploy(api, app, "v2", {"maxParallel": 1})
    assert [_sent(plane, sid) for sid in sids] == [2, 1, 1]
    target = app["target"]["id"]
    logging = next(c["component"]["id"] for c in api.get(f"/targets/{target}/components")
                   .json()["data"] if c["component"]["name"] == "mule.agent.logging.service")
    r = api.patch(f"/targets/{target}/components/{logging}", json={"configuration": {
        "applicationLogLevels": [{"artifactName": "levels", "scopeLoggingConfigurations": [
            {"logLevel": "WARN", "scope": "org.example"}]}]}})
    assert r.status_code == 200, r.text
    for sid in sids:  # updated or still pinned to v1, every server hears of the levels
        [sent] = desired(plane, sid)["applications"]
        assert sent["logLevels"] == {"org.example": "WARN"}
    assert [_sent(plane, sid) for sid in sids] == [2, 1, 1]  # and nothing is redeployed
