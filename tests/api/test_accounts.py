"""Access management: login, client credentials, logout, who-am-I, organizations, environments."""

from __future__ import annotations

import uuid

from fastapi.testclient import TestClient
from sqlalchemy import update

from corral.controlplane import ControlPlane
from corral.db.models import AccessToken
from tests.api.conftest import ADMIN_PASSWORD, Api


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


class TestLogin:
    def test_json_login_answers_arm_shape(self, client: TestClient) -> None:
        r = client.post("/accounts/login", json={"username": "admin", "password": ADMIN_PASSWORD})
        assert r.status_code == 200
        body = r.json()
        assert body["token_type"] == "bearer"
        assert body["redirectUrl"] == "/accounts/#/cs/profile/home"
        assert "url" not in body  # its presence sends ARM's CLI down its MFA branch

    def test_tokens_look_like_arms(self, client: TestClient) -> None:
        """A UUID: scripts check for 32 hex digits once the dashes are gone."""
        body = {"username": "admin", "password": ADMIN_PASSWORD}
        tokens = {client.post("/accounts/login", json=body).json()["access_token"]
                  for _ in range(3)}
        assert len(tokens) == 3
        for token in tokens:
            assert uuid.UUID(token).version == 4
            assert len(token.replace("-", "")) == 32

    def test_form_login(self, client: TestClient) -> None:
        r = client.post("/accounts/login", data={"username": "admin", "password": ADMIN_PASSWORD})
        assert r.status_code == 200
        assert r.json()["access_token"]

    def test_query_string_login(self, client: TestClient) -> None:
        r = client.post("/accounts/login",
                        params={"username": "admin", "password": ADMIN_PASSWORD})
        assert r.status_code == 200, r.text
        assert client.get("/accounts/api/me",
                          headers=_bearer(r.json()["access_token"])).status_code == 200
        r = client.post("/accounts/login", params={"username": "admin", "password": "nope-nope"})
        assert (r.status_code, r.text) == (401, "Unauthorized")

    def test_bad_password_is_401_unauthorized_in_plain_text(self, client: TestClient) -> None:
        """ARM's answer, which scripts and the mule-maven-plugin look for."""
        for send in ("json", "data"):
            r = client.post("/accounts/login",
                            **{send: {"username": "admin", "password": "nope-nope"}})
            assert r.status_code == 401
            assert r.text == "Unauthorized"
            assert r.headers["content-type"].startswith("text/plain")

    def test_unknown_user_is_401(self, client: TestClient) -> None:
        r = client.post("/accounts/login", json={"username": "ghost", "password": "whatever1"})
        assert r.status_code == 401

    def test_malformed_json_is_400(self, client: TestClient) -> None:
        r = client.post(
            "/accounts/login", content=b"{not json", headers={"content-type": "application/json"}
        )
        assert r.status_code == 400
        assert r.json()["message"] == "request body is not valid JSON"

    def test_missing_field_names_it(self, client: TestClient) -> None:
        r = client.post("/accounts/login", json={"username": "admin"})
        assert r.status_code == 400
        assert "password" in r.json()["message"]

    def test_each_login_is_a_new_token(self, client: TestClient) -> None:
        body = {"username": "admin", "password": ADMIN_PASSWORD}
        a = client.post("/accounts/login", json=body).json()["access_token"]
        b = client.post("/accounts/login", json=body).json()["access_token"]
        assert a != b


