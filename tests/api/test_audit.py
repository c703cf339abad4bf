"""The audit trail: every change asked of the control plane is one event with its actor, source,
action, resource, environment, outcome and time; admins read the organization, others their
environments; nothing can change or delete an event."""

from __future__ import annotations

import dataclasses
from typing import Any

from fastapi.testclient import TestClient

from corral.controlplane import ControlPlane
from corral.db.models import AuditEvent, now_ms
from corral.db.session import transaction
from corral.domain import audit, replicas
from tests.api.conftest import ADMIN_PASSWORD, Api, make_zip


def _events(api: Api, token: str | None = None, **params: Any) -> tuple[list[dict[str, Any]],
                                                                         int]:
    r = api.client.get(f"/accounts/api/organizations/{api.org_id}/auditEvents",
                       headers={"Authorization": f"Bearer {token or api.token}"}, params=params)
    assert r.status_code == 200, r.text
    body = r.json()
    return body["data"], body["total"]


def _login(client: TestClient, username: str, password: str) -> str | None:
    r = client.post("/accounts/login", json={"username": username, "password": password})
    return r.json()["access_token"] if r.status_code == 200 else None


def test_changes_are_recorded_with_who_where_and_how_they_ended(api: Api) -> None:
    assert _login(api.client, "admin", "not-the-password") is None
    sid = api.register("audited")
    app = api.deploy("audited-app", sid).json()["data"]
    api.patch(f"/applications/{app['id']}", json={"desiredStatus": "STOPPED"})
    assert api.patch("/applications/999999", json={"desiredStatus": "STOPPED"}).status_code == 404
    api.delete(f"/applications/{app['id']}")
    api.get("/servers")  # a read is not a change

    events, total = _events(api)
    assert total == len(events)
    by_action = [(e["action"], e["status"], e["outcome"]) for e in events]
    assert ("GET /hybrid/api/v1/servers", 200, "success") not in by_action
    newest = events[0]
    assert newest["action"] == "DELETE /hybrid/api/v1/applications/{app_id}"
    assert newest["resource"] == f"/hybrid/api/v1/applications/{app['id']}"
    assert newest["actor"] == {"kind": "user", "id": newest["actor"]["id"], "name": "admin"}
    assert newest["environmentId"] == api.env_id and newest["source"]
    assert ("PATCH /hybrid/api/v1/applications/{app_id}", 404, "failure") in by_action
    assert ("POST /hybrid/api/v1/applications", 202, "success") in by_action
    [registration] = [e for e in events if e["action"] == "POST /hybrid/api/v1/servers"]
    assert registration["actor"]["kind"] == "registrationToken"
    assert registration["actor"]["name"] == "audited"
    failed = [e for e in events if e["action"] == "POST /accounts/login"
              and e["outcome"] == "failure"]
    assert [(e["actor"]["name"], e["status"]) for e in failed] == [("admin", 401)]
    assert failed[0]["environmentId"] is None  # organization-wide


def test_filters_and_pages(api: Api) -> None:
    sid = api.register("filtered")
    for i in range(3):
        api.deploy(f"page-{i}", sid)
    everything, total = _events(api)
    deploys, n = _events(api, action="POST /hybrid/api/v1/applications")
    assert n == 3 and all(e["action"] == "POST /hybrid/api/v1/applications" for e in deploys)
    first, n = _events(api, action="POST /hybrid/api/v1/applications", limit=2)
    second, _ = _events(api, action="POST /hybrid/api/v1/applications", limit=2, offset=2)
    assert n == 3 and [e["id"] for e in first + second] == [e["id"] for e in deploys]
    assert _events(api, actor="nobody")[1] == 0
    assert _events(api, resource="/hybrid/api/v1/servers")[1] >= 1
    newest = everything[0]["time"]
    assert _events(api, **{"from": newest + 1})[1] == 0
    assert _events(api, to=newest + 1)[1] == total
    assert _events(api, environmentId=api.envs["Sandbox"])[1] == 0


def test_others_read_only_their_environments(api: Api) -> None:
    sandbox = api.envs["Sandbox"]
    r = api.client.post(f"/accounts/api/organizations/{api.org_id}/users",
                        headers=api.headers, json={"username": "sandboxer",
                                                   "password": "sandbox-password-1",
                                                   "role": "operator",
                                                   "environments": [sandbox]})
    assert r.status_code == 201, r.text
    api.in_env("Sandbox").register("in-sandbox")
    api.register("in-production")
    token = _login(api.client, "sandboxer", "sandbox-password-1")
    assert token is not None

    seen, _ = _events(api, token)
    assert seen and {e["environmentId"] for e in seen} == {sandbox}
    r = api.client.get(f"/accounts/api/organizations/{api.org_id}/auditEvents",
                       headers={"Authorization": f"Bearer {token}"},
                       params={"environmentId": api.envs["Production"]})
    assert r.status_code == 403
    everything, _ = _events(api)  # the admin: every environment and the organization's
    assert {api.envs["Production"], sandbox, None} <= {e["environmentId"] for e in everything}
    user_created = [e for e in everything
                    if e["action"] == "POST /accounts/api/organizations/{org_id}/users"]
    assert len(user_created) == 1 and user_created[0]["actor"]["name"] == "admin"
    r = api.client.get("/accounts/api/organizations/another-org/auditEvents",
                       headers=api.headers)
    assert r.status_code == 404


