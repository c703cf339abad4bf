"""ARM's standalone alerts through the API: the shapes anypoint-cli sends and reads, bad input,
another environment's resources; and the evaluator on the database: a level fires once and
resolves once, an event fires once per change, every firing is kept with its notifications."""

from __future__ import annotations

import time
from typing import Any

import pytest

from corral import wire
from corral.controlplane import ControlPlane
from corral.db.models import AlertDelivery, Server
from corral.db.session import transaction
from corral.domain import alerts, measurements
from tests.api.conftest import Api


def cli_body(**condition: Any) -> dict[str, Any]:
    """What `anypoint-cli-v4 runtime-mgr standalone-alert create` posts."""
    return {"name": "cpu high", "severity": "CRITICAL",
            "condition": {"resourceType": "server", "type": "server-cpu", "resources": ["*"],
                          **condition},
            "actions": [{"type": "email", "subject": "cpu ${resource}", "content": "hot",
                         "emails": ["ops@example.com"]}]}


def evaluate(plane: ControlPlane, now: int | None = None) -> list[int]:
    with transaction(plane.sessions) as session:
        return alerts.evaluate(session, 15.0, now)


def deliveries(plane: ControlPlane) -> list[AlertDelivery]:
    with plane.sessions() as session:
        rows = session.query(AlertDelivery).order_by(AlertDelivery.id).all()
        session.expunge_all()
        return rows


def sample(cpu: float, *apps: wire.InstanceSample) -> wire.Measurements:
    return wire.Measurements(
        server=wire.ServerSample(cpu=cpu, memoryUsed=1, memoryTotal=4, diskUsed=1, diskTotal=2,
                                 loadAverage=0.5, threads=10),
        applications=list(apps))


def test_create_list_describe_modify_delete(api: Api) -> None:
    r = api.post("/alerts", json=cli_body(threshold=80, operator="GREATER_THAN"))
    assert r.status_code == 200, r.text  # ARM's answer: 200, the alert as a list of one
    [alert] = r.json()["data"]
    assert alert["condition"] == {"resourceType": "server", "type": "server-cpu",
                                  "resources": ["*"], "threshold": 80,
                                  "operator": "GREATER_THAN", "event": "server-cpu"}
    assert alert["conditionType"] == "server-cpu"
    assert alert["enabled"] is True and alert["productName"] == "hybrid"
    listed = api.get("/alerts", params={"limit": 10, "offset": 0, "sort": "createdAt"}).json()
    assert listed["total"] == 1 and listed["data"][0]["id"] == alert["id"]
    # anypoint-cli's modify: the alert back whole without its system keys, merged with flags
    sent = {k: v for k, v in alert.items() if k not in (
        "id", "enabled", "productName", "organizationId", "environmentId", "lastModified",
        "isSystem", "createdAt")}
    sent["condition"]["threshold"] = 90
    sent["severity"] = "WARNING"
    r = api.patch(f"/alerts/{alert['id']}", json=sent)
    assert r.status_code == 200, r.text
    changed = api.get(f"/alerts/{alert['id']}").json()["data"]
    assert changed["condition"]["threshold"] == 90 and changed["severity"] == "WARNING"
    assert changed["actions"][0]["emails"] == ["ops@example.com"]
    assert api.delete(f"/alerts/{alert['id']}").status_code == 200
    assert api.get(f"/alerts/{alert['id']}").status_code == 404