class TestTokens:
    def test_logout_revokes_the_token(self, api: Api) -> None:
        assert api.client.get("/accounts/api/me", headers=_bearer(api.token)).status_code == 200
        r = api.client.post("/accounts/api/logout", headers=_bearer(api.token))
        assert r.status_code == 204
        assert api.client.get("/accounts/api/me", headers=_bearer(api.token)).status_code == 401
        assert api.get("/servers").status_code == 401

    def test_a_bad_token_on_me_is_unauthorized_in_plain_text(self, api: Api) -> None:
        """ARM's answer there: the mule-maven-plugin compares the body to "unauthorized" and
        says "Unauthorized Access. Please verify that authToken is valid."; elsewhere the
        JSON body stays."""
        for headers in (_bearer("not-a-token"), {}, _bearer("")):
            for path in ("/accounts/api/me", "/accounts/api/me/"):
                r = api.client.get(path, headers=headers)
                assert (r.status_code, r.text) == (401, "Unauthorized"), (path, headers)
                assert r.headers["www-authenticate"] == "Bearer"
        r = api.client.get("/accounts/api/users/me", headers=_bearer("not-a-token"))
        assert r.status_code == 401 and r.json()["status"] == 401

    def test_expired_token_is_401(self, api: Api, plane: ControlPlane) -> None:
        with plane.sessions.begin() as s:
            s.execute(update(AccessToken).values(expires_at=0))
        r = api.get("/servers")
        assert r.status_code == 401
        assert r.json()["message"] == "invalid or expired token"

    def test_tokens_are_stored_hashed(self, api: Api, plane: ControlPlane) -> None:
        with plane.sessions() as s:
            stored = [t.token_hash for t in s.query(AccessToken)]
        assert api.token not in stored
        assert len(stored) == 1 and len(stored[0]) == 64

    def test_no_token_and_garbage_token(self, api: Api) -> None:
        r = api.client.get("/hybrid/api/v1/servers")
        assert r.status_code == 401
        assert r.headers["www-authenticate"] == "Bearer"
        r = api.client.get("/hybrid/api/v1/servers", headers=_bearer("garbage"))
        assert r.status_code == 401


class TestConnectedApps:
    def test_client_credentials_grant(self, api: Api) -> None:
        r = api.client.post(
            "/accounts/api/connectedApplications",
            headers=_bearer(api.token),
            json={"client_name": "ci-bot"},
        )
        assert r.status_code == 201, r.text
        creds = r.json()
        assert creds["client_secret"]
        for send in ("json", "data"):
            r = api.client.post(
                "/accounts/api/v2/oauth2/token",
                **{send: {"grant_type": "client_credentials", "client_id": creds["client_id"],
                          "client_secret": creds["client_secret"]}},
            )
            assert r.status_code == 200, r.text
            assert r.json()["expires_in"] == 3600
        token = r.json()["access_token"]
        hybrid = {**api.headers, "Authorization": f"Bearer {token}"}
        assert api.client.get("/hybrid/api/v1/servers", headers=hybrid).status_code == 200
        me = api.client.get("/accounts/api/me", headers=_bearer(token)).json()
        assert me["client"]["client_id"] == creds["client_id"]
        assert me["organization"]["id"] == api.org_id

    def test_wrong_secret_and_grant(self, api: Api) -> None:
        creds = api.client.post(
            "/accounts/api/connectedApplications",
            headers=_bearer(api.token),
            json={"client_name": "bot"},
        ).json()
        r = api.client.post(
            "/accounts/api/v2/oauth2/token",
            json={"grant_type": "client_credentials", "client_id": creds["client_id"],
                  "client_secret": "wrong"},
        )
        assert r.status_code == 401
        r = api.client.post(
            "/accounts/api/v2/oauth2/token",
            json={"grant_type": "password", "client_id": "x", "client_secret": "y"},
        )
        assert r.status_code == 400


class TestWhoAmI:
    def test_me_wraps_user(self, api: Api) -> None:
        body = api.client.get("/accounts/api/me", headers=_bearer(api.token)).json()
        assert body["user"]["username"] == "admin"
        assert body["user"]["organization"]["id"] == api.org_id
        assert body["access_token"]["access_token"] == api.token
        assert 3500 <= body["access_token"]["expires_in"] <= 3600

    def test_every_organization_carries_the_tree_lists(self, api: Api) -> None:
        """The mule-maven-plugin builds the business-group tree from `subOrganizationIds` of
        `organization` and of every member/contributor entry, and fails without them."""
        for path in ("/accounts/api/me", "/accounts/api/users/me"):
            body = api.client.get(path, headers=_bearer(api.token)).json()
            user = body.get("user", body)
            for org in [user["organization"], *user["memberOfOrganizations"],
                        *user["contributorOfOrganizations"]]:
                assert org["id"] == api.org_id
                for field in ("subOrganizationIds", "parentOrganizationIds",
                              "tenantOrganizationIds"):
                    assert org[field] == [], (path, field)

    def test_hierarchy(self, api: Api) -> None:
        r = api.client.get(f"/accounts/api/organizations/{api.org_id}/hierarchy",
                           headers=_bearer(api.token))
        assert r.status_code == 200
        body = r.json()
        assert (body["id"], body["subOrganizations"], body["subOrganizationIds"]) == (
            api.org_id, [], [])
        other = api.client.get(f"/accounts/api/organizations/{uuid.uuid4()}/hierarchy",
                               headers=_bearer(api.token))
        assert other.status_code == 404

    def test_users_me_is_flat_with_orgs(self, api: Api) -> None:
        body = api.client.get("/accounts/api/users/me", headers=_bearer(api.token)).json()
        assert body["username"] == "admin"
        assert body["createdAt"].endswith("Z")
        [org] = body["memberOfOrganizations"]
        assert (org["id"], org["name"], org["isRoot"]) == (api.org_id, "Corral", True)
        assert "user" not in body

    def test_profile(self, api: Api) -> None:
        body = api.client.get("/accounts/api/profile", headers=_bearer(api.token)).json()
        assert body["organization"]["id"] == api.org_id


