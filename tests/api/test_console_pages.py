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