@pytest.mark.parametrize("body, words", [
    ({"name": "x", "severity": "LOUD", "condition": {}}, "severity"),
    ({"name": "", "severity": "INFO",
      "condition": {"resourceType": "server", "type": "server-up"}}, "name"),
    ({"name": "x", "severity": "INFO",
      "condition": {"resourceType": "server", "type": "cluster-up"}}, "condition.type"),
    ({"name": "x", "severity": "INFO",
      "condition": {"resourceType": "nebula", "type": "server-up"}}, "resourceType"),
    ({"name": "x", "severity": "INFO",
      "condition": {"resourceType": "server", "type": "server-cpu"}}, "threshold"),
    ({"name": "x", "severity": "INFO",
      "condition": {"resourceType": "server", "type": "server-cpu", "threshold": 5,
                    "operator": "ABOUT"}}, "operator"),
    ({"name": "x", "severity": "INFO",
      "condition": {"resourceType": "server", "type": "server-cpu",
                    "threshold": 10**400}}, "threshold"),
    ({"name": "x", "severity": "INFO",
      "condition": {"resourceType": "server", "type": "server-cpu", "threshold": 5,
                    "period": -3}}, "period"),
    ({"name": "x", "severity": "INFO",
      "condition": {"resourceType": "server", "type": "server-up", "resources": ["abc"]}},
     "not an id"),
    ({"name": "x", "severity": "INFO",
      "condition": {"resourceType": "server", "type": "server-up"},
      "actions": [{"type": "email", "emails": ["not-an-address"]}]}, "email"),
    ({"name": "x", "severity": "INFO",
      "condition": {"resourceType": "server", "type": "server-up"},
      "actions": [{"type": "webhook", "url": "file:///etc/passwd"}]}, "webhook"),
    ({"name": "x", "severity": "INFO",
      "condition": {"resourceType": "server", "type": "server-up"},
      "actions": [{"type": "pager"}]}, "action"),
    (["not", "an", "object"], ""),
])
def test_bad_alerts_are_refused_clearly(api: Api, body: Any, words: str) -> None:
    r = api.post("/alerts", json=body)
    assert r.status_code == 400, r.text
    assert r.json()["status"] == 400 and words in r.json()["message"]
    assert api.get("/alerts").json()["total"] == 0


def test_alerts_and_series_need_a_token(api: Api) -> None:
    for path in ("/alerts", "/alerts/x", "/alerts/x/history", "/servers/1/metrics",
                 "/applications/1/metrics"):
        r = api.client.get(f"/hybrid/api/v1{path}")
        assert r.status_code == 401 and r.json()["status"] == 401, path
    r = api.client.post("/hybrid/api/v1/alerts", json=cli_body(threshold=1))
    assert r.status_code == 401
    assert api.get("/alerts").json()["total"] == 0


def test_another_environments_resources_and_alerts_are_out_of_reach(api: Api) -> None:
    server_id = api.register("prod-1")
    sandbox = api.in_env("Sandbox")
    r = sandbox.post("/alerts", json={"name": "x", "severity": "INFO", "condition": {
        "resourceType": "server", "type": "server-down", "resources": [str(server_id)]}})
    assert r.status_code == 400 and "no server" in r.json()["message"]
    alert = api.post("/alerts", json={"name": "x", "severity": "INFO", "condition": {
        "resourceType": "server", "type": "server-down", "resources": [str(server_id)]}})
    alert_id = alert.json()["data"][0]["id"]
    assert sandbox.get(f"/alerts/{alert_id}").status_code == 404
    assert sandbox.patch(f"/alerts/{alert_id}", json={"name": "y"}).status_code == 404
    assert sandbox.delete(f"/alerts/{alert_id}").status_code == 404
    assert sandbox.get(f"/alerts/{alert_id}/history").status_code == 404
    assert sandbox.get(f"/servers/{server_id}/metrics").status_code == 404


