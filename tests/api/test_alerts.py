"""ARM's standalone alerts through the API: the shapes anypoint-cli sends and reads, bad input,
another environment's resources, the history as go-facade reads it. The evaluator itself is
tested in tests/domain/test_alert_evaluation.py."""

from __future__ import annotations

from typing import Any

import pytest

from corral.controlplane import ControlPlane
from corral.db.session import transaction
from corral.domain import alerts
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
