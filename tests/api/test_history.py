"""Deployment history and rollback: each deployment with its artifact, properties, author and
outcome per server; a rollback restores an earlier one exactly; old ones are collected."""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy import select, update

from corral import wire
from corral.controlplane import ControlPlane
from corral.db.models import Artifact, Deployment
from corral.db.session import transaction
from corral.domain import agents, history
from tests.api.conftest import Api, make_zip


def _report(plane: ControlPlane, sid: int, name: str, deployment: int, status: str,
            message: str | None = None) -> None:
    """What an agent's report does to the rows (the gateway stores reports this way)."""
    with transaction(plane.sessions) as s:
        agents.record_reports(s, [(sid, wire.Report(revision=1, applications=[
            wire.ApplicationReport(name=name, deploymentId=deployment, status=status,
                                   message=message)]))])


def _history(api: Api, app_id: int) -> list[dict[str, Any]]:
    r = api.get(f"/applications/{app_id}/deployments")
    assert r.status_code == 200, r.text
    return list(r.json()["data"])


def _config(name: str, value: str) -> str:
    return json.dumps({"mule.agent.application.properties.service": {
        "applicationName": name, "properties": {"color": value}}})


def test_each_deployment_is_kept_with_its_outcome_per_server(api: Api,
                                                             plane: ControlPlane) -> None:
    a, b = api.register("hist-a"), api.register("hist-b")
    group = api.post("/serverGroups", json={"name": "hist", "serverIds": [a, b]}).json()["data"]
    app = api.deploy("site", group["id"], make_zip({"Procfile": "web: v1\n"}),
                     configuration=_config("site", "blue")).json()["data"]
    [first] = _history(api, app["id"])
    assert first["state"] == "IN_PROGRESS" and first["createdBy"] == "admin"
    assert first["properties"] == {"color": "blue"} and first["kind"] == "deploy"
    assert {s["status"] for s in first["servers"]} == {"DEPLOYING"}

    _report(plane, a, "site", 1, "STARTED")
    assert _history(api, app["id"])[0]["state"] == "IN_PROGRESS"  # one server to go
    _report(plane, b, "site", 1, "STARTED")
    [first] = _history(api, app["id"])
    assert first["state"] == "SUCCEEDED" and first["endedAt"] >= first["startedAt"]
    assert [s["status"] for s in first["servers"]] == ["STARTED", "STARTED"]

    r = api.patch(f"/applications/{app['id']}", data={"configuration": _config("site", "red")},
                  files={"file": ("site-2.zip", make_zip({"Procfile": "web: v2\n"}),
                                  "application/zip")})
    assert r.status_code == 200, r.text
    _report(plane, a, "site", 2, "DEPLOYMENT_FAILED", "health check never passed")
    second, first = _history(api, app["id"])
    assert (second["deploymentId"], second["kind"], second["state"]) == (2, "redeploy", "FAILED")
    failed = {s["serverId"]: s for s in second["servers"]}
    assert failed[a]["message"] == "health check never passed"
    assert failed[b]["status"] == "DEPLOYING"  # never reported about deployment 2
    assert second["artifact"]["sha256"] != first["artifact"]["sha256"]


def test_rollback_restores_the_artifact_and_properties_exactly(api: Api,
                                                               plane: ControlPlane) -> None:
    sid = api.register("roll")
    v1 = make_zip({"Procfile": "web: one\n"})
    app = api.deploy("roll-app", sid, v1, configuration=_config("roll-app", "blue")).json()
    app = app["data"]
    _report(plane, sid, "roll-app", 1, "STARTED")
    r = api.post(f"/applications/{app['id']}/rollback")
    assert r.status_code == 409 and "no earlier successful deployment" in r.json()["message"]

    api.patch(f"/applications/{app['id']}", data={"configuration": _config("roll-app", "red")},
              files={"file": ("roll-2.zip", make_zip({"Procfile": "web: two\n"}),
                              "application/zip")})
    _report(plane, sid, "roll-app", 2, "STARTED")
    r = api.post(f"/applications/{app['id']}/rollback")  # to the latest good one before
    assert r.status_code == 200, r.text
    third, second, first = _history(api, app["id"])
    assert third["deploymentId"] == 3
    assert (third["kind"], third["rolledBackTo"], second["state"]) == (
        "rollback", first["id"], "ROLLED_BACK")
    assert third["artifact"] == first["artifact"]
    assert third["properties"] == first["properties"] == {"color": "blue"}
    pushed = _desired_app(plane, sid)  # what the agent is sent: deployment 1's, again
    assert pushed["properties"] == {"color": "blue"} and pushed["deploymentId"] == 3
    assert pushed["artifact"]["sha256"] == first["artifact"]["sha256"]

    r = api.post(f"/applications/{app['id']}/rollback", json={"deploymentId": second["id"]})
    assert r.status_code == 200  # an explicit one, even rolled back itself
    assert _history(api, app["id"])[0]["properties"] == {"color": "red"}
    for bad, status in (({"deploymentId": 999999}, 404), ({"deploymentId": "x"}, 400),
                        ({"deploymentId": _history(api, app["id"])[0]["id"]}, 409)):
        r = api.post(f"/applications/{app['id']}/rollback", json=bad)
        assert r.status_code == status, (bad, r.text)
    other = api.in_env("Sandbox").post(f"/applications/{app['id']}/rollback")
    assert other.status_code == 404  # another environment's application


def _desired_app(plane: ControlPlane, sid: int) -> dict[str, Any]:
    from tests.api.conftest import desired
    [app] = desired(plane, sid)["applications"]
    return dict(app)


def test_old_deployments_and_unused_artifacts_are_collected(api: Api,
                                                            plane: ControlPlane) -> None:
    sid = api.register("gc")
    app = api.deploy("gc-app", sid, make_zip({"Procfile": "web: 0\n"})).json()["data"]
    for i in range(1, 5):
        api.patch(f"/applications/{app['id']}",
                  files={"file": ("gc.zip", make_zip({"Procfile": f"web: {i}\n"}),
                                  "application/zip")})
    with transaction(plane.sessions) as s:  # everything is older than the spare hour
        s.execute(update(Artifact).values(time_updated=0))
    shas = [d["artifact"]["sha256"] for d in _history(api, app["id"])]
    with transaction(plane.sessions) as s:
        gone = history.collect(s, keep=2)
    assert sorted(gone) == sorted(shas[2:])
    assert [d["artifact"]["sha256"] for d in _history(api, app["id"])] == shas[:2]
    with transaction(plane.readers) as s:
        kept = set(s.scalars(select(Artifact.sha256)))
        assert set(shas[:2]) <= kept and not set(shas[2:]) & kept
        assert s.scalar(select(Deployment.id).where(Deployment.number == 1)) is None