def test_a_level_fires_once_and_resolves_once(api: Api, plane: ControlPlane) -> None:
    server_id = api.register("web-1")
    webhook = {"type": "webhook", "url": "http://192.0.2.10:9/hook", "secret": "s3cret"}
    body = cli_body(threshold=80)
    body["actions"].append(webhook)
    alert_id = api.post("/alerts", json=body).json()["data"][0]["id"]
    assert "secret" not in str(api.get(f"/alerts/{alert_id}").json())
    now = int(time.time() * 1000)
    with transaction(plane.sessions) as s:
        measurements.record(s, [(server_id, now - 1000, sample(95.0))])
    assert len(evaluate(plane, now)) == 1
    assert evaluate(plane, now + 10) == []  # still hot: no storm
    assert api.get(f"/alerts/{alert_id}").json()["data"]["firing"] == [str(server_id)]
    with transaction(plane.sessions) as s:
        measurements.record(s, [(server_id, now + 20_000, sample(10.0))])
    assert len(evaluate(plane, now + 21_000)) == 1
    history = api.get(f"/alerts/{alert_id}/history").json()
    assert [e["state"] for e in history["data"]] == ["RESOLVED", "FIRING"]
    firing = history["data"][1]
    assert firing["resourceName"] == "web-1" and firing["value"] == 95.0
    assert {d["type"] for d in firing["deliveries"]} == {"email", "webhook"}
    sent = deliveries(plane)
    assert len(sent) == 4 and all(d.state == "PENDING" for d in sent)
    assert sent[0].payload["subject"] == "cpu web-1" and sent[0].destination == "ops@example.com"
    # a modify that leaves the actions out keeps the webhook's secret
    api.patch(f"/alerts/{alert_id}", json={"actions": [webhook | {"secret": None}]})
    with plane.sessions() as s:
        assert alerts.get(s, _scope(api), alert_id).actions[0]["secret"] == "s3cret"


def test_a_period_needs_readings_over_all_of_it(api: Api, plane: ControlPlane) -> None:
    server_id = api.register("web-1")
    api.post("/alerts", json=cli_body(threshold=50, period=2))
    now = int(time.time() * 1000)
    with transaction(plane.sessions) as s:
        measurements.record(s, [(server_id, now - 30_000, sample(90.0))])
    assert evaluate(plane, now) == []  # hot for 30 s of the 2 minutes
    with transaction(plane.sessions) as s:
        measurements.record(s, [(server_id, now - 115_000, sample(90.0))])
    assert len(evaluate(plane, now)) == 1


def test_events_fire_once_per_change(api: Api, plane: ControlPlane) -> None:
    one, two = api.register("a"), api.register("b")
    group = api.post("/serverGroups", json={"name": "g", "serverIds": [one]}).json()["data"]
    for kind, rtype in (("server-up", "server"), ("server-deletion", "server"),
                        ("agent-version-change", "server"),
                        ("server-group-member-added", "server-group"),
                        ("server-group-member-removed", "server-group"),
                        ("server-group-down", "server-group")):
        r = api.post("/alerts", json={"name": kind, "severity": "INFO", "condition": {
            "resourceType": rtype, "type": kind}})
        assert r.status_code == 200, r.text
    assert evaluate(plane) != []  # the group is down (nobody runs): a level already holding
    with transaction(plane.sessions) as s:
        s.get_one(Server, one).status = "RUNNING"
        s.get_one(Server, two).agent_version = "9.9.9"
    api.post(f"/serverGroups/{group['id']}/servers/{two}")
    events = _events(api, evaluate(plane))
    assert sorted(events) == ["agent-version-change FIRING", "server-group-down RESOLVED",
                              "server-group-member-added FIRING", "server-up FIRING"]
    with transaction(plane.sessions) as s:
        s.get_one(Server, two).agent_version = "10.0.0"
    api.delete(f"/serverGroups/{group['id']}/servers/{two}")
    assert api.delete(f"/servers/{two}").status_code == 204
    events = _events(api, evaluate(plane))
    # deleted before the next look: its version change is not seen, its deletion is
    assert sorted(events) == ["server-deletion FIRING", "server-group-member-removed FIRING"]
    assert evaluate(plane) == []


def _events(api: Api, ids: list[int]) -> list[str]:
    out = []
    for alert in api.get("/alerts", params={"limit": 100}).json()["data"]:
        for e in api.get(f"/alerts/{alert['id']}/history").json()["data"]:
            if e["id"] in ids:
                out.append(f"{alert['name']} {e['state']}")
    return out


def _scope(api: Api) -> Any:
    from corral.domain.identity import Scope
    return Scope(api.org_id, api.env_id)


