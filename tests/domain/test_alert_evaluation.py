"""The alert evaluator on the database: a level fires once and resolves once, a period needs
readings over all of it, an event fires once per change, every condition the CLI offers fires
and a calm fleet fires none; series are folded and dropped by age. Alerts are made through the
API, as an operator makes them; readings and statuses are written as the gateway writes them."""

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
from tests.api.test_alerts import cli_body, evaluate


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