class TestOrganizations:
    def test_organization_lists_environments(self, api: Api) -> None:
        r = api.client.get(f"/accounts/api/organizations/{api.org_id}", headers=_bearer(api.token))
        assert r.status_code == 200
        names = {e["name"]: e for e in r.json()["environments"]}
        assert names["Production"]["isProduction"] is True
        assert names["Sandbox"]["type"] == "sandbox"

    def test_environments_list_and_single_unwrapped(self, api: Api) -> None:
        r = api.client.get(
            f"/accounts/api/organizations/{api.org_id}/environments", headers=_bearer(api.token)
        )
        body = r.json()
        assert body["total"] == 2
        assert {e["name"] for e in body["data"]} == {"Production", "Sandbox"}
        env = body["data"][0]
        one = api.client.get(
            f"/accounts/api/organizations/{api.org_id}/environments/{env['id']}",
            headers=_bearer(api.token),
        )
        assert one.status_code == 200
        assert one.json() == env
        assert {len(e["clientId"]) for e in body["data"]} == {32}
        assert len({e["clientId"] for e in body["data"]}) == 2

    def test_members(self, api: Api) -> None:
        """Any member may list names (anypoint-cli resolves alert recipients so); a viewer sees
        no roles."""
        api.client.post(f"/accounts/api/organizations/{api.org_id}/users",
                        headers=_bearer(api.token),
                        json={"username": "vera", "password": "viewer-password-1"})
        viewer = api.client.post("/accounts/login", json={
            "username": "vera", "password": "viewer-password-1"}).json()["access_token"]
        r = api.client.get(f"/accounts/api/organizations/{api.org_id}/members",
                           headers=_bearer(viewer))
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["total"] == 2
        assert {m["username"] for m in body["data"]} == {"admin", "vera"}
        assert all("role" not in m and "id" in m for m in body["data"])

    def test_connected_app_details(self, api: Api) -> None:
        created = api.client.post("/accounts/api/connectedApplications",
                                  headers=_bearer(api.token), json={"client_name": "ci"}).json()
        path = f"/accounts/api/organizations/{api.org_id}/clients/{created['client_id']}"
        r = api.client.get(path, headers=_bearer(api.token))
        assert r.status_code == 200
        assert r.json()["client_name"] == "ci" and "client_secret" not in r.json()
        own = api.client.post("/accounts/api/v2/oauth2/token", json={
            "grant_type": "client_credentials", "client_id": created["client_id"],
            "client_secret": created["client_secret"]}).json()["access_token"]
        assert api.client.get(path, headers=_bearer(own)).json()["client_id"] == \
            created["client_id"]
        other = api.client.post("/accounts/api/connectedApplications", headers=_bearer(
            api.token), json={"client_name": "other"}).json()
        r = api.client.get(f"/accounts/api/organizations/{api.org_id}/clients/"
                           f"{other['client_id']}", headers=_bearer(own))
        assert r.status_code == 403  # a viewer app reads only itself
        r = api.client.get(f"/accounts/api/organizations/{api.org_id}/clients/nope",
                           headers=_bearer(api.token))
        assert r.status_code == 404

    def test_other_org_is_403_unknown_is_404(self, api: Api) -> None:
        r = api.client.get(
            "/accounts/api/organizations/00000000-0000-0000-0000-000000000000",
            headers=_bearer(api.token),
        )
        assert r.status_code == 404
        r = api.client.get(
            f"/accounts/api/organizations/{api.org_id}/environments/nope",
            headers=_bearer(api.token),
        )
        assert r.status_code == 404

    def test_create_environment_and_user(self, api: Api) -> None:
        base = f"/accounts/api/organizations/{api.org_id}"
        r = api.client.post(f"{base}/environments", headers=_bearer(api.token),
                            json={"name": "Staging", "type": "sandbox"})
        assert r.status_code == 201, r.text
        assert r.json()["isProduction"] is False
        dup = api.client.post(f"{base}/environments", headers=_bearer(api.token),
                              json={"name": "Staging"})
        assert dup.status_code == 409
        bad = api.client.post(f"{base}/environments", headers=_bearer(api.token),
                              json={"name": "X", "type": "galaxy"})
        assert bad.status_code == 400
        r = api.client.post(f"{base}/users", headers=_bearer(api.token),
                            json={"username": "ops", "password": "longenough1"})
        assert r.status_code == 201, r.text
        r = api.client.post("/accounts/login", json={"username": "ops", "password": "longenough1"})
        assert r.status_code == 200
        short = api.client.post(f"{base}/users", headers=_bearer(api.token),
                                json={"username": "ops2", "password": "short"})
        assert short.status_code == 400

    def test_rename_and_delete_an_environment(self, api: Api) -> None:
        """kloudtek's `Environment.java` renames with PUT and deletes with DELETE: admins only;
        an environment that holds anything, or the last one, stays (409)."""
        base = f"/accounts/api/organizations/{api.org_id}/environments"
        staging = api.client.post(base, headers=_bearer(api.token),
                                  json={"name": "Staging"}).json()["id"]
        r = api.client.put(f"{base}/{staging}", headers=_bearer(api.token),
                           json={"id": staging, "name": "Stage", "type": "sandbox"})
        assert (r.status_code, r.json()["name"]) == (200, "Stage")
        taken = api.client.put(f"{base}/{staging}", headers=_bearer(api.token),
                               json={"name": "Production"})
        assert taken.status_code == 409
        r = api.client.post(f"/accounts/api/organizations/{api.org_id}/users",
                            headers=_bearer(api.token),
                            json={"username": "stager", "password": "longenough1",
                                  "role": "operator", "environments": [staging]})
        stager = r.json()["id"]
        token = api.client.post("/accounts/login", json={
            "username": "stager", "password": "longenough1"}).json()["access_token"]
        assert api.client.delete(f"{base}/{staging}", headers=_bearer(token)).status_code == 403
        assert api.client.put(f"{base}/{staging}", headers=_bearer(token),
                              json={"name": "Mine"}).status_code == 403
        api.envs["Stage"] = staging
        held = api.in_env("Stage").register("stage-1")
        r = api.client.delete(f"{base}/{staging}", headers=_bearer(api.token))
        assert r.status_code == 409 and "1 servers" in r.json()["message"]
        assert api.in_env("Stage").delete(f"/servers/{held}").status_code == 204
        assert api.client.delete(f"{base}/{staging}", headers=_bearer(api.token)).status_code \
            == 204
        assert api.client.get(f"{base}/{staging}", headers=_bearer(api.token)).status_code == 404
        assert api.client.delete(f"{base}/{staging}", headers=_bearer(api.token)).status_code \
            == 404
        listed = api.client.get(f"/accounts/api/organizations/{api.org_id}/users",
                                headers=_bearer(api.token)).json()["data"]
        assert [u["environments"] for u in listed if u["id"] == stager] == [[]]
        # the last one stays
        for env in api.client.get(base, headers=_bearer(api.token)).json()["data"][1:]:
            assert api.client.delete(f"{base}/{env['id']}",
                                     headers=_bearer(api.token)).status_code == 204
        [last] = api.client.get(base, headers=_bearer(api.token)).json()["data"]
        r = api.client.delete(f"{base}/{last['id']}", headers=_bearer(api.token))
        assert r.status_code == 409 and "last" in r.json()["message"]