def test_series_and_retention(api: Api, plane: ControlPlane) -> None:
    server_id = api.register("web-1")
    now = int(time.time() * 1000) // 60_000 * 60_000
    with transaction(plane.sessions) as s:
        measurements.record(s, [(server_id, now - 3 * 3600_000 + i * 15_000, sample(10.0 + i))
                                for i in range(8)])  # two minutes, three hours ago
        measurements.record(s, [(server_id, now - 30 * 3600_000, sample(5.0))])  # too old
        measurements.record(s, [(server_id, now - 60_000, sample(40.0))])
    r = api.get(f"/servers/{server_id}/metrics",
                params={"from": str(now - 4 * 3600_000), "to": str(now), "step": 60})
    series = r.json()["data"]
    assert series["series"]["cpu"] == [11.5, 15.5, 40.0] and series["step"] == 60
    with transaction(plane.sessions) as s:
        folded, dropped = measurements.downsample(s, 3600, 86400, now)
    assert (folded, dropped) == (9, 1)  # the day-old one is folded, then dropped
    again = api.get(f"/servers/{server_id}/metrics",
                    params={"from": str(now - 4 * 3600_000), "to": str(now), "step": 60})
    assert again.json()["data"]["series"]["cpu"] == [11.5, 15.5, 40.0]
    for bad in ("yesterday", "0001-01-01", "9" * 16):
        assert api.get(f"/servers/{server_id}/metrics", params={"from": bad}
                       ).status_code == 400, bad
    assert api.get(f"/servers/{server_id}/metrics",
                   params={"from": str(now), "to": str(now - 1)}).status_code == 400


# --- every condition the CLI offers fires -----------------------------------------------------

def _alert_each(api: Api, resource_type: str, thresholds: dict[str, float]) -> dict[str, str]:
    ids = {}
    for kind in alerts.CONDITIONS[resource_type]:
        condition: dict[str, Any] = {"resourceType": resource_type, "type": kind}
        if alerts.is_threshold(kind):
            suffix = next(k for k in thresholds if kind.endswith(k))
            condition.update(threshold=thresholds[suffix], operator="GREATER_THAN")
        r = api.post("/alerts", json={"name": kind, "severity": "INFO", "condition": condition})
        assert r.status_code == 200, r.text
        ids[kind] = r.json()["data"][0]["id"]
    return ids


def _fired(api: Api, ids: dict[str, str]) -> set[str]:
    return {kind for kind, alert_id in ids.items()
            if any(e["state"] == "FIRING"
                   for e in api.get(f"/alerts/{alert_id}/history").json()["data"])}


HOT = wire.ServerSample(cpu=90.0, memoryUsed=3, memoryTotal=4, diskUsed=1, diskTotal=2,
                        loadAverage=3.0, threads=500)
CALM = wire.ServerSample(cpu=5.0, memoryUsed=1, memoryTotal=4, diskUsed=1, diskTotal=2,
                         loadAverage=0.1, threads=20)
"""Readings over, and well under, every threshold of `SERVER_THRESHOLDS`."""


def _read(plane: ControlPlane, server: wire.ServerSample, *server_ids: int,
          apps: tuple[wire.InstanceSample, ...] = ()) -> None:
    """One reading of `server` (and `apps`) from each server, now."""
    with transaction(plane.sessions) as s:
        measurements.record(s, [(sid, int(time.time() * 1000), wire.Measurements(
            server=server, applications=list(apps))) for sid in server_ids])


SERVER_THRESHOLDS = {"cpu": 50, "memory": 50, "load-average": 1, "thread-count": 100,
                     "message-count": 5, "error-count": 0, "response-time": 100}


def _status(plane: ControlPlane, status: str, *server_ids: int, **columns: str) -> None:
    with transaction(plane.sessions) as s:
        for sid in server_ids:
            server = s.get_one(Server, sid)
            server.status = status
            for key, value in columns.items():
                setattr(server, key, value)