def test_no_call_changes_or_deletes_an_event(api: Api, plane: ControlPlane) -> None:
    api.register("kept")
    before, total = _events(api)
    path = f"/accounts/api/organizations/{api.org_id}/auditEvents"
    for method in ("DELETE", "PATCH", "PUT", "POST"):
        r = api.client.request(method, path, headers=api.headers, json={})
        assert r.status_code == 405, (method, r.status_code)
        r = api.client.request(method, f"{path}/{before[0]['id']}", headers=api.headers)
        assert r.status_code == 404, (method, r.status_code)  # no such route at all
    after, _ = _events(api)
    assert [e for e in after if e["id"] in {b["id"] for b in before}] == before

    # only the retention sweep removes them, once they are old enough
    with transaction(plane.sessions) as s:
        assert replicas.upkeep(s, audit_retention_days=1)["audit_events"] == 0
    assert _events(api)[1] >= total
    old = before[-1]["id"]
    with transaction(plane.sessions) as s:
        s.get_one(AuditEvent, old).time = now_ms() - 2 * 86_400_000  # two days ago
    with transaction(plane.sessions) as s:
        assert replicas.upkeep(s, audit_retention_days=1)["audit_events"] == 1
    kept, _ = _events(api)
    assert old not in {e["id"] for e in kept} and before[0]["id"] in {e["id"] for e in kept}


def test_the_console_is_audited_too(client: TestClient, api: Api) -> None:
    page = client.get("/login")
    csrf = page.cookies.get("corral_login_csrf") or client.cookies.get("corral_login_csrf")
    r = client.post("/login", data={"username": "admin", "password": ADMIN_PASSWORD,
                                    "csrf": csrf or ""}, follow_redirects=False)
    assert r.status_code == 303, r.text
    events, _ = _events(api, action="POST /login")
    assert events[0]["actor"]["name"] == "admin" and events[0]["outcome"] == "success"


def test_each_change_is_said_in_words(api: Api) -> None:
    """Stop, start and redeploy share one route; the event says which, of what, and the
    deployment it made. A refused change says nothing it did not do."""
    web_1, web_2 = api.register("web-1"), api.register("web-2")
    group = api.post("/serverGroups", json={"name": "web", "serverIds": [web_1]}).json()["data"]
    api.post(f"/serverGroups/{group['id']}/servers/{web_2}")
    app = api.deploy("storefront", group["id"]).json()["data"]
    api.patch(f"/applications/{app['id']}", json={"desiredStatus": "STOPPED"})
    api.patch(f"/applications/{app['id']}", json={"desiredStatus": "STARTED"})
    assert api.patch(f"/applications/{app['id']}", data={},
                     files={"file": ("storefront.zip", make_zip(), "application/zip")}
                     ).status_code == 200
    api.delete(f"/serverGroups/{group['id']}/servers/{web_2}")
    api.patch(f"/servers/{web_2}", json={"name": "web-3"})
    assert api.post("/serverGroups", json={"name": "web"}).status_code == 409  # refused
    api.delete(f"/applications/{app['id']}")
    api.delete(f"/servers/{web_2}")

    events, _ = _events(api)
    said = [e["description"] for e in reversed(events)
            if e["action"] != "POST /accounts/login"]
    assert said == [
        "register server web-1", "register server web-2", "create group web",
        "add web-2 to group web", "deploy storefront to web (deployment 1)", "stop storefront",
        "start storefront", "redeploy storefront (deployment 2)",
        "remove web-2 from group web", "rename server web-2 to web-3", "",
        "delete storefront", "delete server web-3"]
    refused = next(e for e in events if e["status"] == 409)
    assert refused["action"] == "POST /hybrid/api/v1/serverGroups"


def test_a_hostile_path_is_recorded_and_costs_no_other_event(api: Api,
                                                             plane: ControlPlane) -> None:
    """A NUL in a path (`%00`) is recorded, escaped: PostgreSQL's text holds no NUL, and an
    event the database refuses costs only itself, never the others stored with it."""
    assert api.patch("/applications/7%00x", json={"desiredStatus": "STOPPED"}).status_code \
        in (400, 404)
    [hostile] = [e for e in _events(api)[0] if e["resource"].startswith("/hybrid/api/v1/app")]
    assert hostile["resource"] == "/hybrid/api/v1/applications/7\\x00x"

    refused = audit.Event(kind="user", actor_id=None, actor_name="x",
                          organization_id="no-such-organization", environment_id=None,
                          source="", action="POST /refused", resource="/refused", status=200)
    kept = dataclasses.replace(refused, organization_id=api.org_id, action="POST /kept")
    for event in (refused, kept, dataclasses.replace(kept, action="POST /kept-too")):
        plane.audit.add(event)
    plane.audit.store()
    actions = [e["action"] for e in _events(api)[0]]
    assert "POST /kept" in actions and "POST /kept-too" in actions
    assert "POST /refused" not in actions