class TestHybridScope:
    def test_missing_env_header_is_400(self, api: Api) -> None:
        r = api.client.get(
            "/hybrid/api/v1/servers",
            headers={"Authorization": f"Bearer {api.token}", "X-ANYPNT-ORG-ID": api.org_id},
        )
        assert r.status_code == 400
        assert "X-ANYPNT-ENV-ID" in r.json()["message"]

    def test_other_org_is_403(self, api: Api) -> None:
        r = api.get("/servers", headers={"X-ANYPNT-ORG-ID": "11111111-2222-3333-4444-555555555555"})
        assert r.status_code == 403

    def test_unknown_env_is_403(self, api: Api) -> None:
        r = api.get("/servers", headers={"X-ANYPNT-ENV-ID": "not-an-env"})
        assert r.status_code == 403

    def test_org_header_may_be_omitted(self, api: Api) -> None:
        r = api.client.get(
            "/hybrid/api/v1/servers",
            headers={"Authorization": f"Bearer {api.token}", "X-ANYPNT-ENV-ID": api.env_id},
        )
        assert r.status_code == 200

    def test_a_remembered_token_loses_its_rights_at_once(self, api: Api) -> None:
        """Authenticated tokens are cached for a few seconds; a lowered role, a disabled user
        and a logout still count from the next call."""
        base = f"/accounts/api/organizations/{api.org_id}/users"
        r = api.client.post(base, headers=_bearer(api.token),
                            json={"username": "ops", "password": "longenough1",
                                  "role": "operator"})
        assert r.status_code == 201, r.text
        user_id = r.json()["id"]
        token = api.client.post("/accounts/login", json={
            "username": "ops", "password": "longenough1"}).json()["access_token"]
        hybrid = {**_bearer(token), "X-ANYPNT-ENV-ID": api.env_id}
        token_form = "/hybrid/api/v1/servers/registrationToken"
        for _ in range(2):  # the second answer comes from the cache
            assert api.client.get("/hybrid/api/v1/servers", headers=hybrid).status_code == 200
            assert api.client.get(token_form, headers=hybrid).status_code == 200
        lowered = api.client.patch(f"{base}/{user_id}", headers=_bearer(api.token),
                                   json={"role": "viewer"})
        assert lowered.status_code == 200, lowered.text
        assert api.client.get(token_form, headers=hybrid).status_code == 403
        assert api.client.get("/hybrid/api/v1/servers", headers=hybrid).status_code == 200
        disabled = api.client.patch(f"{base}/{user_id}", headers=_bearer(api.token),
                                    json={"enabled": False})
        assert disabled.status_code == 200, disabled.text
        assert api.client.get("/hybrid/api/v1/servers", headers=hybrid).status_code == 401
        admin = {**_bearer(api.token), "X-ANYPNT-ENV-ID": api.env_id}
        assert api.client.get("/hybrid/api/v1/servers", headers=admin).status_code == 200
        assert api.client.post("/accounts/api/logout", headers=_bearer(api.token)).status_code \
            == 204
        assert api.client.get("/hybrid/api/v1/servers", headers=admin).status_code == 401