def test_every_server_condition_fires(api: Api, plane: ControlPlane) -> None:
    server_id = api.register("s1")  # DISCONNECTED: server-down holds at first sight
    ids = _alert_each(api, "server", SERVER_THRESHOLDS)
    evaluate(plane)
    _status(plane, "RUNNING", server_id, agent_version="2.0", mule_version="4.9.0",
            certificate_problem="only the certificate in use can be renewed")
    _read(plane, HOT, server_id)
    evaluate(plane)
    assert api.delete(f"/servers/{server_id}").status_code == 204
    evaluate(plane)
    assert _fired(api, ids) == set(ids)


@pytest.mark.parametrize("resource_type", ["server-group", "cluster"])
def test_every_group_and_cluster_condition_fires(api: Api, plane: ControlPlane,
                                                 resource_type: str) -> None:
    a, b, c = (api.register(n) for n in ("a", "b", "c"))
    if resource_type == "server-group":
        target = api.post("/serverGroups", json={"name": "g", "serverIds": [a, b]})
    else:
        target = api.post("/clusters", json={"name": "k", "servers": [
            {"serverId": a, "serverIp": "10.0.0.1"}, {"serverId": b, "serverIp": "10.0.0.2"}]})
    assert target.status_code == 201, target.text
    path = "/serverGroups" if resource_type == "server-group" else "/clusters"
    target_id = target.json()["data"]["id"]
    ids = _alert_each(api, resource_type, SERVER_THRESHOLDS)
    evaluate(plane)  # every member DISCONNECTED: down and member-down hold
    _status(plane, "RUNNING", a)
    _read(plane, HOT, a)
    if resource_type == "cluster":
        from corral.db.models import Cluster
        with transaction(plane.sessions) as s:
            s.get_one(Cluster, target_id).primary_node_id = a
    evaluate(plane)
    if resource_type == "server-group":
        api.post(f"{path}/{target_id}/servers/{c}")
    else:
        api.post(f"{path}/{target_id}/servers", json={"serverId": c, "serverIp": "10.0.0.3"})
    assert api.delete(f"{path}/{target_id}/servers/{b}").status_code == 204
    evaluate(plane)
    assert api.delete(f"{path}/{target_id}").status_code == 204
    evaluate(plane)
    assert _fired(api, ids) == set(ids)


def test_every_application_condition_fires(api: Api, plane: ControlPlane) -> None:
    from corral.db.models import AppInstance, Deployment, Rollout
    server_id = api.register("s1")
    app = api.deploy("shop", server_id).json()["data"]
    ids = _alert_each(api, "hybrid-application", {**SERVER_THRESHOLDS, "cpu": 50,
                                                  "memory": 100})
    evaluate(plane)
    with transaction(plane.sessions) as s:
        s.query(AppInstance).filter_by(application_id=app["id"]).update(
            {"last_reported_status": "DEPLOYMENT_FAILED"})
        deployment = s.query(Deployment).filter_by(application_id=app["id"]).one()
        deployment.state = "SUCCEEDED"
        s.add(Rollout(application_id=app["id"], history_id=deployment.id, state="REVERTED",
                      message="instance failed its health check"))
    _read(plane, HOT, server_id, apps=(wire.InstanceSample(
        name="shop", cpu=90.0, rss=300 * 2**20, threads=3, fds=9, restarts=1, uptime=5.0,
        messages=10, errors=2, responseTimeMs=250.0),))
    evaluate(plane)
    assert api.delete(f"/applications/{app['id']}").status_code == 204
    evaluate(plane)
    assert _fired(api, ids) == set(ids)




