"""Console plumbing without a browser: sign-in CSRF, session, CSRF on changes, error pages."""

from __future__ import annotations

import re

from fastapi.testclient import TestClient

from tests.api.conftest import ADMIN_PASSWORD, Api


def _sign_in(client: TestClient, username: str = "admin",
             password: str = ADMIN_PASSWORD) -> str:
    page = client.get("/login")
    csrf = re.search(r'name="csrf" value="([^"]+)"', page.text)
    assert csrf
    r = client.post("/login", data={"username": username, "password": password,
                                    "csrf": csrf.group(1)}, follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/servers"
    token = re.search(r'"X-CSRF-Token": "([^"]+)"', client.get("/servers").text)
    assert token
    return token.group(1)


def _sign_in_as_operator(client: TestClient, api: Api) -> str:
    """A new operator signed in instead of the admin (for what only admins see)."""
    client.post(f"/accounts/api/organizations/{api.org_id}/users", headers=api.headers,
                json={"username": "ops", "password": "ops-password", "role": "operator"})
    client.cookies.clear()
    return _sign_in(client, "ops", "ops-password")


def test_pages_need_a_session(client: TestClient) -> None:
    r = client.get("/servers", follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/login"
    r = client.get("/servers", headers={"HX-Request": "true"}, follow_redirects=False)
    assert r.headers["HX-Redirect"] == "/login"


def test_sign_in_form_has_its_own_csrf(client: TestClient) -> None:
    client.get("/login")
    r = client.post("/login", data={"username": "admin", "password": ADMIN_PASSWORD,
                                    "csrf": "forged"}, follow_redirects=False)
    assert r.status_code == 400
    assert "session_cookie" not in r.headers.get("set-cookie", "")


def test_changes_need_the_csrf_token(client: TestClient, api: Api) -> None:
    token = _sign_in(client)
    r = client.post("/groups", data={"name": "g1"})
    assert r.status_code == 403
    assert api.get("/serverGroups").json()["total"] == 0
    r = client.post("/groups", data={"name": "g1"}, headers={"X-CSRF-Token": token,
                                                             "HX-Request": "true"})
    assert r.status_code == 204 and r.headers["HX-Redirect"].startswith("/groups/")
    assert api.get("/serverGroups").json()["total"] == 1
    r = client.post("/groups", data={"name": "g1"}, headers={"X-CSRF-Token": token,
                                                             "HX-Request": "true"})
    assert "error=" in r.headers["HX-Redirect"] and "already%20exists" in r.headers["HX-Redirect"]


def test_unknown_and_foreign_ids_are_pages(client: TestClient, api: Api) -> None:
    _sign_in(client)
    sandbox_server = api.in_env("Sandbox").register("elsewhere")
    for path in ("/servers/999", f"/servers/{sandbox_server}", "/apps/5", "/groups/7"):
        r = client.get(path)
        assert r.status_code == 404, path
        assert "<html" in r.text and "Traceback" not in r.text


def test_sign_out_ends_the_session(client: TestClient) -> None:
    token = _sign_in(client)
    client.post("/logout", headers={"X-CSRF-Token": token})
    r = client.get("/servers", follow_redirects=False)
    assert r.status_code == 303


def test_the_console_shows_and_enforces_the_role(client: TestClient, api: Api) -> None:
    r = client.post(f"/accounts/api/organizations/{api.org_id}/users", headers=api.headers,
                    json={"username": "vera", "password": "vera-password", "role": "viewer"})
    assert r.status_code == 201, r.text
    token = _sign_in(client, "vera", "vera-password")
    page = client.get("/servers")
    assert "vera" in page.text and "(viewer)" in page.text
    r = client.post("/groups", data={"name": "g1"}, headers={"X-CSRF-Token": token})
    assert r.status_code == 403 and "operator role" in r.text
    assert client.get("/servers/add").status_code == 403  # the registration token is not shown
    assert api.get("/serverGroups").json()["total"] == 0


def test_history_rollback_and_audit_pages(client: TestClient, api: Api) -> None:
    from tests.api.conftest import make_zip
    from tests.api.test_history import _report

    token = _sign_in(client)
    sid = api.register("paged")
    app = api.deploy("paged-app", sid, make_zip({"Procfile": "web: one\n"})).json()["data"]
    _report(api.plane, sid, "paged-app", 1, "STARTED")
    api.patch(f"/applications/{app['id']}",
              files={"file": ("two.zip", make_zip({"Procfile": "web: two\n"}),
                              "application/zip")})
    page = client.get(f"/apps/{app['id']}").text
    assert 'data-deployment="2"' in page and 'data-deployment="1"' in page
    assert "SUCCEEDED" in page and "Roll back to this" in page
    first = api.get(f"/applications/{app['id']}/deployments").json()["data"][-1]
    r = client.post(f"/apps/{app['id']}/rollback/{first['id']}",
                    headers={"X-CSRF-Token": token, "HX-Request": "true"})
    assert r.status_code == 204 and "notice=Rolling" in r.headers["HX-Redirect"]
    [now, *_] = api.get(f"/applications/{app['id']}/deployments").json()["data"]
    assert (now["kind"], now["rolledBackTo"], now["createdBy"]) == ("rollback", first["id"],
                                                                    "admin")

    audit = client.get("/audit").text
    assert f"/apps/{app['id']}/rollback/{first['id']}" in audit  # the console's own change
    filtered = client.get("/audit", params={"action": "DELETE"}).text
    assert "No audit events match." in filtered
    assert "Audit" in client.get("/servers").text


def test_a_rollout_in_the_console(client: TestClient, api: Api) -> None:
    from tests.api.test_rollouts import _group_on_v1, _redeploy

    token = _sign_in(client)
    _sids, app = _group_on_v1(api, api.plane, "console-roll")
    _redeploy(api, app, "v2", {"canary": 1})
    page = client.get(f"/apps/{app['id']}").text
    assert "1/3 servers" in page and "canary 1" in page and ">Promote<" in page
    [now, *_] = api.get(f"/applications/{app['id']}/deployments").json()["data"]
    r = client.post(f"/apps/{app['id']}/rollout/{now['id']}/cancel",
                    headers={"X-CSRF-Token": token, "HX-Request": "true"})
    assert r.status_code == 204 and "notice=Cancelled" in r.headers["HX-Redirect"]
    assert api.get(f"/applications/{app['id']}/deployments").json()["data"][0]["state"] == \
        "CANCELLED"
    r = client.post(f"/apps/{app['id']}/rollout/{now['id']}/promote",
                    headers={"X-CSRF-Token": token, "HX-Request": "true"})
    assert "error=" in r.headers["HX-Redirect"]  # nothing in progress any more


def test_overview_charts_and_alerts_pages(client: TestClient, api: Api) -> None:
    import time

    from corral import wire
    from corral.db.session import transaction
    from corral.domain import measurements

    token = _sign_in(client)
    hx = {"X-CSRF-Token": token, "HX-Request": "true"}
    server_id = api.register("web-1")
    now = int(time.time() * 1000)
    with transaction(api.plane.sessions) as s:
        measurements.record(s, [(server_id, now - i * 5_000, wire.Measurements(
            server=wire.ServerSample(cpu=20.0 + i, memoryUsed=2, memoryTotal=4, diskUsed=1,
                                     diskTotal=2, loadAverage=0.4, threads=9)))
            for i in range(4)])
    page = client.get("/overview").text
    assert "web-1" in page and "Busiest servers" in page and "21.5 %" in page  # the mean
    server_page = client.get(f"/servers/{server_id}").text
    assert server_page.count("<svg") == 4 and "<polyline" in server_page

    r = client.post("/alerts", headers=hx, data={
        "name": "web down", "severity": "CRITICAL", "condition": "server/server-down",
        "resources": str(server_id), "emails": "ops@example.com"})
    assert r.status_code == 204 and r.headers["HX-Redirect"].startswith("/alerts/"), r.headers
    [alert] = api.get("/alerts").json()["data"]
    assert alert["condition"]["resources"] == [str(server_id)]
    assert alert["actions"] == [{"type": "email", "emails": ["ops@example.com"], "userIds": []}]
    r = client.post("/alerts", headers=hx, data={
        "name": "hot", "severity": "INFO", "condition": "server/server-cpu", "threshold": "x"})
    assert "error=" in r.headers["HX-Redirect"] and "threshold" in r.headers["HX-Redirect"]
    assert "web down" in client.get("/alerts").text
    client.post(f"/alerts/{alert['id']}/disable", headers=hx)
    assert api.get(f"/alerts/{alert['id']}").json()["data"]["enabled"] is False
    assert "It has not fired" in client.get(f"/alerts/{alert['id']}").text
    client.post(f"/alerts/{alert['id']}/delete", headers=hx)
    assert api.get("/alerts").json()["total"] == 0
    assert client.get("/alerts/not-an-alert").status_code == 404


def test_certificates_page_rotation_and_renewal(client: TestClient, api: Api) -> None:
    token = _sign_in(client)
    hx = {"X-CSRF-Token": token, "HX-Request": "true"}
    server_id = api.register("web-1")
    page = client.get("/certificates").text
    assert "Rotate the CA" in page and api.plane.ca.fingerprint in page
    r = client.post("/certificates/rotate", headers=hx)
    assert r.status_code == 204 and "notice=" in r.headers["HX-Redirect"]
    page = client.get("/certificates").text
    assert 'data-waiting="1"' in page and "web-1" in page and "Retire the old CA" in page
    r = client.post("/certificates/retire", headers=hx)
    assert "error=" in r.headers["HX-Redirect"] and "1%20server" in r.headers["HX-Redirect"]
    r = client.post("/certificates/retire", headers=hx, data={"force": "on"})
    assert "notice=" in r.headers["HX-Redirect"]
    assert "Rotate the CA" in client.get("/certificates").text

    r = client.post(f"/servers/{server_id}/certificate", headers=hx)
    assert r.status_code == 204 and "notice=" in r.headers["HX-Redirect"]
    assert "renewal asked" in client.get(f"/servers/{server_id}").text
    assert api.get(f"/servers/{server_id}").json()["data"]["certificateRenewalDue"] > 0

    ops = _sign_in_as_operator(client, api)
    assert client.get("/certificates").status_code == 403
    assert 'href="/certificates"' not in client.get("/servers").text
    r = client.post("/certificates/rotate", headers={"X-CSRF-Token": ops})
    assert r.status_code == 403


def test_environments_page(client: TestClient, api: Api) -> None:
    """Admins create, rename and delete environments; one that holds a server stays, and the
    page says why; others may not see the page nor change anything."""
    token = _sign_in(client)
    hx = {"X-CSRF-Token": token, "HX-Request": "true"}
    api.register("web-1")
    page = client.get("/environments").text
    assert 'data-environment="Production"' in page and 'data-environment="Sandbox"' in page
    r = client.post("/environments", headers=hx, data={"name": "Staging", "type": "sandbox"})
    assert r.status_code == 204 and "notice=" in r.headers["HX-Redirect"]
    base = f"/accounts/api/organizations/{api.org_id}/environments"
    envs = {e["name"]: e["id"] for e in client.get(base, headers=api.headers).json()["data"]}
    r = client.post(f"/environments/{envs['Staging']}/rename", headers=hx, data={"name": "Stage"})
    assert "notice=" in r.headers["HX-Redirect"]
    r = client.post(f"/environments/{envs['Staging']}/rename", headers=hx,
                    data={"name": "Production"})
    assert "error=" in r.headers["HX-Redirect"] and "already%20exists" in r.headers["HX-Redirect"]
    r = client.post(f"/environments/{envs['Production']}/delete", headers=hx)
    assert "error=" in r.headers["HX-Redirect"] and "still%20holds" in r.headers["HX-Redirect"]
    r = client.post(f"/environments/{envs['Staging']}/delete", headers=hx)
    assert "notice=" in r.headers["HX-Redirect"]
    names = {e["name"] for e in client.get(base, headers=api.headers).json()["data"]}
    assert names == {"Production", "Sandbox"}

    ops = _sign_in_as_operator(client, api)
    assert client.get("/environments").status_code == 403
    assert 'href="/environments"' not in client.get("/servers").text
    r = client.post(f"/environments/{envs['Sandbox']}/delete", headers={"X-CSRF-Token": ops})
    assert r.status_code == 403
    assert len(client.get(base, headers=api.headers).json()["data"]) == 2


def test_secure_properties_through_the_console(client: TestClient, api: Api) -> None:
    """Password fields on the deploy form and the application's page: set, changed, removed;
    the page names them and masks every value."""
    from tests.api.conftest import desired, make_zip

    token = _sign_in(client)
    sid = api.register("console-secret")
    r = client.post("/apps", headers={"X-CSRF-Token": token, "HX-Request": "true"}, data={
        "artifactName": "vaulted", "targetId": str(sid), "properties": "greeting=hi",
        "secureName1": "db.password", "secureValue1": "first-Secret-1",
        "secureName2": "api.key", "secureValue2": "key-Secret-2", "secureName3": "",
        "secureValue3": ""}, files={"file": ("v.zip", make_zip(), "application/zip")})
    assert r.status_code in (200, 204), r.text
    [app] = [a for a in api.get("/applications").json()["data"] if a["name"] == "vaulted"]

    def sent() -> dict[str, str]:
        [one] = desired(api.plane, sid)["applications"]
        return dict(one["secureProperties"])

    assert sent() == {"db.password": "first-Secret-1", "api.key": "key-Secret-2"}
    page = client.get(f"/apps/{app['id']}").text
    assert 'type="password"' in page and "db.password" in page and "********" in page
    assert "first-Secret-1" not in page and "key-Secret-2" not in page
    # the page's form: one changed, one removed (a name without a value), greeting kept
    r = client.post(f"/apps/{app['id']}/redeploy", headers={"X-CSRF-Token": token,
                                                            "HX-Request": "true"},
                    files={"secureName1": (None, "db.password"),
                           "secureValue1": (None, "second-Secret-3"),
                           "secureName2": (None, "api.key"), "secureValue2": (None, "")})
    assert r.status_code == 204 and "secure%20properties" in r.headers["HX-Redirect"].replace(
        "+", "%20"), r.headers
    assert sent() == {"db.password": "second-Secret-3"}
    shown = api.get(f"/applications/{app['id']}").json()["data"]["configuration"]
    assert shown["mule.agent.application.properties.service"]["properties"] == {"greeting": "hi"}