def test_the_first_password_file_goes_when_the_password_changes(api: Api) -> None:
    """`admin-credentials` stays true: it goes when its user's password changes (by an admin
    or by the user), not when another user's does; the sign-in page names it only while it is
    there."""
    from corral.controlplane import CREDENTIALS_FILE, write_credentials

    path = api.plane.settings.data_dir / CREDENTIALS_FILE
    users = f"/accounts/api/organizations/{api.org_id}/users"
    write_credentials(path, "admin", ADMIN_PASSWORD)
    assert "admin-credentials" in api.client.get("/login").text
    other = api.client.post(users, headers=_bearer(api.token), json={
        "username": "olga", "password": "olga-password", "role": "viewer"}).json()["id"]
    r = api.client.patch(f"{users}/{other}", headers=_bearer(api.token),
                         json={"password": "olga-password-2"})
    assert r.status_code == 200 and path.exists()
    r = api.client.put("/accounts/api/users/me/password", headers=_bearer(api.token),
                       json={"currentPassword": ADMIN_PASSWORD, "newPassword": "new-password-1"})
    assert r.status_code == 204, r.text
    assert not path.exists()
    assert "admin-credentials" not in api.client.get("/login").text
    write_credentials(path, "admin", "new-password-1")
    me = api.client.get("/accounts/api/users/me", headers=_bearer(api.token)).json()["id"]
    api.client.patch(f"{users}/{me}", headers=_bearer(api.token),
                     json={"password": "new-password-2"})
    assert not path.exists()
