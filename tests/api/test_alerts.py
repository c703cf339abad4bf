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
    assert r.status_code == 201, r.text
    alert = r.json()["data"]
    assert alert["condition"] == {"resourceType": "server", "type": "server-cpu",
                                  "resources": ["*"], "threshold": 80,
                                  "operator": "GREATER_THAN"}
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
    assert api.delete(f"/alerts/{alert['id']}").status_code == 204
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


def test_another_environments_resources_and_alerts_are_out_of_reach(api: Api) -> None:
    server_id = api.register("prod-1")
    sandbox = api.in_env("Sandbox")
    r = sandbox.post("/alerts", json={"name": "x", "severity": "INFO", "condition": {
        "resourceType": "server", "type": "server-down", "resources": [str(server_id)]}})
    assert r.status_code == 400 and "no server" in r.json()["message"]
    alert = api.post("/alerts", json={"name": "x", "severity": "INFO", "condition": {
        "resourceType": "server", "type": "server-down", "resources": [str(server_id)]}})
    alert_id = alert.json()["data"]["id"]
    assert sandbox.get(f"/alerts/{alert_id}").status_code == 404
    assert sandbox.patch(f"/alerts/{alert_id}", json={"name": "y"}).status_code == 404
    assert sandbox.delete(f"/alerts/{alert_id}").status_code == 404
    assert sandbox.get(f"/alerts/{alert_id}/history").status_code == 404
    assert sandbox.get(f"/servers/{server_id}/metrics").status_code == 404


def test_a_level_fires_once_and_resolves_once(api: Api, plane: ControlPlane) -> None:
    server_id = api.register("web-1")
    webhook = {"type": "webhook", "url": "http://127.0.0.1:9/hook", "secret": "s3cret"}
    body = cli_body(threshold=80)
    body["actions"].append(webhook)
    alert_id = api.post("/alerts", json=body).json()["data"]["id"]
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
        assert r.status_code == 201, r.text
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
    assert api.delete(f"/servers/{two}").status_code in (200, 204)
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
    from corral.domain.accounts import Scope
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
    assert api.get(f"/servers/{server_id}/metrics", params={"from": "yesterday"}
                   ).status_code == 400
    assert api.get(f"/servers/{server_id}/metrics",
                   params={"from": str(now), "to": str(now - 1)}).status_code == 400