def test_a_calm_fleet_fires_nothing(api: Api, plane: ControlPlane) -> None:
    """The other half of the conditions above: servers up, an application that started and
    succeeded, cool readings, a group and a cluster whole, evaluated again and again. No
    alert of any condition fires, and nothing happens that an event condition waits for."""
    from corral.db.session import transaction as tx
    from corral.domain import agents

    s1, s2, s3, s4 = (api.register(n) for n in ("s1", "s2", "s3", "s4"))
    group = api.post("/serverGroups", json={"name": "g", "serverIds": [s2]}).json()["data"]
    cluster = api.post("/clusters", json={"name": "k", "servers": [
        {"serverId": s3, "serverIp": "10.0.0.3"}]}).json()["data"]
    assert group and cluster
    _status(plane, "RUNNING", s1, s2, s3, s4)
    app = api.deploy("shop", s1).json()["data"]
    with tx(plane.sessions) as s:
        agents.record_reports(s, [(s1, wire.Report(revision=1, applications=[
            wire.ApplicationReport(name="shop", deploymentId=1, status="STARTED")]))])
    assert api.get(f"/applications/{app['id']}/deployments").json()["data"][0]["state"] == \
        "SUCCEEDED"  # before the alerts: their first sight of it, not news
    ids: dict[str, str] = {}
    for resource_type in ("server", "server-group", "cluster", "hybrid-application"):
        ids |= _alert_each(api, resource_type, SERVER_THRESHOLDS)
    shop = wire.InstanceSample(name="shop", cpu=1.0, rss=10 * 2**20, threads=3, fds=9,
                               restarts=0, uptime=50.0, messages=1, errors=0,
                               responseTimeMs=5.0)
    for _ in range(3):
        _read(plane, CALM, s1, s2, s3, s4, apps=(shop,))
        evaluate(plane)
    assert _fired(api, ids) == set()



def test_alerts_as_the_go_client_reads_them(api: Api, plane: ControlPlane) -> None:
    """go-facade's calls, with the status codes it checks: `postAlert` 200 and a list of one,
    `getResourceAlertHistory` by resource id, the history's ARM fields, `deleteSingleAlert`
    200; a list without `limit` holds every alert."""
    web, other = api.register("web-1"), api.register("web-2")
    r = api.post("/alerts", json={"name": "web-1 down", "severity": "CRITICAL", "condition": {
        "resourceType": "server", "type": "server-down", "resources": [str(web)]},
        "actions": [{"type": "email", "emails": ["ops@example.com"]}]})
    assert (r.status_code, r.json()["total"]) == (200, 1), r.text
    [alert] = r.json()["data"]
    assert alert["conditionType"] == "server-down" and alert["condition"]["event"]
    for n in range(30):
        api.post("/alerts", json={"name": f"spare {n}", "severity": "INFO", "condition": {
            "resourceType": "server", "type": "server-up"}})
    listed = api.get("/alerts").json()
    assert listed["total"] == len(listed["data"]) == 31
    assert evaluate(plane) != []  # web-1 is DISCONNECTED: it fires
    [entry] = api.get(f"/alerts/resource/{web}/history").json()["data"]
    assert entry["triggeredAt"] == entry["time"] and entry["state"] == "FIRING"
    assert entry["context"] == {"name": "web-1", "resource": str(web)}
    assert entry["severity"] == "CRITICAL" and entry["alertId"] == alert["id"]
    assert entry["condition"] == {"type": "server-down", "resourceType": "server"}
    assert entry["actions"] == [{"type": "email", "state": "PENDING"}]
    assert api.get(f"/alerts/{alert['id']}/history").json()["data"] == [entry]
    assert api.get(f"/alerts/resource/{other}/history").json() == {"data": [], "total": 0}
    assert api.get(f"/alerts/resource/{'9' * 65}/history").status_code == 400  # past 64
    assert api.client.get(f"/hybrid/api/v1/alerts/resource/{web}/history").status_code == 401
    assert api.in_env("Sandbox").get(f"/alerts/resource/{web}/history").json()["total"] == 0
    r = api.delete(f"/alerts/{alert['id']}")
    assert (r.status_code, r.content) == (200, b"")
    assert api.get(f"/alerts/resource/{web}/history").json()["total"] == 0
    assert api.delete(f"/alerts/{alert['id']}").status_code == 404
